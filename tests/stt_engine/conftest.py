"""Engine test fixtures: the models are loaded once per test run and shared."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from stt_engine import EngineConfig, EngineModels, StreamingSession, events, load_models
from tests.speech import Clip, dev_clip

from .streaming import no_decode_time, read_pcm, stream

# A spread of speakers and sources from the dev set, 53 s in all.
WER_CLIPS = (
    "jfk_inaugural_1961",
    "librivox_sense_and_sensibility_01_0870",
    "ls_dev-clean_1988-24833-0001",
    "ls_dev-clean_2412-153948-0002",
    "ls_dev-clean_3752-4944-0000",
    "ls_test-other_1688-142285-0003",
    "ls_test-other_1998-15444-0001",
    "ls_test-other_3331-159605-0002",
)


@pytest.fixture(scope="session")
def engine_config() -> EngineConfig:
    return EngineConfig(cpu_threads=2)


@pytest.fixture(scope="session")
def engine_models(engine_config: EngineConfig) -> EngineModels:
    return load_models(engine_config)


@pytest.fixture
def make_session(engine_config: EngineConfig, engine_models: EngineModels) -> Callable[..., StreamingSession]:
    def make(sample_rate: int = 16000, language: str = "en", config: EngineConfig | None = None) -> StreamingSession:
        return StreamingSession(
            config or engine_config,
            sample_rate=sample_rate,
            language=language,
            models=engine_models,
            timer=no_decode_time,
        )

    return make


@pytest.fixture(scope="session")
def dev_runs(engine_config: EngineConfig, engine_models: EngineModels) -> list[tuple[Clip, list[events.Event]]]:
    """Each WER clip streamed once in 40 ms chunks (with 0.5 s before and 1.5 s after)."""
    runs = []
    for name in WER_CLIPS:
        clip = dev_clip(name)
        session = StreamingSession(
            engine_config, sample_rate=16000, language="en", models=engine_models, timer=no_decode_time
        )
        runs.append((clip, stream(session, read_pcm(clip.path))))
    return runs
