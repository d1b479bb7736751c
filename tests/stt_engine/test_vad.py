"""The voice activity detector over a long stream of real speech."""

from __future__ import annotations

import numpy as np
import soundfile as sf

from stt_engine import EngineConfig
from stt_engine.vad import FRAME_SAMPLES, VoiceActivityDetector
from tests.speech import dev_clips

SR = 16000


def _with_pause(path, pause_s: float = 1.5) -> np.ndarray:
    audio, _ = sf.read(str(path), dtype="float32")
    return np.concatenate([audio, np.zeros(int(pause_s * SR), np.float32)])


def test_a_soft_voice_after_minutes_of_other_voices_still_opens_the_gate():
    """WebRTC's noise model adapts to what it has heard: after 100 s of ten other speakers it
    heard a third of a soft, hoarse voice's frames, so the gate stayed shut while Silero was sure
    of speech. Reset after each clear pause, it hears it as a fresh detector does."""
    clips = dev_clips()
    cold = next(i for i, clip in enumerate(clips) if clip.path.name.startswith("mfa_cold_corpus"))
    history = np.concatenate([_with_pause(clip.path) for clip in clips[cold - 10 : cold]])
    audio = np.concatenate([history, _with_pause(clips[cold].path)])
    detector = VoiceActivityDetector(EngineConfig())
    first_cold_frame = len(history) // FRAME_SAMPLES
    confident = []
    for index in range(len(audio) // FRAME_SAMPLES):
        voice = detector.classify(audio[index * FRAME_SAMPLES : (index + 1) * FRAME_SAMPLES])
        at = (index - first_cold_frame) * FRAME_SAMPLES / SR
        # "The recording environment is also quite different, and I'm saying a bunch of ..."
        if 10.0 <= at < 17.0 and voice.probability >= 0.6:
            confident.append(voice.gate_open)
    assert len(confident) > 150
    assert sum(confident) >= 0.8 * len(confident), f"gate open on {sum(confident)} of {len(confident)} speech frames"
