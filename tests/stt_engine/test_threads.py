"""Measuring the final model's thread count: the faster candidate is kept, more threads by a margin."""

from __future__ import annotations

import pytest
from faster_whisper import WhisperModel

from stt_engine import EngineConfig, load_models
from stt_engine.model_files import resolve_model_path
from stt_engine.threads import MORE_THREADS_MARGIN, choose_threads, probe_decode_s


@pytest.fixture
def loaded() -> dict[int, WhisperModel]:
    """The models this test's ``load`` created, by thread count."""
    return {}


def _load_base(loaded: dict[int, WhisperModel]):
    def load(threads: int) -> WhisperModel:
        model = WhisperModel(str(resolve_model_path("base")), device="cpu", compute_type="int8",
                             cpu_threads=threads, local_files_only=True)
        loaded[threads] = model
        return model

    return load


def test_the_probe_times_a_real_decode(loaded):
    model = _load_base(loaded)(1)
    seconds = probe_decode_s(model)
    # An encoder pass and 16 beam steps of base: milliseconds at the very least, and bounded.
    assert 0.005 < seconds < 30


def test_the_faster_thread_count_is_kept_and_more_threads_only_by_the_margin(loaded):
    model, choice = choose_threads(_load_base(loaded), (2, 1), trials=2)
    assert set(choice.seconds) == {1, 2}
    two_wins = choice.seconds[2] < choice.seconds[1] * (1.0 - MORE_THREADS_MARGIN)
    assert choice.threads == (2 if two_wins else 1)
    assert model is loaded[choice.threads]


def test_one_candidate_is_loaded_without_timing(loaded):
    model, choice = choose_threads(_load_base(loaded), (1,))
    assert (choice.threads, choice.seconds) == (1, {})
    assert model is loaded[1]
    with pytest.raises(ValueError):
        choose_threads(_load_base(loaded), (0, 1))


def test_models_loaded_with_threads_zero_measure_them():
    models = load_models(EngineConfig(cpu_threads=0))
    assert models.thread_choice is not None
    assert models.final_threads == models.thread_choice.threads
    assert models.final_threads in (1, 2)
    explicit = load_models(EngineConfig(cpu_threads=2))
    assert (explicit.final_threads, explicit.thread_choice) == (2, None)
