"""Transcript exports shared by batch jobs and live sessions: JSON, TXT, SRT, WebVTT and DOCX.

Everything is first turned into :class:`Piece` rows (a timed text, optionally with a speaker
and word timings). Subtitle formats then split each piece into cues of at most
``MAX_LINES`` lines of ``MAX_LINE_CHARS`` characters (the usual broadcast limits), timing
each cue by its words when the word timings match the text, or by interpolation over the
characters when they do not (a corrected utterance).

A session's TXT and DOCX are read as turns. Their times are session-relative (``0:05``,
``1:02:03``: since the earliest speaker's recording began, see :func:`session_origin`), with
the wall-clock time in the site's time zone beside them where it is known. Every speaker name
of a session export comes from :func:`line_name` (for utterances) and the turns' ``speaker``.

Diarized lines (a room microphone's voices, ``speaker_label`` "S1", "S2", ...) go by their label's
name (``speakers.line_namer``: "Speaker 1", or what the session's owner renamed it) in every
format; JSON keeps ``speaker`` as the account's name and adds ``speaker_name`` (the line's name) and
``speaker_label``. A job's labelled segments read "Speaker N" (jobs have no renames).
"""

from __future__ import annotations

import datetime as dt
import io
import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import docx
import srt
from django.utils import timezone
from docx.shared import Pt, RGBColor

from sessions_app.job_segments import segment_text
from sessions_app.meeting_record.turns import Turn, group_into_turns
from sessions_app.models import BatchJob, TranscriptionSession, Utterance
from sessions_app.speakers import Speaker, label_display_name, line_namer

__all__ = [
    "EXPORT_MENU",
    "FORMATS",
    "MAX_LINES",
    "MAX_LINE_CHARS",
    "Cue",
    "Export",
    "Piece",
    "export_job",
    "export_session",
    "format_offset",
    "line_name",
    "session_origin",
    "split_into_cues",
    "turns_to_txt",
]

# The export menu of the transcript and upload pages: (what follows ``format=``, label).
EXPORT_MENU = (
    ("txt", "TXT"),
    ("txt&times=1", "TXT with times"),
    ("docx", "Word (DOCX)"),
    ("srt", "SRT"),
    ("vtt", "WebVTT"),
    ("json", "JSON"),
)
MAX_LINE_CHARS = 42
MAX_LINES = 2
MIN_CUE_S = 0.05
FORMATS = ("json", "txt", "srt", "vtt", "docx")

_CONTENT_TYPES = {
    "json": "application/json",
    "txt": "text/plain; charset=utf-8",
    "srt": "application/x-subrip; charset=utf-8",
    "vtt": "text/vtt; charset=utf-8",
    "docx": "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
}


@dataclass(frozen=True)
class Piece:
    """One segment of a job or one utterance of a session."""

    start: float
    end: float
    text: str
    words: list[dict[str, Any]] = field(default_factory=list)
    speaker: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Cue:
    start: float
    end: float
    lines: list[str]


@dataclass(frozen=True)
class Export:
    content: str | bytes  # bytes for DOCX
    content_type: str
    filename: str


