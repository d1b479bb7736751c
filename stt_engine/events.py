"""Events a streaming session emits, one dataclass per WebSocket protocol message.

Every event has a class-level ``type`` (the protocol name) and :meth:`Event.to_message`,
which returns the JSON-able payload. ``at`` is the stream time in seconds (audio fed since
the stream began) at which the event was produced. Events are plain picklable dataclasses so
that they cross process boundaries.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, ClassVar

__all__ = [
    "STATES",
    "EngineError",
    "Event",
    "Final",
    "PartialUpdate",
    "RecordingStart",
    "RecordingStop",
    "Revised",
    "Stabilized",
    "StateChanged",
    "VadStart",
    "VadStop",
    "Word",
]

STATES = ("idle", "listening", "recording", "transcribing")


@dataclass
class Event:
    """Base class of all engine events."""

    type: ClassVar[str] = "stt_event"
    at: float = field(default=0.0, kw_only=True)

    def to_message(self) -> dict[str, Any]:
        """Return the protocol payload: ``{"type": ..., **fields}`` (JSON-able)."""
        payload = asdict(self)
        payload["at"] = round(float(payload["at"]), 3)
        return {"type": self.type, **payload}


@dataclass
class StateChanged(Event):
    """The engine state changed: ``idle``, ``listening``, ``recording`` or ``transcribing``."""

    type: ClassVar[str] = "stt_state"
    state: str = "idle"


@dataclass
class VadStart(Event):
    """Voice activity began (the start of an utterance)."""

    type: ClassVar[str] = "stt_vad_start"


@dataclass
class VadStop(Event):
    """Voice activity ended (post-speech silence elapsed, flush, or a forced cut)."""

    type: ClassVar[str] = "stt_vad_stop"


@dataclass
class RecordingStart(Event):
    """An utterance started recording; ``start`` is its first sample on the stream clock."""

    type: ClassVar[str] = "stt_recording_start"
    start: float = 0.0


@dataclass
class RecordingStop(Event):
    """The utterance stopped recording; ``end`` is its last sample on the stream clock."""

    type: ClassVar[str] = "stt_recording_stop"
    end: float = 0.0


@dataclass
class PartialUpdate(Event):
    """Unstable live text of the current utterance (stabilized prefix + current guess)."""

    type: ClassVar[str] = "stt_update"
    text: str = ""


@dataclass
class Stabilized(Event):
    """All text of the current utterance that will not change any more (only ever grows)."""

    type: ClassVar[str] = "stt_stabilized"
    text: str = ""


@dataclass
class Word:
    """One recognized word with its times (stream seconds) and probability."""

    word: str
    start: float
    end: float
    probability: float


@dataclass
class Final(Event):
    """The final transcript of one utterance from the accurate model.

    ``speaker_label`` is the diarizer's "S1", "S2"... on a diarized stream, "" otherwise.
    """

    type: ClassVar[str] = "stt_final"
    text: str = ""
    start: float = 0.0
    end: float = 0.0
    words: list[Word] = field(default_factory=list)
    language: str = ""
    confidence: float = 0.0
    model: str = ""
    utterance_index: int = 0
    speaker_label: str = ""

    def to_message(self) -> dict[str, Any]:
        """Return the ``stt_final`` payload with rounded times."""
        message = super().to_message()
        message["start"] = round(self.start, 3)
        message["end"] = round(self.end, 3)
        message["confidence"] = round(self.confidence, 4)
        message["words"] = [
            {
                "word": w.word,
                "start": round(w.start, 3),
                "end": round(w.end, 3),
                "probability": round(w.probability, 4),
            }
            for w in self.words
        ]
        return message


@dataclass
class Revised(Event):
    """A turn decoded again as one window with context: ``utterances`` replace the finals ``replaces``.

    ``replaces`` holds the ``utterance_index`` of each final of the turn (finals with no text
    never existed for the client, so they are not listed). ``utterances`` are finals in
    order; their ``utterance_index`` is that of the first final they replace.
    """

    type: ClassVar[str] = "stt_revised"
    replaces: list[int] = field(default_factory=list)
    utterances: list[Final] = field(default_factory=list)

    def to_message(self) -> dict[str, Any]:
        """Return the ``stt_revised`` payload: each utterance as an ``stt_final`` without its type."""
        utterances = []
        for utterance in self.utterances:
            message = utterance.to_message()
            del message["type"]
            utterances.append(message)
        return {"type": self.type, "replaces": list(self.replaces), "utterances": utterances, "at": round(self.at, 3)}


@dataclass
class EngineError(Event):
    """An error to report to the client (``stt_error``); the stream may go on."""

    type: ClassVar[str] = "stt_error"
    code: str = "ENGINE_ERROR"
    message: str = ""

    def to_message(self) -> dict[str, Any]:
        """Return ``{"type": "stt_error", "code": ..., "error": ..., "at": ...}``."""
        return {"type": self.type, "code": self.code, "error": self.message, "at": round(self.at, 3)}
