"""Fixtures of the live-streaming tests: settings, a speaker's token, the engines handed out."""

from __future__ import annotations

import pytest
from channels.layers import channel_layers
from rest_framework.authtoken.models import Token

from sessions_app.stream_limits import stream_slots


@pytest.fixture
def live_settings(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path / "media"
    settings.STT_MAX_AUDIO_SPEED = 8.0
    settings.STT_AUDIO_BURST_S = 5.0
    # Each test runs on its own event loop; a Redis channel layer binds its locks to the loop
    # that first used it, and a lock a finished test's loop still held broke the next test.
    channel_layers.backends.clear()
    yield
    channel_layers.backends.clear()
    assert stream_slots.total == 0, "a stream slot leaked"


@pytest.fixture
def speaker_token(user):
    return Token.objects.create(user=user).key


@pytest.fixture
def engines_handed_out(monkeypatch) -> list:
    """Every engine process the consumers acquire, in order (so a test can signal one)."""
    from sessions_app import live_stream

    handed_out = []
    real_acquire = live_stream.acquire_engine

    def acquire_and_remember(*args, **kwargs):
        engine = real_acquire(*args, **kwargs)
        handed_out.append(engine)
        return engine

    monkeypatch.setattr(live_stream, "acquire_engine", acquire_and_remember)
    return handed_out


@pytest.fixture
def live_session(user, make_session):
    return make_session(user, title="Live test", language="en")
