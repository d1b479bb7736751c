"""Diarization benchmark: who spoke when, on conversations built from the dev clips (issue 19).

Conversations of 2, 3 and 4 speakers are built from ``manifest.jsonl`` (its ``speaker``
field), deterministically from ``--seed``: distinct speakers, alternating turns (never the same
speaker twice in a row) of 2 to 15 s, 0.3 to 1.0 s pauses between one turn's speech and the
next, and some turns under 2 s, 60 to 90 s per conversation. A turn is a whole clip of at most
15 s, the beginning of a clip cut after its k-th word (short turns), or a piece of a longer
clip cut between two words. Word times come from faster-whisper base (``word_timestamps``) run
once per cut clip: a clip's beginning is cut only where Whisper's first k words equal the
reference's first k words (normalized), 50 ms after word k (moved to the quietest 10 ms
within 0.15 s: Whisper's word times are that far off), and the turn's text is those k
reference words; a piece of a long clip is cut between two words that both match the
reference on each side. Each turn's reference start and end are its speech (energy) bounds on
the conversation's clock.

Each conversation is streamed through :class:`stt_engine.StreamingSession` on engine_bench's
simulated real-time clock (:func:`bench.engine_bench.run_clip`: 0.5 s of silence before, 1.5 s
after), once with ``diarize`` on and once off. Scored on the transcript as it ends up (finals
with each ``stt_revised`` applied, :func:`bench.engine_bench.current_finals`), with the live
finals alone beside it:

- DER (``pyannote.metrics`` ``DiarizationErrorRate``, 0.25 s collar) per conversation size,
  pooled (error seconds / reference seconds). The hypothesis is each line from its start to
  its end (its first word's start to its last word's end), by the line's ``speaker_label``,
  merged across gaps under 0.5 s. A reference turn spans its speech, pauses inside it
  included, and so does a line; the words alone (``der_*_from_words``, printed too) leave a
  turn's inner pauses out and count them as missed speech. Missed speech and false alarms
  count, so the ASR's dropped words are in it.
- cpWER: per reference speaker its turns' text in order, per label its lines' text in order,
  the one-to-one assignment with the fewest word errors (unmatched speakers: all deletions,
  unmatched labels: all insertions), errors / reference words. ``wer``: the same streams
  ignoring labels; ``wer_diarize_off``: the run with diarize off.
- ``speakers_found_ok``: the fraction of conversations with as many labels as speakers.
- ``extra_cpu_s_per_audio_s``: process CPU seconds with diarize on minus off, per audio second,
  unless that differs from the diarizer's own ``SessionStats.diarize_cpu_s`` per audio second by
  more than the larger of 0.02 and the stats figure; then the stats figure (``extra_cpu_from``
  says which; both are in the JSON): two runs of the whole engine on a busy machine differ by
  more than the diarizer costs.
- ``final_latency_p50``: end of speech to final, as engine_bench measures it (energy bounds
  of the speech, time the final is shown on the simulated clock), for each utterance that
  ended with a turn's speech (its last word within 0.4 s of the turn's end; one that ran on
  into the next turn is left out), with diarize on (off beside it); ``final_latency_last_p50`` is engine_bench's
  figure exactly: a conversation's last utterance only (its length dominates it).

Usage::

    python bench/diarization_bench.py [--sizes 2,3,4] [--limit N per size, 2] [--seed 19] [--json PATH]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import sys
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from difflib import SequenceMatcher
from pathlib import Path

import numpy as np
import soundfile as sf

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.engine_bench import (
    _NORMALIZE,
    DEFAULT_MANIFEST,
    LEAD_S,
    SR,
    TAIL_S,
    _speech_bounds,
    _word_errors,
    current_finals,
    run_clip,
)
from stt_engine import events

__all__ = [
    "Conversation",
    "ConversationPlan",
    "PlannedTurn",
    "Turn",
    "WordTimer",
    "cp_word_errors",
    "diarization_error",
    "hypothesis_segments",
    "main",
    "piece_cut",
    "plan_conversations",
    "prefix_cut",
    "quietest_near",
    "render_conversation",
    "utterance_latencies",
    "whisper_word_timer",
]

MAX_TURN_S = 15.0
MIN_TURN_S = 2.0
SHORT_TURN_S = (1.2, 1.9)
"""Seconds from a short turn's first word to its cut."""
PIECE_TURN_S = (4.0, 13.0)
PAUSE_S = (0.3, 1.0)
CONVERSATION_S = (60.0, 90.0)
SHORT_TURN_CHANCE = 0.12
CUT_AFTER_WORD_S = 0.05
SNAP_S = 0.15
"""A cut moves to the quietest 10 ms within this of 50 ms after the word (see :func:`quietest_near`)."""
MARGIN_S = 0.1
"""Audio kept around a turn's speech bounds (the rest of the clip's silence is trimmed)."""
MERGE_GAP_S = 0.5
UTTERANCE_END_S = 0.4
"""A final whose last word ends this close to a turn's end closed its utterance there."""
OTHER_CONDITIONS = {
    "mfa_cold_corpus.wav": "mfa_acoustic_corpus.wav's speaker with a cold, recorded in another room (he says so)",
}
"""Clips left out: their speaker's voice under other conditions than the speaker's other clips.
A meeting hears each voice in one room on one day; a voice the encoder cannot match across a
cold and a room change is a fault of the corpus here, not of the diarizer."""
COLLAR_S = 0.25


