"""The streaming session: PCM in, protocol events out.

One :class:`StreamingSession` follows one audio stream. It resamples the input to 16 kHz,
classifies 32 ms frames with the VAD, and runs a small state machine:

``listening`` -> speech confirmed -> ``recording`` (live partials + stabilized prefix)
-> post-speech silence -> ``transcribing`` (final from the accurate model) -> ``listening``.

Per utterance the events come in this order::

    VadStart, RecordingStart, StateChanged("recording"),
    (Stabilized?, PartialUpdate)*,
    VadStop, RecordingStop, StateChanged("transcribing"), Final?, StateChanged("listening")

An utterance with less than ``min_utterance_s`` of voiced audio ends without
``transcribing`` and without a final.

With ``config.diarize`` every final carries a ``speaker_label`` from the stream's
:class:`~stt_engine.diarizer.Diarizer`, and a final in which the speaker changes comes as
several finals in a row (split between words, each with its own ``utterance_index``).

Finals are grouped into turns (see ``EngineConfig``, "Refinement of turns"). A turn that ended
is decoded again as one window by :meth:`StreamingSession.refine` when the speaker is quiet
and the cores have room, and a ``Revised`` event replaces its finals; :meth:`StreamingSession.stop`
refines whatever turns are still waiting before it goes idle. A forced cut of very long speech emits
``RecordingStop, StateChanged("transcribing"), Final?, RecordingStart,
StateChanged("recording")`` and goes on recording.
"""

from __future__ import annotations

import contextlib
import itertools
import math
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field, replace

import numpy as np
import torch

from . import events as ev
from .audio import PcmConverter
from .config import ENGINE_SAMPLE_RATE, EngineConfig
from .diarizer import Diarizer, DiarizerOptions, SpeakerRun, load_voice_encoder, speaker_runs
from .errors import SessionClosedError
from .load import SharedDecodeLoad
from .recognizer import EngineModels, FinalResult, Recognizer, load_models
from .stabilizer import Stabilizer
from .vad import FRAME_SAMPLES, VoiceActivityDetector

__all__ = ["SessionStats", "StreamingSession"]

_SR = ENGINE_SAMPLE_RATE
_CATCH_UP_SAMPLES = int(0.2 * _SR)
_OTHERS_BUSY_WITHIN_S = 2.0


class _AudioBuffer:
    """Growable float32 buffer addressed by absolute sample index; old audio can be dropped."""

    def __init__(self) -> None:
        self._data = np.zeros(_SR * 4, dtype=np.float32)
        self._len = 0
        self.start = 0  # absolute index of self._data[0]

    @property
    def end(self) -> int:
        return self.start + self._len

    def append(self, samples: np.ndarray) -> None:
        needed = self._len + len(samples)
        if needed > len(self._data):
            grown = np.zeros(max(needed, 2 * len(self._data)), dtype=np.float32)
            grown[: self._len] = self._data[: self._len]
            self._data = grown
        self._data[self._len : needed] = samples
        self._len = needed

    def get(self, start: int, end: int) -> np.ndarray:
        start = max(start, self.start)
        end = min(end, self.end)
        if end <= start:
            return np.zeros(0, dtype=np.float32)
        return self._data[start - self.start : end - self.start].copy()

    def drop_before(self, index: int) -> None:
        cut = min(max(0, index - self.start), self._len)
        if cut == 0:
            return
        remaining = self._len - cut
        self._data[:remaining] = self._data[cut : self._len]
        self._len = remaining
        self.start += cut


