"""Two daphne processes sharing the Redis channel layer, driven by real WebSocket clients."""

from __future__ import annotations

import asyncio
import functools
import json
import os
from pathlib import Path

import pytest
import redis
import websockets
from rest_framework.authtoken.models import Token

from tests.sessions_app.live_helpers import frames, pcm16
from tests.speech import dev_clip, word_error_rate

ROOT = Path(__file__).resolve().parents[2]
pytestmark = [pytest.mark.services, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def redis_url() -> str:
    url = os.environ.get("REDIS_URL") or "redis://127.0.0.1:6379/0"
    try:
        redis.Redis.from_url(url, socket_connect_timeout=2).ping()
    except redis.exceptions.ConnectionError:
        pytest.skip(f"needs a Redis server at {url} (CI starts one and sets REDIS_URL)")
    return url


@pytest.fixture
def start_daphne(start_daphne, redis_url):
    """Daphne processes that share the Redis channel layer."""
    return functools.partial(start_daphne, REDIS_URL=redis_url)


def test_a_viewer_on_one_server_sees_the_finals_of_a_speaker_on_another(start_daphne, user, make_session):
    session = make_session(user, title="Scaled", language="en")
    token = Token.objects.create(user=user).key
    speaker_port, viewer_port = start_daphne(warm_engines=1), start_daphne(warm_engines=0)
    clip = dev_clip("jfk")

    async def scenario() -> tuple[list[dict], list[dict]]:
        captions_url = f"ws://127.0.0.1:{viewer_port}/ws/sessions/{session.id}/captions/?token={session.share_token}"
        stream_url = f"ws://127.0.0.1:{speaker_port}/ws/sessions/{session.id}/stream/"
        async with websockets.connect(captions_url) as viewer, websockets.connect(
            stream_url, additional_headers={"Authorization": f"Token {token}"}
        ) as speaker:
            assert json.loads(await viewer.recv())["type"] == "stt_viewing"
            # A viewer waits idle for longer than redis-py's default read timeout (5 s): its
            # consumer must still be there when the captions come.
            await asyncio.sleep(7)
            await speaker.send(json.dumps({"type": "stt_start", "language": "en", "sample_rate": 16000}))
            while json.loads(await asyncio.wait_for(speaker.recv(), 180))["type"] != "stt_listening":
                pass
            for frame in frames(pcm16(clip.path, seconds_of_silence_after=2.0)):
                await speaker.send(frame)
                await asyncio.sleep(0.025)
            await speaker.send(json.dumps({"type": "stt_stop"}))
            speaker_finals = []
            while True:
                message = json.loads(await asyncio.wait_for(speaker.recv(), 120))
                if message["type"] == "stt_final":
                    speaker_finals.append(message)
                if message["type"] == "stt_state" and message["state"] == "idle":
                    break
            viewer_finals = []
            while len(viewer_finals) < len(speaker_finals):
                message = json.loads(await asyncio.wait_for(viewer.recv(), 30))
                if message["type"] == "stt_final":
                    viewer_finals.append(message)
            return speaker_finals, viewer_finals

    speaker_finals, viewer_finals = asyncio.run(scenario())
    assert speaker_finals
    assert [f["utterance_id"] for f in viewer_finals] == [f["utterance_id"] for f in speaker_finals]
    assert word_error_rate([clip.text], [" ".join(f["text"] for f in viewer_finals)]) <= 0.15


def test_a_new_share_token_closes_its_viewers_on_another_server(start_daphne, redis_url, settings, user, make_session):
    """The rotation happens in this process; the viewer's socket lives in a daphne: Redis carries it."""
    from channels.layers import channel_layers

    from sessions_app.actions import do_rotate_share_token

    settings.CHANNEL_LAYERS = {"default": {
        "BACKEND": "channels_redis.core.RedisChannelLayer",
        "CONFIG": {"hosts": [{"address": redis_url, "socket_timeout": None}]},
    }}  # fmt: skip
    channel_layers.backends.clear()
    session = make_session(user, title="Rotated", language="en")
    port = start_daphne(warm_engines=0)

    async def scenario() -> tuple[str, int | None]:
        url = f"ws://127.0.0.1:{port}/ws/sessions/{session.id}/captions/?token={session.share_token}"
        async with websockets.connect(url) as viewer:
            assert json.loads(await viewer.recv())["type"] == "stt_viewing"
            await asyncio.to_thread(do_rotate_share_token, session)
            error = json.loads(await asyncio.wait_for(viewer.recv(), 10))
            with pytest.raises(websockets.ConnectionClosed) as closed:
                await asyncio.wait_for(viewer.recv(), 10)
            return error["code"], closed.value.rcvd.code if closed.value.rcvd else None

    try:
        assert asyncio.run(scenario()) == ("ACCESS_REVOKED", 4403)
    finally:
        channel_layers.backends.clear()
