"""Whole-file transcription: any audio file in, timed segments with words out.

The file is decoded once with PyAV (through faster-whisper's ``decode_audio``) to 16 kHz
mono float32: one hour is about 230 MB. faster-whisper computes the log-mel features of
everything it is given in one go, and that costs several times the audio's own size, so
long files are cut into windows of ``window_s`` seconds (at the quietest point near each
boundary, so words are not split) and each window is transcribed on its own. Peak memory
therefore depends on the window, not on the length of the file. Segments are consumed from
faster-whisper's lazy generator one at a time, and progress is reported as each finishes.

Silero VAD (faster-whisper's bundled ONNX model, nothing downloads) removes silence before
decoding, so long pauses give no hallucinated text.

With ``diarize=True`` the segments are given speaker labels ("S1", "S2"... by first appearance)
by :func:`stt_engine.diarizer.label_segments` once the whole file is transcribed (two passes over
the speaker embeddings), and a segment in which the speaker changes is split between words.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .config import ENGINE_SAMPLE_RATE
from .errors import SttEngineError
from .model_files import resolve_model_path

if TYPE_CHECKING:
    from faster_whisper import WhisperModel

    from .diarizer import VoiceEncoder

__all__ = [
    "BatchAudioError",
    "BatchResult",
    "BatchSegment",
    "Word",
    "diarized_segments",
    "iter_segments",
    "load_model",
    "probe_duration",
    "transcribe_file",
]

DEFAULT_WINDOW_S = 300.0
"""Length of the pieces a long file is transcribed in (5 min: peak memory stays well under 1 GB)."""

_CUT_SEARCH_S = 15.0
_CUT_FRAME_S = 0.1


class BatchAudioError(SttEngineError, ValueError):
    """A file that cannot be transcribed: ``code`` is ``EMPTY_FILE`` or ``NOT_AUDIO``."""

    code = "NOT_AUDIO"


@dataclass(frozen=True)
class Word:
    word: str
    start: float
    end: float
    probability: float


@dataclass(frozen=True)
class BatchSegment:
    start: float
    end: float
    text: str
    words: list[Word] = field(default_factory=list)
    speaker_label: str = ""
    """The diarizer's "S1", "S2"... when the file was diarized, "" otherwise."""

    def to_dict(self) -> dict[str, Any]:
        """The JSON form stored on a job: ``{start, end, text, words: [{word, start, end, probability}]}``,
        plus ``speaker_label`` when the segment has one."""
        data = asdict(self)
        if not self.speaker_label:
            del data["speaker_label"]
        return data


@dataclass(frozen=True)
class BatchResult:
    segments: list[BatchSegment]
    language: str
    duration_s: float


def probe_duration(path: str | os.PathLike[str]) -> float:
    """Return the duration of an audio file in seconds, checking that it really decodes.

    Args:
        path: the file to look at.

    Returns:
        The duration in seconds (from the container, or by decoding when it has none).

    Raises:
        BatchAudioError: ``EMPTY_FILE`` for a file of zero bytes, ``NOT_AUDIO`` when PyAV
            cannot open it, it has no audio stream, or no audio frame decodes.
    """
    import av

    path = Path(path)
    if not path.is_file() or path.stat().st_size == 0:
        raise BatchAudioError("The file is empty.", code="EMPTY_FILE")
    try:
        with av.open(str(path), mode="r", metadata_errors="ignore") as container:
            if not container.streams.audio:
                raise BatchAudioError("The file has no audio stream.")
            stream = container.streams.audio[0]
            duration = _declared_duration(container, stream)
            decoded_s = 0.0
            for frame in container.decode(stream):
                rate = frame.sample_rate or stream.rate or ENGINE_SAMPLE_RATE
                decoded_s += frame.samples / rate
                # A declared duration plus one good frame is enough; otherwise decode it all.
                if duration is not None and decoded_s > 0:
                    break
    except BatchAudioError:
        raise
    except (av.error.FFmpegError, UnicodeDecodeError, ValueError, OSError) as exc:
        raise BatchAudioError(f"The file is not audio that can be decoded ({exc.__class__.__name__}).") from exc
    if decoded_s <= 0:
        raise BatchAudioError("No audio could be decoded from the file.")
    return duration if duration is not None else decoded_s


def _declared_duration(container, stream) -> float | None:
    if stream.duration is not None and stream.time_base is not None:
        value = float(stream.duration * stream.time_base)
        if value > 0 and math.isfinite(value):
            return value
    if container.duration is not None and container.duration > 0:
        import av

        return container.duration / av.time_base
    return None


def load_model(
    model_path_or_name: str = "base",
    *,
    device: str = "cpu",
    compute_type: str = "int8",
    cpu_threads: int = 0,
) -> WhisperModel:
    """Load a Whisper model from a bundled name or a local CTranslate2 folder (never downloads).

    Args:
        model_path_or_name: ``"base"``, ``"tiny.en"`` or a model folder.
        device: ``"cpu"``, ``"cuda"`` or ``"auto"``.
        compute_type: CTranslate2 compute type, e.g. ``"int8"``.
        cpu_threads: intra-op threads; 0 lets CTranslate2 choose.

    Returns:
        A ready ``faster_whisper.WhisperModel``.
    """
    from faster_whisper import WhisperModel

    folder = resolve_model_path(model_path_or_name)
    return WhisperModel(
        str(folder), device=device, compute_type=compute_type, cpu_threads=cpu_threads, local_files_only=True
    )


