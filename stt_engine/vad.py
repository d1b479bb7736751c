"""Voice activity: WebRTC VAD as a cheap gate, Silero VAD to confirm.

Audio is classified in 32 ms frames (512 samples at 16 kHz, Silero's frame). WebRTC VAD
looks at 10 ms sub-frames; while nobody speaks, Silero only runs on frames where WebRTC
heard something, which keeps idle streams almost free. While an utterance records,
Silero runs on every frame because it decides when the speech ends.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import webrtcvad

from .config import ENGINE_SAMPLE_RATE, EngineConfig

__all__ = ["FRAME_SAMPLES", "FrameVoice", "VoiceActivityDetector", "load_silero"]

FRAME_SAMPLES = 512
_WEBRTC_SAMPLES = 160


def load_silero() -> torch.nn.Module:
    """Load a fresh Silero VAD model from the installed ``silero-vad`` package.

    Returns:
        The TorchScript model (stateful: one per stream).
    """
    from silero_vad import load_silero_vad

    return load_silero_vad()


@dataclass
class FrameVoice:
    """What the detector found in one 32 ms frame."""

    webrtc: bool
    probability: float


class VoiceActivityDetector:
    """Classifies 512-sample frames of one stream (keeps WebRTC framing and Silero state)."""

    def __init__(self, config: EngineConfig, silero: torch.nn.Module | None = None) -> None:
        self.config = config
        self._webrtc = webrtcvad.Vad(config.webrtc_sensitivity)
        self._silero = silero if silero is not None else load_silero()
        self._silero.reset_states()
        self._pending = np.zeros(0, dtype=np.int16)

    def reset(self) -> None:
        """Reset Silero's recurrent state (after a long gap)."""
        self._silero.reset_states()

    def classify(self, frame: np.ndarray, always_confirm: bool) -> FrameVoice:
        """Classify one frame.

        Args:
            frame: 512 float32 samples at 16 kHz.
            always_confirm: run Silero even if WebRTC heard nothing (while recording).

        Returns:
            The WebRTC verdict and Silero's speech probability (0 when gated out).
        """
        pcm = np.clip(frame * 32768.0, -32768, 32767).astype(np.int16)
        buffered = np.concatenate([self._pending, pcm])
        usable = len(buffered) - len(buffered) % _WEBRTC_SAMPLES
        heard = False
        for start in range(0, usable, _WEBRTC_SAMPLES):
            chunk = buffered[start : start + _WEBRTC_SAMPLES].tobytes()
            if self._webrtc.is_speech(chunk, ENGINE_SAMPLE_RATE):
                heard = True
        self._pending = buffered[usable:]
        if not heard and not always_confirm:
            return FrameVoice(False, 0.0)
        with torch.inference_mode():
            probability = float(self._silero(torch.from_numpy(frame.astype(np.float32)), ENGINE_SAMPLE_RATE))
        return FrameVoice(heard, probability)
