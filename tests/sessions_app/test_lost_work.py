"""Leases on running work, and work whose worker was lost queued again (once), in-process.

The real thing (a Celery worker SIGKILLed in the middle of a job and of a pass, and a new one
finishing it) is in test_worker_kill.py.
"""

from __future__ import annotations

import multiprocessing
import time
import uuid

import pytest
from django.core.files.base import ContentFile
from django.db import connection

from sessions_app import lost_work, worker_leases
from sessions_app.models import BatchJob
from sessions_app.tasks import post_session_pass, transcribe_job

State = lost_work.TranscriptionSession.TranscriptState


@pytest.fixture
def sent(monkeypatch) -> dict[str, list[str]]:
    """The messages lost_work queues (kept here instead of going to a broker)."""
    sent: dict[str, list[str]] = {"jobs": [], "passes": []}
    monkeypatch.setattr(lost_work, "_queue_job", sent["jobs"].append)
    monkeypatch.setattr(lost_work, "_queue_pass", sent["passes"].append)
    monkeypatch.setattr(lost_work, "_queued_passes", set())
    return sent


def _job(user, status: str = "running", **fields) -> BatchJob:
    job = BatchJob(owner=user, status=status, **fields)
    job.upload.save("in.wav", ContentFile(b"RIFF"), save=False)
    job.save()
    return job


def _hold_in_child(kind: int, key: str, held) -> None:
    lease = worker_leases.hold(kind, key)
    if lease is not None:
        held.set()
    time.sleep(120)  # (until the parent kills it)


@pytest.mark.django_db(transaction=True)
def test_a_lease_is_held_by_one_process_at_a_time_and_goes_with_it():
    key = str(uuid.uuid4())
    with worker_leases.hold(worker_leases.JOB, key) as lease:
        assert lease is not None and worker_leases.is_held(worker_leases.JOB, key)
        assert worker_leases.hold(worker_leases.JOB, key) is None  # (this process's other connection too)
        assert not worker_leases.is_held(worker_leases.PASS, key)  # kinds are apart
    assert not worker_leases.is_held(worker_leases.JOB, key)

    # Another process holds it; it dies without letting go (SIGKILL): the lease goes with it.
    connection.close()  # (the child must not share this process's database socket)
    context = multiprocessing.get_context("fork")
    # (the child only sets it: a process killed while it waits on a multiprocessing Event leaves
    # the next set() hanging)
    held = context.Event()
    child = context.Process(target=_hold_in_child, args=(worker_leases.JOB, key, held))
    child.start()
    try:
        assert held.wait(30)
        assert worker_leases.is_held(worker_leases.JOB, key)
        assert worker_leases.hold(worker_leases.JOB, key) is None
        child.kill()
        child.join(30)
        # (the database notices a closed connection at once, but its backend needs a moment to exit)
        for _ in range(200):
            if not worker_leases.is_held(worker_leases.JOB, key):
                break
            time.sleep(0.05)
        assert not worker_leases.is_held(worker_leases.JOB, key)
    finally:
        if child.is_alive():
            child.kill()


@pytest.mark.django_db(transaction=True)
def test_a_running_job_nobody_holds_is_queued_again_and_a_second_loss_fails_it(user, sent, settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path
    lost = _job(user)
    alive = _job(user)
    queued = _job(user, status="queued")
    with worker_leases.hold(worker_leases.JOB, alive.pk):
        found = lost_work.requeue_lost_work()
        assert (found.jobs_requeued, found.jobs_failed) == (1, 0)
        assert sent["jobs"] == [str(lost.pk)]
        lost.refresh_from_db()
        assert lost.status == "queued" and lost.error_code == "WORKER_LOST"
        assert BatchJob.objects.get(pk=alive.pk).status == "running"
        assert BatchJob.objects.get(pk=queued.pk).status == "queued"
        assert lost_work.requeue_lost_work().jobs_requeued == 0  # (queued: not queued twice)

    # The rerun begins (it says WORKER_LOST while it runs) and its worker is lost too.
    BatchJob.objects.filter(pk=lost.pk).update(status="running")
    found = lost_work.requeue_lost_work()
    assert (found.jobs_requeued, found.jobs_failed) == (1, 1)  # (the other one's worker is gone now)
    lost.refresh_from_db()
    assert lost.status == "failed" and lost.error_code == "WORKER_LOST" and lost.finished_at


@pytest.mark.django_db(transaction=True)
def test_a_message_of_a_job_a_live_worker_runs_or_that_is_not_queued_does_nothing(user, settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path
    job = _job(user, status="queued")
    with worker_leases.hold(worker_leases.JOB, str(job.pk)):
        assert transcribe_job(str(job.pk)) == "running elsewhere"
    assert BatchJob.objects.get(pk=job.pk).status == "queued"
    failed = _job(user, status="failed", error_code="WORKER_LOST")
    assert transcribe_job(str(failed.pk)) == "failed"  # (a redelivery after its second loss)


@pytest.mark.django_db(transaction=True)
def test_a_refining_session_without_a_lease_is_queued_again_once_and_a_lost_rerun_fails(
    user, make_session, sent, monkeypatch
):
    session = make_session(user, "Lost pass")
    session.transcript_state = State.REFINING
    session.save()
    busy = make_session(user, "Busy pass")
    busy.transcript_state = State.REFINING
    busy.save()
    with worker_leases.hold(worker_leases.PASS, busy.pk):
        assert lost_work.requeue_lost_work().passes_requeued == 1
        assert sent["passes"] == [str(session.pk)]
        # (a pass that merely waits in the queue looks the same: this process queues it once only)
        assert lost_work.requeue_lost_work().passes_requeued == 0

    # The rerun marks itself when it begins; its worker is lost: the pass fails.
    monkeypatch.setattr("sessions_app.meeting_record.post_session._wait_for_streams", lambda session_id: None)
    monkeypatch.setattr("sessions_app.meeting_record.post_session._recordings", _lose_the_worker)
    with pytest.raises(_WorkerLostForTest):
        post_session_pass(str(session.pk), recovered=True)
    session.refresh_from_db()
    assert session.transcript_state == State.REFINING and session.refine_error_code == "WORKER_LOST"
    found = lost_work.requeue_lost_work()
    assert found.passes_failed == 1
    session.refresh_from_db()
    assert session.transcript_state == State.FAILED and session.refine_error_code == "WORKER_LOST"


class _WorkerLostForTest(BaseException):
    """Stands for the worker's death in the middle of a pass (nothing in the pass catches it)."""


def _lose_the_worker(session_id):
    raise _WorkerLostForTest(session_id)