@dataclass(frozen=True)
class PlannedTurn:
    """One turn of a plan: which clip, cut how, after which pause (no audio read yet)."""

    speaker: str
    audio: str
    """The clip's file name in the manifest folder."""
    text: str
    """The clip's whole reference text."""
    clip_s: float
    kind: str
    """``whole`` (the clip), ``short`` (its beginning, about ``target_s``) or ``piece`` (the
    next ``target_s`` of a clip longer than 15 s, after the pieces earlier turns took)."""
    target_s: float
    pause_s: float
    """Silence between the previous turn's speech and this one's (ignored for the first)."""


@dataclass(frozen=True)
class ConversationPlan:
    name: str
    speakers: tuple[str, ...]
    turns: tuple[PlannedTurn, ...]

    @property
    def planned_s(self) -> float:
        """Length as planned (rendering trims the clips' own silence, so it comes out shorter)."""
        return sum(t.target_s for t in self.turns) + sum(t.pause_s for t in self.turns[1:])


@dataclass(frozen=True)
class Turn:
    """A reference turn on the conversation's clock: its speech bounds and its words."""

    speaker: str
    start: float
    end: float
    text: str


@dataclass
class Conversation:
    name: str
    speakers: tuple[str, ...]
    turns: list[Turn]
    audio: np.ndarray
    """int16 at 16 kHz."""

    @property
    def duration_s(self) -> float:
        return len(self.audio) / SR


WordTimer = Callable[[Path], list[events.Word]]
"""Word times of a clip (seconds from its start), e.g. :func:`whisper_word_timer`'s."""


def _rows_by_speaker(rows: Sequence[dict]) -> dict[str, list[dict]]:
    by_speaker: dict[str, list[dict]] = defaultdict(list)
    for row in rows:
        if row.get("speaker") and row["audio"] not in OTHER_CONDITIONS:
            by_speaker[row["speaker"]].append(row)
    return {speaker: sorted(clips, key=lambda r: r["audio"]) for speaker, clips in sorted(by_speaker.items())}


def plan_conversations(
    rows: Sequence[dict], sizes: Sequence[int] = (2, 3, 4), per_size: int = 4, seed: int = 19
) -> list[ConversationPlan]:
    """Plan ``per_size`` conversations of each size from manifest rows, deterministically.

    A speaker takes part only if its clips hold 1.3 times its share of the conversation (a
    short turn throws the rest of its clip away); no clip is used twice in a conversation.
    The speakers first speak in a shuffled order (so all of them are heard), then each next
    turn goes to another speaker than the last, among those with clips left, at random.

    Args:
        rows: ``manifest.jsonl`` rows (``speaker``, ``audio``, ``text``, ``duration_s``).
        sizes: speakers per conversation.
        per_size: conversations of each size.
        seed: the same seed gives the same plans.

    Raises:
        ValueError: too few speakers have enough speech for a size.
    """
    by_speaker = _rows_by_speaker(rows)
    material = {speaker: sum(float(r["duration_s"]) for r in clips) for speaker, clips in by_speaker.items()}
    plans = []
    for size in sizes:
        for index in range(per_size):
            rng = random.Random(f"{seed}:{size}:{index}")
            target_s = rng.uniform(*CONVERSATION_S)
            eligible = [s for s in by_speaker if material[s] >= 1.3 * target_s / size]
            if len(eligible) < size:
                raise ValueError(
                    f"only {len(eligible)} speakers have {1.3 * target_s / size:.0f} s of clips; {size} needed"
                )
            speakers = tuple(rng.sample(eligible, size))
            turns = _plan_turns(rng, speakers, by_speaker, target_s)
            plans.append(ConversationPlan(f"{size}spk-{index + 1}", speakers, tuple(turns)))
    return plans


def _plan_turns(
    rng: random.Random, speakers: tuple[str, ...], by_speaker: dict[str, list[dict]], target_s: float
) -> list[PlannedTurn]:
    # Per speaker: clips not used yet (shuffled), and the seconds left of a long clip in use.
    pools = {s: rng.sample(by_speaker[s], len(by_speaker[s])) for s in speakers}
    long_left: dict[str, tuple[dict, float]] = {}
    turns: list[PlannedTurn] = []
    opening = list(speakers)
    total = 0.0
    while total < target_s:
        previous = turns[-1].speaker if turns else None
        if opening:
            speaker = opening.pop(0)
        else:
            candidates = [s for s in speakers if s != previous and (pools[s] or s in long_left)]
            if not candidates:
                break
            speaker = rng.choice(candidates)
        short = rng.random() < SHORT_TURN_CHANCE or (len(turns) >= 3 and not any(t.kind == "short" for t in turns))
        turn = _next_turn(rng, speaker, pools[speaker], long_left, short)
        if turn is None:
            break
        if total >= CONVERSATION_S[0] and total + turn.pause_s + turn.target_s > CONVERSATION_S[1]:
            break
        turns.append(turn)
        total += turn.target_s + (turn.pause_s if len(turns) > 1 else 0.0)
    return turns


