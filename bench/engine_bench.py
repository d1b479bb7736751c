"""Streaming engine benchmark: latency, accuracy and cost of stt_engine on the dev clips.

Every clip is streamed through a :class:`stt_engine.StreamingSession` at real-time pace on a
simulated clock: a chunk of ``--chunk-ms`` becomes available when its last sample would have
been spoken, the engine starts on it when it is free, and the clock advances by the measured
compute time, so a slow decode delays everything queued behind it exactly as in a live
stream. Each clip gets 0.5 s of silence before it and 1.5 s after (so the VAD closes).

Measured (seconds): speech onset (energy above the noise floor, see ``_speech_bounds``)
-> first partial; partial lag (when a partial is shown minus
the stream time of the audio it covers); end of speech -> final of the clip's last utterance
(including the post-speech silence window); CPU seconds per second of audio streamed; peak
RSS of the process (models + session, i.e. one engine process). Final WER is printed beside
the WER of plain offline faster-whisper base (int8, beam 5) on the same clips.

On ~1500 words, base's WER moves by several words when its input moves by a fraction of a
second, so one offline number is one draw. The offline pass is therefore repeated with
``--offline-leads`` seconds of silence before each clip (0.5 s is what the stream gets), and the
gap final - offline gets a 95% interval from a paired bootstrap over clips (``wer_gap_ci95``):
an interval that holds 0 is a gap the dev set cannot tell from noise. The time of
one final decode of 5 s of speech (``reference_decode_5s``) is printed first: latency and CPU
scale with it, so runs on different machines can be compared.

Usage::

    python bench/engine_bench.py [--manifest DIR] [--limit N] [--json PATH]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import soundfile as sf

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import jiwer
from whisper_normalizer.english import EnglishTextNormalizer

from stt_engine import EngineConfig, StreamingSession, events, load_models
from stt_engine.model_files import resolve_model_path

__all__ = ["ClipResult", "current_finals", "main", "paired_bootstrap_ci", "refined_text", "run_clip"]

SR = 16000
LEAD_S = 0.5
TAIL_S = 1.5
DEFAULT_MANIFEST = Path(__file__).resolve().parents[2] / "shared" / "audio" / "dev"
_NORMALIZE = EnglishTextNormalizer()


@dataclass
class ClipResult:
    """Measurements of one streamed clip."""

    name: str
    duration_s: float
    reference: str
    final_text: str
    refined_text: str = ""
    """The finals with each ``Revised`` applied in place (what the transcript holds)."""
    revision_latency_s: float | None = None
    """From the end of speech to the clip's last revision being shown."""
    offline_text: str = ""
    first_partial_s: float | None = None
    final_latency_s: float | None = None
    partial_lags: list[float] = field(default_factory=list)
    cpu_s: float = 0.0
    fed_s: float = 0.0
    finals: int = 0


def _speech_bounds(audio: np.ndarray) -> tuple[float, float]:
    """First and last 20 ms frame loud enough to be speech.

    The threshold is 30 dB below the clip's loud frames (95th percentile) but at least 10 dB
    above its noise floor (10th percentile), so a clip with audible background noise from
    its first sample does not count the noise as the speech onset. A piece that is speech
    throughout (no frame 10 dB above its quietest) has no noise floor: the first rule alone.
    """
    frame = SR // 50
    n = len(audio) // frame
    rms = np.sqrt(np.mean(audio[: n * frame].astype(np.float64).reshape(n, frame) ** 2, axis=1) + 1e-12)
    db = 20 * np.log10(rms + 1e-9)
    threshold = max(np.percentile(db, 95) - 30.0, np.percentile(db, 10) + 10.0)
    active = np.nonzero(db >= threshold)[0]
    if not active.size:
        active = np.nonzero(db >= np.percentile(db, 95) - 30.0)[0]
    return float(active[0] * frame / SR), float((active[-1] + 1) * frame / SR)


def _reference_decode_s(config: EngineConfig, models, path: Path) -> float:
    """Seconds one final decode of the first 5 s of ``path`` takes (best of 3).

    The latency and CPU figures scale with this machine's speed; printing it beside them
    lets runs on different machines be compared.
    """
    from stt_engine.recognizer import Recognizer

    audio, _ = sf.read(str(path), dtype="float32", frames=5 * SR)
    recognizer = Recognizer(config, models)
    times = []
    for _ in range(3):
        started = time.perf_counter()
        recognizer.final(audio, "en")
        times.append(time.perf_counter() - started)
    return min(times)


