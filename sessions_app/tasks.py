"""Celery tasks: batch transcription of uploaded files, and the post-session pass of ended sessions.

A job with ``diarize`` gets its segments labelled by voice (``speaker_label`` "S1", "S2", ...).

Each worker process keeps the Whisper models it has loaded (``_MODELS``), so only the first
job of a process pays for loading. Progress goes to the database at most once a second;
a heartbeat thread keeps ``heartbeat_at`` fresh between reports (see sessions_app/jobs.py).
Each job and pass runs behind a lease, so that work whose worker was lost is queued again
(sessions_app/lost_work.py).
"""

from __future__ import annotations

import logging
import threading
import time
from typing import TYPE_CHECKING

from celery import shared_task
from celery.exceptions import SoftTimeLimitExceeded
from celery.signals import worker_ready
from django.conf import settings
from django.db import close_old_connections
from django.utils import timezone

from sessions_app import worker_leases
from sessions_app.lost_work import WORKER_LOST, requeue_lost_work, start_recovery_thread
from sessions_app.models import BatchJob
from stt_engine.batch import BatchAudioError, load_model, transcribe_file
from stt_engine.model_files import ModelNotAvailableError

if TYPE_CHECKING:
    from faster_whisper import WhisperModel

logger = logging.getLogger(__name__)

_MODELS: dict[tuple[str, str, str, int], WhisperModel] = {}
_MODELS_LOCK = threading.Lock()
PROGRESS_WRITE_INTERVAL_S = 1.0


class JobDeletedError(Exception):
    """The job row disappeared while it was being transcribed (the user deleted it)."""


def cached_model(name: str) -> WhisperModel:
    key = (name, settings.STT_DEVICE, settings.STT_COMPUTE_TYPE, settings.STT_BATCH_CPU_THREADS)
    with _MODELS_LOCK:
        if key not in _MODELS:
            _MODELS[key] = load_model(
                name,
                device=settings.STT_DEVICE,
                compute_type=settings.STT_COMPUTE_TYPE,
                cpu_threads=settings.STT_BATCH_CPU_THREADS,
            )
        return _MODELS[key]


class _ProgressWriter:
    """Writes progress and heartbeat, throttled; raises JobDeletedError once the row is gone."""

    def __init__(self, job_id: str) -> None:
        self.job_id = job_id
        self.last_write = 0.0
        self.last_percent = -1

    def __call__(self, fraction: float) -> None:
        percent = max(0, min(99, int(fraction * 100)))  # 100 only once the result is saved
        now = time.monotonic()
        if percent == self.last_percent or now - self.last_write < PROGRESS_WRITE_INTERVAL_S:
            return
        updated = BatchJob.objects.filter(pk=self.job_id).update(progress=percent, heartbeat_at=timezone.now())
        if not updated:
            raise JobDeletedError(self.job_id)
        self.last_write, self.last_percent = now, percent


def _heartbeat(job_id: str, stop: threading.Event) -> None:
    try:
        while not stop.wait(settings.BATCH_HEARTBEAT_S):
            BatchJob.objects.filter(pk=job_id, status=BatchJob.Status.RUNNING).update(heartbeat_at=timezone.now())
    finally:
        close_old_connections()


def _fail(job_id: str, code: str, message: str) -> None:
    BatchJob.objects.filter(pk=job_id).update(
        status=BatchJob.Status.FAILED, error_code=code, error_message=message[:2000], finished_at=timezone.now()
    )


@shared_task(
    name="sessions_app.transcribe_job",
    time_limit=settings.CELERY_TASK_TIME_LIMIT,
    soft_time_limit=settings.CELERY_TASK_SOFT_TIME_LIMIT,
)
def transcribe_job(job_id: str) -> str:
    """Transcribe one uploaded file and store its segments on the job. Returns the final status.

    It runs behind the job's lease (``worker_leases``), so that a worker killed in the middle is
    seen at once and the job queued again (``lost_work``); a message of a job that another live
    worker runs, or that is no longer queued (a redelivery), does nothing.
    """
    lease = worker_leases.hold(worker_leases.JOB, job_id)
    if lease is None:
        return "running elsewhere"
    with lease:
        return _transcribe_job(job_id)


