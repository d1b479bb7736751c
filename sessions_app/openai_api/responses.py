"""A finished BatchJob as each ``response_format`` of OpenAI's transcription endpoint.

SRT and WebVTT come from sessions_app/exports.py (its cue rules: line length, lines per cue,
word timings), so a file transcribed here reads the same as the job's own export.
"""

from __future__ import annotations

import math
import zlib
from typing import Any

from django.http import HttpResponse, JsonResponse

from sessions_app import exports
from sessions_app.models import BatchJob

__all__ = ["RESPONSE_FORMATS", "TIMESTAMP_GRANULARITIES", "job_text", "render_job", "verbose_json"]

RESPONSE_FORMATS = ("json", "text", "srt", "vtt", "verbose_json")
TIMESTAMP_GRANULARITIES = ("word", "segment")


def job_text(job: BatchJob) -> str:
    return " ".join(str(segment["text"]).strip() for segment in job.segments or [] if str(segment["text"]).strip())


def _usage(job: BatchJob) -> dict[str, Any]:
    return {"type": "duration", "seconds": math.ceil(job.audio_duration_s or 0.0)}


def _compression_ratio(text: str) -> float:
    data = text.encode()
    return round(len(data) / len(zlib.compress(data)), 4) if data else 0.0


def _segment(index: int, segment: dict[str, Any], temperature: float) -> dict[str, Any]:
    words = segment.get("words") or []
    probabilities = [max(float(w.get("probability", 1.0)), 1e-6) for w in words]
    avg_logprob = sum(math.log(p) for p in probabilities) / len(probabilities) if probabilities else 0.0
    text = str(segment["text"]).strip()
    return {
        "id": index,
        "seek": 0,
        "start": float(segment["start"]),
        "end": float(segment["end"]),
        "text": f" {text}",  # Whisper's (and OpenAI's) segment text starts with its space
        "tokens": [],
        "temperature": temperature,  # the first attempt's (a hotter fallback is not recorded)
        # From the words' probabilities: the batch result keeps no token log-probabilities.
        "avg_logprob": round(avg_logprob, 4),
        "compression_ratio": _compression_ratio(text),
        "no_speech_prob": 0.0,
    }


def verbose_json(job: BatchJob, granularities: tuple[str, ...] = ()) -> dict[str, Any]:
    """OpenAI's ``verbose_json``: segments unless only ``word`` was asked for, words when asked for."""
    body: dict[str, Any] = {
        "task": "transcribe",
        "language": job.detected_language or job.language,
        "duration": float(job.audio_duration_s or 0.0),
        "text": job_text(job),
    }
    if not granularities or "segment" in granularities:
        body["segments"] = [_segment(i, s, job.temperature) for i, s in enumerate(job.segments or [])]
    if "word" in granularities:
        body["words"] = [
            {"word": str(w["word"]).strip(), "start": float(w["start"]), "end": float(w["end"])}
            for s in job.segments or []
            for w in s.get("words") or []
            if str(w.get("word", "")).strip()
        ]
    body["usage"] = _usage(job)
    return body


def render_job(job: BatchJob, response_format: str, granularities: tuple[str, ...] = ()) -> HttpResponse:
    """The HTTP answer for a finished job in ``response_format`` (one of RESPONSE_FORMATS)."""
    if response_format == "json":
        return JsonResponse({"text": job_text(job), "usage": _usage(job)})
    if response_format == "verbose_json":
        return JsonResponse(verbose_json(job, granularities))
    if response_format == "text":
        return HttpResponse(job_text(job) + "\n", content_type="text/plain; charset=utf-8")
    if response_format in ("srt", "vtt"):
        export = exports.export_job(job, response_format)
        return HttpResponse(export.content, content_type=export.content_type)
    raise ValueError(f"Unknown response_format {response_format!r}")
