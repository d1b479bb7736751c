"""Helpers for the engine tests: read clips as PCM, stream them, check event sequences."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

from stt_engine import StreamingSession, events

__all__ = [
    "check_event_order",
    "check_stabilized_never_retracts",
    "current_text",
    "finals",
    "read_pcm",
    "resample_pcm",
    "revisions",
    "stream",
    "synthetic_noise",
]


def read_pcm(path: Path, lead_s: float = 0.5, tail_s: float = 1.5) -> np.ndarray:
    """A 16 kHz clip as int16 samples, with silence before and after (so the VAD closes)."""
    audio, rate = sf.read(str(path), dtype="int16")
    assert rate == 16000
    return np.concatenate([np.zeros(int(lead_s * 16000), np.int16), audio, np.zeros(int(tail_s * 16000), np.int16)])


def resample_pcm(pcm: np.ndarray, rate: int) -> np.ndarray:
    """16 kHz int16 samples resampled to ``rate``."""
    out = soxr.resample(pcm.astype(np.float32) / 32768.0, 16000, rate)
    return np.clip(out * 32768.0, -32768, 32767).astype(np.int16)


def no_decode_time() -> float:
    """A simulated clock for ``StreamingSession(timer=...)`` on which decoding takes no time.

    A partial's compute time spaces out the next one (``partial_cost_factor``); on the wall clock
    the partials of a test would depend on how fast and busy the machine is. On this clock they
    come at the config's intervals of stream time, the same on every machine.
    """
    return 0.0


def stream(
    session: StreamingSession, pcm: np.ndarray, rate: int = 16000, chunk_ms: int = 40, stop: bool = True
) -> list[events.Event]:
    """Feed ``pcm`` in chunks of ``chunk_ms`` and return every event (plus ``stop()``'s)."""
    step = max(1, rate * chunk_ms // 1000)
    out: list[events.Event] = []
    for i in range(0, len(pcm), step):
        out.extend(session.feed(pcm[i : i + step].tobytes()))
    if stop:
        out.extend(session.stop())
    return out


def finals(evs: list[events.Event]) -> list[events.Final]:
    return [e for e in evs if isinstance(e, events.Final)]


def revisions(evs: list[events.Event]) -> list[events.Revised]:
    return [e for e in evs if isinstance(e, events.Revised)]


def current_text(evs: list[events.Event]) -> str:
    """The transcript a client holds after ``evs``: finals, with each revision applied in place."""
    lines: list[tuple[int, str]] = []
    for e in evs:
        if isinstance(e, events.Final):
            lines.append((e.utterance_index, e.text))
        elif isinstance(e, events.Revised):
            at = min(i for i, (index, _) in enumerate(lines) if index in e.replaces)
            lines = [line for line in lines if line[0] not in e.replaces]
            lines[at:at] = [(u.utterance_index, u.text) for u in e.utterances]
    return " ".join(text for _, text in lines)


def synthetic_noise(kind: str, seconds: float, seed: int = 7) -> np.ndarray:
    """Non-speech test signals as int16 at 16 kHz: silence, white, pink, or a music-like tone mix."""
    rng = np.random.default_rng(seed)
    n = int(seconds * 16000)
    if kind == "silence":
        x = np.zeros(n)
    elif kind == "white":
        x = rng.normal(0, 0.08, n)
    elif kind == "pink":
        spectrum = np.fft.rfft(rng.normal(0, 1, n))
        freqs = np.fft.rfftfreq(n, 1 / 16000)
        spectrum[1:] /= np.sqrt(freqs[1:])
        spectrum[0] = 0
        x = np.fft.irfft(spectrum, n)
        x = 0.1 * x / np.sqrt(np.mean(x**2))
    elif kind == "music":
        t = np.arange(n) / 16000
        x = np.zeros(n)
        notes = [220.0, 261.6, 329.6, 392.0, 440.0, 523.3]
        beat = int(0.4 * 16000)
        for k, start in enumerate(range(0, n, beat)):
            seg = slice(start, min(n, start + beat))
            env = np.exp(-3.0 * (t[seg] - t[start]))
            for f in (notes[k % len(notes)], notes[(k + 2) % len(notes)] * 1.5):
                for h in (1, 2, 3):
                    x[seg] += env * np.sin(2 * np.pi * f * h * t[seg]) / h
        x = 0.15 * x / np.max(np.abs(x))
    else:
        raise ValueError(kind)
    return np.clip(x * 32768.0, -32768, 32767).astype(np.int16)


def check_event_order(evs: list[events.Event]) -> None:
    """Assert the documented per-utterance order and consistent times (see stt_engine.session)."""
    assert evs, "no events at all"
    assert isinstance(evs[0], events.StateChanged) and evs[0].state == "listening"
    ats = [e.at for e in evs]
    assert ats == sorted(ats), "event times go backwards"
    state = "listening"
    rec_start: float | None = None
    i = 1
    names = [type(e).__name__ + (f"({e.state})" if isinstance(e, events.StateChanged) else "") for e in evs]
    while i < len(evs):
        e = evs[i]
        if state == "listening":
            if isinstance(e, events.Revised):  # a turn's refinement comes between utterances
                i += 1
                continue
            if isinstance(e, events.StateChanged) and e.state == "idle":
                state = "idle"
                i += 1
                continue
            assert names[i : i + 3] == ["VadStart", "RecordingStart", "StateChanged(recording)"], names[i : i + 3]
            rec_start = evs[i + 1].start
            state = "recording"
            i += 3
        elif state == "recording":
            if isinstance(e, events.PartialUpdate | events.Stabilized):
                i += 1
                continue
            if isinstance(e, events.VadStop):
                assert isinstance(evs[i + 1], events.RecordingStop), names[i : i + 2]
                stop = evs[i + 1]
                i += 2
                cut = False
            else:
                assert isinstance(e, events.RecordingStop), names[i]
                stop = e
                i += 1
                cut = True
            assert rec_start is not None and stop.end >= rec_start
            if names[i] == "StateChanged(transcribing)":
                i += 1
                # One final, or several in a row on a diarized stream (split where the speaker changed).
                while isinstance(evs[i], events.Final):
                    f = evs[i]
                    assert f.text.strip()
                    assert rec_start - 0.05 <= f.start <= f.end <= stop.end + 0.05, (rec_start, f, stop)
                    starts = [w.start for w in f.words]
                    assert starts == sorted(starts)
                    assert all(0.0 <= w.probability <= 1.0 for w in f.words)
                    assert 0.0 <= f.confidence <= 1.0
                    i += 1
            if cut:
                assert names[i : i + 2] == ["RecordingStart", "StateChanged(recording)"], names[i : i + 2]
                rec_start = evs[i].start
                i += 2
            else:
                assert names[i] in ("StateChanged(listening)", "StateChanged(idle)"), names[i]
                state = "listening" if names[i] == "StateChanged(listening)" else "idle"
                i += 1
        else:
            raise AssertionError(f"event after idle: {names[i]}")
    assert state == "idle", "the stream did not end idle"


def check_stabilized_never_retracts(evs: list[events.Event]) -> int:
    """Assert stabilized text only grows within an utterance; return how many Stabilized events."""
    stable = ""
    count = 0
    for e in evs:
        if isinstance(e, events.RecordingStart):
            stable = ""
        elif isinstance(e, events.Stabilized):
            assert e.text.startswith(stable) and len(e.text) > len(stable), (stable, e.text)
            stable = e.text
            count += 1
        elif isinstance(e, events.PartialUpdate):
            assert e.text.startswith(stable), (stable, e.text)
    return count