def _transcribe_job(job_id: str) -> str:
    job = BatchJob.objects.filter(pk=job_id).first()
    if job is None:
        return "deleted"
    if job.status != BatchJob.Status.QUEUED:
        return job.status  # a redelivered message of a job that finished, failed, or was lost
    now = timezone.now()
    rerun = job.error_code == WORKER_LOST  # (queued again after its worker was lost: it says so meanwhile)
    BatchJob.objects.filter(pk=job_id).update(
        status=BatchJob.Status.RUNNING,
        progress=0,
        started_at=now,
        heartbeat_at=now,
        error_code=WORKER_LOST if rerun else "",
        error_message=job.error_message if rerun else "",
        finished_at=None,
    )
    stop = threading.Event()
    beat = threading.Thread(target=_heartbeat, args=(job_id, stop), name=f"heartbeat-{job_id}", daemon=True)
    beat.start()
    try:
        result = transcribe_file(
            job.upload.path,
            language=job.language,
            beam_size=settings.STT_BATCH_BEAM_SIZE,
            progress=_ProgressWriter(job_id),
            model=cached_model(job.model_name or settings.STT_FINAL_MODEL),
            prompt=job.prompt or None,
            temperature=job.temperature,
            diarize=job.diarize,
        )
    except JobDeletedError:
        logger.info("job %s was deleted while running", job_id)
        return "deleted"
    except BatchAudioError as exc:
        _fail(job_id, exc.code, exc.message)
        return BatchJob.Status.FAILED
    except ModelNotAvailableError as exc:
        _fail(job_id, "MODEL_UNAVAILABLE", str(exc))
        return BatchJob.Status.FAILED
    except SoftTimeLimitExceeded:
        _fail(job_id, "TIME_LIMIT", f"Transcription took longer than {settings.CELERY_TASK_SOFT_TIME_LIMIT} s.")
        return BatchJob.Status.FAILED
    except Exception as exc:
        logger.exception("job %s failed", job_id)
        _fail(job_id, "ENGINE_ERROR", f"Transcription failed: {exc}")
        return BatchJob.Status.FAILED
    finally:
        stop.set()
        beat.join(timeout=5)
    BatchJob.objects.filter(pk=job_id).update(
        status=BatchJob.Status.DONE,
        progress=100,
        detected_language=result.language[:12],
        audio_duration_s=result.duration_s,
        segments=[segment.to_dict() for segment in result.segments],
        error_code="",
        error_message="",
        heartbeat_at=timezone.now(),
        finished_at=timezone.now(),
    )
    return BatchJob.Status.DONE


@shared_task(
    name="sessions_app.post_session_pass",
    time_limit=settings.CELERY_TASK_TIME_LIMIT,
    soft_time_limit=settings.CELERY_TASK_SOFT_TIME_LIMIT,
)
def post_session_pass(session_id: str, recovered: bool = False) -> str:
    """Transcribe an ended session's recordings again and make that its transcript (see post_session).

    Behind the session's pass lease, as ``transcribe_job``; ``recovered``: queued again by
    ``lost_work`` (its earlier worker may have been lost).
    """
    from sessions_app.meeting_record.post_session import run_post_session_pass

    lease = worker_leases.hold(worker_leases.PASS, session_id)
    if lease is None:
        return "running elsewhere"
    with lease:
        return run_post_session_pass(session_id, model_loader=cached_model, recovered=recovered)


@shared_task(name="sessions_app.auto_end_session")
def auto_end_session(session_id: str) -> bool:
    """End a session nobody has streamed in for ``STT_SESSION_AUTO_END_S``; returns whether it did."""
    from sessions_app.meeting_record.post_session import auto_end_if_idle

    return auto_end_if_idle(session_id)


@worker_ready.connect
def _requeue_work_of_lost_workers(**_kwargs) -> None:
    """At worker start, work left running by a worker that was lost is queued again (``lost_work``);
    then every ``BATCH_RECOVERY_S`` (a worker that dies while others run is noticed too)."""
    try:
        requeue_lost_work()
    except Exception:
        logger.exception("looking for work whose worker was lost failed")
    finally:
        close_old_connections()
    start_recovery_thread(settings.BATCH_RECOVERY_S)