@dataclass
class SessionStats:
    """Counters a benchmark or a health check can read."""

    partial_decodes: int = 0
    partial_seconds: float = 0.0
    final_decodes: int = 0
    final_seconds: float = 0.0
    speculative_hits: int = 0
    speculative_misses: int = 0
    dropped_utterances: int = 0
    partials_yielded: int = 0
    """Frames (32 ms) at which a due partial was put off: other streams' decodes filled the cores."""
    speculations_yielded: int = 0
    """Frames at which a due speculative final was put off for the same reason."""
    continued_decodes: int = 0
    """Final decodes that continued the previous final (its audio and words as context)."""
    refinements: int = 0
    """Turns decoded again as one window (each gave a ``Revised`` or kept the finals)."""
    refine_seconds: float = 0.0
    refinements_deferred: int = 0
    """Times a waiting refinement was put off: the speaker or others talked, or the cores were full."""
    refinements_given_up: int = 0
    """Turns dropped unrefined: too much audio was waiting (``refine_pending_max_s``), or other
    streams were talking when this one stopped (``refine_yield_s``)."""
    diarize_cpu_s: float = 0.0
    """CPU seconds the diarizer used (the calling thread's when torch runs one thread, as in the
    engine child; the process's otherwise)."""


@dataclass
class _Context:
    """The end of the previous final, given to the next final's decode (see ``Recognizer.final``)."""

    start: int
    """First sample of the context audio (a little before its first word)."""
    end: int
    """Where the previous utterance's audio ended."""
    text: str
    """What the previous final said from ``start`` on."""


@dataclass
class _Turn:
    """Finals of one speaker's turn, to be decoded again together once it ends."""

    start: int
    end: int
    finals: list[ev.Final] = field(default_factory=list)
    label: str = ""
    """The speaker of the whole turn on a diarized stream (a change of speaker ends a turn)."""

    @property
    def seconds(self) -> float:
        return (self.end - self.start) / _SR


@dataclass
class _Speculation:
    start: int
    end: int
    result: FinalResult
    pieces: list | None = None
    """The diarizer's embedded pieces of ``start..end`` (``None`` when not diarized)."""


