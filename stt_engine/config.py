"""Settings of the streaming engine, as one documented dataclass."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["ENGINE_SAMPLE_RATE", "PER_STREAM_SETTINGS", "EngineConfig"]

ENGINE_SAMPLE_RATE = 16000
"""The rate every model in the engine runs at; input is resampled to it."""


PER_STREAM_SETTINGS = frozenset({"diarize", "post_speech_silence_s", "pre_recording_buffer_s", "silero_sensitivity"})
"""Settings a stream may set for itself (``EngineProcess.start_stream(overrides=...)``): how its
speaker's utterances are cut, and whether they are diarized (a room microphone). Everything else
is the server's (models, threads, load)."""


@dataclass
class EngineConfig:
    """All settings of a streaming session and of the engine process that hosts it.

    Voice activity
        ``silero_sensitivity`` (0..1): a frame is speech when Silero's probability exceeds
        ``1 - silero_sensitivity`` (0.4 -> 0.6). ``webrtc_sensitivity`` (0..3) is the WebRTC
        VAD aggressiveness used as the fast gate (3 filters the most non-speech); the gate stays
        open ``webrtc_hangover_s`` after WebRTC last heard something, and an utterance starts
        when Silero confirms speech for ``speech_start_s`` while it is open. Silero's state is
        reset after ``silero_reset_after_s`` of clear non-speech (0 never resets), so a soft
        voice after a loud one is judged afresh.
        ``post_speech_silence_s`` of silence closes an utterance; utterances shorter than
        ``min_utterance_s`` (voice onset to last voiced frame, plus ``final_tail_s``) are
        dropped; ``pre_recording_buffer_s`` of audio
        before the detected onset is kept so the first syllable is not cut.
    Threads
        ``cpu_threads`` for the final model, whose decode is what the speaker waits for at the
        end of an utterance; 0 (the default) measures 1 and 2 threads when the models load
        and keeps the faster (:mod:`stt_engine.threads`: which one wins depends on the machine).
        ``partial_cpu_threads`` for the partial model, which runs often and short (a second
        thread saves little there and spins the most).
    Partials
        ``partial_model`` (fast, greedy, short encoder window) runs every
        ``partial_interval_s`` at most (``partial_busy_interval_s`` while other streams are
        talking: another engine sharing the load decoded in the last 2 s), and never more
        often than ``partial_cost_factor`` times its own last compute time, so CPU use stays
        bounded on long utterances and the cores go to the finals people wait for.
        Partials and speculative finals are optional work: a session given a
        :class:`~stt_engine.load.SharedDecodeLoad` puts them off while their threads do not fit
        beside other streams' decodes on the cores (an :class:`~stt_engine.EnginePool` shares one among its children).
    Finals
        ``final_model`` with ``beam_size`` decodes the whole utterance when it closes. It is
        started speculatively after ``speculative_final_after_s`` of silence and thrown away
        if speech resumes. The final's audio starts ``final_pre_roll_s`` before the voice
        onset (within the pre-recording buffer). ``final_window="auto"`` trims the encoder
        window to ``final_window_factor`` x the audio + ``final_window_pad_s`` and redoes
        doubtful results with the 30 s window at ``final_temperatures``. The previous final
        is given as a prompt when it ended less than ``prompt_with_previous_s`` before the
        utterance (0, the default, disables it: on the dev set it helped one clip and hurt
        the long one). An utterance that starts less than ``context_after_pause_s`` after the
        previous final's audio ended is decoded after the last ``context_max_s`` seconds of
        that audio, with that final's words forced as the start of the transcript: a sentence
        split at a pause is continued, not started afresh (left out, like partials, while other
        streams' decodes fill the cores). 0, the default, disables it: on a continuous stream
        of the dev clips it made finals slower and no more accurate. Utterances longer than
        ``max_utterance_s`` are cut at the quietest point of their last ``cut_search_s`` seconds;
        15 s rather than Whisper's 30, so that a monologue firms up at least that often and the
        final at its end decodes at most 15 s of audio (measured in the README, "Architecture").
    Refinement of turns
        With ``refine_turns``, a speaker's turn (the finals since the last pause of at least
        ``turn_pause_s``, a flush or the stop) is decoded again as one window once it ends,
        with the previous turn's text as the prompt, and a :class:`~stt_engine.events.Revised`
        replaces its finals. A turn also ends at the first final that makes it
        ``refine_max_turn_s`` long (a monologue is refined in pieces). Refinement is optional
        work: it waits while the speaker is talking or the shared decode load has no room; turns
        waiting longer than ``refine_pending_max_s`` of audio in all are given up (counted in
        the stats: a later pass over the recording covers them). ``refine_window`` is the
        encoder window of that decode (``"full"``: Whisper's 30 s, as offline; ``"auto"``: trimmed
        as for finals; on the dev set "full" gave WER 0.080 against 0.081 but revisions 3.1 s
        instead of 2.3 s after the turn), and ``refine_tail_s`` of the pause after the turn is
        decoded with it. A turn
        that starts less than ``refine_join_s`` after the previous refined one is decoded together
        with it when both fit in ``refine_max_turn_s``: the ``Revised`` then replaces the previous
        revision too, so a sentence split by a longer pause is still decoded whole. While another
        stream sharing the decode load has decoded in the last ``refine_yield_s`` seconds (other
        people are talking, and their finals must not wait behind a long decode), refinement
        waits; at the stop, turns that would have to wait are given up to the later pass over the
        recording. 0 turns that off (on 2 cores with four streams talking at once, refining beside
        them raised the live finals' p95 from 1.1 s to 2.0 s).
    Diarization
        With ``diarize`` (a room microphone: several people, one stream), every final's audio is
        given to a :class:`~stt_engine.diarizer.Diarizer` (resemblyzer's voice encoder, loaded
        once per process, on first use) and each final carries a ``speaker_label`` ("S1", "S2"...
        in order of first appearance, stable for the stream); a final in which the speaker
        changes is emitted as several finals, split between words. Embeddings are taken over
        1.6 s windows every ``diarize_step_s``; a span is split where the windows before and after
        a point (or inside two points and outside them) are less similar (cosine) than
        ``diarize_split_threshold``, into pieces of at least ``diarize_min_piece_s``; a piece is
        the speaker whose centroid is at least ``diarize_threshold`` similar, otherwise a new
        speaker if it lasts ``diarize_min_speaker_s`` or is unlike every voice heard (shorter
        ones go to the nearest voice); each change of speaker is moved to the pause between
        words nearest it, in the final and in the timeline that refinement reads; two speakers
        whose centroids reach ``diarize_merge_threshold`` become one. A label change also ends the refinement turn.
        ``diarize_weights`` is the encoder's checkpoint ("" for the one in the resemblyzer wheel).
    Hallucination guards
        A segment is dropped when ``no_speech_prob > no_speech_threshold`` and
        ``avg_logprob < log_prob_threshold``, or when ``avg_logprob < min_avg_logprob``.
    """

    partial_model: str = "tiny.en"
    final_model: str = "base"
    device: str = "cpu"
    compute_type: str = "int8"
    cpu_threads: int = 0
    partial_cpu_threads: int = 1
    language: str = "auto"

    silero_sensitivity: float = 0.4
    webrtc_sensitivity: int = 3
    webrtc_hangover_s: float = 0.5
    silero_reset_after_s: float = 1.0
    post_speech_silence_s: float = 0.6
    min_utterance_s: float = 0.5
    pre_recording_buffer_s: float = 1.0
    speech_start_s: float = 0.064
    silence_hysteresis: float = 0.15
    end_needs_webrtc_silence: bool = False

    enable_partials: bool = True
    partial_interval_s: float = 0.7
    partial_busy_interval_s: float = 1.4
    partial_cost_factor: float = 4.0
    partial_min_audio_s: float = 0.25
    partial_window_pad_s: float = 1.0
    partial_min_window_s: float = 4.0

    beam_size: int = 5
    speculative_final: bool = True
    speculative_final_after_s: float = 0.2
    final_tail_s: float = 0.2
    final_window: str = "auto"
    final_window_factor: float = 1.3
    final_window_pad_s: float = 2.0
    final_pre_roll_s: float = 0.5
    final_temperatures: tuple[float, ...] = (0.0,)
    prompt_with_previous_s: float = 0.0
    context_after_pause_s: float = 0.0
    context_max_s: float = 5.0
    max_utterance_s: float = 15.0
    cut_search_s: float = 8.0

    refine_turns: bool = True
    turn_pause_s: float = 1.2
    refine_max_turn_s: float = 24.0
    refine_pending_max_s: float = 120.0
    refine_window: str = "auto"
    refine_join_s: float = 4.0
    refine_tail_s: float = 0.0
    refine_yield_s: float = 2.0

    diarize: bool = False
    diarize_threshold: float = 0.75
    diarize_split_threshold: float = 0.75
    diarize_min_speaker_s: float = 2.0
    diarize_min_piece_s: float = 1.0
    diarize_merge_threshold: float = 0.85
    diarize_step_s: float = 0.4
    diarize_weights: str = ""

    no_speech_threshold: float = 0.6
    log_prob_threshold: float = -1.0
    min_avg_logprob: float = -1.6
    compression_ratio_threshold: float = 2.4

    def validate(self) -> EngineConfig:
        """Check every setting.

        Returns:
            ``self``, so that ``EngineConfig(...).validate()`` can be chained.

        Raises:
            ValueError: naming the first setting that is out of range.
        """
        checks: list[tuple[bool, str]] = [
            (bool(self.partial_model), "partial_model must name a model"),
            (bool(self.final_model), "final_model must name a model"),
            (self.device in ("cpu", "cuda", "auto"), "device must be 'cpu', 'cuda' or 'auto'"),
            (bool(self.compute_type), "compute_type must not be empty"),
            (0 <= self.cpu_threads <= 64, "cpu_threads must be between 0 (measure) and 64"),
            (1 <= self.partial_cpu_threads <= 64, "partial_cpu_threads must be between 1 and 64"),
            (bool(self.language), "language must be 'auto' or a language code such as 'en'"),
            (0.0 < self.silero_sensitivity < 1.0, "silero_sensitivity must be between 0 and 1"),
            (self.webrtc_sensitivity in (0, 1, 2, 3), "webrtc_sensitivity must be 0, 1, 2 or 3"),
            (0.0 <= self.webrtc_hangover_s <= 5.0, "webrtc_hangover_s must be 0..5"),
            (0.0 <= self.silero_reset_after_s <= 60.0, "silero_reset_after_s must be 0..60"),
            (0.1 <= self.post_speech_silence_s <= 10.0, "post_speech_silence_s must be 0.1..10"),
            (0.0 <= self.min_utterance_s <= 10.0, "min_utterance_s must be 0..10"),
            (0.0 <= self.pre_recording_buffer_s <= 5.0, "pre_recording_buffer_s must be 0..5"),
            (0.0 <= self.final_pre_roll_s <= 5.0, "final_pre_roll_s must be 0..5"),
            (0.0 <= self.speech_start_s <= 1.0, "speech_start_s must be 0..1"),
            (0.0 <= self.silence_hysteresis < 1.0, "silence_hysteresis must be 0..1"),
            (0.05 <= self.partial_interval_s <= 30.0, "partial_interval_s must be 0.05..30"),
            (
                self.partial_interval_s <= self.partial_busy_interval_s <= 30.0,
                "partial_busy_interval_s must be between partial_interval_s and 30",
            ),
            (self.partial_cost_factor >= 1.0, "partial_cost_factor must be >= 1"),
            (1 <= self.beam_size <= 16, "beam_size must be 1..16"),
            (
                0.0 <= self.speculative_final_after_s < self.post_speech_silence_s,
                "speculative_final_after_s must be >= 0 and below post_speech_silence_s",
            ),
            (
                0.0 <= self.final_tail_s <= self.speculative_final_after_s or not self.speculative_final,
                "final_tail_s must be between 0 and speculative_final_after_s",
            ),
            (self.final_window in ("auto", "full"), "final_window must be 'auto' or 'full'"),
            (1.0 <= self.final_window_factor <= 3.0, "final_window_factor must be 1..3"),
            (0.0 <= self.final_window_pad_s <= 10.0, "final_window_pad_s must be 0..10"),
            (
                len(self.final_temperatures) > 0 and all(0.0 <= t <= 1.0 for t in self.final_temperatures),
                "final_temperatures must be a non-empty tuple of values in 0..1",
            ),
            (self.prompt_with_previous_s >= 0.0, "prompt_with_previous_s must be >= 0"),
            (0.0 <= self.context_after_pause_s <= 60.0, "context_after_pause_s must be 0..60"),
            (1.0 <= self.context_max_s <= 20.0, "context_max_s must be 1..20"),
            (5.0 <= self.max_utterance_s <= 30.0, "max_utterance_s must be 5..30 seconds"),
            (0.3 <= self.turn_pause_s <= 30.0, "turn_pause_s must be 0.3..30 seconds"),
            (5.0 <= self.refine_max_turn_s <= 28.0, "refine_max_turn_s must be 5..28 seconds"),
            (self.refine_pending_max_s >= self.refine_max_turn_s, "refine_pending_max_s must be >= refine_max_turn_s"),
            (self.refine_window in ("auto", "full"), "refine_window must be 'auto' or 'full'"),
            (0.0 <= self.refine_tail_s <= 1.0, "refine_tail_s must be 0..1"),
            (0.0 <= self.refine_join_s <= 30.0, "refine_join_s must be 0..30"),
            (0.0 <= self.refine_yield_s <= 30.0, "refine_yield_s must be 0..30"),
            (
                1.0 <= self.cut_search_s < self.max_utterance_s,
                "cut_search_s must be >= 1 and below max_utterance_s",
            ),
            (0.0 <= self.no_speech_threshold <= 1.0, "no_speech_threshold must be 0..1"),
            (isinstance(self.diarize, bool), "diarize must be true or false"),
            (0.0 < self.diarize_threshold < 1.0, "diarize_threshold must be between 0 and 1"),
            (0.0 < self.diarize_split_threshold < 1.0, "diarize_split_threshold must be between 0 and 1"),
            (
                self.diarize_threshold <= self.diarize_merge_threshold <= 1.0,
                "diarize_merge_threshold must be between diarize_threshold and 1",
            ),
            (0.5 <= self.diarize_min_speaker_s <= 30.0, "diarize_min_speaker_s must be 0.5..30"),
            (
                0.4 <= self.diarize_min_piece_s <= self.diarize_min_speaker_s,
                "diarize_min_piece_s must be between 0.4 and diarize_min_speaker_s",
            ),
            (0.1 <= self.diarize_step_s <= 1.6, "diarize_step_s must be 0.1..1.6"),
        ]
        for ok, message in checks:
            if not ok:
                raise ValueError(f"Invalid EngineConfig: {message}.")
        return self

    @property
    def silero_threshold(self) -> float:
        """Silero probability above which a frame counts as speech."""
        return 1.0 - self.silero_sensitivity