def run_clip(
    session: StreamingSession, audio: np.ndarray, chunk_ms: int
) -> tuple[list[tuple[float, events.Event]], float]:
    """Stream int16 ``audio`` on the simulated clock.

    Returns:
        ``[(time shown, event)]`` and the CPU seconds the process spent.
    """
    step = SR * chunk_ms // 1000
    clock = 0.0
    shown: list[tuple[float, events.Event]] = []
    cpu0 = time.process_time()
    i = 0
    while i < len(audio):
        # The engine host feeds whatever queued up while it was busy in one call.
        clock = max(clock, min(i + step, len(audio)) / SR)
        end = max(i + step, min(len(audio), int(clock * SR) // step * step))
        chunk = audio[i:end]
        i = end
        started = time.perf_counter()
        out = session.feed(chunk.tobytes())
        clock += time.perf_counter() - started
        shown += [(clock, e) for e in out]
        # The engine process refines an ended turn between commands, on the same clock.
        started = time.perf_counter()
        out = session.refine()
        clock += time.perf_counter() - started
        shown += [(clock, e) for e in out]
    for step_of_stop in (session.flush, session.stop):  # as the engine process: the last final first
        started = time.perf_counter()
        out = step_of_stop()
        clock += time.perf_counter() - started
        shown += [(clock, e) for e in out]
    return shown, time.process_time() - cpu0


def current_finals(shown: list[tuple[float, events.Event]]) -> list[events.Final]:
    """The transcript's lines after every final and revision: a revision replaces its finals in place."""
    lines: list[events.Final] = []
    for _, e in shown:
        if isinstance(e, events.Final):
            lines.append(e)
        elif isinstance(e, events.Revised):
            at = min((i for i, line in enumerate(lines) if line.utterance_index in e.replaces), default=len(lines))
            lines = [line for line in lines if line.utterance_index not in e.replaces]
            lines[at:at] = e.utterances
    return lines


def refined_text(shown: list[tuple[float, events.Event]]) -> str:
    """The transcript after every final and revision (see :func:`current_finals`)."""
    return " ".join(line.text for line in current_finals(shown))


def paired_bootstrap_ci(
    errors_a: list[int], errors_b: list[int], words: list[int], resamples: int = 10000, seed: int = 0
) -> tuple[float, float]:
    """95% interval of WER(a) - WER(b) when the clips are drawn again with replacement.

    Args:
        errors_a: word errors of system a, one number per clip.
        errors_b: word errors of system b on the same clips.
        words: reference words of each clip.
        resamples: bootstrap draws.
        seed: seed of the draws, so that a run can be repeated.

    Returns:
        The 2.5th and 97.5th percentiles of the difference (a positive one: a is worse).
    """
    if not (len(errors_a) == len(errors_b) == len(words)) or not words:
        raise ValueError("one error count per clip for both systems, and at least one clip")
    rng = np.random.default_rng(seed)
    diff = np.asarray(errors_a, dtype=np.float64) - np.asarray(errors_b, dtype=np.float64)
    counts = np.asarray(words, dtype=np.float64)
    draws = rng.integers(0, len(words), size=(resamples, len(words)))
    gaps = diff[draws].sum(axis=1) / np.maximum(counts[draws].sum(axis=1), 1.0)
    low, high = np.percentile(gaps, [2.5, 97.5])
    return float(low), float(high)


def _word_errors(reference: str, hypothesis: str) -> tuple[int, int]:
    """(errors, reference words) after Whisper's English normalization."""
    reference = _NORMALIZE(reference)
    out = jiwer.process_words(reference, _NORMALIZE(hypothesis) or "<empty>")
    return out.substitutions + out.deletions + out.insertions, len(reference.split())


def _p(values: list[float], q: float) -> float | None:
    if not values:
        return None
    return float(np.percentile(values, q))


def _fmt(value: float | None) -> str:
    return "   -  " if value is None else f"{value:6.2f}"


def main(argv: list[str] | None = None) -> dict:
    """Run the benchmark; print a table and the summary JSON.

    Returns:
        The summary dict (also written to ``--json`` when given).
    """
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--manifest", type=Path, default=DEFAULT_MANIFEST, help="folder with manifest.jsonl")
    parser.add_argument("--limit", type=int, default=0, help="only the first N clips")
    parser.add_argument("--json", type=Path, help="write the summary here")
    parser.add_argument("--chunk-ms", type=int, default=40)
    parser.add_argument("--cpu-threads", type=int, default=0,
                        help="threads of the final model (0: measured, as the server does)")
    parser.add_argument("--only", default="", help="only clips whose file name contains this")
    parser.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                        help="override an EngineConfig field (repeatable), e.g. --set beam_size=3")
    parser.add_argument("--no-offline", action="store_true", help="skip the offline base WER")
    parser.add_argument("--offline-leads", default="0.5",
                        help="comma-separated seconds of silence before each clip for extra offline passes "
                             "(offline's own noise band; empty for none)")
    args = parser.parse_args(argv)

    folder = args.manifest if args.manifest.is_dir() else args.manifest.parent
    rows = [json.loads(line) for line in (folder / "manifest.jsonl").read_text().splitlines() if line.strip()]
    rows = [row for row in rows if args.only in row["audio"]]
    if args.limit:
        rows = rows[: args.limit]
    overrides = {}
    for item in args.set:
        key, _, value = item.partition("=")
        try:
            overrides[key] = json.loads(value)
        except json.JSONDecodeError:
            overrides[key] = value
    config = EngineConfig(cpu_threads=args.cpu_threads, **overrides).validate()
    models = load_models(config)
    machine_speed = _reference_decode_s(config, models, folder / rows[0]["audio"])
    measured = f" (measured: {models.thread_choice.seconds} s per probe)" if models.thread_choice else ""
    print(f"this machine: final decodes on {models.final_threads} thread(s){measured}; one final decode "
          f"of 5 s of speech takes {machine_speed:.2f} s", flush=True)

    results: list[ClipResult] = []
    totals = {"speculative_hits": 0, "speculative_misses": 0, "partial_decodes": 0, "final_decodes": 0,
              "partial_seconds": 0.0, "final_seconds": 0.0, "refinements": 0, "refine_seconds": 0.0}
    for row in rows:
        audio, rate = sf.read(str(folder / row["audio"]), dtype="int16")
        if rate != SR:
            raise SystemExit(f"{row['audio']}: expected 16 kHz, got {rate}")
        onset, speech_end = _speech_bounds(audio)
        padded = np.concatenate([np.zeros(int(LEAD_S * SR), np.int16), audio, np.zeros(int(TAIL_S * SR), np.int16)])
        session = StreamingSession(config, sample_rate=SR, language="en", models=models)
        shown, cpu = run_clip(session, padded, args.chunk_ms)
        for key in totals:
            totals[key] += getattr(session.stats, key)
        finals = [(t, e) for t, e in shown if isinstance(e, events.Final)]
        partials = [(t, e) for t, e in shown if isinstance(e, events.PartialUpdate)]
        result = ClipResult(
            name=row["audio"],
            duration_s=len(audio) / SR,
            reference=row["text"],
            final_text=" ".join(e.text for _, e in finals),
            refined_text=refined_text(shown),
            cpu_s=cpu,
            fed_s=len(padded) / SR,
            finals=len(finals),
        )
        first_text = [t for t, e in shown if isinstance(e, events.PartialUpdate | events.Final)]
        if first_text:
            result.first_partial_s = first_text[0] - (LEAD_S + onset)
        if finals:
            result.final_latency_s = finals[-1][0] - (LEAD_S + speech_end)
        revised = [t for t, e in shown if isinstance(e, events.Revised)]
        if revised:
            result.revision_latency_s = revised[-1] - (LEAD_S + speech_end)
        result.partial_lags = [t - e.at for t, e in partials]
        results.append(result)
        print(f"  streamed {row['audio']:<48} {result.duration_s:6.1f}s finals={result.finals} "
              f"first={_fmt(result.first_partial_s)} final_lat={_fmt(result.final_latency_s)}", flush=True)
    peak_rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0

    scored = [_word_errors(r.reference, r.final_text) for r in results]
    words = [n for _, n in scored]
    final_errors = [e for e, _ in scored]
    final_wer = sum(final_errors) / max(sum(words), 1)
    refined_wer = sum(_word_errors(r.reference, r.refined_text)[0] for r in results) / max(sum(words), 1)
    offline_wer = gap_ci = None
    offline_by_lead: dict[str, float] = {}
    offline_errors: list[int] = []
    if not args.no_offline:
        from faster_whisper import WhisperModel

        offline = WhisperModel(str(resolve_model_path("base")), device="cpu", compute_type="int8",
                               cpu_threads=models.final_threads)
        leads = [0.0] + [float(x) for x in args.offline_leads.split(",") if x.strip() and float(x) != 0.0]
        clips = [sf.read(str(folder / r.name), dtype="float32")[0] for r in results]
        for lead in leads:
            texts = []
            for clip in clips:
                audio = np.concatenate([np.zeros(round(lead * SR), np.float32), clip])
                segments, _ = offline.transcribe(audio, beam_size=5, language="en")
                texts.append(" ".join(s.text.strip() for s in segments))
            errors = [_word_errors(r.reference, text)[0] for r, text in zip(results, texts, strict=True)]
            offline_by_lead[f"{lead:g}"] = round(sum(errors) / max(sum(words), 1), 4)
            print(f"  offline base with {lead:g} s of silence before each clip: WER {offline_by_lead[f'{lead:g}']}",
                  flush=True)
            if lead == 0.0:  # the reference row: raw clips, as offline_wer always was
                offline_errors = errors
                for result, text in zip(results, texts, strict=True):
                    result.offline_text = text
        offline_wer = offline_by_lead["0"]
        gap_ci = paired_bootstrap_ci(final_errors, offline_errors, words)

    print()
    wers = [e / max(n, 1) for e, n in scored]
    offline_wers = (
        [e / max(n, 1) for e, n in zip(offline_errors, words, strict=True)] if offline_errors else [None] * len(results)
    )
    print(f"{'clip':<48} {'dur':>6} {'WER':>6} {'offWER':>6} {'first':>6} {'final':>6} {'lag':>6}")
    for r, wer, off in zip(results, wers, offline_wers, strict=True):
        print(f"{r.name:<48} {r.duration_s:6.1f} {wer:6.3f} {_fmt(off)} {_fmt(r.first_partial_s)} "
              f"{_fmt(r.final_latency_s)} {_fmt(_p(r.partial_lags, 50))}")
    first = [r.first_partial_s for r in results if r.first_partial_s is not None]
    final_lat = [r.final_latency_s for r in results if r.final_latency_s is not None]
    lags = [lag for r in results for lag in r.partial_lags]
    summary = {
        "final_wer": round(final_wer, 4),
        "refined_wer": round(refined_wer, 4),
        "revision_latency_p50": _p([r.revision_latency_s for r in results if r.revision_latency_s is not None], 50),
        "offline_wer": None if offline_wer is None else round(offline_wer, 4),
        "offline_wer_by_lead_s": offline_by_lead,
        "wer_gap": None if offline_wer is None else round(final_wer - offline_wer, 4),
        "wer_gap_ci95": None if gap_ci is None else [round(v, 4) for v in gap_ci],
        "words": sum(words),
        "first_partial_p50": _p(first, 50),
        "partial_lag_p50": _p(lags, 50),
        "partial_lag_p95": _p(lags, 95),
        "final_latency_p50": _p(final_lat, 50),
        "final_latency_p95": _p(final_lat, 95),
        "cpu_s_per_audio_s": round(sum(r.cpu_s for r in results) / sum(r.fed_s for r in results), 4),
        "peak_rss_mb": round(peak_rss_mb, 1),
        "clips": len(results),
        "audio_s": round(sum(r.duration_s for r in results), 1),
        "cpu_count": os.cpu_count(),
        "reference_decode_5s": round(machine_speed, 3),
        "final_threads": models.final_threads,
        **totals,
        "per_clip": [
            {
                "clip": r.name,
                "duration_s": round(r.duration_s, 2),
                "wer": round(wer, 4),
                "offline_wer": None if off is None else round(off, 4),
                "finals": r.finals,
                "first_partial_s": r.first_partial_s,
                "final_latency_s": r.final_latency_s,
                "text": r.final_text,
                "refined_text": r.refined_text,
                "revision_latency_s": r.revision_latency_s,
                "offline_text": r.offline_text,
                "reference": r.reference,
            }
            for r, wer, off in zip(results, wers, offline_wers, strict=True)
        ],
    }
    summary = {k: (round(v, 4) if isinstance(v, float) else v) for k, v in summary.items()}
    print()
    print(json.dumps({k: v for k, v in summary.items() if k != "per_clip"}, indent=2))
    if args.json:
        args.json.write_text(json.dumps(summary, indent=2) + "\n")
    return summary


if __name__ == "__main__":
    main()
