"""The events of OpenAI's Realtime API for transcription: parsing client events, building server events.

Pure functions and small dataclasses, no I/O: ``realtime.py`` (the consumer) calls them. The
shapes follow OpenAI's API reference, and every server event built here parses into the typed
models of the official ``openai`` SDK (``openai.types.realtime``).

Client events: ``session.update`` (GA shape: ``session.type = "transcription"``,
``session.audio.input.format``/``transcription``/``turn_detection``), the older
``transcription_session.update`` (``input_audio_format``, ``input_audio_transcription``,
``turn_detection`` at the top of ``session``), ``input_audio_buffer.append`` (base64 PCM16),
``input_audio_buffer.commit`` and ``input_audio_buffer.clear``.
"""

from __future__ import annotations

import base64
import binascii
import json
import uuid
from dataclasses import dataclass, field, replace
from typing import Any

from stt_engine.languages import normalize_language

__all__ = [
    "MAX_EVENT_CHARS",
    "SUPPORTED_RATES",
    "ItemText",
    "RealtimeConfig",
    "RealtimeError",
    "VadSettings",
    "apply_session_update",
    "beta_session_object",
    "client_event_id",
    "decode_audio",
    "error_event",
    "new_id",
    "parse_client_event",
    "server_event",
    "session_object",
]

# daphne refuses messages above 1 MiB before the consumer sees them; a second of 24 kHz audio
# is 64 KiB of base64, so appends of a few seconds fit.
MAX_EVENT_CHARS = 1024 * 1024
SUPPORTED_RATES = (24000, 16000)  # OpenAI's only rate, and the rate our engine and pages use
CLIENT_EVENT_TYPES = (
    "session.update",
    "transcription_session.update",
    "input_audio_buffer.append",
    "input_audio_buffer.commit",
    "input_audio_buffer.clear",
)


