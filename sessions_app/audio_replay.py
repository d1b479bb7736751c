"""The audio of a stream's open utterance, kept so that a crashed engine's successor can hear it again.

An engine process holds the utterance in progress only in its memory; when it dies, that audio
is on disk (the recording) but no longer in any engine. :class:`ReplayBuffer` keeps, on the
recording clock, the audio given to the stream's engine since the end of its last final (or
since the start of the engine stream), bounded to ``max_s`` seconds. On a crash the feeder starts
a fresh engine at :attr:`ReplayBuffer.start_s` and sends it :meth:`ReplayBuffer.audio` first, so
the final of that utterance still comes, with its times on the recording clock.

The bound (30 s) is twice the longest utterance an engine makes (it cuts one at
``max_utterance_s``, 15 s by default); each kept second costs 32 kB at 16 kHz.

Audio that killed :data:`MAX_REPLAYS` engines in a row (no final came from any of them) is not
replayed again: it is dropped from the buffer, so audio that crashes the engine cannot make the
server load engines for ever. It stays in the recording, for the post-session pass.
"""

from __future__ import annotations

from collections import deque

__all__ = ["DEFAULT_MAX_S", "MAX_REPLAYS", "ReplayBuffer"]

DEFAULT_MAX_S = 30.0
MAX_REPLAYS = 2


class ReplayBuffer:
    """PCM16 mono audio on the recording clock since the last final, at most ``max_s`` seconds."""

    def __init__(self, sample_rate: int, start_s: float, max_s: float = DEFAULT_MAX_S) -> None:
        if sample_rate <= 0 or max_s <= 0:
            raise ValueError("sample_rate and max_s must be positive")
        self.sample_rate = sample_rate
        self.max_samples = int(max_s * sample_rate)
        self._start_sample = round(start_s * sample_rate)  # the first kept sample, on the recording clock
        self._chunks: deque[bytes] = deque()
        self._samples = 0  # kept
        self._replays = 0  # engines given the kept audio since its start last moved on

    @property
    def start_s(self) -> float:
        """Where the kept audio begins on the recording clock."""
        return self._start_sample / self.sample_rate

    @property
    def end_s(self) -> float:
        """Where the kept audio ends (the end of what the engine was given)."""
        return (self._start_sample + self._samples) / self.sample_rate

    @property
    def duration_s(self) -> float:
        return self._samples / self.sample_rate

    def append(self, pcm: bytes) -> None:
        """Audio just given to the engine (whole 16-bit samples); the oldest goes past ``max_s``."""
        if not pcm:
            return
        self._chunks.append(bytes(pcm))
        self._samples += len(pcm) // 2
        self._drop(self._samples - self.max_samples)

    def final_until(self, end_s: float) -> None:
        """A final covers the audio up to ``end_s`` (recording clock): it need not be heard again."""
        if self._drop(round(end_s * self.sample_rate) - self._start_sample):
            self._replays = 0

    def audio(self) -> bytes:
        """The kept audio, oldest first."""
        return b"".join(self._chunks)

    def audio_to_replay(self) -> bytes:
        """The kept audio for a fresh engine; after :data:`MAX_REPLAYS` such engines without a
        final it is dropped instead (returns ``b""``, and :attr:`start_s` moves to its end)."""
        if not self._samples:
            return b""
        if self._replays >= MAX_REPLAYS:
            self._drop(self._samples)
            self._replays = 0
            return b""
        self._replays += 1
        return self.audio()

    def _drop(self, samples: int) -> bool:
        """Forget the oldest ``samples`` samples (none if not positive; at most all); whether any went."""
        samples = min(samples, self._samples)
        if samples <= 0:
            return False
        self._start_sample += samples
        self._samples -= samples
        while samples:
            head = self._chunks[0]
            if len(head) // 2 <= samples:
                self._chunks.popleft()
                samples -= len(head) // 2
            else:
                self._chunks[0] = head[samples * 2 :]
                samples = 0
        return True
