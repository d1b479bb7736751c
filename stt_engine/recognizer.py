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

import itertools
import math
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field, replace

import numpy as np
from faster_whisper import WhisperModel

from .config import ENGINE_SAMPLE_RATE, EngineConfig
from .load import usable_cores
from .model_files import resolve_model_path
from .threads import ThreadChoice, choose_threads

__all__ = [
    "EngineModels",
    "FinalResult",
    "RecognizedSegment",
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
    final_threads: int
    """Threads of the final model's decodes (measured when ``cpu_threads`` was 0)."""
    thread_choice: ThreadChoice | None = None
    """The measurement behind ``final_threads``, when there was one."""


def load_models(config: EngineConfig) -> EngineModels:
    """Load the partial and final models named in ``config`` from local folders.

    Args:
        config: engine settings (model names or folders, device, compute type, threads).

    Returns:
        The loaded models; one instance is shared when both names are the same. With
        ``cpu_threads=0`` the final model's thread count is measured
        (:func:`stt_engine.threads.choose_threads`, 1 or 2 threads, about 1.5 s).

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

    choice = None
    threads = config.cpu_threads
    if threads:
        final = load(config.final_model, threads)
    else:
        candidates = (1, 2) if usable_cores() >= 2 else (1,)
        final, choice = choose_threads(lambda count: load(config.final_model, count), candidates)
        threads = choice.threads
    same = config.partial_model == config.final_model
    partial = final if same else load(config.partial_model, config.partial_cpu_threads)
    return EngineModels(partial, final, config.partial_model, config.final_model, threads, choice)


@dataclass
class RecognizedWord:
    """A word with times relative to the start of the decoded audio."""

    word: str
    start: float
    end: float
    probability: float


@dataclass
class RecognizedSegment:
    """One Whisper segment of a final decode (a sentence or so) with its words."""

    text: str
    words: list[RecognizedWord] = field(default_factory=list)


def recognized_segments(segments: Iterable, context_s: float = 0.0) -> list[RecognizedSegment]:
    """faster-whisper segments as :class:`RecognizedSegment` s, word times less ``context_s``.

    A segment of punctuation alone (Whisper's "." after a timestamp token) ends the one before
    it: alone it would become an utterance that says nothing.
    """
    pieces: list[RecognizedSegment] = []
    for segment in segments:
        piece = RecognizedSegment(segment.text.strip())
        for w in segment.words or []:
            start, end = float(w.start) - context_s, float(w.end) - context_s
            piece.words.append(RecognizedWord(w.word, start, end, float(w.probability)))
        if any(ch.isalnum() for ch in piece.text):
            pieces.append(piece)
        elif pieces and piece.text:
            pieces[-1].text += piece.text
    return pieces


@dataclass
class FinalResult:
    """What the final model heard in one utterance (after hallucination guards)."""

    text: str
    language: str
    confidence: float
    words: list[RecognizedWord] = field(default_factory=list)
    dropped_segments: int = 0
    continued: bool = False
    """Decoded as the continuation of the context given to :meth:`Recognizer.final`."""
    segments: list[RecognizedSegment] = field(default_factory=list)
    """The same text and words, per Whisper segment."""


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


_TRAILING_MARKS = ".,!?;: "


def _without_prefix(segments: list, prefix: str) -> list | None:
    """Drop the words of a forced ``prefix`` from the start of decoded ``segments``.

    Returns:
        The segments of what was said after the prefix (the one it ends in rebuilt from its
        remaining words), or ``None`` when the words do not begin with the prefix.
    """
    wanted = prefix.strip()
    spoken = ""
    for index, segment in enumerate(segments):
        words = list(segment.words or [])
        for position, word in enumerate(words):
            spoken = (spoken + word.word).strip() if spoken else word.word.strip()
            if spoken == wanted or (spoken.startswith(wanted) and not spoken[len(wanted) :].strip(_TRAILING_MARKS)):
                # Found; punctuation the decode put after the prefix's last word goes with it.
                rest = words[position + 1 :]
                while rest and not rest[0].word.strip(_TRAILING_MARKS):
                    rest.pop(0)
                head = [replace(segment, text="".join(w.word for w in rest), words=rest)] if rest else []
                return head + list(segments[index + 1 :])
            if len(spoken) > len(wanted):
                return None
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
        prefix: str | None = None,
    ) -> tuple[list, object] | None:
        """One faster-whisper decode; ``None`` when the forced ``prefix`` is not found in its words."""
        cfg = self.config
        # A looping decode would otherwise run to 448 tokens (seconds with a beam); the prompt
        # (start tokens and the forced prefix) counts toward Whisper's 448 as well.
        max_new_tokens = min(400, int(8 * len(audio) / ENGINE_SAMPLE_RATE) + 24)
        if prefix:
            prefix_tokens = len(model.hf_tokenizer.encode(" " + prefix.strip()).ids)
            max_new_tokens = min(max_new_tokens, model.max_length - 8 - prefix_tokens)
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
                    prefix=prefix or None,
                    # After a forced prefix, timestamp mode tends to start over and say it again.
                    without_timestamps=bool(prefix),
                    max_new_tokens=max_new_tokens,
                    compression_ratio_threshold=cfg.compression_ratio_threshold,
                    log_prob_threshold=cfg.log_prob_threshold,
                    no_speech_threshold=cfg.no_speech_threshold,
                )
                # Without timestamps, faster-whisper decodes again from the last word's end and
                # finds words in the silence there ("Thank you."): only the first window counts,
                # and the generator stops before that second decode.
                segments = list(itertools.islice(segments, 1)) if prefix else list(segments)
            finally:
                model.encode_frames = None
        if prefix:
            segments = _without_prefix(segments, prefix)
            if segments is None:
                return None
        return segments, info

    def final(
        self,
        audio: np.ndarray,
        language: str | None = None,
        prompt: str | None = None,
        context: str | None = None,
        context_s: float = 0.0,
    ) -> FinalResult:
        """Decode a whole utterance with the accurate model (beam search, word times).

        With ``context``, the first ``context_s`` seconds of ``audio`` are the end of the
        previous utterance and ``context`` is what the previous final said there. It is forced
        as the start of the transcript (Whisper's ``prefix``), so the decoder continues a
        sentence with the audio and words it was said with, instead of starting afresh after a
        pause; only the words after it are returned. If the decode's words do not begin with
        ``context``, nothing follows it, or the short-window decode is doubtful (or the audio
        too long for one), the utterance is decoded again on its own.

        Args:
            audio: 16 kHz float32 samples of the utterance (at most 30 s), after ``context_s``
                seconds of context when ``context`` is given.
            language: a language code, or ``None``/``"auto"`` to detect it.
            prompt: text said before, given to Whisper as a prompt (no audio).
            context: the text of the previous final within the first ``context_s`` seconds.
            context_s: seconds of context audio at the start of ``audio``.

        Returns:
            The text, words (times relative to the end of the context, i.e. to the start of
            the utterance), language and a confidence (mean word probability); empty text
            when every segment was rejected.
        """
        if context:
            result = self._final(audio, language, prompt, context, context_s)
            if result is not None and result.words:
                return result
            audio = audio[round(context_s * ENGINE_SAMPLE_RATE) :]
        result = self._final(audio, language, prompt, None, 0.0)
        assert result is not None  # only a forced context can fail to be found
        return result

    def _final(
        self,
        audio: np.ndarray,
        language: str | None,
        prompt: str | None,
        context: str | None,
        context_s: float,
    ) -> FinalResult | None:
        model = self.models.final
        cfg = self.config
        duration = len(audio) / ENGINE_SAMPLE_RATE
        lang = self._language_or_none(language)
        if not model.model.is_multilingual:
            lang = "en"
        segments: list = []
        info = None
        fallback: list = []
        frames = _window_frames(cfg.final_window_factor * duration, cfg.final_window_pad_s, 0.0)
        if context and (cfg.final_window != "auto" or frames is None):
            return None  # context is only worth a short window; the utterance alone is decoded
        if cfg.final_window == "auto" and frames is not None:
            # A window of 1.3 x the audio + 2 s measured as accurate as 30 s on the dev set
            # at half the cost. Greedy-temperature only; anything doubtful is redone below
            # with the full window and the usual temperature fallback.
            decoded = self._transcribe_final(model, audio, lang, frames, (0.0,), prompt, context)
            if decoded is None:
                return None
            segments, info = decoded
            # Segments after the end of the audio are the window being filled, not speech.
            segments = [s for s in segments if s.start < duration - 0.1]
            doubtful = not segments or any(
                not self._keep(s) or s.avg_logprob < cfg.log_prob_threshold for s in segments
            )
            if doubtful and context:
                # With the full window and no timestamps Whisper adds words after the end
                # ("Thanks for watching."); the utterance alone is decoded instead.
                return None
            if doubtful:
                fallback = [s for s in segments if self._keep(s)]
                segments, info = [], None
            else:
                segments = self._cut_trailing_repetition(segments)
        if info is None:
            # Never with a context: it returned above when the short window was not enough.
            decoded = self._transcribe_final(model, audio, lang, None, cfg.final_temperatures, prompt)
            assert decoded is not None
            segments, info = decoded
            if fallback and not any(self._keep(s) for s in segments):
                segments = fallback
        kept = [s for s in segments if self._keep(s)]
        pieces = recognized_segments(kept, context_s)
        words = [w for piece in pieces for w in piece.words]
        text = " ".join(piece.text for piece in pieces)
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
            continued=bool(context),
            segments=pieces,
        )