def split_into_cues(piece: Piece, max_chars: int = MAX_LINE_CHARS, max_lines: int = MAX_LINES) -> list[Cue]:
    """Split a piece into cues of at most ``max_lines`` lines of ``max_chars`` characters.

    The speaker label (``"alice: "``) starts the first line of every cue and counts in its length.
    """
    label = f"{piece.speaker}: " if piece.speaker else ""
    timed = _timed_tokens(piece)
    if not timed:
        return []
    cues: list[Cue] = []
    lines: list[str] = []
    current = label
    cue_start: float | None = None
    cue_end = piece.start
    for token, start, end in timed:
        for chunk in _hard_wrap(token, max_chars - len(label)):
            candidate = f"{current}{chunk}" if not current or current.endswith(" ") else f"{current} {chunk}"
            if len(candidate) <= max_chars:
                current = candidate
            else:
                lines.append(current)
                if len(lines) == max_lines:
                    cues.append(Cue(cue_start if cue_start is not None else start, max(cue_end, start), lines))
                    lines, cue_start = [], None
                    current = f"{label}{chunk}"
                else:
                    current = chunk
            if cue_start is None:
                cue_start = start
            cue_end = max(cue_end, end)
    if current.strip() and current != label:
        lines.append(current)
    if lines:
        cues.append(Cue(cue_start if cue_start is not None else piece.start, cue_end, lines))
    # Clamp to the piece and keep times non-decreasing, whatever the word timings said.
    fixed: list[Cue] = []
    previous_end = piece.start
    for cue in cues:
        start = min(max(cue.start, previous_end, piece.start), piece.end)
        end = min(max(cue.end, start), max(piece.end, start))
        fixed.append(Cue(start, end, cue.lines))
        previous_end = end
    return fixed


def _hard_wrap(token: str, width: int) -> list[str]:
    width = max(width, 1)
    return [token[i : i + width] for i in range(0, len(token), width)] or [token]


def _timed_tokens(piece: Piece) -> list[tuple[str, float, float]]:
    """(token, start, end) for every whitespace-separated token of the piece's text."""
    tokens = piece.text.split()
    if not tokens:
        return []
    words = [w for w in piece.words if str(w.get("word", "")).strip()]
    if words and " ".join(str(w["word"]).strip() for w in words).split() == tokens and len(words) == len(tokens):
        return [(t, float(w["start"]), float(w["end"])) for t, w in zip(tokens, words, strict=True)]
    # No usable word timings: spread the piece's time over its characters.
    total_chars = sum(len(t) + 1 for t in tokens)
    span = max(piece.end - piece.start, 0.0)
    timed, seen = [], 0
    for token in tokens:
        start = piece.start + span * seen / total_chars
        seen += len(token) + 1
        timed.append((token, start, piece.start + span * seen / total_chars))
    return timed


def _cues(pieces: Iterable[Piece]) -> list[Cue]:
    """All cues in start order. Speakers may overlap; a cue never lasts less than MIN_CUE_S."""
    cues = [cue for piece in pieces for cue in split_into_cues(piece)]
    cues.sort(key=lambda cue: (cue.start, cue.end))
    return [Cue(cue.start, max(cue.end, cue.start + MIN_CUE_S), cue.lines) for cue in cues]


def to_srt(pieces: Iterable[Piece]) -> str:
    subtitles = [
        srt.Subtitle(index=i, start=_td(cue.start), end=_td(cue.end), content="\n".join(cue.lines))
        for i, cue in enumerate(_cues(pieces), start=1)
    ]
    return srt.compose(subtitles, reindex=True, start_index=1)


def to_vtt(pieces: Iterable[Piece]) -> str:
    blocks = ["WEBVTT", ""]
    for cue in _cues(pieces):
        # "-->" must never appear in cue text; nor may blank lines.
        text = "\n".join(line.replace("-->", "->") for line in cue.lines)
        blocks.append(f"{_vtt_time(cue.start)} --> {_vtt_time(cue.end)}\n{text}\n")
    return "\n".join(blocks)


def to_txt(pieces: Iterable[Piece]) -> str:
    lines = [f"{p.speaker}: {p.text}" if p.speaker else p.text for p in sorted(pieces, key=lambda p: p.start)]
    return "\n".join(line for line in lines if line.strip()) + "\n"


def format_offset(seconds: float) -> str:
    """A session-relative time as a reader expects it: ``0:05``, ``12:34``, ``1:02:03``."""
    total = int(max(seconds, 0.0))
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def session_origin(utterances: Iterable[Utterance]) -> dt.datetime | None:
    """Time 0 of a session's transcript: when the earliest speaker's recording began (wall clock).

    An utterance spoken at ``spoken_at`` lies ``start_s`` into its speaker's recording, so the
    recording began at ``spoken_at - start_s``; ``None`` when no utterance knows when it was spoken.
    """
    starts = [u.spoken_at - dt.timedelta(seconds=u.start_s) for u in utterances if u.spoken_at is not None]
    return min(starts) if starts else None


