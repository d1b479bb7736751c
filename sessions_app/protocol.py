"""The WebSocket protocol's error codes, close codes and client-message parsing.

Close codes (sent after an ``stt_error`` that explains them):

====  ==================  ==========================================================
4403  FORBIDDEN           not signed in, not a member, wrong role, no such session, bad share token
4403  ACCESS_REVOKED      an open socket lost its right: share token rotated, member removed, role changed
4408  IDLE_TIMEOUT        no message for ``STT_IDLE_TIMEOUT_S`` seconds
4413  SESSION_TOO_LONG    the stream ran longer than ``STT_MAX_SESSION_S`` seconds
4409  ALREADY_STREAMING   this user already streams in this session (one recording per speaker)
4410  SESSION_ENDED       the owner ended the session (or it ended by itself); the stream's last
                          final is still saved and sent
4429  TOO_MANY_STREAMS    the server or this user already streams the maximum
4503  ENGINE_UNAVAILABLE  no engine process could be started
1009  (daphne)            a message above daphne's 1 MiB limit (no stt_error: the consumer
                          never sees it; see transcribe_site/websocket_server.py)
====  ==================  ==========================================================
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from stt_engine.languages import normalize_language

MAX_TEXT_FRAME_CHARS = 64 * 1024  # no client message is near this; a bigger one is refused unparsed


class ErrorCode:
    BAD_MESSAGE = "BAD_MESSAGE"  # not JSON, or not an object with a "type"
    UNKNOWN_TYPE = "UNKNOWN_TYPE"  # a "type" this endpoint does not know
    BAD_START = "BAD_START"  # stt_start with a bad sample_rate, language or diarize
    ALREADY_STARTED = "ALREADY_STARTED"  # a second stt_start while streaming
    NOT_STARTED = "NOT_STARTED"  # audio, flush or stop before stt_start
    BAD_AUDIO = "BAD_AUDIO"  # odd byte count (not whole 16-bit samples)
    FRAME_TOO_LARGE = "FRAME_TOO_LARGE"  # a binary frame above STT_MAX_FRAME_BYTES
    RATE_LIMITED = "RATE_LIMITED"  # audio much faster than real time; the frame was dropped
    READ_ONLY = "READ_ONLY"  # anything but ping on the captions endpoint
    FORBIDDEN = "FORBIDDEN"
    ACCESS_REVOKED = "ACCESS_REVOKED"  # the share token was rotated or the member removed: closed with 4403
    TOO_MANY_STREAMS = "TOO_MANY_STREAMS"
    ALREADY_STREAMING = "ALREADY_STREAMING"
    ENGINE_UNAVAILABLE = "ENGINE_UNAVAILABLE"
    ENGINE_CRASHED = "ENGINE_CRASHED"  # the engine died; a fresh one took over
    ENGINE_ERROR = "ENGINE_ERROR"  # (sent by the engine) it failed on some audio in a way no check foresaw
    IDLE_TIMEOUT = "IDLE_TIMEOUT"
    SESSION_TOO_LONG = "SESSION_TOO_LONG"
    SESSION_ENDED = "SESSION_ENDED"  # the session was ended: the stream is stopped, closed with 4410
    BAD_RESUME = "BAD_RESUME"  # stt_start's resume names no stream held here for this speaker: a fresh one starts


class CloseCode:
    FORBIDDEN = 4403
    IDLE_TIMEOUT = 4408
    ALREADY_STREAMING = 4409
    SESSION_ENDED = 4410
    SESSION_TOO_LONG = 4413
    TOO_MANY_STREAMS = 4429
    ENGINE_UNAVAILABLE = 4503


class ProtocolError(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def parse_client_message(text: str) -> dict[str, Any]:
    """Decode a JSON text frame into a dict with a string ``type``, or raise ``ProtocolError``.

    Any text is refused with ``BAD_MESSAGE``, never an exception: nesting deep enough to exhaust
    the parser's recursion, integers past Python's digit limit and frames above
    ``MAX_TEXT_FRAME_CHARS`` included.
    """
    if text is not None and len(text) > MAX_TEXT_FRAME_CHARS:
        raise ProtocolError(ErrorCode.BAD_MESSAGE, f"Text frames may hold at most {MAX_TEXT_FRAME_CHARS} characters.")
    try:
        message = json.loads(text)
    except (ValueError, TypeError, RecursionError):  # (JSONDecodeError is a ValueError)
        raise ProtocolError(ErrorCode.BAD_MESSAGE, "Text frames must be JSON objects.") from None
    if not isinstance(message, dict) or not isinstance(message.get("type"), str):
        raise ProtocolError(ErrorCode.BAD_MESSAGE, 'A message must be a JSON object with a "type".')
    return message


def parse_start(message: dict[str, Any], default_language: str) -> tuple[int, str]:
    """Return ``(sample_rate, language)`` of an ``stt_start`` message."""
    sample_rate = message.get("sample_rate", 16000)
    if isinstance(sample_rate, bool) or not isinstance(sample_rate, int) or not 8000 <= sample_rate <= 48000:
        raise ProtocolError(ErrorCode.BAD_START, "sample_rate must be an integer from 8000 to 48000.")
    requested = message.get("language")
    language = normalize_language(default_language if requested is None else requested)
    if language is None:
        shown = repr(requested[:20]) if isinstance(requested, str) else f"a {type(requested).__name__}"
        raise ProtocolError(
            ErrorCode.BAD_START,
            f'language must be "auto" or one of Whisper\'s language codes such as "en", not {shown}.',
        )
    return sample_rate, language


def parse_diarize(message: dict[str, Any], room_microphone: bool) -> bool:
    """Whether an ``stt_start``'s stream is diarized (its utterances get speaker labels ``S1``, ``S2``, ...).

    ``"diarize": true|false`` decides; without it, the session's ``room_microphone`` setting does.
    """
    diarize = message.get("diarize")
    if diarize is None:
        return room_microphone
    if not isinstance(diarize, bool):
        shown = repr(diarize[:20]) if isinstance(diarize, str) else f"a {type(diarize).__name__}"
        raise ProtocolError(ErrorCode.BAD_START, f"diarize must be true or false, not {shown}.")
    return diarize


@dataclass(frozen=True)
class ResumeRequest:
    """``stt_start``'s ``resume``: the stream to continue, and how many of its samples the client saw acknowledged."""

    stream_id: str
    samples: int


def parse_resume(message: dict[str, Any]) -> ResumeRequest | None:
    """The ``resume`` of an ``stt_start``, ``None`` without one; ``BAD_RESUME`` when malformed."""
    resume = message.get("resume")
    if resume is None:
        return None
    stream_id = resume.get("stream_id") if isinstance(resume, dict) else None
    samples = resume.get("samples") if isinstance(resume, dict) else None
    if (
        not isinstance(stream_id, str)
        or not 0 < len(stream_id) <= 64
        or isinstance(samples, bool)
        or not isinstance(samples, int)
        or samples < 0
    ):
        raise ProtocolError(
            ErrorCode.BAD_RESUME, 'resume must be {"stream_id": "<id>", "samples": <count of samples, 0 or more>}.'
        )
    return ResumeRequest(stream_id, samples)


def error_message(code: str, text: str, **extra: Any) -> dict[str, Any]:
    return {"type": "stt_error", "code": code, "error": text, **extra}