def transcribe_file(
    path: str | os.PathLike[str],
    *,
    model_path_or_name: str = "base",
    language: str = "auto",
    device: str = "cpu",
    compute_type: str = "int8",
    cpu_threads: int = 0,
    beam_size: int = 5,
    progress: Callable[[float], None] | None = None,
    model: WhisperModel | None = None,
    window_s: float = DEFAULT_WINDOW_S,
    prompt: str | None = None,
    temperature: float = 0.0,
    diarize: bool = False,
) -> BatchResult:
    """Transcribe a whole audio file.

    Args:
        path: any format PyAV decodes (WAV, FLAC, MP3, OGG, M4A, video with audio...).
        model_path_or_name: ``"base"``, ``"tiny.en"`` or a CTranslate2 folder; ignored
            when ``model`` is given.
        language: a language code, or ``"auto"`` to detect it from the first 30 s of speech.
        device: ``"cpu"``, ``"cuda"`` or ``"auto"``.
        compute_type: CTranslate2 compute type.
        cpu_threads: intra-op threads (0: CTranslate2's choice).
        beam_size: beam width (1 is greedy: faster, slightly less accurate).
        progress: called with the fraction done (0..1) as segments finish, and with 1.0 at the end.
        model: an already loaded ``WhisperModel`` (callers keep one per process).
        window_s: the longest piece transcribed at once; bounds peak memory.
        prompt: text that comes before the audio (names, spellings, style); it conditions the
            first window, and each later window continues from its own text.
        temperature: the sampling temperature of the first attempt (0: greedy or beam). A
            segment that looks like a repetition loop or a poor guess is decoded again hotter,
            up to 1.0, in steps of 0.2 (Whisper's fallback, as OpenAI's API does).
        diarize: label each segment with its speaker (``BatchSegment.speaker_label``), splitting
            segments where the speaker changes.

    Returns:
        A :class:`BatchResult`: segments with word timings on the file's clock, the
        language (detected or given) and the duration in seconds.

    Raises:
        BatchAudioError: the file is empty or not decodable audio.
        stt_engine.model_files.ModelNotAvailableError: the model cannot be found.
        stt_engine.diarizer.DiarizerWeightsError: ``diarize`` and the voice encoder's weights are missing.
    """
    state: dict[str, Any] = {}
    segments = list(
        iter_segments(
            path,
            model_path_or_name=model_path_or_name,
            language=language,
            device=device,
            compute_type=compute_type,
            cpu_threads=cpu_threads,
            beam_size=beam_size,
            progress=progress,
            model=model,
            window_s=window_s,
            info=state,
            prompt=prompt,
            temperature=temperature,
            diarize=diarize,
        )
    )
    if progress is not None:
        progress(1.0)
    return BatchResult(segments=segments, language=state.get("language", ""), duration_s=state.get("duration_s", 0.0))


def iter_segments(
    path: str | os.PathLike[str],
    *,
    model_path_or_name: str = "base",
    language: str = "auto",
    device: str = "cpu",
    compute_type: str = "int8",
    cpu_threads: int = 0,
    beam_size: int = 5,
    progress: Callable[[float], None] | None = None,
    model: WhisperModel | None = None,
    window_s: float = DEFAULT_WINDOW_S,
    info: dict[str, Any] | None = None,
    prompt: str | None = None,
    temperature: float = 0.0,
    diarize: bool = False,
) -> Iterator[BatchSegment]:
    """Yield the segments of a file one at a time (the lazy form of :func:`transcribe_file`).

    Args:
        path, model_path_or_name, language, device, compute_type, cpu_threads, beam_size,
        progress, model, window_s, prompt, temperature, diarize: as in :func:`transcribe_file`.
            With ``diarize`` the segments come once the whole file is transcribed (the speakers
            are clustered over all of it).
        info: when given, receives ``language`` and ``duration_s`` as soon as they are known.

    Returns:
        An iterator of :class:`BatchSegment` in time order.
    """
    if diarize:
        from .diarizer import load_voice_encoder

        encoder = load_voice_encoder()  # a missing weights file fails before the long decode
    audio_of: dict[str, np.ndarray] | None = {} if diarize else None
    segments = _transcribed_segments(
        path,
        model_path_or_name,
        language,
        device,
        compute_type,
        cpu_threads,
        beam_size,
        progress,
        model,
        window_s,
        info,
        prompt,
        temperature,
        audio_of,
    )
    if audio_of is None:
        yield from segments
        return
    decoded = list(segments)  # (the speakers are clustered over the whole file)
    yield from diarized_segments(audio_of["audio"], decoded, encoder)


