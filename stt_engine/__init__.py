"""Streaming speech engine: PCM audio in, transcription protocol events out.

A pure-Python library (no Django). :class:`StreamingSession` runs in-process;
:class:`EngineProcess` hosts one session in a child process and :class:`EnginePool`
keeps warm children with their models loaded.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from . import events
from .audio import PcmConverter
from .config import ENGINE_SAMPLE_RATE, PER_STREAM_SETTINGS, EngineConfig
from .errors import (
    AudioFormatError,
    EngineCrashedError,
    EngineUnavailableError,
    SessionClosedError,
    SttEngineError,
)
from .load import SharedDecodeLoad
from .process_host import EnginePool, EngineProcess

if TYPE_CHECKING:
    from .recognizer import EngineModels, load_models
    from .session import SessionStats, StreamingSession

_LAZY = {
    "EngineModels": "recognizer",
    "load_models": "recognizer",
    "SessionStats": "session",
    "StreamingSession": "session",
}

__all__ = [
    "ENGINE_SAMPLE_RATE",
    "PER_STREAM_SETTINGS",
    "AudioFormatError",
    "EngineConfig",
    "EngineCrashedError",
    "EngineModels",
    "EnginePool",
    "EngineProcess",
    "EngineUnavailableError",
    "PcmConverter",
    "SessionClosedError",
    "SessionStats",
    "SharedDecodeLoad",
    "StreamingSession",
    "SttEngineError",
    "events",
    "load_models",
]


def __getattr__(name: str) -> Any:
    # The in-process engine pulls in torch and faster-whisper; import it only when asked,
    # so that a web server that only uses EngineProcess/EnginePool stays light.
    if name in _LAZY:
        module = importlib.import_module(f".{_LAZY[name]}", __name__)
        return getattr(module, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
