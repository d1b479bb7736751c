"""How many threads the final model decodes with: measured on this machine, not guessed.

Whether a second thread speeds a final decode up depends on the cores. A final decode is an
encoder pass and then a beam search of many small matrix products, where threads spend much
of their time waiting for each other. On one 2-core machine of ours two threads made finals
faster (stream bench, 1 speaker: median 1.12 -> 0.86 s); on another, one thread decoded 5 s of
speech in 0.15 s and two threads in 0.22 s. With ``EngineConfig.cpu_threads=0`` the engine
loads the final model once per candidate, times the same synthetic decode on each, and keeps
the fastest. More threads must win by :data:`MORE_THREADS_MARGIN`, since every thread of a
decode is a core that the other speakers' decodes cannot use meanwhile.

Example::

    model, choice = choose_threads(lambda n: WhisperModel(path, cpu_threads=n), (1, 2))
    print(choice.threads, choice.seconds)
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TypeVar

import numpy as np
from faster_whisper import WhisperModel

__all__ = ["MORE_THREADS_MARGIN", "ThreadChoice", "choose_threads", "probe_decode_s"]

MORE_THREADS_MARGIN = 0.15
"""A candidate with more threads is kept only if it decodes at least this much faster."""

_PROBE_FRAMES = 800  # an 8 s encoder window: the short window of a 5 s utterance
_PROBE_TOKENS = 16

Model = TypeVar("Model", bound=WhisperModel)


@dataclass
class ThreadChoice:
    """The thread count kept, and the best probe time measured for each candidate."""

    threads: int
    seconds: dict[int, float]


def probe_decode_s(model: WhisperModel) -> float:
    """Seconds one synthetic final decode takes on ``model``.

    The decode is what a final costs: an 8 s window through the encoder, then a beam search
    of 5. The features are fixed noise and the end of text is suppressed, so every probe
    generates the same number of tokens whatever the model makes of the noise.
    """
    tokenizer = model.hf_tokenizer
    prompt = [
        tokenizer.token_to_id(token)
        for token in ("<|startoftranscript|>", "<|en|>", "<|transcribe|>", "<|notimestamps|>")
    ]
    if not model.model.is_multilingual:
        prompt = [prompt[0], prompt[3]]
    end_of_text = tokenizer.token_to_id("<|endoftext|>")
    mels = model.feature_extractor.mel_filters.shape[0]
    features = np.random.default_rng(0).uniform(-1.0, 1.0, (mels, _PROBE_FRAMES)).astype(np.float32)
    started = time.perf_counter()
    encoded = model.encode(features)
    model.model.generate(
        encoded,
        [prompt],
        beam_size=5,
        max_length=len(prompt) + _PROBE_TOKENS,
        suppress_tokens=[-1, end_of_text],
        suppress_blank=False,
    )
    return time.perf_counter() - started


def choose_threads(
    load: Callable[[int], Model], candidates: Sequence[int], trials: int = 3
) -> tuple[Model, ThreadChoice]:
    """Load a model per thread count, time each, and keep the fastest.

    The candidates are timed in turn, ``trials`` rounds after one warm-up round, and each
    keeps its best time, so that a moment of load from elsewhere does not decide. A
    candidate with more threads than the best one so far replaces it only when it is at
    least :data:`MORE_THREADS_MARGIN` faster.

    Args:
        load: loads the model with the given number of threads.
        candidates: thread counts to try, e.g. ``(1, 2)``; one candidate is loaded untimed.
        trials: timed rounds.

    Returns:
        The model loaded with the chosen thread count (the others are dropped) and the choice.
    """
    counts = sorted(set(candidates))
    if not counts or counts[0] < 1:
        raise ValueError("choose_threads needs thread counts of at least 1.")
    if len(counts) == 1:
        return load(counts[0]), ThreadChoice(counts[0], {})
    models = {count: load(count) for count in counts}
    for model in models.values():
        probe_decode_s(model)  # first-call costs (memory, kernels) are not the model's speed
    seconds = {count: float("inf") for count in counts}
    for _ in range(trials):
        for count, model in models.items():
            seconds[count] = min(seconds[count], probe_decode_s(model))
    chosen = counts[0]
    for count in counts[1:]:
        if seconds[count] < seconds[chosen] * (1.0 - MORE_THREADS_MARGIN):
            chosen = count
    return models[chosen], ThreadChoice(chosen, {count: round(s, 4) for count, s in seconds.items()})