def _next_turn(
    rng: random.Random, speaker: str, pool: list[dict], long_left: dict[str, tuple[dict, float]], short: bool
) -> PlannedTurn | None:
    pause_s = round(rng.uniform(*PAUSE_S), 3)
    if speaker in long_left:
        row, left_s = long_left.pop(speaker)
    elif pool:
        row = pool.pop()
        left_s = float(row["duration_s"])
    else:
        return None
    clip_s = float(row["duration_s"])
    common = {"speaker": speaker, "audio": row["audio"], "text": row["text"], "clip_s": clip_s, "pause_s": pause_s}
    if clip_s <= MAX_TURN_S:
        if short:
            return PlannedTurn(kind="short", target_s=round(rng.uniform(*SHORT_TURN_S), 3), **common)
        return PlannedTurn(kind="whole", target_s=clip_s, **common)
    target_s = round(rng.uniform(*SHORT_TURN_S) if short else rng.uniform(*PIECE_TURN_S), 3)
    if left_s - target_s <= MAX_TURN_S / 2:
        target_s = min(left_s, MAX_TURN_S)  # the rest of the clip, as one last piece
    elif left_s - target_s >= 2 * MIN_TURN_S:
        long_left[speaker] = (row, left_s - target_s)
    return PlannedTurn(kind="piece", target_s=target_s, **common)


# ---------------------------------------------------------------- word-boundary cuts


def _token(word: str) -> str:
    """A word as compared with Whisper's: normalized, letters and digits only."""
    return re.sub(r"[^a-z0-9]", "", _NORMALIZE(word).lower())


def _cut_time(words: list[events.Word], j: int) -> float:
    """Where to cut after word ``j``: 50 ms after it, but not past the middle of the gap to the next."""
    cut = words[j].end + CUT_AFTER_WORD_S
    if j + 1 < len(words):
        cut = min(cut, (words[j].end + words[j + 1].start) / 2)
    return round(cut, 3)


def prefix_cut(reference: str, words: list[events.Word], max_s: float) -> tuple[float, str] | None:
    """Cut a clip's beginning after the most reference words that end by ``max_s``.

    Args:
        reference: the clip's reference text.
        words: Whisper's words of the clip with times (seconds from its start).
        max_s: the longest beginning wanted.

    Returns:
        ``(cut time, the first k reference words)`` for the largest k whose first k Whisper
        words equal the reference's first k (normalized) and whose cut is by ``max_s``;
        ``None`` when not even the first word fits or matches.
    """
    fitting = [cut for cut in _prefix_cuts(reference, words) if cut[0] <= max_s]
    return fitting[-1] if fitting else None


def _prefix_cuts(reference: str, words: list[events.Word]) -> list[tuple[float, str]]:
    """Every cut after the first k words, for each k whose first k Whisper words equal the reference's."""
    cuts = []
    ref_words = reference.split()
    for k, (ref_word, heard) in enumerate(zip(ref_words, words, strict=False), start=1):
        if _token(ref_word) != _token(heard.word) or not _token(ref_word):
            break
        cuts.append((_cut_time(words, k - 1), " ".join(ref_words[:k])))
    return cuts


def _anchors(reference: str, words: list[events.Word]) -> list[tuple[int, float]]:
    """``(reference words before, cut time)`` at each gap between two words that both match the
    reference, on each side of the gap (difflib's alignment of the normalized words)."""
    ref_tokens = [_token(w) for w in reference.split()]
    heard_tokens = [_token(w.word) for w in words]
    matcher = SequenceMatcher(a=ref_tokens, b=heard_tokens, autojunk=False)
    anchors = []
    for block in matcher.get_matching_blocks():
        for offset in range(block.size - 1):
            i, j = block.a + offset, block.b + offset
            if ref_tokens[i]:
                anchors.append((i + 1, _cut_time(words, j)))
    return anchors


def piece_cut(
    reference: str, words: list[events.Word], clip_s: float, start: tuple[int, float], target_s: float
) -> tuple[tuple[int, float], str]:
    """The next piece of a long clip: from ``start`` to the anchor nearest ``target_s`` later.

    Among anchors 60-100% of ``target_s`` after the start the one after the longest pause
    is taken (a clean cut), else the last one before ``target_s``, else the first after it
    that keeps the piece within 15 s. A piece ending within 2 s of the clip's end takes the rest.

    Args:
        reference: the clip's reference text.
        words: Whisper's words of the clip.
        clip_s: the clip's length.
        start: ``(reference words before, time)`` where the piece begins (``(0, 0.0)``: the clip's start).
        target_s: the piece's wanted length.

    Returns:
        ``((reference words before, time) of the piece's end, the piece's reference text)``.

    Raises:
        ValueError: no anchor gives a piece of at most 15 s.
    """
    ref_words = reference.split()
    begin_words, begin_s = start
    if clip_s - begin_s <= min(target_s + MIN_TURN_S, MAX_TURN_S):
        return (len(ref_words), clip_s), " ".join(ref_words[begin_words:])
    after = [(n, t) for n, t in _anchors(reference, words) if n > begin_words and t > begin_s + 0.3]
    gap_after = {j: words[j + 1].start - words[j].end for j in range(len(words) - 1)}
    ends_of = {round(_cut_time(words, j), 6): gap for j, gap in gap_after.items()}
    window = [(n, t) for n, t in after if begin_s + 0.6 * target_s < t <= begin_s + target_s]
    if window:
        end = max(window, key=lambda a: (ends_of.get(round(a[1], 6), 0.0), a[1]))
    else:
        before = [(n, t) for n, t in after if t <= begin_s + target_s]
        later = [(n, t) for n, t in after if begin_s + target_s < t <= begin_s + MAX_TURN_S]
        if before:
            end = before[-1]
        elif later:
            end = later[0]
        elif clip_s - begin_s <= MAX_TURN_S:
            return (len(ref_words), clip_s), " ".join(ref_words[begin_words:])
        else:
            raise ValueError(f"no word boundary within {MAX_TURN_S:g} s after {begin_s:.2f} s")
    if clip_s - end[1] < MIN_TURN_S and clip_s - begin_s <= MAX_TURN_S:
        return (len(ref_words), clip_s), " ".join(ref_words[begin_words:])
    return end, " ".join(ref_words[begin_words : end[0]])


