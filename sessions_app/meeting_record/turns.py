"""Turns: what one speaker said without being interrupted, shown as one paragraph.

Pages and exports read a meeting as turns rather than utterance fragments: the engine cuts an
utterance at every 0.6 s pause, and a reader wants one name and one time, then the paragraph.
A turn is a run of consecutive current utterances (in ``Utterance.objects.current()`` order)
of one speaker (on a room microphone, one voice: the same account and ``speaker_label``); a long
pause (``MAX_PAUSE_S``) starts a new turn even when nobody else spoke, since what follows is
usually a new thought (and a reader looks for it by its time).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from sessions_app.models import Utterance
from sessions_app.speakers import Speaker, line_namer

__all__ = ["MAX_PAUSE_S", "Turn", "group_into_turns", "pause_s"]

MAX_PAUSE_S = 30.0


@dataclass
class Turn:
    """Consecutive utterances of one speaker.

    ``start``/``end`` are seconds on the speaker's recording clock; ``spoken_at`` is the
    wall-clock time the turn began (``None`` for rows saved before it was recorded).
    ``speaker`` is the name readers see: for a diarized voice (``speaker_label`` "S2") its label's
    name ("Speaker 2", or what the owner renamed it), else the display name in the session, else
    the username. ``member_name`` is always the account's name (whose microphone it was).
    """

    speaker: str
    speaker_id: int
    start: float
    end: float
    spoken_at: dt.datetime | None
    utterances: list[Utterance] = field(default_factory=list)
    colour: int = 0  # the speaker's colour in the session's palette (the label's, for a diarized voice)
    username: str = ""
    speaker_label: str = ""  # the voice of a diarized stream ("S1", ...), "" otherwise
    member_name: str = ""

    @property
    def text(self) -> str:
        """The paragraph: every utterance's text (a correction where there is one), in order."""
        return " ".join(t for t in (u.display_text.strip() for u in self.utterances) if t)

    @property
    def utterance_ids(self) -> list[int]:
        return [u.pk for u in self.utterances]

    def add(self, utterance: Utterance) -> None:
        self.utterances.append(utterance)
        self.end = max(self.end, utterance.end_s)


def pause_s(previous: Utterance, following: Utterance) -> float:
    """Silence between two utterances of one speaker.

    By wall clock when both know when they were spoken (a speaker's recording clock does not
    run while they are disconnected), else on the speaker's recording clock.
    """
    if previous.spoken_at is not None and following.spoken_at is not None:
        previous_end = previous.spoken_at + dt.timedelta(seconds=previous.end_s - previous.start_s)
        return (following.spoken_at - previous_end).total_seconds()
    return following.start_s - previous.end_s


def _speaker_name(utterance: Utterance) -> str:
    """The speaker's display name in the session (``Utterance.objects.with_speaker_names()``), else their username."""
    return utterance.speaker_name


def group_into_turns(
    utterances: Iterable[Utterance],
    max_pause_s: float = MAX_PAUSE_S,
    *,
    namer: Callable[[Utterance], Speaker] | None = None,
) -> list[Turn]:
    """Group utterances, already in transcript order, into turns.

    Args:
        utterances: current utterances in ``Utterance.objects.current()`` order (select the
            speaker with them, and take them ``with_speaker_names()``: the speaker's display
            name labels the turn, their username where they have none).
        max_pause_s: a longer pause between two utterances of one speaker starts a new turn.
        namer: names a labelled line (``speakers.line_namer`` of the session); by default it is
            made on the first labelled utterance (so a session without labels reads no more).

    Returns:
        The turns in order; every utterance is in exactly one.
    """
    turns: list[Turn] = []
    for utterance in utterances:
        last = turns[-1] if turns else None
        if (
            last is not None
            and last.speaker_id == utterance.speaker_id
            and last.speaker_label == utterance.speaker_label
            and pause_s(last.utterances[-1], utterance) <= max_pause_s
        ):
            last.add(utterance)
            continue
        member_name = _speaker_name(utterance)
        name, colour = member_name, utterance.speaker_colour
        if utterance.speaker_label:
            namer = namer or line_namer(utterance.session_id)
            line = namer(utterance)
            name, colour = line.name, line.colour
        turns.append(
            Turn(
                speaker=name,
                speaker_id=utterance.speaker_id,
                start=utterance.start_s,
                end=utterance.end_s,
                spoken_at=utterance.spoken_at,
                utterances=[utterance],
                colour=colour,
                username=utterance.speaker.get_username(),
                speaker_label=utterance.speaker_label,
                member_name=member_name,
            )
        )
    return turns
