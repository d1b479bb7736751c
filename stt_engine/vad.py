"""Voice activity: WebRTC VAD as a cheap gate, Silero VAD to confirm.

Audio is classified in 32 ms frames (512 samples at 16 kHz, Silero's frame). Silero runs on
every frame (about 0.5 ms each, 1.5% of a core per stream): it is a recurrent model that
judges a frame against the sound it has heard so far, and fed only the frames around WebRTC's
hits it misjudged soft speech after a pause as noise. WebRTC VAD (10 ms sub-frames) is the
gate: speech can start only while WebRTC heard something within ``webrtc_hangover_s``.
WebRTC at aggressiveness 3 hears soft or hoarse speech only now and then (one frame in five
for a speaker with a cold), so it is not asked to agree frame by frame.

Both adapt to what they have heard. Silero's recurrent state: after a loud speaker, a soft one
that follows 1.5 s later scored 0.0-0.3 where a fresh model scores 0.9, and 25 s of speech were
lost. WebRTC's noise and speech models: after ten minutes of other voices it heard none of a
soft, hoarse voice's frames for 14 s (fresh, it hears about half of them), so the gate stayed shut
while Silero was sure of speech. Both are therefore reset after ``silero_reset_after_s`` of clear
non-speech, so each new stretch of speech is judged as at the start of a stream.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import webrtcvad

from .config import ENGINE_SAMPLE_RATE, EngineConfig

__all__ = ["FRAME_SAMPLES", "FrameVoice", "VoiceActivityDetector", "load_silero"]

FRAME_SAMPLES = 512
_WEBRTC_SAMPLES = 160
_CLEARLY_QUIET = 0.1  # Silero probability below which a frame counts toward a state reset


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
    """WebRTC heard voice in this frame."""
    gate_open: bool
    """WebRTC heard voice in this frame or within ``webrtc_hangover_s`` before it."""
    probability: float
    """Silero's speech probability."""


class VoiceActivityDetector:
    """Classifies 512-sample frames of one stream (keeps WebRTC framing and Silero state)."""

    def __init__(self, config: EngineConfig, silero: torch.nn.Module | None = None) -> None:
        self.config = config
        self._webrtc = webrtcvad.Vad(config.webrtc_sensitivity)
        self._silero = silero if silero is not None else load_silero()
        self._silero.reset_states()
        self._pending = np.zeros(0, dtype=np.int16)
        self._hangover_frames = math.ceil(config.webrtc_hangover_s * ENGINE_SAMPLE_RATE / FRAME_SAMPLES)
        self._frames_since_heard = self._hangover_frames + 1
        self._reset_frames = math.ceil(config.silero_reset_after_s * ENGINE_SAMPLE_RATE / FRAME_SAMPLES)
        self._quiet_frames = 0

    def reset(self) -> None:
        """Judge what follows afresh: reset Silero's recurrent state and WebRTC's noise model."""
        self._silero.reset_states()
        self._webrtc = webrtcvad.Vad(self.config.webrtc_sensitivity)
        self._quiet_frames = 0

    def classify(self, frame: np.ndarray) -> FrameVoice:
        """Classify one frame.

        Args:
            frame: 512 float32 samples at 16 kHz.

        Returns:
            Whether WebRTC's gate is open (it heard something within ``webrtc_hangover_s``)
            and Silero's speech probability.
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
        self._frames_since_heard = 0 if heard else self._frames_since_heard + 1
        samples = torch.from_numpy(frame.astype(np.float32, copy=False))
        with torch.inference_mode():
            probability = float(self._silero(samples, ENGINE_SAMPLE_RATE))
        self._quiet_frames = self._quiet_frames + 1 if probability < _CLEARLY_QUIET else 0
        if self._reset_frames and self._quiet_frames >= self._reset_frames:
            self.reset()
        return FrameVoice(heard, self._frames_since_heard <= self._hangover_frames, probability)
