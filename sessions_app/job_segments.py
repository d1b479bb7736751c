"""The segments of a finished batch job as the pages and the API show them, and their corrections.

A job's transcript is its ``segments`` JSON (``[{start, end, text, words}]``, written by the
worker). A correction goes beside the machine's text, which is never edited: ``corrected_text``,
``corrected_by`` (username) and ``corrected_at`` (ISO time) on that segment. An empty correction
removes the three keys (the original is the transcript again). Exports read
:func:`segment_text`.
"""

from __future__ import annotations

from typing import Any

from django.db import transaction
from django.utils import timezone

from sessions_app.models import BatchJob

__all__ = [
    "MAX_CORRECTION_CHARS",
    "JobNotDoneError",
    "NoSuchSegmentError",
    "do_correct_segment",
    "job_segment",
    "segment_row",
    "segment_rows",
    "segment_text",
]

MAX_CORRECTION_CHARS = 20_000
_CORRECTION_KEYS = ("corrected_text", "corrected_by", "corrected_at")


class JobNotDoneError(Exception):
    """The job has no transcript to correct (yet, or ever: it failed)."""

    def __init__(self, job: BatchJob) -> None:
        self.code = "JOB_FAILED" if job.status == BatchJob.Status.FAILED else "JOB_NOT_DONE"
        super().__init__(
            f"The job failed ({job.error_code}); it has no transcript."
            if job.status == BatchJob.Status.FAILED
            else f"The job is {job.status} ({job.progress}%); its transcript is not there yet."
        )


class NoSuchSegmentError(LookupError):
    pass


def segment_text(segment: dict[str, Any]) -> str:
    """What a segment says: the correction where there is one, else the machine's text."""
    return str(segment.get("corrected_text") or segment.get("text") or "").strip()


def segment_row(index: int, segment: dict[str, Any]) -> dict[str, Any]:
    """One segment as the transcript page and ``/api/jobs/<id>/segments/<index>/`` carry it."""
    return {
        "index": index,
        "start": float(segment.get("start", 0.0)),
        "end": float(segment.get("end", 0.0)),
        "text": str(segment.get("text", "")).strip(),
        "corrected_text": str(segment.get("corrected_text") or ""),
        "corrected_by": str(segment.get("corrected_by") or ""),
        "corrected_at": segment.get("corrected_at"),
        "words": segment.get("words") or [],
        "speaker_label": str(segment.get("speaker_label") or ""),  # (a job run with diarize: "S1", ...)
    }


def segment_rows(job: BatchJob) -> list[dict[str, Any]]:
    return [segment_row(index, segment) for index, segment in enumerate(job.segments or [])]


def _checked_index(job: BatchJob, index: int) -> int:
    if job.status != BatchJob.Status.DONE:
        raise JobNotDoneError(job)
    if not 0 <= index < len(job.segments or []):
        raise NoSuchSegmentError(f"The job has no segment {index} (it has {len(job.segments or [])}, from 0).")
    return index


def job_segment(job: BatchJob, index: int) -> dict[str, Any]:
    """The segment ``index`` (from 0) of a finished job, as :func:`segment_row` shows it."""
    return segment_row(index, job.segments[_checked_index(job, index)])


def do_correct_segment(job: BatchJob, index: int, text: str, user) -> dict[str, Any]:
    """Set (or with ``text`` empty, remove) the correction of segment ``index``; returns its row.

    The row is locked for the read-modify-write of the segments JSON, so that two corrections of
    different segments saved at once both stay.
    """
    text = text.strip()
    with transaction.atomic():
        locked = BatchJob.objects.select_for_update().get(pk=job.pk)
        segment = locked.segments[_checked_index(locked, index)]
        if text:
            segment.update(
                corrected_text=text, corrected_by=user.get_username(), corrected_at=timezone.now().isoformat()
            )
        else:
            for key in _CORRECTION_KEYS:
                segment.pop(key, None)
        locked.save(update_fields=["segments"])
    job.segments = locked.segments
    return segment_row(index, segment)
