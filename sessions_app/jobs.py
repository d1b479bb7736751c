"""Batch jobs: create (and queue), delete, and look for jobs whose worker was lost.

A running job's worker writes ``heartbeat_at`` at least every ``BATCH_HEARTBEAT_S`` seconds
(from a thread, so even one very long segment keeps it fresh) and holds the job's lease. A job
still ``running`` whose lease nobody holds has lost its worker: ``sessions_app.lost_work``
queues it again (once; a second loss fails it with ``WORKER_LOST``). Workers look for such jobs
when they start and every ``BATCH_RECOVERY_S``; :func:`recover_stale_jobs` looks too when jobs
are read over the API, at the jobs whose heartbeat is older than ``BATCH_STALE_AFTER_S`` (a
cheap filter), so no job shows "running" for ever even while no worker runs.
"""

from __future__ import annotations

from django.conf import settings
from django.core.files.uploadedfile import UploadedFile
from django.db import transaction

from sessions_app.lost_work import requeue_lost_jobs
from sessions_app.models import BatchJob


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
    diarize: bool = False,
) -> BatchJob:
    """Store the upload as a new queued job and send it to a worker once the row is committed.

    ``diarize``: label each segment with its speaker's voice (``S1``, ``S2``, ...).
    """
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
            diarize=diarize,
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


def recover_stale_jobs() -> int:
    """Queue again (or fail) the running jobs with an old heartbeat whose worker was lost; how many."""
    found = requeue_lost_jobs(stale_only=True)
    return found.jobs_requeued + found.jobs_failed