def whisper_word_timer(cpu_threads: int = 0) -> WordTimer:
    """A :data:`WordTimer` of the bundled faster-whisper base (int8, beam 5), one run per clip (cached)."""
    from faster_whisper import WhisperModel

    from stt_engine.model_files import resolve_model_path

    model = WhisperModel(str(resolve_model_path("base")), device="cpu", compute_type="int8", cpu_threads=cpu_threads)
    cache: dict[Path, list[events.Word]] = {}

    def word_times(path: Path) -> list[events.Word]:
        if path not in cache:
            audio, _ = sf.read(str(path), dtype="float32")
            segments, _ = model.transcribe(audio, language="en", beam_size=5, word_timestamps=True)
            cache[path] = [
                events.Word(w.word.strip(), float(w.start), float(w.end), float(w.probability))
                for segment in segments
                for w in segment.words or []
            ]
        return cache[path]

    return word_times


def quietest_near(audio: np.ndarray, at_s: float, within_s: float = SNAP_S) -> float:
    """The middle of the quietest 10 ms of ``audio`` within ``within_s`` of ``at_s``.

    Whisper's word times are often 0.1-0.2 s off and butt against the next word (its end is
    the next one's start), so a cut exactly there can clip a word; the quietest frame near it
    is the gap between the two words, or the nearest thing to one in connected speech.
    """
    frame = SR // 100
    first = max(0, int((at_s - within_s) * SR) // frame)
    last = min(len(audio) // frame, int((at_s + within_s) * SR) // frame + 1)
    if last <= first:
        return at_s
    window = audio[first * frame : last * frame].astype(np.float64).reshape(-1, frame)
    quietest = int(np.argmin((window**2).mean(axis=1)))
    return round((first + quietest + 0.5) * frame / SR, 3)


def render_conversation(plan: ConversationPlan, folder: Path, word_times: WordTimer) -> Conversation:
    """Read, cut and lay out a plan's clips; the reference turns on the conversation's clock.

    Cuts go to the quietest point within 0.15 s of Whisper's (:func:`quietest_near`). Each
    turn's audio keeps 0.1 s around its speech bounds; the next turn's speech starts
    its ``pause_s`` after the previous turn's speech ended. A short turn whose clip has no
    matching first word within its target keeps the shortest matching beginning instead (or
    the whole clip).
    """
    cursors: dict[str, tuple[int, float]] = {}
    pieces: list[tuple[PlannedTurn, np.ndarray, str]] = []
    for turn in plan.turns:
        audio, rate = sf.read(str(folder / turn.audio), dtype="int16")
        if rate != SR:
            raise ValueError(f"{turn.audio}: expected 16 kHz, got {rate}")
        if turn.kind == "whole":
            pieces.append((turn, audio, turn.text))
            continue
        words = word_times(folder / turn.audio)
        if turn.kind == "short":
            cuts = _prefix_cuts(turn.text, words)
            cut = prefix_cut(turn.text, words, words[0].start + turn.target_s if words else 0.0) or (
                cuts[0] if cuts else None
            )
            if cut is None:
                pieces.append((turn, audio, turn.text))
            else:
                pieces.append((turn, audio[: int(quietest_near(audio, cut[0]) * SR)], cut[1]))
            continue
        start = cursors.get(turn.audio, (0, 0.0))
        (words_before, end_s), text = piece_cut(turn.text, words, len(audio) / SR, start, turn.target_s)
        end = (words_before, quietest_near(audio, end_s) if end_s < len(audio) / SR else end_s)
        cursors[turn.audio] = end
        pieces.append((turn, audio[int(start[1] * SR) : int(end[1] * SR)], text))

    out: list[np.ndarray] = []
    turns: list[Turn] = []
    clock = 0.0  # the end of the audio laid out so far
    for turn, audio, text in pieces:
        onset, offset = _speech_bounds(audio)
        keep_from = max(0.0, onset - MARGIN_S)
        keep_to = min(len(audio) / SR, offset + MARGIN_S)
        kept = audio[int(keep_from * SR) : int(keep_to * SR)]
        if turns:
            speech_at = turns[-1].end + turn.pause_s
            silence = round((speech_at - (onset - keep_from) - clock) * SR)
            out.append(np.zeros(max(silence, 0), np.int16))
            clock += max(silence, 0) / SR
        start = clock + (onset - keep_from)
        out.append(kept)
        clock += len(kept) / SR
        turns.append(Turn(turn.speaker, round(start, 3), round(start + offset - onset, 3), text))
    return Conversation(plan.name, plan.speakers, turns, np.concatenate(out))


# ---------------------------------------------------------------- scoring


def hypothesis_segments(
    lines: Sequence[events.Final], offset_s: float = 0.0, from_words: bool = False, merge_gap_s: float = MERGE_GAP_S
) -> list[tuple[float, float, str]]:
    """Who spoke when according to the transcript's lines: ``(start, end, label)`` on the conversation's clock.

    Args:
        lines: the transcript's finals (with revisions applied).
        offset_s: stream time of the conversation's start (the silence fed before it).
        from_words: each word's start to end (a line without words: its bounds) instead of each
            line's start to end (its first word's start to its last word's end).
        merge_gap_s: spans of one label closer than this are merged.
    """
    spans: dict[str, list[tuple[float, float]]] = defaultdict(list)
    for line in lines:
        label = line.speaker_label or "?"
        if from_words and line.words:
            spans[label] += [(w.start - offset_s, w.end - offset_s) for w in line.words]
        else:
            spans[label].append((line.start - offset_s, line.end - offset_s))
    merged = []
    for label, parts in spans.items():
        current: list[float] | None = None
        for start, end in sorted(parts):
            if current is not None and start - current[1] < merge_gap_s:
                current[1] = max(current[1], end)
                continue
            if current is not None:
                merged.append((current[0], current[1], label))
            current = [start, end]
        if current is not None:
            merged.append((current[0], current[1], label))
    return sorted((round(start, 3), round(end, 3), label) for start, end, label in merged)


def diarization_error(
    reference: Sequence[tuple[float, float, str]],
    hypothesis: Sequence[tuple[float, float, str]],
    collar: float = COLLAR_S,
) -> dict[str, float]:
    """pyannote.metrics' DER components of one conversation (seconds; ``total`` is reference speech).

    Args:
        reference: ``(start, end, speaker)`` of each reference turn.
        hypothesis: ``(start, end, label)``, e.g. from :func:`hypothesis_segments`.
        collar: seconds around each reference boundary that are not scored (both sides: ``collar`` / 2 each).
    """
    from pyannote.core import Annotation, Segment, Timeline
    from pyannote.metrics.diarization import DiarizationErrorRate

    def annotation(spans: Sequence[tuple[float, float, str]]) -> Annotation:
        result = Annotation()
        for index, (start, end, label) in enumerate(spans):
            if end > start:
                result[Segment(start, end), index] = label
        return result

    metric = DiarizationErrorRate(collar=collar, skip_overlap=False)
    # Scored from 0 to the last speech of either side (pyannote's own default, said outright).
    extent = Timeline([Segment(0.0, max((end for _, end, _ in [*reference, *hypothesis]), default=0.0))])
    detail = metric(annotation(reference), annotation(hypothesis), detailed=True, uem=extent)
    return {
        "confusion": float(detail["confusion"]),
        "missed": float(detail["missed detection"]),
        "false_alarm": float(detail["false alarm"]),
        "total": float(detail["total"]),
    }


def _der(parts: Sequence[dict[str, float]]) -> float | None:
    total = sum(p["total"] for p in parts)
    if not total:
        return None
    return sum(p["confusion"] + p["missed"] + p["false_alarm"] for p in parts) / total


def _words_in(text: str) -> int:
    return len(_NORMALIZE(text).split())


def cp_word_errors(
    reference: Sequence[tuple[str, str]], hypothesis: Sequence[tuple[str, str]]
) -> tuple[int, int, dict[str, str]]:
    """Concatenated minimum-permutation word errors (cpWER's numerator and denominator).

    Args:
        reference: ``(speaker, text)`` of each turn, in order.
        hypothesis: ``(label, text)`` of each line, in order.

    Returns:
        ``(word errors, reference words, {speaker: label})`` for the one-to-one assignment of
        labels to speakers with the fewest errors, each side's texts joined in order; a speaker
        left without a label counts all its words as deletions, a label left without a speaker
        all its words as insertions.
    """
    from scipy.optimize import linear_sum_assignment

    def joined(pairs: Sequence[tuple[str, str]]) -> dict[str, str]:
        texts: dict[str, list[str]] = defaultdict(list)
        for who, text in pairs:
            texts[who].append(text)
        return {who: " ".join(parts) for who, parts in texts.items()}

    refs, hyps = joined(reference), joined(hypothesis)
    speakers = [s for s in refs if _words_in(refs[s])]
    labels = [h for h in hyps if _words_in(hyps[h])]
    size = max(len(speakers), len(labels))
    cost = np.zeros((size, size))
    for i in range(size):
        for j in range(size):
            if i < len(speakers) and j < len(labels):
                cost[i, j] = _word_errors(refs[speakers[i]], hyps[labels[j]])[0]
            elif i < len(speakers):
                cost[i, j] = _words_in(refs[speakers[i]])  # no label: every word deleted
            elif j < len(labels):
                cost[i, j] = _words_in(hyps[labels[j]])  # no speaker: every word inserted
    rows, cols = linear_sum_assignment(cost)
    assignment = {
        speakers[i]: labels[j] for i, j in zip(rows, cols, strict=True) if i < len(speakers) and j < len(labels)
    }
    return int(cost[rows, cols].sum()), sum(_words_in(refs[s]) for s in speakers), assignment


# ---------------------------------------------------------------- the run


@dataclass
class StreamResult:
    """One conversation streamed once (diarize on or off)."""

    lines: list[events.Final]
    """The transcript's finals with revisions applied."""
    live_finals: list[events.Final]
    cpu_s: float
    diarize_cpu_s: float
    final_latency_s: float | None
    """End of the conversation's speech to its last final (engine_bench's measure of a clip)."""
    utterance_latencies: list[float]
    """End of speech to final of each utterance the speakers' pauses closed (see :func:`utterance_latencies`)."""
    revisions: int = 0
    labels: list[str] = field(default_factory=list)


def _stream(config, models, conversation: Conversation, chunk_ms: int) -> StreamResult:
    from stt_engine import StreamingSession

    padded = np.concatenate(
        [np.zeros(int(LEAD_S * SR), np.int16), conversation.audio, np.zeros(int(TAIL_S * SR), np.int16)]
    )
    session = StreamingSession(config, sample_rate=SR, language="en", models=models)
    shown, cpu = run_clip(session, padded, chunk_ms)
    finals = [(t, e) for t, e in shown if isinstance(e, events.Final)]
    lines = [line for line in current_finals(shown) if line.text.strip()]
    latency = finals[-1][0] - (LEAD_S + conversation.turns[-1].end) if finals else None
    return StreamResult(
        lines=lines,
        live_finals=[e for _, e in finals if e.text.strip()],
        cpu_s=cpu,
        diarize_cpu_s=session.stats.diarize_cpu_s,
        final_latency_s=latency,
        utterance_latencies=utterance_latencies(finals, [LEAD_S + turn.end for turn in conversation.turns]),
        revisions=sum(isinstance(e, events.Revised) for _, e in shown),
        labels=sorted({line.speaker_label for line in lines} - {""}),
    )


def utterance_latencies(finals: Sequence[tuple[float, events.Final]], speech_ends: Sequence[float]) -> list[float]:
    """End of speech to final, per utterance that ended where a turn ended.

    Args:
        finals: ``(time shown, final)`` on the stream clock; finals shown together (one
            utterance split at a change of voice) count once, at their last word.
        speech_ends: where each reference turn's speech ends, on the stream clock.

    Returns:
        For each group of finals whose last word ends within ``UTTERANCE_END_S`` of a turn's
        end (word times are approximate), the time shown minus that end. An utterance that
        went on into the next turn (a pause too short for the VAD), or was cut inside a turn
        (15 s without a pause), did not end with the speech: it is left out.
    """
    latencies = []
    groups: dict[float, list[events.Final]] = defaultdict(list)
    for shown_at, final in finals:
        groups[shown_at].append(final)
    for shown_at, group in sorted(groups.items()):
        last_word = max(final.end for final in group)
        ended = [end for end in speech_ends if abs(last_word - end) <= UTTERANCE_END_S]
        if ended:
            latencies.append(shown_at - min(ended, key=lambda end: abs(last_word - end)))
    return latencies


def _score(conversation: Conversation, lines: list[events.Final]) -> dict:
    """DER parts (from words and from line bounds), cpWER and plain WER counts of one transcript."""
    reference = [(t.start, t.end, t.speaker) for t in conversation.turns]
    labelled = [(line.speaker_label or "?", line.text) for line in lines]
    errors, words, assignment = cp_word_errors([(t.speaker, t.text) for t in conversation.turns], labelled)
    plain_errors, plain_words = _word_errors(
        " ".join(t.text for t in conversation.turns), " ".join(t for _, t in labelled)
    )
    return {
        "der_words": diarization_error(reference, hypothesis_segments(lines, LEAD_S, from_words=True)),
        "der_lines": diarization_error(reference, hypothesis_segments(lines, LEAD_S, from_words=False)),
        "cp_errors": errors,
        "cp_words": words,
        "assignment": assignment,
        "errors": plain_errors,
        "words": plain_words,
    }


def _json_or_text(value: str) -> object:
    try:
        return json.loads(value)
    except json.JSONDecodeError:
        return value


def _p50(values: list[float]) -> float | None:
    return float(np.percentile(values, 50)) if values else None


def _p95(values: list[float]) -> float | None:
    return float(np.percentile(values, 95)) if values else None


def _ratio(a: float, b: float) -> float | None:
    return a / b if b else None


def _round(value):
    if isinstance(value, float):
        return round(value, 4)
    if isinstance(value, dict):
        return {k: _round(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_round(v) for v in value]
    return value


def main(argv: list[str] | None = None) -> dict:
    """Build the conversations, stream each with diarize on and off, print a table and the summary.

    Returns:
        The summary dict (also written to ``--json`` when given).
    """
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--manifest", type=Path, default=DEFAULT_MANIFEST, help="folder with manifest.jsonl")
    parser.add_argument("--sizes", default="2,3,4", help="speakers per conversation, comma-separated")
    parser.add_argument(
        "--limit", type=int, default=2, help="conversations of each size (2: about 15 minutes on 2 cores)"
    )
    parser.add_argument("--seed", type=int, default=19)
    parser.add_argument("--json", type=Path, help="write the summary here")
    parser.add_argument("--chunk-ms", type=int, default=40)
    parser.add_argument(
        "--cpu-threads", type=int, default=0, help="threads of the final model (0: measured, as the server does)"
    )
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="FIELD=VALUE",
        help="override an EngineConfig field in both runs (repeatable), e.g. --set diarize_threshold=0.7",
    )
    parser.add_argument(
        "--no-off", action="store_true", help="skip the diarize-off run (no CPU difference, no plain WER)"
    )
    args = parser.parse_args(argv)

    from stt_engine import EngineConfig, StreamingSession, load_models

    folder = args.manifest if args.manifest.is_dir() else args.manifest.parent
    rows = [json.loads(line) for line in (folder / "manifest.jsonl").read_text().splitlines() if line.strip()]
    sizes = [int(s) for s in args.sizes.split(",") if s.strip()]
    plans = plan_conversations(rows, sizes, args.limit, args.seed)
    overrides = {key: _json_or_text(value) for key, _, value in (item.partition("=") for item in args.set)}
    config_off = EngineConfig(cpu_threads=args.cpu_threads, **{**overrides, "diarize": False}).validate()
    config_on = EngineConfig(cpu_threads=args.cpu_threads, **{**overrides, "diarize": True}).validate()
    models = load_models(config_on)

    started = time.perf_counter()
    word_times = whisper_word_timer(models.final_threads)
    conversations = [render_conversation(plan, folder, word_times) for plan in plans]
    del word_times
    build_s = time.perf_counter() - started
    short = sum(t.end - t.start < MIN_TURN_S for c in conversations for t in c.turns)
    print(
        f"built {len(conversations)} conversations in {build_s:.0f} s: "
        f"{sum(c.duration_s for c in conversations):.0f} s of audio, "
        f"{sum(len(c.turns) for c in conversations)} turns ({short} under {MIN_TURN_S:g} s); "
        f"final decodes on {models.final_threads} thread(s)",
        flush=True,
    )
    # Warm the diarizer (its voice encoder loads on first use) so that no conversation pays for it.
    warm_up = StreamingSession(config_on, sample_rate=SR, language="en", models=models)
    run_clip(warm_up, conversations[0].audio[: 3 * SR], args.chunk_ms)

    per_conversation = []
    print(_TABLE_HEADER, flush=True)
    for conversation in conversations:
        run_off = None if args.no_off else _stream(config_off, models, conversation, args.chunk_ms)
        run_on = _stream(config_on, models, conversation, args.chunk_ms)
        entry = {
            "conversation": conversation,
            "on": run_on,
            "off": run_off,
            "scored": _score(conversation, run_on.lines),
            "scored_live": _score(conversation, run_on.live_finals),
            "scored_off": None if run_off is None else _score(conversation, run_off.lines),
            "scored_off_live": None if run_off is None else _score(conversation, run_off.live_finals),
        }
        per_conversation.append(entry)
        print(_format_row(_row(entry)), flush=True)

    summary = _summarize(per_conversation, sizes, args, build_s, models.final_threads)
    print()
    print(json.dumps({k: v for k, v in summary.items() if k != "per_conversation"}, indent=2))
    if args.json:
        args.json.write_text(json.dumps(summary, indent=2) + "\n")
    return summary


_TABLE_HEADER = (
    f"{'conversation':<12} {'spk':>3} {'dur':>6} {'turns':>5} {'labels':>6} {'DER':>6} {'cpWER':>6} {'WER':>6} "
    f"{'WERoff':>6} {'cpu_on':>6} {'cpuoff':>6} {'diar':>6}"
)


def _format_row(row: dict) -> str:
    def number(value: float | None) -> str:
        return "   -  " if value is None else f"{value:6.3f}"

    columns = ("der", "cpwer", "wer", "wer_diarize_off", "cpu_s_on", "cpu_s_off", "diarize_cpu_s")
    return (
        f"{row['conversation']:<12} {row['speakers']:>3} {row['duration_s']:6.1f} {row['turns']:>5} "
        f"{row['labels_found']:>6} " + " ".join(number(row[c]) for c in columns)
    )


def _row(entry: dict) -> dict:
    """One conversation's figures (a row of the table and of ``per_conversation``)."""
    conversation, on, off, scored, scored_off = (
        entry[k] for k in ("conversation", "on", "off", "scored", "scored_off")
    )
    return {
        "conversation": conversation.name,
        "speakers": len(conversation.speakers),
        "speaker_names": list(conversation.speakers),
        "duration_s": conversation.duration_s,
        "turns": len(conversation.turns),
        "short_turns": sum(t.end - t.start < MIN_TURN_S for t in conversation.turns),
        "labels_found": len(on.labels),
        "labels": on.labels,
        "der": _der([scored["der_lines"]]),
        "der_from_words": _der([scored["der_words"]]),
        "cpwer": _ratio(scored["cp_errors"], scored["cp_words"]),
        "wer": _ratio(scored["errors"], scored["words"]),
        "wer_diarize_off": None if scored_off is None else _ratio(scored_off["errors"], scored_off["words"]),
        "assignment": scored["assignment"],
        "cpu_s_on": on.cpu_s,
        "cpu_s_off": None if off is None else off.cpu_s,
        "diarize_cpu_s": on.diarize_cpu_s,
        "final_latency_s": on.final_latency_s,
        "utterance_latencies_s": [round(v, 3) for v in on.utterance_latencies],
        "utterance_latencies_s_diarize_off": None if off is None else [round(v, 3) for v in off.utterance_latencies],
        "revisions": on.revisions,
        "revisions_diarize_off": None if off is None else off.revisions,
        "reference": [[t.speaker, t.start, t.end, t.text] for t in conversation.turns],
        "transcript": [
            [line.speaker_label, round(line.start - LEAD_S, 3), round(line.end - LEAD_S, 3), line.text]
            for line in on.lines
        ],
    }


def _summarize(per_conversation: list[dict], sizes: list[int], args, build_s: float, final_threads: int) -> dict:
    rows = [_row(e) for e in per_conversation]
    fed_s = sum(row["duration_s"] + LEAD_S + TAIL_S for row in rows)

    def der_of(size: int, key: str = "scored", part: str = "der_lines") -> float | None:
        return _der([e[key][part] for e, row in zip(per_conversation, rows, strict=True) if row["speakers"] == size])

    def pooled(key: str, errors: str = "errors", words: str = "words") -> float | None:
        runs = [e[key] for e in per_conversation if e[key] is not None]
        return _ratio(sum(r[errors] for r in runs), sum(r[words] for r in runs)) if runs else None

    have_off = all(e["off"] is not None for e in per_conversation)
    cpu_on = sum(e["on"].cpu_s for e in per_conversation)
    cpu_off = sum(e["off"].cpu_s for e in per_conversation) if have_off else None
    process = None if cpu_off is None else (cpu_on - cpu_off) / fed_s
    stats = sum(e["on"].diarize_cpu_s for e in per_conversation) / fed_s
    # Two runs of the whole engine differ by more than the diarizer costs when the machine is
    # busy (other processes, thread timing); the diarizer's own CPU count is then the figure.
    noisy = process is None or abs(process - stats) > max(0.02, stats)

    def latency(run: str) -> float | None:
        return _p50([value for e in per_conversation if e[run] for value in e[run].utterance_latencies])

    def last_latency(run: str) -> float | None:
        values = [e[run].final_latency_s for e in per_conversation if e[run] and e[run].final_latency_s is not None]
        return _p50(values)

    summary = {
        # The issue's keys.
        **{f"der_{size}spk": der_of(size) if size in sizes else None for size in (2, 3, 4)},
        "cpwer": pooled("scored", "cp_errors", "cp_words"),
        "wer": pooled("scored"),
        "speakers_found_ok": sum(row["labels_found"] == row["speakers"] for row in rows) / len(rows),
        "extra_cpu_s_per_audio_s": stats if noisy else process,
        "final_latency_p50": latency("on"),
        # Beside them.
        "scored_on": "the transcript with each stt_revised applied (refinement on); *_live: the live finals alone",
        "der_from": "each line's start to end (first to last word) by speaker_label, merged across gaps < 0.5 s"
        " (collar 0.25 s); *_from_words: each word's start to end",
        "extra_cpu_from": "SessionStats.diarize_cpu_s (the on-off process difference is noise here)"
        if noisy
        else "process CPU with diarize on minus off",
        "extra_cpu_s_per_audio_s_process": process,
        "diarize_cpu_s_per_audio_s": stats,
        "cpu_s_per_audio_s_on": cpu_on / fed_s,
        "cpu_s_per_audio_s_off": None if cpu_off is None else cpu_off / fed_s,
        **{f"der_{size}spk_from_words": der_of(size, part="der_words") for size in sizes},
        **{f"der_{size}spk_live": der_of(size, key="scored_live") for size in sizes},
        **{
            f"der_{size}spk_seconds": {
                part: sum(
                    e["scored"]["der_lines"][part]
                    for e, row in zip(per_conversation, rows, strict=True)
                    if row["speakers"] == size
                )
                for part in ("confusion", "missed", "false_alarm", "total")
            }
            for size in sizes
        },
        "cpwer_live": pooled("scored_live", "cp_errors", "cp_words"),
        "wer_live": pooled("scored_live"),
        "wer_diarize_off": pooled("scored_off") if have_off else None,
        "wer_diarize_off_live": pooled("scored_off_live") if have_off else None,
        "final_latency_p50_diarize_off": latency("off") if have_off else None,
        "final_latency_from": "end of a turn's speech to the final of an utterance that ended with it",
        "final_latency_p95": _p95([value for e in per_conversation for value in e["on"].utterance_latencies]),
        "final_latency_last_p50": last_latency("on"),
        "final_latency_last_p50_diarize_off": last_latency("off") if have_off else None,
        "conversations": len(rows),
        "audio_s": sum(row["duration_s"] for row in rows),
        "turns": sum(row["turns"] for row in rows),
        "short_turns": sum(row["short_turns"] for row in rows),
        "seed": args.seed,
        "build_s": build_s,
        "cpu_count": os.cpu_count(),
        "final_threads": final_threads,
        "per_conversation": rows,
    }
    return _round(summary)


if __name__ == "__main__":
    main()
