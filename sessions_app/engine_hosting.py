"""The engine processes of this server: one warm pool per server process, built from settings.

The pool is the one process-wide object of the live side: engine children are expensive to
start (models load for seconds), so every stream of this server takes its child from here.
"""

from __future__ import annotations

import atexit
import threading

from django.conf import settings

from stt_engine import EngineConfig, EnginePool, EngineProcess


def engine_config_from_settings() -> EngineConfig:
    return EngineConfig(
        partial_model=settings.STT_PARTIAL_MODEL,
        final_model=settings.STT_FINAL_MODEL,
        device=settings.STT_DEVICE,
        compute_type=settings.STT_COMPUTE_TYPE,
        cpu_threads=settings.STT_CPU_THREADS,
        language=settings.STT_DEFAULT_LANGUAGE,
        silero_sensitivity=settings.STT_SILERO_SENSITIVITY,
        webrtc_sensitivity=settings.STT_WEBRTC_SENSITIVITY,
        post_speech_silence_s=settings.STT_POST_SPEECH_SILENCE_S,
        min_utterance_s=settings.STT_MIN_UTTERANCE_S,
        pre_recording_buffer_s=settings.STT_PRE_ROLL_S,
        max_utterance_s=settings.STT_MAX_UTTERANCE_S,
        beam_size=settings.STT_BEAM_SIZE,
        context_after_pause_s=settings.STT_CONTEXT_AFTER_PAUSE_S,
        refine_turns=settings.STT_REFINE_TURNS,
        turn_pause_s=settings.STT_TURN_PAUSE_S,
        refine_yield_s=settings.STT_REFINE_YIELD_S,
    ).validate()


class _PoolHolder:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pool: EnginePool | None = None

    def get(self) -> EnginePool:
        with self._lock:
            if self._pool is None:
                self._pool = EnginePool(
                    engine_config_from_settings(), size=settings.STT_WARM_ENGINES,
                    max_streams=settings.STT_ENGINE_MAX_STREAMS, max_age_s=settings.STT_ENGINE_MAX_AGE_S,
                )
                atexit.register(self._pool.close)
            return self._pool

    def close(self) -> None:
        with self._lock:
            if self._pool is not None:
                self._pool.close()
                self._pool = None


_holder = _PoolHolder()


def start_warming() -> None:
    """Load the warm engines in the background, so that the first speaker does not wait."""
    if settings.STT_WARM_ENGINES > 0:
        _holder.get()


def engine_pool() -> EnginePool:
    """This server's pool (created on first use)."""
    return _holder.get()


def acquire_engine() -> EngineProcess:
    """A ready engine process for one stream (blocking: call it from a thread)."""
    return _holder.get().acquire(timeout=settings.STT_ENGINE_WAIT_S)


def engine_returning(engine: EngineProcess) -> None:
    """The engine's stream is ending; it will be released soon (the pool counts it as a spare)."""
    _holder.get().returning(engine)


def release_engine(engine: EngineProcess) -> None:
    """Give back an engine whose stream is over, or that crashed (blocking: call it from a thread).

    The pool resets it for the next stream, or closes and replaces it.
    """
    _holder.get().release(engine)


def close_pool() -> None:
    _holder.close()
