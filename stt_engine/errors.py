"""Exceptions raised by the speech engine; each carries a protocol error ``code``."""

from __future__ import annotations

__all__ = [
    "AudioFormatError",
    "EngineCrashedError",
    "EngineUnavailableError",
    "SessionClosedError",
    "SttEngineError",
]


class SttEngineError(Exception):
    """Base class of engine errors. ``code`` is the ``stt_error`` code to send to clients."""

    code: str = "ENGINE_ERROR"

    def __init__(self, message: str, code: str | None = None) -> None:
        super().__init__(message)
        if code is not None:
            self.code = code

    @property
    def message(self) -> str:
        """The readable message (the ``error`` field of ``stt_error``)."""
        return str(self.args[0]) if self.args else ""


class AudioFormatError(SttEngineError, ValueError):
    """Audio that is not PCM s16le mono bytes: wrong type, odd byte count, bad sample rate."""

    code = "BAD_AUDIO"


class SessionClosedError(SttEngineError, RuntimeError):
    """Audio or a command arrived for a session that was stopped or never started."""

    code = "NOT_STARTED"


class EngineCrashedError(SttEngineError, RuntimeError):
    """The engine child process died; the caller should replace it."""

    code = "ENGINE_CRASHED"


class EngineUnavailableError(SttEngineError, RuntimeError):
    """No warm engine process became ready in time."""

    code = "ENGINE_UNAVAILABLE"
