"""A REAL Celery worker SIGKILLed in the middle of a batch job and of a post-session pass: the
work is queued again by the next worker that starts (``sessions_app.lost_work``) and finishes.

"In the middle" is a state, not a time: the job (or pass) is running behind its lease and has
written progress; the worker is killed then, and the work must end ``done`` (``final``) with a
transcript as good as an undisturbed run's.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import connection
from rest_framework.test import APIClient

from bench.batch_bench import build_long_wav
from sessions_app import worker_leases
from sessions_app.meeting_record.post_session import end_session
from sessions_app.models import BatchJob, TranscriptionSession, Utterance
from sessions_app.recordings import close_recording, open_recording
from tests.sessions_app.celery_worker import Worker, start_worker
from tests.speech import word_error_rate

pytestmark = pytest.mark.django_db(transaction=True)

State = TranscriptionSession.TranscriptState


def _wait(condition, what: str, worker: Worker, timeout_s: float = 300.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"{what} did not happen within {timeout_s} s; worker log:\n{worker.log()[-4000:]}")
        time.sleep(0.05)


def _kill(worker: Worker) -> None:
    os.kill(worker.pid, signal.SIGKILL)
    worker.process.wait(timeout=30)


@pytest.fixture
def workers(tmp_path):
    """Start real workers on one queue and MEDIA_ROOT: ``start() -> Worker``; all stopped at the end."""
    started: list[Worker] = []
    queue = f"test-kill-{os.getpid()}-{time.monotonic_ns()}"
    media = tmp_path / "media"

    def start() -> Worker:
        worker = start_worker(
            dict(connection.settings_dict), media, tmp_path / f"worker-{len(started)}.log", queue=queue
        )
        started.append(worker)
        return worker

    start.queue, start.media = queue, media
    yield start
    for worker in started:
        worker.stop()


def test_a_job_whose_worker_is_killed_mid_job_is_finished_by_the_next_worker(workers, settings, make_user, tmp_path):
    settings.MEDIA_ROOT, settings.BATCH_QUEUE = workers.media, workers.queue
    path = tmp_path / "long.wav"
    audio_s, reference = build_long_wav(path, minutes=3)
    first = workers()
    api = APIClient()
    api.force_authenticate(make_user("uploader"))
    upload = SimpleUploadedFile("long.wav", path.read_bytes(), content_type="audio/wav")
    response = api.post("/api/jobs/", {"file": upload, "model": "tiny.en", "language": "en"}, format="multipart")
    assert response.status_code == 202, response.content
    job_id = response.json()["id"]

    def mid_job() -> bool:
        job = BatchJob.objects.get(pk=job_id)
        return job.status == "running" and job.progress > 0 and worker_leases.is_held(worker_leases.JOB, job_id)

    _wait(mid_job, "the job's progress", first)
    _kill(first)
    assert _lease_goes(worker_leases.JOB, job_id)
    assert BatchJob.objects.get(pk=job_id).status == "running"  # what the dead worker left

    second = workers()  # it finds the job lost at its start and queues it again
    _wait(lambda: BatchJob.objects.get(pk=job_id).status in ("done", "failed"), "the job's end", second)
    body = api.get(f"/api/jobs/{job_id}/").json()
    assert body["status"] == "done", (body, second.log()[-3000:])
    assert body["error_code"] == "" and body["progress"] == 100
    assert body["audio_duration_s"] == pytest.approx(audio_s, abs=0.5)
    text = api.get(f"/api/jobs/{job_id}/transcript/", {"format": "txt"}).content.decode()
    assert word_error_rate([reference], [text]) < 0.2
    assert "queued again" in second.log()


def _lease_goes(kind: int, key) -> bool:
    """The database drops a dead process's lease as soon as it sees its connection closed."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if not worker_leases.is_held(kind, key):
            return True
        time.sleep(0.05)
    return False


def _record(session, speaker, path: Path) -> None:
    import soundfile

    pcm, rate = soundfile.read(path, dtype="int16")
    recording, appender = open_recording(session.pk, speaker.pk, rate)
    appender.append(pcm.tobytes())
    close_recording(recording, appender)


def test_a_post_session_pass_whose_worker_is_killed_is_finished_by_the_next_worker(
    workers, settings, make_user, make_session, tmp_path
):
    settings.MEDIA_ROOT, settings.BATCH_QUEUE = workers.media, workers.queue
    path = tmp_path / "meeting.wav"
    _, reference = build_long_wav(path, minutes=1)
    owner = make_user("chair")
    session = make_session(owner, "Killed pass", "en")
    _record(session, owner, path)
    first = workers()
    end_session(session, owner)

    def mid_pass() -> bool:
        row = TranscriptionSession.objects.get(pk=session.pk)
        return row.refine_progress > 0 and worker_leases.is_held(worker_leases.PASS, session.pk)

    _wait(mid_pass, "the pass's progress", first)
    _kill(first)
    assert _lease_goes(worker_leases.PASS, session.pk)
    assert TranscriptionSession.objects.get(pk=session.pk).transcript_state == State.REFINING

    second = workers()
    _wait(
        lambda: TranscriptionSession.objects.get(pk=session.pk).transcript_state != State.REFINING,
        "the pass's end",
        second,
    )
    row = TranscriptionSession.objects.get(pk=session.pk)
    assert row.transcript_state == State.FINAL, (row.refine_error_code, row.refine_error, second.log()[-3000:])
    assert row.refine_error_code == "" and row.refine_progress == 100
    archive = Utterance.objects.filter(session=session).current().order_by("start_s")
    assert {u.source for u in archive} == {Utterance.Source.ARCHIVE}
    assert word_error_rate([reference], [" ".join(u.text for u in archive)]) < 0.15
