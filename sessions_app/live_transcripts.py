"""Saving live finals as utterances."""

from __future__ import annotations

from typing import Any

from django.db import transaction
from django.db.models import Max

from sessions_app.models import TranscriptionSession, Utterance


@transaction.atomic
def do_save_final(session_id, speaker_id: int, final: dict[str, Any], clock_offset_s: float) -> Utterance:
    """Store one ``stt_final`` as the session's next utterance.

    ``clock_offset_s`` moves the engine's stream times onto the speaker's recording clock
    (the recording already held that much audio when this stream began).
    The session row is locked so that concurrent speakers get distinct, gap-free orders.
    """
    TranscriptionSession.objects.select_for_update().filter(pk=session_id).first()
    last = Utterance.objects.filter(session_id=session_id).aggregate(last=Max("sequence"))["last"] or 0
    words = [
        {**word, "start": round(word["start"] + clock_offset_s, 3), "end": round(word["end"] + clock_offset_s, 3)}
        for word in final.get("words", [])
    ]
    start = round(float(final.get("start", 0.0)) + clock_offset_s, 3)
    end = max(round(float(final.get("end", 0.0)) + clock_offset_s, 3), start)
    return Utterance.objects.create(
        session_id=session_id,
        speaker_id=speaker_id,
        sequence=last + 1,
        start_s=start,
        end_s=end,
        text=(final.get("text") or "").strip(),
        words=words,
        language=final.get("language") or "",
        confidence=final.get("confidence"),
        model_name=final.get("model") or "",
    )


def utterance_message(utterance: Utterance, speaker_name: str) -> dict[str, Any]:
    return {
        "type": "stt_final",
        "utterance_id": utterance.pk,
        "sequence": utterance.sequence,
        "text": utterance.text,
        "start": utterance.start_s,
        "end": utterance.end_s,
        "words": utterance.words,
        "language": utterance.language,
        "confidence": utterance.confidence,
        "model": utterance.model_name,
        "speaker": speaker_name,
        "speaker_id": utterance.speaker_id,
        "session_id": str(utterance.session_id),
    }
