"""Whisper decoding for partials (fast model) and finals (accurate model).

Both models are faster-whisper ``WhisperModel`` instances loaded from local CTranslate2
folders (:func:`stt_engine.model_files.resolve_model_path`; nothing is downloaded).
Whisper's encoder normally sees a 30 s window even for one second of speech, which makes
every decode cost the same ~0.3-0.5 s. CTranslate2 accepts fewer mel frames, so the
recognizer can trim the encoder window to the audio plus some padding
(:class:`WindowedWhisperModel`); partials always use it, finals when ``final_window`` is
``"auto"`` and the utterance is long enough for the short window to be safe.
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass, field, replace

import numpy as np
from faster_whisper import WhisperModel

from .config import ENGINE_SAMPLE_RATE, EngineConfig
from .model_files import resolve_model_path

__all__ = [
    "EngineModels",
    "FinalResult",
    "RecognizedWord",
    "Recognizer",
    "WindowedWhisperModel",
    "load_models",
    "trailing_repetition",
    "trim_repetitions",
]

_FRAMES_PER_SECOND = 100
_FULL_WINDOW_FRAMES = 3000


class WindowedWhisperModel(WhisperModel):
    """A ``WhisperModel`` whose encoder can be given fewer than 3000 mel frames.

    faster-whisper pads every segment to 30 s before encoding; when ``encode_frames`` is
    set, :meth:`encode` cuts that padding back to ``encode_frames`` frames. Callers set it
    under :attr:`lock` for the duration of one ``transcribe`` call.
    """

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.encode_frames: int | None = None
        self.lock = threading.Lock()

    def encode(self, features: np.ndarray):
        """Encode mel features, trimmed to ``encode_frames`` when it is set."""
        if self.encode_frames is not None and features.shape[-1] > self.encode_frames:
            features = np.ascontiguousarray(features[..., : self.encode_frames])
        return super().encode(features)


@dataclass
class EngineModels:
    """The Whisper models one engine process holds (shared by its sessions)."""

    partial: WindowedWhisperModel
    final: WindowedWhisperModel
    partial_name: str
    final_name: str


def load_models(config: EngineConfig) -> EngineModels:
    """Load the partial and final models named in ``config`` from local folders.

    Args:
        config: engine settings (model names or folders, device, compute type, threads).

    Returns:
        The loaded models; one instance is shared when both names are the same.

    Raises:
        stt_engine.model_files.ModelNotAvailableError: a model is not installed.
    """

    def load(name: str, threads: int) -> WindowedWhisperModel:
        return WindowedWhisperModel(
            str(resolve_model_path(name)),
            device=config.device,
            compute_type=config.compute_type,
            cpu_threads=threads,
            local_files_only=True,
        )

    final = load(config.final_model, config.cpu_threads)
    same = config.partial_model == config.final_model
    partial = final if same else load(config.partial_model, config.partial_cpu_threads)
    return EngineModels(partial, final, config.partial_model, config.final_model)


@dataclass
class RecognizedWord:
    """A word with times relative to the start of the decoded audio."""

    word: str
    start: float
    end: float
    probability: float


@dataclass
class FinalResult:
    """What the final model heard in one utterance (after hallucination guards)."""

    text: str
    language: str
    confidence: float
    words: list[RecognizedWord] = field(default_factory=list)
    dropped_segments: int = 0


def _window_frames(duration_s: float, pad_s: float, minimum_s: float) -> int | None:
    seconds = max(duration_s + pad_s, minimum_s)
    frames = math.ceil(seconds * _FRAMES_PER_SECOND)
    frames += frames % 2
    return None if frames >= _FULL_WINDOW_FRAMES else frames


def trim_repetitions(text: str, max_ngram: int = 8) -> str:
    """Cut a hypothesis at the first immediate repetition (a Whisper failure mode).

    A phrase of 2 or more words said twice in a row, or one word said three times in a row,
    ends the text after its first occurrence.

    Args:
        text: hypothesis text.
        max_ngram: longest repeated phrase looked for, in words.

    Returns:
        The text up to and including the first occurrence of the repeated phrase.
    """
    words = text.split()
    keys = [w.lower().strip(".,!?;:\"'-") for w in words]
    for i in range(len(words)):
        for n in range(1, max_ngram + 1):
            if i + 2 * n > len(words):
                break
            if keys[i : i + n] != keys[i + n : i + 2 * n]:
                continue
            if n == 1 and keys[i + 2 : i + 3] != keys[i : i + 1]:
                continue
            return " ".join(words[: i + n])
    return text


def trailing_repetition(words: list[str], min_ngram: int = 2) -> int | None:
    """Find a phrase repeated back to back up to the end of the text (a filled window).

    Args:
        words: the words of a hypothesis.
        min_ngram: shortest phrase considered, in words.

    Returns:
        How many words to keep (the text up to the end of the phrase's first occurrence), or
        ``None`` when the text does not end in such a repetition.
    """
    keys = [w.lower().strip(".,!?;:\"'-") for w in words]
    total = len(keys)
    for start in range(total):
        for n in range(min_ngram, total - start):
            phrase = keys[start : start + n]
            rest = keys[start + n :]
            # The last copy may be cut short, but it must be long enough to be telling.
            if len(rest) >= min(n, 3) and all(rest[k] == phrase[k % n] for k in range(len(rest))):
                return start + n
    return None


class Recognizer:
    """Runs partial and final decodes with the settings of one :class:`EngineConfig`."""

    def __init__(self, config: EngineConfig, models: EngineModels) -> None:
        self.config = config
        self.models = models

    def _keep(self, segment) -> bool:
        cfg = self.config
        if segment.no_speech_prob > cfg.no_speech_threshold and segment.avg_logprob < cfg.log_prob_threshold:
            return False
        if segment.avg_logprob < cfg.min_avg_logprob:
            return False
        return segment.compression_ratio <= cfg.compression_ratio_threshold

    def partial(self, audio: np.ndarray) -> str:
        """Decode the utterance so far with the fast model (greedy, short window).

        Short encoder windows invite Whisper to repeat itself to fill the window, so the
        decode keeps timestamps, drops segments that start after the audio ends, and cuts
        immediate repetitions (:func:`trim_repetitions`).

        Args:
            audio: 16 kHz float32 samples of the current utterance.

        Returns:
            The hypothesis text, or ``""`` when the decode looks like a hallucination.
        """
        model = self.models.partial
        duration = len(audio) / ENGINE_SAMPLE_RATE
        language = "en" if not model.model.is_multilingual else self._language_or_none()
        with model.lock:
            model.encode_frames = _window_frames(
                duration, self.config.partial_window_pad_s, self.config.partial_min_window_s
            )
            try:
                segments, _info = model.transcribe(
                    audio,
                    language=language,
                    beam_size=1,
                    temperature=0.0,
                    without_timestamps=False,
                    condition_on_previous_text=False,
                    vad_filter=False,
                    max_new_tokens=min(220, int(6 * duration) + 12),
                )
                kept = [
                    s.text.strip()
                    for s in segments
                    # The VAD already heard a voice, so only garbage is dropped here: Whisper's
                    # no-speech probability is high on the first syllable after a noisy pause.
                    if s.avg_logprob >= self.config.min_avg_logprob
                    and s.compression_ratio <= self.config.compression_ratio_threshold
                    and s.start < duration - 0.1
                ]
            finally:
                model.encode_frames = None
        return trim_repetitions(" ".join(t for t in kept if t))

    def _language_or_none(self, language: str | None = None) -> str | None:
        chosen = language or self.config.language
        return None if chosen in ("", "auto") else chosen

    @staticmethod
    def _cut_trailing_repetition(segments: list) -> list:
        """Drop the copies when a short window made Whisper repeat the utterance to its end."""
        words = [w for s in segments for w in (s.words or [])]
        keep = trailing_repetition([w.word for w in words]) if len(words) >= 4 else None
        if keep is None:
            return segments
        kept_words = words[:keep]
        text = "".join(w.word for w in kept_words).strip()
        first = segments[0]
        return [replace(first, text=" " + text, words=kept_words, end=kept_words[-1].end)]

    def _transcribe_final(
        self,
        model: WindowedWhisperModel,
        audio: np.ndarray,
        language: str | None,
        frames: int | None,
        temperatures: tuple[float, ...],
        prompt: str | None = None,
    ) -> tuple[list, object]:
        cfg = self.config
        with model.lock:
            model.encode_frames = frames
            try:
                segments, info = model.transcribe(
                    audio,
                    language=language,
                    beam_size=cfg.beam_size,
                    word_timestamps=True,
                    condition_on_previous_text=False,
                    vad_filter=False,
                    temperature=temperatures,
                    initial_prompt=prompt or None,
                    # A looping decode would otherwise run to 448 tokens (seconds with a beam).
                    max_new_tokens=min(400, int(8 * len(audio) / ENGINE_SAMPLE_RATE) + 24),
                    compression_ratio_threshold=cfg.compression_ratio_threshold,
                    log_prob_threshold=cfg.log_prob_threshold,
                    no_speech_threshold=cfg.no_speech_threshold,
                )
                return list(segments), info
            finally:
                model.encode_frames = None

    def final(self, audio: np.ndarray, language: str | None = None, prompt: str | None = None) -> FinalResult:
        """Decode a whole utterance with the accurate model (beam search, word times).

        Args:
            audio: 16 kHz float32 samples of the utterance (at most 30 s).
            language: a language code, or ``None``/``"auto"`` to detect it.
            prompt: text said just before (the previous final), given to Whisper as context.

        Returns:
            The text, words (times relative to ``audio``), language and a confidence
            (mean word probability); empty text when every segment was rejected.
        """
        model = self.models.final
        cfg = self.config
        duration = len(audio) / ENGINE_SAMPLE_RATE
        lang = self._language_or_none(language)
        if not model.model.is_multilingual:
            lang = "en"
        segments: list = []
        info = None
        fallback: list = []
        if cfg.final_window == "auto":
            # A window of 1.3 x the audio + 2 s measured as accurate as 30 s on the dev set
            # at half the cost. Greedy-temperature only; anything doubtful is redone below
            # with the full window and the usual temperature fallback.
            frames = _window_frames(cfg.final_window_factor * duration, cfg.final_window_pad_s, 0.0)
            if frames is not None:
                segments, info = self._transcribe_final(model, audio, lang, frames, (0.0,), prompt)
                # Segments after the end of the audio are the window being filled, not speech.
                segments = [s for s in segments if s.start < duration - 0.1]
                doubtful = not segments or any(
                    not self._keep(s) or s.avg_logprob < cfg.log_prob_threshold for s in segments
                )
                if doubtful:
                    fallback = [s for s in segments if self._keep(s)]
                    segments, info = [], None
                else:
                    segments = self._cut_trailing_repetition(segments)
        if info is None:
            segments, info = self._transcribe_final(model, audio, lang, None, cfg.final_temperatures, prompt)
            if fallback and not any(self._keep(s) for s in segments):
                segments = fallback
        kept = [s for s in segments if self._keep(s)]
        words: list[RecognizedWord] = []
        for segment in kept:
            for w in segment.words or []:
                words.append(RecognizedWord(w.word, float(w.start), float(w.end), float(w.probability)))
        text = " ".join(s.text.strip() for s in kept if s.text.strip())
        if words:
            confidence = float(np.mean([w.probability for w in words]))
        elif kept:
            confidence = float(np.exp(np.mean([s.avg_logprob for s in kept])))
        else:
            confidence = 0.0
        return FinalResult(
            text=text,
            language=info.language or (lang or ""),
            confidence=confidence,
            words=words,
            dropped_segments=len(segments) - len(kept),
        )