def turn_offset(turn: Turn, origin: dt.datetime | None) -> float:
    """Seconds from the session's time 0 to the turn (its recording time when the wall clock is unknown)."""
    if origin is not None and turn.spoken_at is not None:
        return max((turn.spoken_at - origin).total_seconds(), 0.0)
    return max(turn.start, 0.0)


def turn_clock(turn: Turn) -> str:
    """When a turn began: the wall-clock time (``HH:MM:SS``, site time zone), else its recording time."""
    if turn.spoken_at is not None:
        return timezone.localtime(turn.spoken_at).strftime("%H:%M:%S")
    ms = round(max(turn.start, 0.0) * 1000)
    hours, rest = divmod(ms // 1000, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}"


def turn_times(turn: Turn, origin: dt.datetime | None) -> str:
    """``0:05 · 14:20:14 UTC``: the session-relative time, then the wall clock where it is known."""
    offset = format_offset(turn_offset(turn, origin))
    if turn.spoken_at is None:
        return offset
    local = timezone.localtime(turn.spoken_at)
    return f"{offset} · {local.strftime('%H:%M:%S')} {local.tzname() or ''}".rstrip()


def turns_to_txt(turns: Iterable[Turn], origin: dt.datetime | None = None, *, times: bool = False) -> str:
    """One block per turn, a blank line between turns.

    Without ``times``: ``speaker: paragraph``. With: ``[0:05 · 14:20:14 UTC] speaker``, then the
    paragraph on the next line.
    """
    blocks = [
        f"[{turn_times(turn, origin)}] {turn.speaker}\n{turn.text}" if times else f"{turn.speaker}: {turn.text}"
        for turn in turns
        if turn.text
    ]
    return "\n\n".join(blocks) + "\n" if blocks else ""


def pieces_to_timed_txt(pieces: Iterable[Piece]) -> str:
    """A job's TXT with times: ``[0:05] text`` (``[0:05] Speaker 1: text`` when diarized), one segment a line."""
    lines = [
        f"[{format_offset(p.start)}] {p.speaker + ': ' if p.speaker else ''}{p.text}"
        for p in sorted(pieces, key=lambda p: p.start)
        if p.text.strip()
    ]
    return "\n".join(lines) + "\n" if lines else ""


def _docx_bytes(title: str, subtitle: str, blocks: Iterable[tuple[str, str, str]]) -> bytes:
    """A Word document: the title, a line under it, then per block a head (speaker bold, times grey), its paragraph."""
    document = docx.Document()
    document.core_properties.title = title
    document.add_heading(title, level=1)
    if subtitle:
        document.add_paragraph(subtitle).runs[0].font.color.rgb = RGBColor(0x55, 0x55, 0x55)
    for speaker, when, text in blocks:
        head = document.add_paragraph()
        head.paragraph_format.space_before = Pt(10)
        head.paragraph_format.space_after = Pt(2)
        head.paragraph_format.keep_with_next = True
        if speaker:
            head.add_run(speaker).bold = True
            head.add_run("  ")
        stamp = head.add_run(when)
        stamp.font.color.rgb = RGBColor(0x66, 0x66, 0x66)
        stamp.font.size = Pt(9)
        document.add_paragraph(text)
    buffer = io.BytesIO()
    document.save(buffer)
    return buffer.getvalue()


def turn_fields(turn: Turn, origin: dt.datetime | None = None) -> dict[str, Any]:
    """A turn as the JSON export (and the pages) carry it; ``offset`` is its session-relative time (s).

    ``speaker_name`` is what the turn is shown as (a diarized voice's label name); ``speaker`` the
    account's name (the same for a turn without ``speaker_label``).
    """
    return {
        "speaker": turn.member_name or turn.speaker,
        "speaker_name": turn.speaker,
        "speaker_label": turn.speaker_label,
        "speaker_id": turn.speaker_id,
        "speaker_username": turn.username,
        "start": turn.start,
        "end": turn.end,
        "offset": round(turn_offset(turn, origin), 3),
        "spoken_at": turn.spoken_at.isoformat() if turn.spoken_at else None,
        "text": turn.text,
        "utterance_ids": turn.utterance_ids,
    }


def _td(seconds: float) -> dt.timedelta:
    return dt.timedelta(milliseconds=round(max(seconds, 0.0) * 1000))


def _vtt_time(seconds: float) -> str:
    ms = round(max(seconds, 0.0) * 1000)
    hours, rest = divmod(ms, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    secs, millis = divmod(rest, 1000)
    return f"{hours:02d}:{minutes:02d}:{secs:02d}.{millis:03d}"


def _render(
    fmt: str,
    pieces: list[Piece],
    meta: dict[str, Any],
    stem: str,
    turns: list[Turn] | None = None,
    *,
    times: bool = False,
    origin: dt.datetime | None = None,
) -> Export:
    if fmt not in FORMATS:
        raise ValueError(f"Unknown export format {fmt!r}: use one of {', '.join(FORMATS)}.")
    content: str | bytes
    if fmt == "json":
        # (a piece's ``extra`` may say ``speaker`` itself: a session's labelled line is named by
        # its label, but its JSON ``speaker`` stays the account's name)
        segments = [
            {
                **({"speaker": p.speaker} if p.speaker else {}),
                "start": p.start,
                "end": p.end,
                "text": p.text,
                **p.extra,
                "words": p.words,
            }
            for p in pieces
        ]
        extra = {"turns": [turn_fields(turn, origin) for turn in turns]} if turns is not None else {}
        content = json.dumps({**meta, "segments": segments, **extra}, ensure_ascii=False, indent=2)
    elif fmt == "txt":
        if turns is not None:
            content = turns_to_txt(turns, origin, times=times)
        else:
            content = pieces_to_timed_txt(pieces) if times else to_txt(pieces)
    elif fmt == "srt":
        content = to_srt(pieces)
    elif fmt == "vtt":
        content = to_vtt(pieces)
    else:
        if turns is not None:
            blocks = [(turn.speaker, turn_times(turn, origin), turn.text) for turn in turns if turn.text]
        else:
            blocks = [(p.speaker, format_offset(p.start), p.text) for p in pieces if p.text.strip()]
        content = _docx_bytes(str(meta.get("title") or meta.get("filename") or stem), meta.get("subtitle", ""), blocks)
    return Export(content=content, content_type=_CONTENT_TYPES[fmt], filename=f"{stem}.{fmt}")


def job_pieces(job: BatchJob) -> list[Piece]:
    """A job's segments, each with its correction where it has one (the JSON keeps the original too).

    A diarized job's segments are named by their labels ("Speaker 1"); JSON adds ``speaker_label``.
    """
    return [
        Piece(
            start=float(s["start"]),
            end=float(s["end"]),
            text=segment_text(s),
            words=s.get("words") or [],
            speaker=label_display_name(s["speaker_label"]) if s.get("speaker_label") else "",
            extra={
                **({"original_text": str(s["text"]).strip(), "corrected": True} if s.get("corrected_text") else {}),
                **(
                    {"speaker_name": label_display_name(s["speaker_label"]), "speaker_label": s["speaker_label"]}
                    if s.get("speaker_label")
                    else {}
                ),
            },
        )
        for s in job.segments or []
    ]


def export_job(job: BatchJob, fmt: str, *, times: bool = False) -> Export:
    """Render a finished job's transcript in ``fmt`` (one of ``FORMATS``); ``times``: TXT with times.

    Every format says a segment's correction where it has one; JSON gives its ``original_text`` too.
    """
    meta = {
        "job_id": str(job.id),
        "filename": job.original_filename,
        "language": job.detected_language or job.language,
        "duration_s": job.audio_duration_s,
        "model": job.model_name,
    }
    # A reviewer's correction of the whole text (the admin's, older than per-segment corrections) is
    # the TXT while no segment has a correction of its own; once one has, the segments are the transcript.
    if job.corrected_text.strip() and fmt == "txt" and not any(s.get("corrected_text") for s in job.segments or []):
        return Export(job.corrected_text.strip() + "\n", _CONTENT_TYPES["txt"], f"job-{job.id}.txt")
    if fmt == "docx":
        meta = {**meta, "title": job.original_filename or f"Job {job.id}", "subtitle": _job_subtitle(job)}
    return _render(fmt, job_pieces(job), meta, f"job-{job.id}", times=times)


def _job_subtitle(job: BatchJob) -> str:
    parts = [timezone.localtime(job.created_at).strftime("%Y-%m-%d %H:%M %Z")]
    if job.detected_language or job.language:
        parts.append(f"language {job.detected_language or job.language}")
    if job.audio_duration_s:
        parts.append(format_offset(job.audio_duration_s))
    return " · ".join(parts)


def line_name(utterance: Utterance, namer: Callable[[Utterance], Speaker] | None = None) -> str:
    """The name an utterance goes by in exports: a diarized line's label name (``namer``, the session's
    ``speakers.line_namer``), else the speaker's display name in the session (rows taken
    ``with_speaker_names()``), else their username. The turns take theirs from ``meeting_record.turns``."""
    if utterance.speaker_label:
        return (namer or line_namer(utterance.session_id))(utterance).name
    return utterance.speaker_name


def utterance_pieces(
    utterances: Iterable[Utterance], namer: Callable[[Utterance], Speaker] | None = None
) -> list[Piece]:
    """Every utterance as a piece named by :func:`line_name`; ``namer`` names the labelled ones."""
    utterances = list(utterances)
    if namer is None and any(u.speaker_label for u in utterances):
        namer = line_namer(utterances[0].session_id)
    return [
        Piece(
            start=u.start_s,
            end=u.end_s,
            text=u.display_text.strip(),
            words=u.words or [],
            speaker=line_name(u, namer),
            extra={
                "speaker": u.speaker_name,
                "speaker_name": line_name(u, namer),
                "speaker_label": u.speaker_label,
                "speaker_id": u.speaker_id,
                "speaker_username": u.speaker.get_username(),
                "utterance_id": u.pk,
                "original_text": u.text,
                "corrected": bool(u.corrected_text),
                "language": u.language,
                "source": u.source,
            },
        )
        for u in utterances
    ]


def export_session(session: TranscriptionSession, fmt: str, *, times: bool = False) -> Export:
    """Render a session's current transcript, every utterance labelled with its speaker.

    Only the current version counts (rows a later pass superseded are left out). JSON carries
    both the utterances (``segments``) and the speakers' ``turns``; TXT is one paragraph per
    turn (``times``: with its session-relative and wall-clock time); DOCX is the title, then per
    turn the speaker, times and paragraph; SRT and WebVTT stay one cue run per utterance (their
    line and duration rules).
    """
    utterances = list(session.utterances.current().with_speaker_names().select_related("speaker"))
    meta = {
        "session_id": str(session.id),
        "title": session.title,
        "language": session.language,
        "created_at": session.created_at.isoformat(),
    }
    namer = line_namer(session.pk) if any(u.speaker_label for u in utterances) else None
    turns = group_into_turns(utterances, namer=namer)
    origin = session_origin(utterances)
    if fmt == "docx":
        when = timezone.localtime(origin or session.created_at).strftime("%Y-%m-%d %H:%M %Z")
        speakers = ", ".join(dict.fromkeys(turn.speaker for turn in turns))
        meta = {**meta, "subtitle": f"{when} · {speakers}" if speakers else when}
    pieces = utterance_pieces(utterances, namer)
    return _render(fmt, pieces, meta, f"session-{session.id}", turns, times=times, origin=origin)
