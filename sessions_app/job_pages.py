"""A batch job's transcript page: the session transcript page (template and script) over a job's segments.

Thin: who may see the job is ``access.access_job``; the segments and their corrections are
``job_segments``. The page differs from a session's only in what its config says: one player
(the uploaded file), one turn per segment, no speakers panel (a job run with ``diarize`` shows each
segment's voice as "Speaker N" in its colour, from the segment's ``speaker_label``), corrections through
``/api/jobs/<id>/segments/<index>/``, exports from ``/api/jobs/<id>/transcript``, no refine pass.
"""

from __future__ import annotations

from typing import Any

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.urls import reverse

from sessions_app import access
from sessions_app.exports import EXPORT_MENU, format_offset
from sessions_app.job_segments import segment_rows
from sessions_app.models import BatchJob
from sessions_app.speakers import label_display_name

# The one "speaker" of a job's page: its players and words are keyed by it.
UPLOAD_SPEAKER = "upload"


@login_required
def job_transcript(request: HttpRequest, job_id) -> HttpResponse:
    job = access.access_job(request.user, job_id)
    done = job.status == BatchJob.Status.DONE
    labels = [str(segment.get("speaker_label") or "") for segment in job.segments or []]
    rows = [_utterance_row(row, label) for row, label in zip(segment_rows(job), labels, strict=True)] if done else []
    title = job.original_filename or f"Job {job.pk}"
    page = {
        "title": title,
        "status": job.status,
        "status_display": job.get_status_display(),
        "created_at": job.created_at,
        "links": [(reverse("upload"), "Upload page")],
        "details": _details(job),
        "show_speakers": False,
        "side_label": "Audio and export",
        "empty_text": _empty_text(job),
        "help": "Click a word to play from there; ▶ Play plays one segment. Times: into the file.",
        "notice": _notice(job),
    }
    recordings = [{"speaker": "Uploaded file", "speaker_id": UPLOAD_SPEAKER,
                   "url": reverse("job-audio", args=[job.pk]), "duration": job.audio_duration_s}]  # fmt: skip
    return render(request, "sessions_app/transcript.html", {
        "page": page,
        "recordings": recordings,
        "speakers": [],
        "can_rename": False,
        "export_url": reverse("api-job-transcript", args=[job.pk]) if done else "",
        "export_formats": EXPORT_MENU,
        "page_config": {
            "jobId": str(job.pk),
            "unit": ["segment", "segments"],
            "offsetTitle": "Time into the file",
            "correctionUrl": f"/api/jobs/{job.pk}/segments/{{id}}/",  # ({id}: the segment's index)
            "canCorrect": done and job.owner_id == request.user.pk,
            "utterances": rows,
            "speakers": [],
            "canRename": False,
            "turns": [_turn(row) for row in rows],
            "recordings": {UPLOAD_SPEAKER: recordings[0]},
        },
    })  # fmt: skip


def _utterance_row(row: dict[str, Any], speaker_label: str = "") -> dict[str, Any]:
    """A segment as the page's script takes an utterance (``id`` is the segment's index)."""
    return {
        "id": row["index"], "sequence": row["index"], "speaker": "", "speaker_id": UPLOAD_SPEAKER,
        "speaker_name": label_display_name(speaker_label) if speaker_label else "", "speaker_label": speaker_label,
        "start": row["start"], "end": row["end"], "text": row["text"],
        "corrected_text": row["corrected_text"], "corrected_by": row["corrected_by"], "words": row["words"],
        "source": "upload", "spoken_at": None,
    }  # fmt: skip


def _turn(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "speaker": row["speaker_name"], "speaker_id": UPLOAD_SPEAKER, "speaker_label": row["speaker_label"],
        "speaker_username": "", "start": row["start"],
        "end": row["end"], "offset": row["start"], "spoken_at": None,
        "text": row["corrected_text"] or row["text"], "utterance_ids": [row["id"]],
    }  # fmt: skip


def _details(job: BatchJob) -> list[str]:
    details = []
    if job.audio_duration_s:
        details.append(f"{format_offset(job.audio_duration_s)} long")
    if job.detected_language or job.language != "auto":
        details.append(f"language {job.detected_language or job.language}")
    if job.model_name:
        details.append(f"model {job.model_name}")
    return details


def _empty_text(job: BatchJob) -> str:
    if job.status == BatchJob.Status.FAILED:
        return f"The transcription failed: {job.error_message or job.error_code}."
    if job.status != BatchJob.Status.DONE:
        return (
            f"This file is still being transcribed ({job.get_status_display().lower()}, {job.progress}%); "
            "the upload page shows its progress. Reload this page when it is done."
        )
    return "No speech was found in this file."


def _notice(job: BatchJob) -> str:
    """A whole-text correction made in the admin (before segments could be corrected) and what it governs."""
    if not job.corrected_text.strip() or any(s.get("corrected_text") for s in job.segments or []):
        return ""
    return (
        "A reviewer corrected this job's whole text: the TXT export gives that text until a segment is corrected here."
    )
