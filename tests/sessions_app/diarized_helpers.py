"""A two-person conversation on one microphone, built from dev clips of two LibriSpeech readers."""

from __future__ import annotations

import wave
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile

from tests.speech import dev_clip

RATE = 16000
# Alternating turns of speakers 1688 and 3331 (4 to 6 s each), as people talk in a meeting room.
TURN_CLIPS = (
    "ls_test-other_1688-142285-0003",
    "ls_test-other_3331-159605-0002",
    "ls_test-other_1688-142285-0004",
    "ls_test-other_3331-159605-0003",
)
GAP_S = 0.8


@dataclass(frozen=True)
class Turn:
    voice: str  # the reader's id ("1688")
    start: float
    end: float
    text: str


@dataclass(frozen=True)
class Conversation:
    pcm: bytes  # 16 kHz PCM16 mono, with 2 s of silence at the end
    turns: list[Turn]

    @property
    def duration_s(self) -> float:
        return len(self.pcm) / 2 / RATE

    def voice_at(self, start: float, end: float) -> str | None:
        """The voice of the turn holding the middle of ``start``-``end`` (``None``: in a gap)."""
        middle = (start + end) / 2
        return next((t.voice for t in self.turns if t.start - 0.3 <= middle <= t.end + 0.3), None)

    def write_wav(self, path: Path) -> Path:
        with wave.open(str(path), "wb") as wav:
            wav.setnchannels(1)
            wav.setsampwidth(2)
            wav.setframerate(RATE)
            wav.writeframes(self.pcm)
        return path


def two_voices() -> Conversation:
    """The clips of ``TURN_CLIPS`` one after another, ``GAP_S`` of silence between turns."""
    pieces, turns, at = [], [], 0.0
    for name in TURN_CLIPS:
        clip = dev_clip(name)
        audio, rate = soundfile.read(str(clip.path), dtype="int16")
        assert rate == RATE
        turns.append(Turn(name.split("_")[2].split("-")[0], at, at + len(audio) / RATE, clip.text))
        pieces += [audio, np.zeros(int(GAP_S * RATE), dtype=np.int16)]
        at += len(audio) / RATE + GAP_S
    pieces.append(np.zeros(int(1.2 * RATE), dtype=np.int16))  # (2 s of silence after the last turn)
    return Conversation(np.concatenate(pieces).astype("<i2").tobytes(), turns)
