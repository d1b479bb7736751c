"""Checks of a ``POST /v1/audio/transcriptions`` form, and waiting for the job it becomes.

The web process never decodes audio: :func:`check_upload` only probes the container (as
``POST /api/jobs/`` does), the job goes to the Celery worker, and the request waits for the
job's row to say ``done`` or ``failed``, at most ``OPENAI_API_WAIT_S`` seconds. With
``CELERY_TASK_ALWAYS_EAGER`` the task has already run when the job is committed.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

from django.conf import settings
from django.core.files.uploadedfile import UploadedFile
from rest_framework import status

from sessions_app.jobs import do_create_job, recover_stale_jobs
from sessions_app.models import BatchJob
from sessions_app.openai_api.errors import OpenAIError
from sessions_app.openai_api.model_names import resolve_model
from sessions_app.openai_api.responses import RESPONSE_FORMATS, TIMESTAMP_GRANULARITIES
from sessions_app.uploads import UploadRejectedError, check_upload
from stt_engine.languages import AUTO, normalize_language

__all__ = ["TranscriptionRequest", "check_transcription_request", "do_transcribe", "wait_for_job"]

POLL_INTERVAL_S = 0.25
# Failures that are the file's fault answer 400; the rest are ours (500), with the job's id.
_CLIENT_FAILURES = {"EMPTY_FILE", "NOT_AUDIO", "AUDIO_TOO_LONG"}
_UPLOAD_STATUS = {"FILE_TOO_LARGE": status.HTTP_413_REQUEST_ENTITY_TOO_LARGE}


@dataclass(frozen=True)
class TranscriptionRequest:
    upload: UploadedFile
    duration_s: float
    model: str
    language: str
    response_format: str
    granularities: tuple[str, ...]
    prompt: str
    temperature: float


def _one(data, name: str) -> str:
    value = data.get(name)
    return value.strip() if isinstance(value, str) else ""


def check_transcription_request(data, files) -> TranscriptionRequest:
    """Validate the form (cheap checks first, the file's probe last).

    Raises:
        OpenAIError: ``UNKNOWN_MODEL``, ``BAD_RESPONSE_FORMAT``, ``BAD_TIMESTAMP_GRANULARITIES``,
            ``BAD_LANGUAGE``, ``BAD_TEMPERATURE``, ``BAD_REQUEST``, or an upload code
            (``NO_FILE``, ``EMPTY_FILE``, ``FILE_TOO_LARGE``, ``NOT_AUDIO``, ``AUDIO_TOO_LONG``).
    """
    name = _one(data, "model")
    if not name:
        raise OpenAIError("BAD_REQUEST", "model is required (e.g. whisper-1; see GET /v1/models).", param="model")
    model = resolve_model(name)
    if model is None:
        raise OpenAIError(
            "UNKNOWN_MODEL", f"The model {name!r} does not exist here; GET /v1/models lists them.", param="model"
        )
    response_format = _one(data, "response_format") or "json"
    if response_format not in RESPONSE_FORMATS:
        raise OpenAIError(
            "BAD_RESPONSE_FORMAT",
            f"response_format must be one of {', '.join(RESPONSE_FORMATS)}.",
            param="response_format",
        )
    granularities = tuple(
        dict.fromkeys([*data.getlist("timestamp_granularities[]"), *data.getlist("timestamp_granularities")])
    )
    if any(g not in TIMESTAMP_GRANULARITIES for g in granularities):
        raise OpenAIError(
            "BAD_TIMESTAMP_GRANULARITIES",
            "timestamp_granularities[] takes word and segment.",
            param="timestamp_granularities",
        )
    if granularities and response_format != "verbose_json":
        raise OpenAIError(
            "BAD_TIMESTAMP_GRANULARITIES",
            "timestamp_granularities[] needs response_format verbose_json.",
            param="timestamp_granularities",
        )
    language = normalize_language(_one(data, "language") or AUTO)
    if language is None:
        raise OpenAIError(
            "BAD_LANGUAGE", "language must be an ISO-639-1 code Whisper knows, such as en or de.", param="language"
        )
    temperature = _temperature(_one(data, "temperature"))
    prompt = _one(data, "prompt")
    upload = files.get("file")
    try:
        duration = check_upload(upload)
    except UploadRejectedError as exc:
        raise OpenAIError(exc.code, exc.error, _UPLOAD_STATUS.get(exc.code, 400), param="file") from exc
    return TranscriptionRequest(upload, duration, model, language, response_format, granularities, prompt, temperature)


def _temperature(text: str) -> float:
    if not text:
        return 0.0
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not 0.0 <= value <= 1.0:  # also false for NaN
        raise OpenAIError("BAD_TEMPERATURE", "temperature must be a number from 0 to 1.", param="temperature")
    return value


def do_transcribe(owner, request: TranscriptionRequest) -> BatchJob:
    """Create the job (it shows in the user's upload history), queue it, and wait for it.

    Returns the finished job. Raises OpenAIError when it failed or did not finish in time.
    """
    job = do_create_job(
        owner,
        request.upload,
        duration_s=request.duration_s,
        language=request.language,
        model=request.model,
        prompt=request.prompt,
        temperature=request.temperature,
    )
    return wait_for_job(job, settings.OPENAI_API_WAIT_S)


def wait_for_job(job: BatchJob, timeout_s: float) -> BatchJob:
    """Poll the job's row until it is done (returned) or failed / still running at the deadline (raised)."""
    deadline = time.monotonic() + timeout_s
    while True:
        current = BatchJob.objects.filter(pk=job.pk).first()
        if current is None:
            raise OpenAIError(
                "JOB_DELETED", f"The job {job.pk} was deleted before it finished.", 404, job_id=str(job.pk)
            )
        if current.status == BatchJob.Status.DONE:
            return current
        if current.status == BatchJob.Status.FAILED:
            raise _failure(current)
        if time.monotonic() >= deadline:
            recover_stale_jobs()
            raise OpenAIError(
                "JOB_NOT_DONE",
                f"The transcription is still {current.status} ({current.progress}%) after {timeout_s:g} s; "
                f"fetch job {current.pk} from /api/jobs/{current.pk}/ (its transcript from "
                f"/api/jobs/{current.pk}/transcript/) with the same token.",
                status.HTTP_504_GATEWAY_TIMEOUT,
                job_id=str(current.pk),
                job_url=f"/api/jobs/{current.pk}/",
            )
        time.sleep(POLL_INTERVAL_S)


def _failure(job: BatchJob) -> OpenAIError:
    code = job.error_code or "ENGINE_ERROR"
    http_status = 400 if code in _CLIENT_FAILURES else 500
    return OpenAIError(
        code, job.error_message or f"The transcription failed ({code}).", http_status, job_id=str(job.pk)
    )