def diarized_segments(
    audio16k: np.ndarray, segments: list[BatchSegment], encoder: VoiceEncoder | None = None
) -> list[BatchSegment]:
    """``segments`` with speaker labels, each split where the speaker changes (between words).

    Args:
        audio16k: the file's audio, float32 at 16 kHz.
        segments: its segments in time order.
        encoder: a loaded :class:`~stt_engine.diarizer.VoiceEncoder` (the wheel's when ``None``).

    Returns:
        The labelled segments in time order.
    """
    from .diarizer import label_segments

    out = []
    for segment, runs in zip(segments, label_segments(audio16k, segments, encoder), strict=True):
        if len(runs) <= 1:
            out.append(replace(segment, speaker_label=runs[0].label))
            continue
        for run in runs:
            words = segment.words[run.first_word : run.end_word]
            out.append(
                BatchSegment(
                    start=words[0].start,
                    end=words[-1].end,
                    text="".join(w.word for w in words).strip(),
                    words=words,
                    speaker_label=run.label,
                )
            )
    return out


def _transcribed_segments(
    path: str | os.PathLike[str],
    model_path_or_name: str,
    language: str,
    device: str,
    compute_type: str,
    cpu_threads: int,
    beam_size: int,
    progress: Callable[[float], None] | None,
    model: WhisperModel | None,
    window_s: float,
    info: dict[str, Any] | None,
    prompt: str | None,
    temperature: float,
    audio_of: dict[str, np.ndarray] | None,
) -> Iterator[BatchSegment]:
    from faster_whisper import decode_audio

    probe_duration(path)  # clear EMPTY_FILE / NOT_AUDIO errors before the model loads
    try:
        audio = decode_audio(str(path), sampling_rate=ENGINE_SAMPLE_RATE)
    except Exception as exc:  # PyAV raises many types for damaged streams
        raise BatchAudioError(f"The audio could not be decoded: {exc}") from exc
    duration = len(audio) / ENGINE_SAMPLE_RATE
    if audio_of is not None:
        audio_of["audio"] = audio
    info = info if info is not None else {}
    info["duration_s"] = duration
    info["language"] = "" if language in ("", "auto") else language
    if model is None:
        model = load_model(model_path_or_name, device=device, compute_type=compute_type, cpu_threads=cpu_threads)
    fixed_language = None if language in ("", "auto") else language
    temperatures = temperature_fallbacks(temperature)
    for start, end in _windows(audio, window_s):
        offset = start / ENGINE_SAMPLE_RATE
        raw_segments, raw_info = model.transcribe(
            audio[start:end],
            language=fixed_language,
            beam_size=beam_size,
            word_timestamps=True,
            vad_filter=True,
            # Each window is a fresh call, so a repetition loop cannot run across windows.
            condition_on_previous_text=True,
            initial_prompt=(prompt or None) if start == 0 else None,
            temperature=temperatures,
        )
        if fixed_language is None:
            # The language found in the first window holds for the rest of the file.
            fixed_language = raw_info.language
            info["language"] = raw_info.language
        for raw in raw_segments:
            text = raw.text.strip()
            if text:
                yield BatchSegment(
                    start=round(offset + float(raw.start), 3),
                    end=round(offset + float(raw.end), 3),
                    text=text,
                    words=[
                        Word(
                            word=w.word,
                            start=round(offset + float(w.start), 3),
                            end=round(offset + float(w.end), 3),
                            probability=round(float(w.probability), 4),
                        )
                        for w in (raw.words or [])
                    ],
                )
            if progress is not None and duration > 0:
                progress(min((offset + raw.end) / duration, 1.0))
        if progress is not None and duration > 0:
            progress(min(end / ENGINE_SAMPLE_RATE / duration, 1.0))


def temperature_fallbacks(first: float) -> list[float]:
    """The temperatures a segment is tried at: ``first``, then hotter by 0.2 up to 1.0."""
    if not 0.0 <= first <= 1.0:
        raise ValueError("temperature must be 0..1")
    steps = [round(first + 0.2 * i, 2) for i in range(6)]
    return [t for t in steps if t <= 1.0] or [1.0]


def _windows(audio: np.ndarray, window_s: float) -> Iterator[tuple[int, int]]:
    """Sample ranges of at most ``window_s`` seconds, each cut at the quietest 0.1 s near its end."""
    total = len(audio)
    window = max(int(window_s * ENGINE_SAMPLE_RATE), ENGINE_SAMPLE_RATE * 60)
    start = 0
    while total - start > window:
        target = start + window
        search = int(_CUT_SEARCH_S * ENGINE_SAMPLE_RATE)
        frame = int(_CUT_FRAME_S * ENGINE_SAMPLE_RATE)
        region = audio[target - search : target]
        frames = region[: len(region) // frame * frame].reshape(-1, frame)
        quietest = int(np.argmin(np.square(frames, dtype=np.float32).mean(axis=1)))
        cut = target - search + quietest * frame + frame // 2
        yield start, cut
        start = cut
    if total > start or total == 0:
        yield start, total
