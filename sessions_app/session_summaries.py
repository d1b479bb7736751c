"""What the session list says about each session: how long it ran, who spoke, how many words."""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field

from django.db.models import Max

from sessions_app.exports import format_offset
from sessions_app.models import AudioRecording, SpeakerLabelName, Utterance
from sessions_app.speakers import label_display_name


@dataclass
class SessionSummary:
    """``duration_s``: the longest speaker's recording (speakers record side by side), else the end of the
    last utterance; ``None`` before anyone spoke. ``speakers``: who spoke, by their display name in the
    session (a diarized voice of a room microphone by its label's name, "Speaker 2"). ``word_count``:
    words of the current transcript, corrections included."""

    duration_s: float | None = None
    speakers: list[str] = field(default_factory=list)
    word_count: int = 0

    @property
    def duration(self) -> str:
        return format_offset(round(self.duration_s)) if self.duration_s is not None else ""


def summarize_sessions(session_ids: Iterable[uuid.UUID]) -> dict[uuid.UUID, SessionSummary]:
    """A summary for every id in ``session_ids``, in three queries whatever their number."""
    ids = list(session_ids)
    summaries = {session_id: SessionSummary() for session_id in ids}
    if not ids:
        return summaries
    speakers: dict[uuid.UUID, set[str]] = {session_id: set() for session_id in ids}
    rows = (
        Utterance.objects.current()
        .with_speaker_names()
        .filter(session_id__in=ids)
        .values_list(
            "session_id", "speaker_id", "speaker__username", "member_display_name", "speaker_label", "text",
            "corrected_text", "end_s",
        )
    )  # fmt: skip
    label_names = {
        (row.session_id, row.speaker_id, row.label): row.display_name
        for row in SpeakerLabelName.objects.filter(session_id__in=ids).exclude(display_name="")
    }
    last_end: dict[uuid.UUID, float] = {}
    for session_id, user_id, username, display_name, label, text, corrected_text, end_s in rows.iterator():
        summary = summaries[session_id]
        summary.word_count += len((corrected_text or text).split())
        if label:
            speakers[session_id].add(label_names.get((session_id, user_id, label)) or label_display_name(label))
        else:
            speakers[session_id].add(display_name or username)  # (the name the owner gave them in the session)
        last_end[session_id] = max(last_end.get(session_id, 0.0), end_s)
    recorded = dict(
        AudioRecording.objects.filter(session_id__in=ids)
        .values("session_id")
        .annotate(longest=Max("duration_s"))
        .values_list("session_id", "longest")
    )
    for session_id, summary in summaries.items():
        summary.speakers = sorted(speakers[session_id], key=str.casefold)
        longest = recorded.get(session_id) or last_end.get(session_id)
        summary.duration_s = round(longest, 1) if longest else None
    return summaries
