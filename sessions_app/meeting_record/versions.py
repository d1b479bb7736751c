"""Replacing utterances with a machine's later version, keeping every version and every correction.

A machine pass (the refined decode of a live turn, or the post-session pass over a whole
recording) hands in new segments for some of a speaker's current utterances. They become
new utterance rows; the rows they replace stay in the database with ``superseded_by`` set.

Corrections win: a corrected utterance is never superseded by a machine. It stays current,
and the machine's words whose middle falls inside it are left out (a segment without word
times is left out when it overlaps it by half its duration or its middle falls inside it);
the rest of the version is applied.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from django.db import transaction
from django.db.models import Max
from django.utils import timezone

from sessions_app.models import TranscriptionSession, Utterance

__all__ = ["AppliedVersion", "do_apply_version", "overlap_s"]


@dataclass
class AppliedVersion:
    """What a machine version changed: the new rows and the ids of the rows they superseded."""

    created: list[Utterance]
    replaced_ids: list[int]


def overlap_s(a_start: float, a_end: float, b_start: float, b_end: float) -> float:
    return max(0.0, min(a_end, b_end) - max(a_start, b_start))


def _inside(utterance: Utterance, start: float, end: float) -> bool:
    return utterance.start_s <= (start + end) / 2 <= utterance.end_s


def _covers(utterance: Utterance, start: float, end: float) -> bool:
    """Whether a segment at ``start``-``end`` says (part of) what ``utterance`` says."""
    duration = max(end - start, 1e-3)
    return overlap_s(utterance.start_s, utterance.end_s, start, end) >= 0.5 * duration or _inside(utterance, start, end)


def _outside_corrections(segment: dict[str, Any], corrected: Sequence[Utterance]) -> dict[str, Any] | None:
    """The part of a machine segment that no corrected utterance covers (``None``: nothing is left)."""
    if not corrected:
        return segment
    words = list(segment.get("words") or [])
    if not words:
        start, end = float(segment["start"]), float(segment["end"])
        return None if any(_covers(u, start, end) for u in corrected) else segment
    kept = [w for w in words if not any(_inside(u, float(w["start"]), float(w["end"])) for u in corrected)]
    if len(kept) == len(words):
        return segment
    if not kept:
        return None
    text = " ".join(str(w["word"]).strip() for w in kept)
    return {**segment, "text": text, "words": kept, "start": kept[0]["start"], "end": kept[-1]["end"]}


def _nearest(utterances: Sequence[Utterance], start: float, end: float) -> Utterance:
    return max(
        utterances,
        key=lambda u: (overlap_s(u.start_s, u.end_s, start, end), -abs(u.start_s - start)),
    )


def _spoken_at(anchors: Sequence[Utterance], start: float) -> dt.datetime | None:
    timed = [u for u in anchors if u.spoken_at is not None]
    if not timed:
        return None
    anchor = min(timed, key=lambda u: abs(u.start_s - start))
    return anchor.spoken_at + dt.timedelta(seconds=start - anchor.start_s)


def _in_spoken_order(times: list[dt.datetime | None], latest: dt.datetime | None = None) -> list[dt.datetime | None]:
    """``times`` (of segments in recording order) made non-decreasing, and not before ``latest``.

    A live final's ``spoken_at`` is when it arrived less its stream time, so it carries that
    moment's engine lag (up to seconds while the engine catches up); segments anchored on
    neighbouring finals of different lags could otherwise sort before the segment they follow
    (seen: a 160 s monologue's post-session version read out of order).
    """
    ordered: list[dt.datetime | None] = []
    for moment in times:
        if moment is not None and latest is not None and moment < latest:
            moment = latest
        latest = moment if moment is not None else latest
        ordered.append(moment)
    return ordered


@transaction.atomic
def do_apply_version(
    session_id,
    speaker_id: int,
    replaces: Iterable[int],
    segments: Sequence[dict[str, Any]],
    source: str,
    stream_id: str = "",
) -> AppliedVersion:
    """Store ``segments`` as the current version of the utterances ``replaces``.

    Args:
        session_id: the session.
        speaker_id: whose utterances they are (rows of other speakers are never touched).
        replaces: ids of the utterances this version supersedes; those no longer current
            (already replaced by a later pass) or corrected by a person are kept as they are.
        segments: ``{text, start, end, words, language, confidence, model}`` on the speaker's
            recording clock, in order; ``speaker_label`` too where the audio was diarized.
        source: ``Utterance.Source.REFINED`` or ``ARCHIVE``.
        stream_id: the connection the audio came from (refinements).

    Returns:
        The new rows and the ids they superseded; both empty when nothing changed (every
        replaced row was gone or corrected, or the version had no text).
    """
    TranscriptionSession.objects.select_for_update().filter(pk=session_id).first()
    old = list(
        Utterance.objects.select_for_update()
        .filter(session_id=session_id, speaker_id=speaker_id, pk__in=list(replaces), superseded_by__isnull=True)
        .order_by("start_s", "sequence")
    )
    corrected = [u for u in old if u.corrected_text]
    replaceable = [u for u in old if not u.corrected_text]
    pieces = [_outside_corrections(s, corrected) for s in segments if (s.get("text") or "").strip()]
    kept = [piece for piece in pieces if piece is not None]
    if not replaceable or not kept:
        return AppliedVersion([], [])
    last = Utterance.objects.filter(session_id=session_id).aggregate(last=Max("sequence"))["last"] or 0
    first_start = round(float(kept[0]["start"]), 3)
    before = (  # the speaker's current rows said before this version, which it must not precede
        Utterance.objects.filter(session_id=session_id, speaker_id=speaker_id, superseded_by__isnull=True)
        .exclude(pk__in=[u.pk for u in replaceable])
        .exclude(spoken_at=None)
        .filter(start_s__lt=first_start)
        .order_by("-spoken_at")
        .values_list("spoken_at", flat=True)
        .first()
    )
    spoken = _in_spoken_order([_spoken_at(old, round(float(segment["start"]), 3)) for segment in kept], before)
    created = []
    for offset, segment in enumerate(kept, start=1):
        start = round(float(segment["start"]), 3)
        end = max(round(float(segment["end"]), 3), start)
        created.append(
            Utterance.objects.create(
                session_id=session_id,
                speaker_id=speaker_id,
                sequence=last + offset,
                start_s=start,
                end_s=end,
                text=segment["text"].strip(),
                words=list(segment.get("words") or []),
                language=segment.get("language") or "",
                confidence=segment.get("confidence"),
                model_name=segment.get("model") or "",
                source=source,
                stream_id=stream_id,
                speaker_label=segment.get("speaker_label") or "",
                spoken_at=spoken[offset - 1],
            )
        )
    now = timezone.now()
    for utterance in replaceable:
        utterance.superseded_by = _nearest(created, utterance.start_s, utterance.end_s)
        utterance.superseded_at = now
    Utterance.objects.bulk_update(replaceable, ["superseded_by", "superseded_at"])
    return AppliedVersion(created, [u.pk for u in replaceable])
