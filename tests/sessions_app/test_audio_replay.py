"""The replay buffer: the audio since the last final, on the recording clock, bounded."""

from __future__ import annotations

import numpy as np
import pytest

from sessions_app.audio_replay import MAX_REPLAYS, ReplayBuffer

RATE = 16000


def _pcm(first_sample: int, samples: int) -> bytes:
    """Samples whose values count up, so a test can see which ones were kept."""
    return (np.arange(first_sample, first_sample + samples) % 30000).astype("<i2").tobytes()


def test_it_keeps_what_the_engine_was_given_on_the_recording_clock():
    replay = ReplayBuffer(RATE, start_s=2.0)
    replay.append(_pcm(0, 8000))
    replay.append(_pcm(8000, 8000))
    assert replay.start_s == 2.0 and replay.end_s == 3.0 and replay.duration_s == 1.0
    assert replay.audio() == _pcm(0, 16000)


def test_a_final_drops_the_audio_it_covers_even_inside_a_frame():
    replay = ReplayBuffer(RATE, start_s=2.0)
    replay.append(_pcm(0, 16000))
    replay.append(_pcm(16000, 16000))
    replay.final_until(2.75)  # 0.75 s into the first frame
    assert replay.start_s == 2.75
    assert replay.audio() == _pcm(12000, 20000)
    replay.final_until(2.5)  # an earlier end changes nothing
    assert replay.start_s == 2.75
    replay.final_until(10.0)  # a final past what it holds empties it, at its end
    assert replay.audio() == b"" and replay.start_s == 4.0


def test_it_keeps_at_most_max_s_the_newest():
    replay = ReplayBuffer(RATE, start_s=0.0, max_s=1.0)
    for second in range(3):
        replay.append(_pcm(second * RATE, RATE))
    assert replay.duration_s == 1.0 and replay.start_s == 2.0
    assert replay.audio() == _pcm(2 * RATE, RATE)


def test_audio_that_killed_engines_again_and_again_is_dropped():
    replay = ReplayBuffer(RATE, start_s=0.0)
    replay.append(_pcm(0, RATE))
    for _ in range(MAX_REPLAYS):
        assert replay.audio_to_replay() == _pcm(0, RATE)
    assert replay.audio_to_replay() == b""
    assert replay.duration_s == 0 and replay.start_s == 1.0
    # After a final, the new audio may be replayed again.
    replay.append(_pcm(RATE, RATE))
    replay.audio_to_replay()
    replay.final_until(1.5)
    for _ in range(MAX_REPLAYS):
        assert replay.audio_to_replay() == _pcm(RATE + RATE // 2, RATE // 2)


def test_it_refuses_a_rate_or_bound_that_is_not_positive():
    with pytest.raises(ValueError, match="positive"):
        ReplayBuffer(0, start_s=0.0)
    with pytest.raises(ValueError, match="positive"):
        ReplayBuffer(RATE, start_s=0.0, max_s=0)
