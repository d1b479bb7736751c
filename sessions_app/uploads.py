"""Checks on an uploaded audio file, done before a job row exists or anything is queued."""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass

from django.conf import settings
from django.core.files.uploadedfile import UploadedFile

from stt_engine.batch import BatchAudioError, probe_duration

__all__ = ["UploadRejectedError", "check_upload"]


@dataclass
class UploadRejectedError(Exception):
    """The upload is refused; ``code`` and ``error`` go to the client as they are (HTTP 400)."""

    code: str
    error: str

    def __str__(self) -> str:
        return f"{self.code}: {self.error}"


def check_upload(upload: UploadedFile | None) -> float:
    """Validate an uploaded file and return its audio duration in seconds.

    Raises:
        UploadRejectedError: ``NO_FILE``, ``EMPTY_FILE``, ``FILE_TOO_LARGE``, ``NOT_AUDIO``
            or ``AUDIO_TOO_LONG``.
    """
    if upload is None:
        raise UploadRejectedError("NO_FILE", "Send the audio as a multipart field named 'file'.")
    if not upload.size:
        raise UploadRejectedError("EMPTY_FILE", "The uploaded file is empty.")
    if upload.size > settings.UPLOAD_MAX_BYTES:
        raise UploadRejectedError(
            "FILE_TOO_LARGE",
            f"The file has {upload.size} bytes; the limit is {settings.UPLOAD_MAX_BYTES} bytes.",
        )
    try:
        duration = _probe(upload)
    except BatchAudioError as exc:
        raise UploadRejectedError(exc.code, exc.message) from exc
    if duration > settings.UPLOAD_MAX_SECONDS:
        raise UploadRejectedError(
            "AUDIO_TOO_LONG",
            f"The audio lasts {duration:.0f} s; the limit is {settings.UPLOAD_MAX_SECONDS} s.",
        )
    return duration


def _probe(upload: UploadedFile) -> float:
    # Large uploads are already on disk; small ones live in memory and are copied out once.
    if hasattr(upload, "temporary_file_path"):
        return probe_duration(upload.temporary_file_path())
    suffix = os.path.splitext(upload.name or "")[1][:10]
    with tempfile.NamedTemporaryFile(suffix=suffix) as handle:
        for chunk in upload.chunks():
            handle.write(chunk)
        handle.flush()
        upload.seek(0)
        return probe_duration(handle.name)
