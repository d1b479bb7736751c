"""Per-user stream limits and session claims shared through Redis by several server processes."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
import redis
import websockets
from rest_framework.authtoken.models import Token

from sessions_app.stream_limits import ALREADY_STREAMING, TOO_MANY_STREAMS, SharedCounts, StreamSlots

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.services


@pytest.fixture
def redis_url() -> str:
    url = os.environ.get("REDIS_URL") or "redis://127.0.0.1:6379/0"
    try:
        redis.Redis.from_url(url, socket_connect_timeout=2).ping()
    except redis.exceptions.ConnectionError:
        pytest.skip(f"needs a Redis server at {url} (CI starts one and sets REDIS_URL)")
    return url


@pytest.fixture
def prefix(redis_url) -> str:
    """A key prefix of this test's own, as two deployments on one Redis would have."""
    return f"stt:slots:test-{uuid.uuid4().hex[:8]}"


def test_two_processes_share_the_per_user_limit(redis_url, prefix):
    one, two = (StreamSlots(SharedCounts(redis_url, prefix)) for _ in range(2))
    assert one.try_admit("s1", 7, max_total=10, max_per_user=2) is None
    assert two.try_admit("s2", 7, max_total=10, max_per_user=2) is None
    assert one.try_admit("s3", 7, max_total=10, max_per_user=2) == TOO_MANY_STREAMS
    assert two.try_admit("s3", 7, max_total=10, max_per_user=2) == TOO_MANY_STREAMS
    assert one.try_admit("s3", 8, max_total=10, max_per_user=2) is None  # another user is not counted
    assert two.shared.user_count(7) == 2
    two.release(7)
    assert one.try_admit("s3", 7, max_total=10, max_per_user=2) is None
    for slots, user_ids in ((one, (7, 7, 8)), (two, (7,))):
        for user_id in user_ids:
            slots.release(user_id)
    assert one.shared.user_count(7) == 0


def test_two_processes_share_the_speakers_claim_on_a_session(redis_url, prefix):
    one, two = (StreamSlots(SharedCounts(redis_url, prefix)) for _ in range(2))
    assert one.try_admit("s1", 7, max_total=10, max_per_user=5) is None
    assert two.try_admit("s1", 7, max_total=10, max_per_user=5) == ALREADY_STREAMING
    assert two.shared.user_count(7) == 1  # (a refused claim takes no slot)
    one.release(7)
    assert two.try_admit("s1", 7, max_total=10, max_per_user=5) == ALREADY_STREAMING  # the file is still open
    one.release_session("s1", 7)
    assert two.try_admit("s1", 7, max_total=10, max_per_user=5) is None
    two.release(7)
    two.release_session("s1", 7)


def test_the_server_limit_stays_per_process(redis_url, prefix):
    one, two = (StreamSlots(SharedCounts(redis_url, prefix)) for _ in range(2))
    assert one.try_admit("s1", 1, max_total=1, max_per_user=5) is None
    assert one.try_admit("s2", 2, max_total=1, max_per_user=5) == TOO_MANY_STREAMS
    assert two.try_admit("s2", 2, max_total=1, max_per_user=5) is None
    one.release(1)
    two.release(2)
    one.release_session("s1", 1)
    two.release_session("s2", 2)


_HOLDER = """
import sys, time
sys.path.insert(0, {root!r})
from sessions_app.stream_limits import SharedCounts, StreamSlots
slots = StreamSlots(SharedCounts({url!r}, {prefix!r}, ttl_s={ttl}))
assert slots.try_admit("s1", 7, max_total=10, max_per_user=1) is None
print("admitted", flush=True)
time.sleep(3600)
"""


def test_the_slots_of_a_killed_process_expire_and_those_of_a_live_one_do_not(redis_url, prefix):
    ttl = 3.0
    script = _HOLDER.format(root=str(ROOT), url=redis_url, prefix=prefix, ttl=ttl)
    holder = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "admitted"
        other = StreamSlots(SharedCounts(redis_url, prefix, ttl_s=ttl))
        # Alive, it refreshes its slot: still counted after three times its expiry.
        time.sleep(3 * ttl)
        assert other.try_admit("s2", 7, max_total=10, max_per_user=1) == TOO_MANY_STREAMS
        assert other.try_admit("s1", 8, max_total=10, max_per_user=1) is None  # (someone else in the session)
        holder.kill()
        holder.wait(timeout=10)
        # Its slot is scored by when it expires, on Redis's clock: at most ttl after now (its last
        # refresh was before the kill). Checked there, not by how soon this process sees it go.
        client = redis.Redis.from_url(redis_url)
        now_s, now_us = client.time()
        expiries = [score for _, score in client.zrange(other.shared.user_key(7), 0, -1, withscores=True)]
        assert len(expiries) == 1 and expiries[0] <= now_s * 1000 + now_us // 1000 + ttl * 1000
        assert other.try_admit("s1", 7, max_total=10, max_per_user=1) in (TOO_MANY_STREAMS, ALREADY_STREAMING)
        deadline = time.monotonic() + ttl + 60  # (only against a hang)
        while other.try_admit("s1", 7, max_total=10, max_per_user=1) is not None:
            assert time.monotonic() < deadline, "the killed process's slot did not expire"
            time.sleep(0.1)
        assert other.shared.user_count(7) == 1
        other.release(7)
        other.release(8)
        other.release_session("s1", 7)
        other.release_session("s1", 8)
    finally:
        holder.kill()
        holder.wait(timeout=10)


@pytest.mark.django_db(transaction=True)
def test_the_per_user_limit_holds_across_two_daphne_processes(start_daphne, redis_url, user, make_session):
    first, second = (make_session(user, title=f"Meeting {n}", language="en") for n in (1, 2))
    token = Token.objects.create(user=user).key
    env = {"REDIS_URL": redis_url, "STT_MAX_STREAMS_PER_USER": "1"}
    ports = [start_daphne(warm_engines=0, **env) for _ in range(2)]
    headers = {"Authorization": f"Token {token}"}

    async def scenario() -> tuple[dict, dict]:
        url = "ws://127.0.0.1:{}/ws/sessions/{}/stream/"
        async with websockets.connect(url.format(ports[0], first.id), additional_headers=headers) as speaking:
            await speaking.send(json.dumps({"type": "ping"}))
            assert json.loads(await asyncio.wait_for(speaking.recv(), 30))["type"] == "pong"
            async with websockets.connect(url.format(ports[1], second.id), additional_headers=headers) as refused:
                error = json.loads(await asyncio.wait_for(refused.recv(), 30))
                await asyncio.wait_for(refused.wait_closed(), 30)
                closed = refused.close_code
        # Its stream gone, the user may stream on the other server.
        async with websockets.connect(url.format(ports[1], second.id), additional_headers=headers) as admitted:
            await admitted.send(json.dumps({"type": "ping"}))
            welcome = json.loads(await asyncio.wait_for(admitted.recv(), 30))
        return {"code": error["code"], "close": closed}, welcome

    refusal, welcome = asyncio.run(scenario())
    assert refusal == {"code": "TOO_MANY_STREAMS", "close": 4429}
    assert welcome["type"] == "pong"
