"""Batch jobs: create (and queue), delete, record progress, and fail jobs whose worker died.

A running job's worker writes ``heartbeat_at`` at least every ``BATCH_HEARTBEAT_S`` seconds
(from a thread, so even one very long segment keeps it fresh). A job still ``running`` whose
heartbeat is older than ``BATCH_STALE_AFTER_S`` has lost its worker: :func:`fail_stale_jobs`
marks it failed with ``WORKER_LOST``. It runs when jobs are read over the API and when a
worker starts, so no job shows "running" forever and no beat scheduler is required.
"""

from __future__ import annotations

import datetime as dt
import logging

from django.conf import settings
from django.core.files.uploadedfile import UploadedFile
from django.db import transaction
from django.utils import timezone

from sessions_app.models import BatchJob

logger = logging.getLogger(__name__)

WORKER_LOST = "WORKER_LOST"


def allowed_models() -> list[str]:
    """Model choices of an upload: the bundled names and the configured final model."""
    names = ["base", "tiny.en"]
    if settings.STT_FINAL_MODEL not in names:
        names.append(settings.STT_FINAL_MODEL)
    return names


def do_create_job(
    owner,
    upload: UploadedFile,
    *,
    duration_s: float,
    language: str = "auto",
    model: str = "",
    prompt: str = "",
    temperature: float = 0.0,
) -> BatchJob:
    """Store the upload as a new queued job and send it to a worker once the row is committed."""
    from sessions_app.tasks import transcribe_job

    with transaction.atomic():
        job = BatchJob(
            owner=owner,
            original_filename=(upload.name or "")[:255],
            size_bytes=upload.size or 0,
            language=language or "auto",
            model_name=model or settings.STT_FINAL_MODEL,
            prompt=prompt,
            temperature=temperature,
            audio_duration_s=duration_s,
        )
        job.upload.save(upload.name or "audio", upload, save=False)
        job.save()
        job_id = str(job.pk)
        transaction.on_commit(
            lambda: transcribe_job.apply_async(args=[job_id], queue=settings.BATCH_QUEUE),
        )
    return job


def do_delete_job(job: BatchJob) -> None:
    """Delete a job and its file. A worker busy with it notices at its next progress report and stops."""
    storage, name = job.upload.storage, job.upload.name
    job.delete()
    if name:
        transaction.on_commit(lambda: storage.delete(name))


def fail_stale_jobs(now: dt.datetime | None = None) -> int:
    """Mark running jobs without a recent heartbeat as failed (``WORKER_LOST``); return how many."""
    now = now or timezone.now()
    cutoff = now - dt.timedelta(seconds=settings.BATCH_STALE_AFTER_S)
    stale = BatchJob.objects.filter(status=BatchJob.Status.RUNNING, heartbeat_at__lt=cutoff)
    if not stale.exists():  # the common case: no write, so no SQLite write lock on every read
        return 0
    count = stale.update(
        status=BatchJob.Status.FAILED,
        error_code=WORKER_LOST,
        error_message="The worker stopped reporting progress (it crashed or was restarted). Upload the file again.",
        finished_at=now,
    )
    if count:
        logger.warning("marked %d batch job(s) as failed with %s", count, WORKER_LOST)
    return count
