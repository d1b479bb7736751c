"""PCM input: validation, conversion to float32 and streaming resampling to 16 kHz."""

from __future__ import annotations

import numpy as np
import soxr

from .config import ENGINE_SAMPLE_RATE
from .errors import AudioFormatError

__all__ = ["MAX_SAMPLE_RATE", "MIN_SAMPLE_RATE", "PcmConverter", "check_sample_rate", "pcm16_to_float"]

MIN_SAMPLE_RATE = 8000
MAX_SAMPLE_RATE = 48000


def check_sample_rate(sample_rate: object) -> int:
    """Validate an input sample rate.

    Args:
        sample_rate: the rate the client declared.

    Returns:
        The rate as an ``int``.

    Raises:
        AudioFormatError: not an integer between 8000 and 48000.
    """
    if isinstance(sample_rate, bool) or not isinstance(sample_rate, int | np.integer):
        raise AudioFormatError(f"sample_rate must be an integer, got {type(sample_rate).__name__}.")
    rate = int(sample_rate)
    if not MIN_SAMPLE_RATE <= rate <= MAX_SAMPLE_RATE:
        raise AudioFormatError(
            f"sample_rate {rate} Hz is not supported: use {MIN_SAMPLE_RATE} to {MAX_SAMPLE_RATE} Hz."
        )
    return rate


def pcm16_to_float(data: bytes | bytearray | memoryview) -> np.ndarray:
    """Convert PCM s16le mono bytes to float32 samples in [-1, 1).

    Args:
        data: raw little-endian 16-bit samples; the byte count must be even.

    Returns:
        A float32 array with one value per sample.

    Raises:
        AudioFormatError: ``data`` is not bytes-like or has an odd number of bytes.
    """
    if not isinstance(data, bytes | bytearray | memoryview):
        raise AudioFormatError(
            f"Audio must be bytes of PCM s16le mono, got {type(data).__name__}."
        )
    raw = bytes(data)
    if len(raw) % 2:
        raise AudioFormatError(
            f"Audio chunk has {len(raw)} bytes, an odd count: PCM s16le needs 2 bytes per sample."
        )
    return np.frombuffer(raw, dtype="<i2").astype(np.float32) / 32768.0


class PcmConverter:
    """Turns PCM s16le chunks of any size at ``sample_rate`` into 16 kHz float32 audio.

    Resampling is streaming (soxr keeps its filter state between chunks), so chunk
    boundaries leave no clicks. :meth:`flush` drains the resampler's delay line.
    """

    def __init__(self, sample_rate: int) -> None:
        self.sample_rate = check_sample_rate(sample_rate)
        self._resampler: soxr.ResampleStream | None = None
        if self.sample_rate != ENGINE_SAMPLE_RATE:
            self._resampler = soxr.ResampleStream(
                self.sample_rate, ENGINE_SAMPLE_RATE, 1, dtype="float32", quality="HQ"
            )

    def convert(self, data: bytes | bytearray | memoryview) -> np.ndarray:
        """Convert one chunk.

        Args:
            data: PCM s16le mono bytes at the input rate.

        Returns:
            Float32 samples at 16 kHz (may be empty while the resampler fills).

        Raises:
            AudioFormatError: see :func:`pcm16_to_float`.
        """
        samples = pcm16_to_float(data)
        if self._resampler is None:
            return samples
        return np.asarray(self._resampler.resample_chunk(samples, last=False), dtype=np.float32)

    def flush(self) -> np.ndarray:
        """Return what the resampler still holds (the end of the stream)."""
        if self._resampler is None:
            return np.zeros(0, dtype=np.float32)
        tail = self._resampler.resample_chunk(np.zeros(0, dtype=np.float32), last=True)
        return np.asarray(tail, dtype=np.float32)
