"""Work whose worker was lost (SIGKILL, out of memory, a machine gone): queued again, once.

A batch job or a post-session pass holds its lease (``worker_leases``) for as long as it runs,
so work recorded as running that nobody holds a lease on has lost its worker: that is exact,
there is no heartbeat age to guess. :func:`requeue_lost_work` finds such work and queues it
again; it runs when a worker starts, every ``BATCH_RECOVERY_S`` in every running worker, and
(for jobs whose heartbeat is older than ``BATCH_STALE_AFTER_S``) when jobs are read over the API.

Work is retried once. A rerun carries ``WORKER_LOST`` as its error code while it runs (a job's
``error_code``, a session's ``refine_error_code``); if its worker is lost too, the work fails
with ``WORKER_LOST`` (a file that kills the worker every time must not do so for ever). Ending
the session again, or uploading the file again, starts afresh.

Jobs and passes differ in what the database says about them:

* A job is ``running`` only once a worker has begun it (behind its lease): a ``running`` job
  without a lease is lost, and is set back to ``queued`` (with ``WORKER_LOST``) as it is queued
  again, so it is never queued twice.
* A session is ``refining`` from its end on, while its pass waits in the queue too: a pass that
  waits and one whose worker died look the same. So the rerun is queued with ``recovered``
  and marks itself ``WORKER_LOST`` when it begins; a pass that merely waited is queued a second
  time, harmlessly (the message that comes second finds the transcript ``final`` and does
  nothing, or the lease held and returns), and each process queues a given pass at most once.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
from dataclasses import dataclass

from django.conf import settings
from django.db import close_old_connections
from django.utils import timezone

from sessions_app import worker_leases
from sessions_app.models import BatchJob, TranscriptionSession

__all__ = ["WORKER_LOST", "LostWork", "requeue_lost_jobs", "requeue_lost_work", "start_recovery_thread"]

logger = logging.getLogger(__name__)

WORKER_LOST = "WORKER_LOST"
RERUN_MESSAGE = "Its worker was lost (killed or restarted); it runs again, once."
FAILED_MESSAGE = "Its worker was lost twice (killed or restarted). Upload the file again."
PASS_FAILED_MESSAGE = "The post-session pass lost its worker twice (killed or restarted). End the session again."

_queued_passes: set[str] = set()  # passes this process queued again (a waiting pass looks lost too)
_queued_lock = threading.Lock()


@dataclass
class LostWork:
    """What one look found: work queued again, and work failed after its second loss."""

    jobs_requeued: int = 0
    jobs_failed: int = 0
    passes_requeued: int = 0
    passes_failed: int = 0


def _queue_job(job_id: str) -> None:
    from sessions_app.tasks import transcribe_job

    transcribe_job.apply_async(args=[job_id], queue=settings.BATCH_QUEUE)


def _queue_pass(session_id: str) -> None:
    from sessions_app.tasks import post_session_pass

    post_session_pass.apply_async(args=[session_id], kwargs={"recovered": True}, queue=settings.BATCH_QUEUE)


def requeue_lost_jobs(found: LostWork | None = None, *, stale_only: bool = False) -> LostWork:
    """Queue again each running job nobody holds a lease on (fail it if it was a rerun already).

    With ``stale_only`` only jobs whose heartbeat is older than ``BATCH_STALE_AFTER_S`` are
    looked at (a cheap check for every API read).
    """
    found = found or LostWork()
    running = BatchJob.objects.filter(status=BatchJob.Status.RUNNING)
    if stale_only:
        cutoff = timezone.now() - dt.timedelta(seconds=settings.BATCH_STALE_AFTER_S)
        running = running.filter(heartbeat_at__lt=cutoff)
    for job_id, error_code in running.values_list("pk", "error_code"):
        if worker_leases.is_held(worker_leases.JOB, job_id):
            continue
        lost = BatchJob.objects.filter(pk=job_id, status=BatchJob.Status.RUNNING)
        if error_code == WORKER_LOST:
            if lost.update(
                status=BatchJob.Status.FAILED,
                error_message=FAILED_MESSAGE,
                finished_at=timezone.now(),
            ):
                found.jobs_failed += 1
                logger.warning("job %s lost its worker a second time: failed with %s", job_id, WORKER_LOST)
            continue
        if lost.update(status=BatchJob.Status.QUEUED, progress=0, error_code=WORKER_LOST, error_message=RERUN_MESSAGE):
            _queue_job(str(job_id))
            found.jobs_requeued += 1
            logger.warning("job %s lost its worker: queued again", job_id)
    return found


def _requeue_lost_passes(found: LostWork) -> None:
    refining = TranscriptionSession.objects.filter(transcript_state=TranscriptionSession.TranscriptState.REFINING)
    for session_id, error_code in refining.values_list("pk", "refine_error_code"):
        if worker_leases.is_held(worker_leases.PASS, session_id):
            continue
        if error_code == WORKER_LOST:  # (a rerun marks itself so only once it has begun)
            from sessions_app.meeting_record.post_session import fail_pass

            if fail_pass(session_id, WORKER_LOST, PASS_FAILED_MESSAGE, only_if_code=WORKER_LOST):
                found.passes_failed += 1
                logger.warning("post-session pass of %s lost its worker a second time: failed", session_id)
            continue
        with _queued_lock:
            if str(session_id) in _queued_passes:
                continue
            _queued_passes.add(str(session_id))
        _queue_pass(str(session_id))
        found.passes_requeued += 1
        logger.warning("post-session pass of %s has no worker: queued again", session_id)


def requeue_lost_work() -> LostWork:
    """Queue again (or fail, after a second loss) the jobs and passes whose worker was lost."""
    found = requeue_lost_jobs()
    _requeue_lost_passes(found)
    return found


def _recover_forever(interval_s: float, stop: threading.Event) -> None:
    while not stop.wait(interval_s):
        try:
            requeue_lost_work()
        except Exception:
            logger.exception("looking for work whose worker was lost failed")
        finally:
            close_old_connections()


def start_recovery_thread(interval_s: float) -> threading.Event:
    """Look for lost work every ``interval_s`` seconds in a daemon thread; set the event to stop."""
    stop = threading.Event()
    threading.Thread(target=_recover_forever, args=(interval_s, stop), name="lost-work", daemon=True).start()
    return stop
