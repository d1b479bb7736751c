"""Saving live finals and refined turns as utterances, and the messages that announce them."""

from __future__ import annotations

import datetime as dt
from typing import Any

from django.db import transaction
from django.db.models import Max
from django.utils import timezone

from sessions_app.meeting_record.versions import AppliedVersion, do_apply_version
from sessions_app.models import TranscriptionSession, Utterance


def _on_recording_clock(segment: dict[str, Any], clock_offset_s: float) -> dict[str, Any]:
    words = [
        {**word, "start": round(word["start"] + clock_offset_s, 3), "end": round(word["end"] + clock_offset_s, 3)}
        for word in segment.get("words", [])
    ]
    start = round(float(segment.get("start", 0.0)) + clock_offset_s, 3)
    end = max(round(float(segment.get("end", 0.0)) + clock_offset_s, 3), start)
    return {**segment, "start": start, "end": end, "words": words, "text": (segment.get("text") or "").strip()}


@transaction.atomic
def do_save_final(
    session_id, speaker_id: int, final: dict[str, Any], clock_offset_s: float, stream_id: str = ""
) -> Utterance:
    """Store one ``stt_final`` as the session's next utterance (with its ``speaker_label`` when diarized).

    ``clock_offset_s`` moves the engine's stream times onto the speaker's recording clock
    (the recording already held that much audio when this stream began).
    The session row is locked so that concurrent speakers get distinct, gap-free orders.
    ``spoken_at`` is now less the stream time since the utterance began (``at - start``), and
    not before the latest ``spoken_at`` of the stream's utterances that began before it.
    """
    TranscriptionSession.objects.select_for_update().filter(pk=session_id).first()
    last = Utterance.objects.filter(session_id=session_id).aggregate(last=Max("sequence"))["last"] or 0
    timed = _on_recording_clock(final, clock_offset_s)
    ago = max(0.0, float(final.get("at", final.get("end", 0.0))) - float(final.get("start", 0.0)))
    spoken_at = timezone.now() - dt.timedelta(seconds=ago)
    if stream_id:
        # ``spoken_at`` carries the engine's lag at this final (seconds while it catches up on a
        # busy machine): never before an earlier utterance of the same stream, so the transcript
        # (ordered by spoken_at) keeps the order it was said in.
        earlier = (
            Utterance.objects.filter(
                session_id=session_id, speaker_id=speaker_id, stream_id=stream_id, start_s__lte=timed["start"]
            )
            .exclude(spoken_at=None)
            .order_by("-spoken_at")
            .values_list("spoken_at", flat=True)
            .first()
        )
        if earlier is not None and earlier > spoken_at:
            spoken_at = earlier
    return Utterance.objects.create(
        session_id=session_id,
        speaker_id=speaker_id,
        sequence=last + 1,
        start_s=timed["start"],
        end_s=timed["end"],
        text=timed["text"],
        words=timed["words"],
        language=final.get("language") or "",
        confidence=final.get("confidence"),
        model_name=final.get("model") or "",
        source=Utterance.Source.LIVE,
        stream_id=stream_id,
        speaker_label=final.get("speaker_label") or "",
        spoken_at=spoken_at,
    )


def do_save_revision(
    session_id,
    speaker_id: int,
    replaces: list[int],
    utterances: list[dict[str, Any]],
    clock_offset_s: float,
    stream_id: str = "",
) -> AppliedVersion:
    """Store a refined turn (``stt_revised`` from the engine) as the current version of ``replaces``."""
    segments = [_on_recording_clock(u, clock_offset_s) for u in utterances]
    return do_apply_version(session_id, speaker_id, replaces, segments, Utterance.Source.REFINED, stream_id)


def utterance_fields(utterance: Utterance) -> dict[str, Any]:
    """The fields of one utterance as ``stt_final`` and ``stt_revised`` carry them."""
    return {
        "utterance_id": utterance.pk,
        "sequence": utterance.sequence,
        "text": utterance.text,
        "start": utterance.start_s,
        "end": utterance.end_s,
        "words": utterance.words,
        "language": utterance.language,
        "confidence": utterance.confidence,
        "model": utterance.model_name,
        "source": utterance.source,
        "speaker_label": utterance.speaker_label,  # the voice on a diarized stream ("S1", ...), else ""
        "spoken_at": utterance.spoken_at.isoformat() if utterance.spoken_at else None,
    }


def utterance_message(
    utterance: Utterance, speaker: str, speaker_name: str = "", speaker_colour: int | None = None
) -> dict[str, Any]:
    """``stt_final``: ``speaker`` is the username, ``speaker_name`` what readers see (the display name)."""
    return {
        "type": "stt_final",
        **utterance_fields(utterance),
        "speaker": speaker,
        "speaker_name": speaker_name or speaker,
        "speaker_colour": speaker_colour if speaker_colour is not None else utterance.speaker_colour,
        "speaker_id": utterance.speaker_id,
        "session_id": str(utterance.session_id),
    }


def revision_message(applied: AppliedVersion, speaker_name: str, speaker_id: int, session_id) -> dict[str, Any]:
    """``stt_revised``: the utterances ``replaces`` are superseded by ``utterances`` (in order)."""
    return {
        "type": "stt_revised",
        "replaces": applied.replaced_ids,
        "utterances": [utterance_fields(u) for u in applied.created],
        "speaker": speaker_name,
        "speaker_id": speaker_id,
        "session_id": str(session_id),
    }