class StreamingSession:
    """Turns a stream of PCM s16le mono audio into :mod:`stt_engine.events`.

    Example::

        session = StreamingSession(EngineConfig(), sample_rate=16000, language="en")
        for chunk in chunks:
            for event in session.feed(chunk):
                send(event.to_message())
        send_all(session.stop())
    """

    def __init__(
        self,
        config: EngineConfig | None = None,
        sample_rate: int = ENGINE_SAMPLE_RATE,
        language: str | None = None,
        models: EngineModels | None = None,
        silero: torch.nn.Module | None = None,
        load: SharedDecodeLoad | None = None,
        timer: Callable[[], float] = time.perf_counter,
    ) -> None:
        """Create a session (loads the models unless ``models`` is given).

        Args:
            config: engine settings; ``EngineConfig()`` when ``None``. It is validated.
            sample_rate: rate of the PCM that :meth:`feed` receives (8000..48000 Hz).
            language: ``"auto"`` to detect, a code such as ``"en"``, or ``None`` for
                ``config.language``.
            models: preloaded models (:func:`stt_engine.recognizer.load_models`).
            silero: a Silero VAD model owned by this session (it keeps stream state).
            load: the decode load shared with the server's other engines; partials and
                speculative finals wait while it has no room for them (:mod:`stt_engine.load`).
            timer: seconds on a clock that measures decode times (``time.perf_counter``); a
                partial's time spaces out the next one (``partial_cost_factor``). A test passes
                a simulated clock so that what happens does not depend on the machine's speed.

        Raises:
            ValueError: an invalid config. AudioFormatError: an unsupported sample rate.
        """
        self.config = (config or EngineConfig()).validate()
        self.language = language or self.config.language
        self._converter = PcmConverter(sample_rate)
        self.models = models if models is not None else load_models(self.config)
        self._recognizer = Recognizer(self.config, self.models)
        self._refiner = Recognizer(replace(self.config, final_window=self.config.refine_window), self.models)
        self._vad = VoiceActivityDetector(self.config, silero)
        self._load = load
        self._timer = timer
        self._stabilizer = Stabilizer()
        self.stats = SessionStats()
        self._buffer = _AudioBuffer()
        self._processed = 0  # absolute index of the first sample not yet classified
        self._state: str | None = None
        self._closed = False
        self._start_frames = max(1, math.ceil(self.config.speech_start_s * _SR / FRAME_SAMPLES))
        self._speech_run = 0
        self._previous_end = 0
        self._previous_text = ""
        self._context: _Context | None = None
        self._utterance_index = 0
        self._turn: _Turn | None = None
        self._ended_turns: deque[_Turn] = deque()
        self._previous_turn_text = ""
        # The last refined turn, while the next may still be decoded together with it: what
        # stands for it on the client (utterance indexes) and the text said before it.
        self._last_refined: _Turn | None = None
        self._last_refined_shown: list[int] = []
        self._text_before_last = ""
        # Diarization is off unless asked for: the voice encoder is loaded only then (once per
        # process, shared by streams); the clustering is this stream's own.
        self._diarizer: Diarizer | None = None
        if self.config.diarize:
            encoder = load_voice_encoder(self.config.diarize_weights or None)
            self._diarizer = Diarizer(encoder, DiarizerOptions.from_config(self.config))
        self._reset_utterance()

    # -- public API -----------------------------------------------------------------

    @property
    def state(self) -> str:
        """The current state: ``idle``, ``listening``, ``recording`` or ``transcribing``."""
        return self._state or "idle"

    @property
    def stream_time(self) -> float:
        """Seconds of (16 kHz) audio received since the stream began."""
        return self._buffer.end / _SR

    def feed(self, pcm: bytes | bytearray | memoryview) -> list[ev.Event]:
        """Add audio and run whatever it makes due (VAD, partials, finals).

        Args:
            pcm: PCM s16le mono bytes at the session's sample rate, any even length.

        Returns:
            The events produced, in order (often empty).

        Raises:
            AudioFormatError: not bytes-like, or an odd byte count (code ``BAD_AUDIO``).
            SessionClosedError: the session was stopped (code ``NOT_STARTED``).
        """
        self._check_open()
        samples = self._converter.convert(pcm)
        out = self._begin()
        self._buffer.append(samples)
        self._process_frames(out)
        return out

    def flush(self) -> list[ev.Event]:
        """Finalize the utterance in progress now (push-to-talk release).

        Returns:
            The closing events and the final, if speech was being recorded.

        Raises:
            SessionClosedError: the session was stopped.
        """
        self._check_open()
        out = self._begin()
        if self._recording:
            self._close_utterance(out, self._buffer.end, vad_stop=True, next_state="listening", asked=True)
        self._speech_run = 0
        self._end_turn()
        return out

    def stop(self) -> list[ev.Event]:
        """Flush, refine the turns still waiting, then go idle; no more audio is accepted.

        The turns are refined unless other streams sharing the decode load are talking
        (``refine_yield_s``): then they are given up, for the pass over the recording.

        Calling it twice is fine. A host that wants the last final out before the refinements
        calls :meth:`flush` first and sends its events.

        Returns:
            The events of the flush, the ``Revised`` events, and ``StateChanged("idle")``.
        """
        if self._closed:
            return []
        out = self._begin()
        self._buffer.append(self._converter.flush())
        if self._recording:
            self._close_utterance(out, self._buffer.end, vad_stop=True, next_state="listening", asked=True)
        self._end_turn()
        if self._others_talking():
            # Their finals come first; the pass over the recording refines these turns.
            self.stats.refinements_given_up += len(self._ended_turns)
            self._ended_turns.clear()
        out.extend(self.refine(force=True))
        self._set_state(out, "idle")
        self._closed = True
        return out

    @property
    def refinement_waiting(self) -> bool:
        """Whether a turn that ended waits for :meth:`refine`."""
        return bool(self._ended_turns)

    def refine(self, force: bool = False) -> list[ev.Event]:
        """Decode the oldest turn that ended again, as one window with the previous turn as prompt.

        Optional work: unless ``force``, nothing runs while the speaker is talking, while the
        session is behind real time, while other streams sharing the decode load are talking
        (``refine_yield_s``), or while it has no room for a final (the turn waits for the next
        call). One turn a call, unless ``force`` (the stop refines all that wait): the host
        looks at its commands between calls, so audio that came during a decode is heard, and
        a final it closes is decoded, before the next turn. (A 158 s monologue leaves several
        turns waiting while other streams talk; refined back to back they held the next
        utterance's final 15 s.)

        Returns:
            A ``Revised`` per refined turn whose decode said anything (possibly empty).
        """
        out: list[ev.Event] = []
        while self._ended_turns:
            if not force and not self._may_refine():
                self.stats.refinements_deferred += 1
                break
            revised = self._refine_turn(self._ended_turns.popleft())
            if revised is not None:
                out.append(revised)
            if not force:
                break
        return out

    # -- internals ------------------------------------------------------------------

    def _check_open(self) -> None:
        if self._closed:
            raise SessionClosedError("This stream was stopped; start a new one to send audio.")

    def _now(self) -> float:
        return self._processed / _SR

    def _begin(self) -> list[ev.Event]:
        out: list[ev.Event] = []
        if self._state is None:
            self._set_state(out, "listening")
        return out

    def _set_state(self, out: list[ev.Event], state: str) -> None:
        if state != self._state:
            self._state = state
            out.append(ev.StateChanged(state=state, at=self._now()))

    def _reset_utterance(self) -> None:
        self._recording = False
        self._utt_start = 0
        self._voiced_start = 0
        self._last_voiced_end = 0
        self._silence = 0
        self._probabilities: list[tuple[int, float]] = []
        self._speculation: _Speculation | None = None
        self._next_partial_at = 0
        self._last_partial = ""
        self._stabilizer.reset()

    def _process_frames(self, out: list[ev.Event]) -> None:
        cfg = self.config
        threshold = cfg.silero_threshold
        while self._buffer.end - self._processed >= FRAME_SAMPLES:
            f0 = self._processed
            f1 = f0 + FRAME_SAMPLES
            frame = self._buffer.get(f0, f1)
            voice = self._vad.classify(frame)
            self._processed = f1
            if not self._recording:
                if self._turn is not None and f1 - self._turn.end >= cfg.turn_pause_s * _SR:
                    self._end_turn()
                candidate = voice.gate_open and voice.probability >= threshold
                self._speech_run = self._speech_run + 1 if candidate else 0
                if self._speech_run >= self._start_frames:
                    self._start_utterance(out, f1 - self._speech_run * FRAME_SAMPLES)
                else:
                    keep = int((cfg.pre_recording_buffer_s + 0.1) * _SR)
                    self._buffer.drop_before(self._keep_from(f1 - keep, f1))
                continue
            self._probabilities.append((f1, voice.probability))
            voiced = voice.probability >= threshold - cfg.silence_hysteresis
            if cfg.end_needs_webrtc_silence:
                # Silero's probability lingers for 100-200 ms after the voice stops; WebRTC
                # reacts at once, so a frame both call quiet-ish counts as silence sooner.
                voiced = voiced and (voice.webrtc or voice.probability >= threshold)
            if voiced:
                self._last_voiced_end = f1
                self._silence = 0
                if self._speculation is not None:
                    self._speculation = None
                    self.stats.speculative_misses += 1
            else:
                self._silence += FRAME_SAMPLES
            if self._silence >= cfg.post_speech_silence_s * _SR:
                end = self._last_voiced_end + int(cfg.final_tail_s * _SR)
                self._close_utterance(out, end, vad_stop=True, next_state="listening")
                continue
            if f1 - self._utt_start >= cfg.max_utterance_s * _SR:
                self._cut_long_utterance(out, f1)
                continue
            if self._buffer.end - f1 > _CATCH_UP_SAMPLES:
                # Behind real time (audio queued during a decode): newer audio is already here,
                # so a partial of this moment would be stale and a speculative final premature.
                continue
            if (
                cfg.speculative_final
                and self._speculation is None
                and self._silence >= cfg.speculative_final_after_s * _SR
                and self._last_voiced_end - self._voiced_start + cfg.final_tail_s * _SR >= cfg.min_utterance_s * _SR
            ):
                if not self._has_room(self.models.final_threads):
                    self.stats.speculations_yielded += 1
                    continue
                end = self._last_voiced_end + int(cfg.final_tail_s * _SR)
                start = self._final_start()
                result = self._decode_final(start, end)
                self._speculation = _Speculation(start, end, result, self._embed(start, end))
            elif (
                cfg.enable_partials
                and f1 >= self._next_partial_at
                and self._silence < cfg.speculative_final_after_s * _SR
            ):
                if not self._has_room(cfg.partial_cpu_threads):
                    # Looked at again on the next frame; the backlog check above keeps a
                    # partial that comes late from showing stale text.
                    self.stats.partials_yielded += 1
                    continue
                self._run_partial(out, f1)

    def _start_utterance(self, out: list[ev.Event], onset: int) -> None:
        cfg = self.config
        pre = int(cfg.pre_recording_buffer_s * _SR)
        self._reset_utterance()
        self._recording = True
        self._utt_start = max(onset - pre, self._previous_end, self._buffer.start)
        self._voiced_start = onset
        self._last_voiced_end = self._processed
        self._next_partial_at = onset + int(cfg.partial_min_audio_s * _SR)
        self._speech_run = 0
        now = self._now()
        out.append(ev.VadStart(at=now))
        out.append(ev.RecordingStart(start=self._utt_start / _SR, at=now))
        self._set_state(out, "recording")

    def _has_room(self, threads: int) -> bool:
        return self._load is None or self._load.has_room(threads)

    def _decoding(self, threads: int) -> contextlib.AbstractContextManager:
        return self._load.decoding(threads) if self._load is not None else contextlib.nullcontext()

    def _run_partial(self, out: list[ev.Event], now_sample: int) -> None:
        cfg = self.config
        audio = self._buffer.get(self._final_start(), now_sample)
        started = self._timer()
        with self._decoding(cfg.partial_cpu_threads):
            text = self._recognizer.partial(audio)
        cost = self._timer() - started
        self.stats.partial_decodes += 1
        self.stats.partial_seconds += cost
        interval = cfg.partial_interval_s
        if self._load is not None and self._load.others_busy(_OTHERS_BUSY_WITHIN_S):
            interval = cfg.partial_busy_interval_s
        if not text and not self._last_partial:
            # Nothing recognizable yet (the first syllable): look again sooner.
            interval = min(interval, 0.25)
        wait = max(interval, cfg.partial_cost_factor * cost)
        self._next_partial_at = now_sample + int(wait * _SR)
        if not text or text == self._last_partial:
            return
        self._last_partial = text
        display, grew = self._stabilizer.update(text)
        if grew:
            out.append(ev.Stabilized(text=self._stabilizer.text, at=self._now()))
        out.append(ev.PartialUpdate(text=display, at=self._now()))

    def _final_start(self) -> int:
        """Where the final's audio begins: some pre-roll before the voice onset, not all of it."""
        pre_roll = int(self.config.final_pre_roll_s * _SR)
        return max(self._utt_start, min(self._voiced_start - pre_roll, self._last_voiced_end))

    def _live_context(self, now_sample: int) -> _Context | None:
        """The previous final's context if the next utterance may still continue it."""
        context = self._context
        if context is None or now_sample - context.end > self.config.context_after_pause_s * _SR:
            self._context = None
            return None
        return context

    def _keep_from(self, index: int, now_sample: int) -> int:
        """Where buffered audio may be dropped: not before a context or a turn still in use."""
        context = self._live_context(now_sample)
        if context is not None:
            index = min(index, context.start)
        last = self._last_refined
        if last is not None and self._turn is None and now_sample - last.end > self.config.refine_join_s * _SR:
            self._last_refined = None  # no turn can join it any more
        turns = [*self._ended_turns, *(t for t in (self._turn, self._last_refined) if t is not None)]
        return min([index, *(turn.start for turn in turns)])

    # -- turns and their refinement ----------------------------------------------------------

    def _add_to_turn(self, final: ev.Final, start: int, end: int) -> None:
        if not self.config.refine_turns:
            return
        if self._turn is not None and self._turn.label != final.speaker_label:
            self._end_turn()  # a turn is one person's
        if self._turn is None:
            self._turn = _Turn(start=max(start, self._buffer.start), end=end, label=final.speaker_label)
        self._turn.end = max(self._turn.end, end)
        self._turn.finals.append(final)
        if self._turn.seconds >= self.config.refine_max_turn_s:
            self._end_turn()

    def _end_turn(self) -> None:
        turn, self._turn = self._turn, None
        if turn is None:
            return
        self._ended_turns.append(turn)
        while sum(t.seconds for t in self._ended_turns) > self.config.refine_pending_max_s:
            self._ended_turns.popleft()
            self.stats.refinements_given_up += 1

    def _may_refine(self) -> bool:
        if self._recording or self._buffer.end - self._processed > _CATCH_UP_SAMPLES:
            return False
        return not self._others_talking() and self._has_room(self.models.final_threads)

    def _others_talking(self) -> bool:
        within = self.config.refine_yield_s
        return within > 0 and self._load is not None and self._load.others_busy(within)

    def _turn_language(self, turn: _Turn) -> str | None:
        if self.language not in ("", "auto"):
            return self.language
        languages = Counter(final.language for final in turn.finals if final.language)
        return languages.most_common(1)[0][0] if languages else None

    def _joined_with_last(self, turn: _Turn) -> tuple[_Turn, list[int], str] | None:
        """The turn together with the last refined one, if it follows soon enough and both fit."""
        cfg = self.config
        last = self._last_refined
        if (
            last is None
            or turn.start - last.end > cfg.refine_join_s * _SR
            or (turn.end - last.start) / _SR > cfg.refine_max_turn_s
            or last.start < self._buffer.start
            or last.label != turn.label
        ):
            return None
        joined = _Turn(start=last.start, end=turn.end, finals=[*last.finals, *turn.finals], label=turn.label)
        return joined, [*self._last_refined_shown, *(f.utterance_index for f in turn.finals)], self._text_before_last

    def _refine_turn(self, turn: _Turn) -> ev.Revised | None:
        """One decode of the whole turn; ``None`` when it said nothing or looks worse than the finals."""
        started = self._timer()
        joined = self._joined_with_last(turn)
        if joined is not None:
            turn, replaces, text_before = joined
        else:
            replaces, text_before = [f.utterance_index for f in turn.finals], self._previous_turn_text
        end = min(turn.end + int(self.config.refine_tail_s * _SR), self._buffer.end)
        audio = self._buffer.get(turn.start, end)
        prompt = " ".join(text_before.split()[-40:]) or None
        with self._decoding(self.models.final_threads):
            result = self._refiner.final(audio, self._turn_language(turn), prompt)
        self.stats.refinements += 1
        self.stats.refine_seconds += self._timer() - started
        live_words = sum(len(final.text.split()) for final in turn.finals)
        refined_words = len(result.text.split())
        if not result.segments or refined_words > 1.5 * live_words + 6:
            # Nothing, or far more words than the finals heard: a decode of the silence between
            # the turn's utterances, not speech. What the client shows stays.
            self._previous_turn_text = " ".join(final.text for final in turn.finals)
            self._last_refined = None
            return None
        first = turn.finals[0]
        onset = max(turn.start, int(first.start * _SR))
        utterances = []
        for segment in result.segments:
            confidence = float(np.mean([w.probability for w in segment.words])) if segment.words else 0.0
            piece = FinalResult(segment.text, result.language, confidence or result.confidence, segment.words)
            final = self._make_final(piece, turn.start, end, onset)
            if final is not None:
                final.utterance_index = first.utterance_index
                utterances.append(final)
        if not utterances:
            self._last_refined = None
            return None
        if self._diarizer is not None:
            diarizer = self._diarizer
            utterances = [
                piece
                for u in utterances
                for piece in (
                    _split_by_speaker(u, diarizer.runs_for_words(u.words))
                    if u.words
                    else [replace(u, speaker_label=diarizer.label_at((u.start + u.end) / 2))]
                )
            ]
        self._previous_turn_text = result.text
        self._last_refined, self._text_before_last = turn, text_before
        self._last_refined_shown = [first.utterance_index]
        return ev.Revised(replaces=replaces, utterances=utterances, at=self._now())

    def _context_of(self, final: ev.Final, audio_start: int, end: int) -> _Context | None:
        """The last ``context_max_s`` of a final's words and audio."""
        cfg = self.config
        if cfg.context_after_pause_s <= 0 or not final.words:
            return None
        kept = [w for w in final.words if final.end - w.start <= cfg.context_max_s]
        if not kept:
            return None
        # Word starts are Whisper's estimate; a little earlier keeps the first one whole.
        start = max(audio_start, int((kept[0].start - 0.2) * _SR), self._buffer.start)
        return _Context(start=start, end=end, text=" ".join(w.word for w in kept))

    def _decode_final(self, start: int, end: int) -> FinalResult:
        started = self._timer()
        prompt = None
        if self._previous_text and start - self._previous_end <= self.config.prompt_with_previous_s * _SR:
            prompt = " ".join(self._previous_text.split()[-40:])
        context = self._live_context(start)
        # The context makes the decode slower: like partials, it is left out while other
        # streams' decodes fill the cores.
        if context is not None and not (
            self._buffer.start <= context.start < start and self._has_room(self.models.final_threads)
        ):
            context = None
        audio_start = start if context is None else context.start
        audio = self._buffer.get(audio_start, end)
        with self._decoding(self.models.final_threads):
            result = self._recognizer.final(
                audio, self.language, prompt, context and context.text, (start - audio_start) / _SR
            )
        self.stats.final_decodes += 1
        self.stats.continued_decodes += int(result.continued)
        self.stats.final_seconds += self._timer() - started
        return result

    def _close_utterance(
        self, out: list[ev.Event], end: int, vad_stop: bool, next_state: str, asked: bool = False
    ) -> None:
        """Finalize the utterance up to ``end``.

        ``asked``: the client ended it (flush, stop). Then an utterance whose partial was already
        shown is decoded however short it is: a push-to-talk release right after the first
        partial must not make the shown words vanish without a final.
        """
        cfg = self.config
        end = min(end, self._buffer.end)
        now = self._now()
        if vad_stop:
            out.append(ev.VadStop(at=now))
        out.append(ev.RecordingStop(end=end / _SR, at=now))
        start = self._final_start()
        # The length that counts is the voice (onset to last voiced frame, plus the tail the
        # final decodes anyway), not the pre-recording buffer: one short word ("yes", "two")
        # still makes an utterance, a click or a cough does not.
        spoken = self._last_voiced_end - self._voiced_start + int(cfg.final_tail_s * _SR)
        too_short = spoken < cfg.min_utterance_s * _SR and not (asked and self._last_partial)
        if too_short or end <= start:
            self.stats.dropped_utterances += 1
        else:
            self._set_state(out, "transcribing")
            speculation = self._speculation
            embedded = None
            if speculation is not None and speculation.start == start and speculation.end == end:
                result, embedded = speculation.result, speculation.pieces
                self.stats.speculative_hits += 1
            else:
                result = self._decode_final(start, end)
            final = self._make_final(result, start, end, self._voiced_start)
            if final is not None:
                for piece, piece_start, piece_end in self._speaker_pieces(final, start, end, embedded):
                    out.append(piece)
                    self._add_to_turn(piece, piece_start, piece_end)
                self._previous_text = final.text
                self._context = self._context_of(final, start, end)
        self._previous_end = end
        self._utterance_index += 1
        self._reset_utterance()
        self._set_state(out, next_state)

    def _embed(self, start: int, end: int) -> list | None:
        """The diarizer's embedded pieces of ``start..end`` (no speaker state: a speculative final's
        are computed with its decode, so the final, when it comes, only assigns them)."""
        if self._diarizer is None:
            return None
        clock = time.thread_time if torch.get_num_threads() == 1 else time.process_time
        began = clock()
        pieces = self._diarizer.pieces(self._buffer.get(start, end), start / _SR)
        self.stats.diarize_cpu_s += clock() - began
        return pieces

    def _speaker_pieces(
        self, final: ev.Final, start: int, end: int, embedded: list | None = None
    ) -> list[tuple[ev.Final, int, int]]:
        """The final with its speaker label, split where the speaker changes, with each piece's samples.

        ``embedded``: the span's pieces if already embedded (:meth:`_embed`). The first piece
        keeps the final's ``utterance_index``; the others take the next ones.
        """
        if self._diarizer is None:
            return [(final, start, end)]
        if embedded is None:
            embedded = self._embed(start, end)
        clock = time.thread_time if torch.get_num_threads() == 1 else time.process_time
        began = clock()
        regions = self._diarizer.label_span(self._buffer.get(start, end), start / _SR, final.words, embedded)
        runs = speaker_runs(final.words, regions, snap=False)
        self.stats.diarize_cpu_s += clock() - began
        pieces = _split_by_speaker(final, runs)
        bounds = [start]
        for before, after in itertools.pairwise(pieces):
            bounds.append(min(max(round((before.end + after.start) / 2 * _SR), start), end))
        bounds.append(end)
        for piece in pieces[1:]:
            self._utterance_index += 1
            piece.utterance_index = self._utterance_index
        return [(piece, bounds[i], bounds[i + 1]) for i, piece in enumerate(pieces)]

    def _make_final(self, result: FinalResult, start: int, end: int, onset: int) -> ev.Final | None:
        if not result.text.strip():
            return None
        offset = start / _SR
        limit = end / _SR
        # Whisper's alignment tends to stretch the first word back over the pre-recording
        # buffer; no word starts well before the VAD heard the voice.
        floor = min(max(offset, onset / _SR - 0.25), limit)
        words = []
        for w in result.words:
            if not w.word.strip():
                continue
            w_end = round(min(max(offset + w.end, floor), limit), 3)
            w_start = round(min(max(offset + w.start, floor), w_end), 3)
            words.append(ev.Word(word=w.word.strip(), start=w_start, end=w_end, probability=w.probability))
        return ev.Final(
            text=result.text.strip(),
            start=words[0].start if words else offset,
            end=words[-1].end if words else limit,
            words=words,
            language=result.language,
            confidence=result.confidence,
            model=self.models.final_name,
            utterance_index=self._utterance_index,
            at=self._now(),
        )

    def _cut_long_utterance(self, out: list[ev.Event], now_sample: int) -> None:
        """Finalize the first part of an over-long utterance at its quietest recent point."""
        cfg = self.config
        search_from = now_sample - int(cfg.cut_search_s * _SR)
        search_to = now_sample - _SR  # leave the newest second to the next part
        candidates = [(p, i) for i, (idx, p) in enumerate(self._probabilities) if search_from <= idx <= search_to]
        if candidates:
            # Smooth over 3 frames so one quiet frame inside a word is not chosen.
            probs = np.array([p for p, _ in candidates])
            smooth = np.convolve(probs, np.ones(3) / 3, mode="same")
            best = int(np.argmin(smooth))
            cut = self._probabilities[candidates[best][1]][0]
        else:
            cut = now_sample
        self._close_utterance(out, cut, vad_stop=False, next_state="recording")
        # _close_utterance reset the utterance; the speech goes on from the cut.
        self._recording = True
        self._utt_start = cut
        self._voiced_start = cut
        self._last_voiced_end = now_sample
        self._next_partial_at = now_sample
        self._buffer.drop_before(self._keep_from(cut, now_sample))
        start_event = ev.RecordingStart(start=cut / _SR, at=self._now())
        last = out[-1] if out else None
        if isinstance(last, ev.StateChanged) and last.state == "recording":
            out.insert(len(out) - 1, start_event)
        else:
            out.append(start_event)


def _split_by_speaker(final: ev.Final, runs: list[SpeakerRun]) -> list[ev.Final]:
    """``final`` labelled, or one final per run of words when the speaker changes inside it."""
    if len(runs) <= 1:
        return [replace(final, speaker_label=runs[0].label if runs else "")]
    pieces = []
    for run in runs:
        words = final.words[run.first_word : run.end_word]
        pieces.append(
            replace(
                final,
                text=" ".join(w.word for w in words),
                start=words[0].start,
                end=words[-1].end,
                words=words,
                confidence=float(np.mean([w.probability for w in words])),
                speaker_label=run.label,
            )
        )
    return pieces