class RealtimeError(Exception):
    """A client event that cannot be honoured: answered with an ``error`` event, the connection stays."""

    def __init__(self, code: str, message: str, param: str | None = None, event_id: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.param = param
        self.event_id = event_id  # the client event it answers, when known


def new_id(prefix: str) -> str:
    """An id like OpenAI's (``event_…``, ``item_…``, ``sess_…``)."""
    return f"{prefix}_{uuid.uuid4().hex[:20]}"


@dataclass(frozen=True)
class VadSettings:
    """What the stream's VAD applies (the server's settings, or the client's turn_detection): reported back."""

    threshold: float
    prefix_padding_ms: int
    silence_duration_ms: int

    def as_turn_detection(self) -> dict[str, Any]:
        return {
            "type": "server_vad",
            "threshold": self.threshold,
            "prefix_padding_ms": self.prefix_padding_ms,
            "silence_duration_ms": self.silence_duration_ms,
        }


@dataclass(frozen=True)
class RealtimeConfig:
    """A realtime transcription session's configuration, as the client set it."""

    sample_rate: int = 24000
    model: str = "whisper-1"
    language: str | None = None  # None: the server's default ("auto" unless configured)
    prompt: str = ""  # accepted and echoed; the live engine takes no prompt
    server_vad: bool = True  # False: turn_detection null, the client commits
    # The engine settings (stt_engine.PER_STREAM_SETTINGS) that the client's turn_detection sets.
    engine_vad: dict[str, float] = field(default_factory=dict)
    configured: bool = False  # a session.update was accepted (audio is refused before)
    include: list[str] = field(default_factory=list)


def parse_client_event(text: str | None) -> dict[str, Any]:
    """Decode a text frame into a client event (a dict with a string ``type``).

    Raises:
        RealtimeError: not JSON, not an object with a ``type``, or too big.
    """
    if text is None:
        raise RealtimeError("invalid_value", "Binary frames are not supported; send JSON events.")
    if len(text) > MAX_EVENT_CHARS:
        raise RealtimeError("invalid_value", f"Events may hold at most {MAX_EVENT_CHARS} characters.")
    try:
        event = json.loads(text)
    except (ValueError, TypeError, RecursionError):
        raise RealtimeError("invalid_json", "The event is not valid JSON.") from None
    if not isinstance(event, dict) or not isinstance(event.get("type"), str):
        raise RealtimeError("invalid_value", 'An event must be a JSON object with a string "type".', "type")
    if event["type"] not in CLIENT_EVENT_TYPES:
        supported = ", ".join(f"'{name}'" for name in CLIENT_EVENT_TYPES)
        raise RealtimeError(
            "invalid_value",
            f"Invalid value: {event['type'][:60]!r}. Supported values for a transcription session are: {supported}.",
            "type",
            client_event_id(event),
        )
    return event


def client_event_id(event: Any) -> str | None:
    """The client's ``event_id``, echoed in an ``error`` about that event."""
    value = event.get("event_id") if isinstance(event, dict) else None
    return value if isinstance(value, str) else None


def _object(value: Any, param: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise RealtimeError("invalid_type", f"{param} must be an object.", param)
    return value


def _rate(format_: Any, param: str) -> int | None:
    if format_ is None:
        return None
    if isinstance(format_, str):  # the older shape: "pcm16" (24 kHz)
        if format_ != "pcm16":
            raise RealtimeError("invalid_value", f"Only 'pcm16' audio is supported, not {format_[:30]!r}.", param)
        return 24000
    format_ = _object(format_, param)
    if format_.get("type", "audio/pcm") != "audio/pcm":
        raise RealtimeError("invalid_value", "Only 'audio/pcm' (16-bit little-endian mono) is supported.", param)
    rate = format_.get("rate", 24000)
    if isinstance(rate, bool) or rate not in SUPPORTED_RATES:
        raise RealtimeError("invalid_value", "The audio rate must be 24000 or 16000.", f"{param}.rate")
    return int(rate)


# turn_detection's fields -> the engine's per-stream settings: (engine name, lowest, highest, conversion).
# OpenAI's threshold is the speech probability to exceed; the engine's Silero sensitivity is 1 - it.
_VAD_FIELDS: dict[str, tuple[str, float, float, Any]] = {
    "threshold": ("silero_sensitivity", 0.01, 0.99, lambda value: round(1.0 - value, 4)),
    "prefix_padding_ms": ("pre_recording_buffer_s", 0, 5000, lambda value: value / 1000),
    "silence_duration_ms": ("post_speech_silence_s", 100, 10000, lambda value: value / 1000),
}


def _turn_detection(value: Any, param: str) -> tuple[bool, dict[str, float]]:
    """Whether the session uses server VAD (``null`` means the client commits), and the engine
    settings its fields set (a field left out keeps the server's value)."""
    if value is None:
        return False, {}
    value = _object(value, param)
    kind = value.get("type", "server_vad")
    if kind not in ("server_vad", "semantic_vad"):  # (semantic VAD is served by the same VAD)
        raise RealtimeError("invalid_value", "turn_detection.type must be 'server_vad' or null.", f"{param}.type")
    engine: dict[str, float] = {}
    for key, (engine_key, lowest, highest, convert) in _VAD_FIELDS.items():
        number = value.get(key)
        if number is None:
            continue
        if isinstance(number, bool) or not isinstance(number, int | float) or not lowest <= number <= highest:
            raise RealtimeError(
                "invalid_value", f"turn_detection.{key} must be a number from {lowest} to {highest}.", f"{param}.{key}"
            )
        engine[engine_key] = convert(number)
    return True, engine


def apply_session_update(config: RealtimeConfig, event: dict[str, Any]) -> RealtimeConfig:
    """The configuration after a ``session.update`` or ``transcription_session.update``.

    Fields that are absent keep their value; ``turn_detection: null`` turns server VAD off.

    Raises:
        RealtimeError: a field with a value this server cannot honour (nothing changes).
    """
    session = _object(event.get("session"), "session")
    if event["type"] == "session.update":
        if session.get("type", "transcription") != "transcription":
            raise RealtimeError(
                "invalid_value",
                "Only transcription sessions are served here (session.type 'transcription').",
                "session.type",
            )
        audio_input = _object(_object(session.get("audio"), "session.audio").get("input"), "session.audio.input")
        prefix = "session.audio.input"
        format_key, transcription_key = "format", "transcription"
    else:
        audio_input, prefix = session, "session"
        format_key, transcription_key = "input_audio_format", "input_audio_transcription"
    changes: dict[str, Any] = {"configured": True}
    rate = _rate(audio_input.get(format_key), f"{prefix}.{format_key}")
    if rate is not None:
        changes["sample_rate"] = rate
    if transcription_key in audio_input:
        transcription = _object(audio_input[transcription_key], f"{prefix}.{transcription_key}")
        model = transcription.get("model", config.model)
        if not isinstance(model, str) or not model.strip():
            raise RealtimeError(
                "invalid_value", "transcription.model must be a model name.", f"{prefix}.{transcription_key}.model"
            )
        changes["model"] = model.strip()
        language = transcription.get("language")
        if language is not None:
            code = normalize_language(language)
            if code is None:
                raise RealtimeError(
                    "invalid_value",
                    "transcription.language must be an ISO-639-1 code such as 'en'.",
                    f"{prefix}.{transcription_key}.language",
                )
            changes["language"] = code
        prompt = transcription.get("prompt")
        if prompt is not None:
            if not isinstance(prompt, str):
                raise RealtimeError(
                    "invalid_type", "transcription.prompt must be a string.", f"{prefix}.{transcription_key}.prompt"
                )
            changes["prompt"] = prompt
    if "turn_detection" in audio_input:
        changes["server_vad"], changes["engine_vad"] = _turn_detection(
            audio_input["turn_detection"], f"{prefix}.turn_detection"
        )
    include = session.get("include")
    if isinstance(include, list):
        changes["include"] = [name for name in include if isinstance(name, str)]
    return replace(config, **changes)


def decode_audio(event: dict[str, Any]) -> bytes:
    """The PCM16 bytes of an ``input_audio_buffer.append``.

    Raises:
        RealtimeError: ``audio`` missing, not base64, or not whole 16-bit samples.
    """
    audio = event.get("audio")
    if not isinstance(audio, str):
        raise RealtimeError("invalid_value", "input_audio_buffer.append needs 'audio': base64 PCM16.", "audio")
    try:
        data = base64.b64decode(audio, validate=True)
    except (binascii.Error, ValueError):
        raise RealtimeError("invalid_value", "'audio' is not valid base64.", "audio") from None
    if len(data) % 2:
        raise RealtimeError("invalid_value", "'audio' must hold whole 16-bit samples (an even byte count).", "audio")
    return data


def server_event(type_: str, **fields: Any) -> dict[str, Any]:
    """A server event with its own ``event_id``."""
    return {"type": type_, "event_id": new_id("event"), **fields}


def error_event(
    code: str,
    message: str,
    *,
    param: str | None = None,
    event_id: str | None = None,
    error_type: str = "invalid_request_error",
) -> dict[str, Any]:
    """An ``error`` event; ``event_id`` in ``error`` is the client event it answers."""
    return server_event(
        "error",
        error={"type": error_type, "code": code, "message": message, "param": param, "event_id": event_id},
    )


def _transcription(config: RealtimeConfig) -> dict[str, Any]:
    return {"model": config.model, "language": config.language, "prompt": config.prompt}


def session_object(config: RealtimeConfig, session_id: str, vad: VadSettings) -> dict[str, Any]:
    """The GA ``session`` of ``session.created`` / ``session.updated`` (a transcription session)."""
    return {
        "type": "transcription",
        "object": "realtime.transcription_session",
        "id": session_id,
        "audio": {
            "input": {
                "format": {"type": "audio/pcm", "rate": config.sample_rate},
                "transcription": _transcription(config),
                "turn_detection": vad.as_turn_detection() if config.server_vad else None,
                "noise_reduction": None,
            }
        },
        "include": list(config.include),
    }


def beta_session_object(config: RealtimeConfig, session_id: str, vad: VadSettings) -> dict[str, Any]:
    """The older (beta) ``session`` of ``transcription_session.created`` / ``.updated``."""
    return {
        "object": "realtime.transcription_session",
        "id": session_id,
        "input_audio_format": "pcm16",
        "input_audio_transcription": _transcription(config),
        "turn_detection": vad.as_turn_detection() if config.server_vad else None,
        "input_audio_noise_reduction": None,
        "include": list(config.include),
    }


@dataclass
class ItemText:
    """The text of one conversation item, and what of it was already sent as deltas.

    Deltas carry the live text that will not change any more (the engine's stabilized prefix),
    so their concatenation grows as the speaker talks. The completed transcript comes from the
    more accurate final model: when it begins with what the deltas said, a last delta brings the
    rest (the deltas then add up to the transcript); when the two models disagree, no delta can
    take words back, and ``completed`` is the text to keep (as OpenAI's reference says of it).
    """

    item_id: str
    finals: list[str] = field(default_factory=list)  # the final texts of the item so far
    emitted: str = ""  # the concatenation of the deltas sent
    audio_start_s: float | None = None
    audio_end_s: float | None = None
    committed: bool = False

    @property
    def transcript(self) -> str:
        return " ".join(text for text in self.finals if text)

    def _delta_to(self, text: str) -> str:
        if not text.startswith(self.emitted) or len(text) == len(self.emitted):
            return ""
        delta, self.emitted = text[len(self.emitted) :], text
        return delta

    def stabilized(self, text: str) -> str:
        """The delta for the open utterance's stabilized ``text`` ("" when nothing is new)."""
        return self._delta_to(" ".join(part for part in (self.transcript, text.strip()) if part))

    def final(self, text: str) -> str:
        """Add an utterance's final ``text``; returns the delta that completes the deltas, if any."""
        self.finals.append(text.strip())
        return self._delta_to(self.transcript)
