"""The caption socket names the speakers connected to stream, and tells viewers when that changes."""

from __future__ import annotations

import pytest
from channels.db import database_sync_to_async
from rest_framework.authtoken.models import Token

from sessions_app import live_presence
from sessions_app.actions import do_add_member
from tests.sessions_app.live_helpers import caption_communicator, receive_until, stream_communicator

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.asyncio, pytest.mark.usefixtures("live_settings")]


@pytest.fixture
def quick_presence(monkeypatch):
    monkeypatch.setattr("sessions_app.consumers.PRESENCE_POLL_S", 0.2)
    live_presence._cache.clear()


async def test_viewers_see_who_is_connected_to_speak(live_session, speaker_token, make_user, quick_presence):
    bob = await make_user_async(make_user, "bob")
    await do_add_member_async(live_session, "bob")
    bob_token = await token_async(bob)

    viewer = caption_communicator(live_session.id, token=live_session.share_token)
    assert (await viewer.connect(timeout=10))[0]
    assert (await receive_until(viewer, "stt_viewing"))["speakers"] == []

    alice = stream_communicator(live_session.id, token=speaker_token)
    assert (await alice.connect(timeout=10))[0]
    presence = await receive_until(viewer, "stt_presence", timeout_s=10)
    assert [s["speaker"] for s in presence["speakers"]] == ["alice"]

    # A viewer who comes later hears of alice in its welcome; bob joins, then alice leaves.
    late = caption_communicator(live_session.id, token=live_session.share_token)
    assert (await late.connect(timeout=10))[0]
    welcome = await receive_until(late, "stt_viewing")
    assert welcome["speakers"] == [
        {"speaker": "alice", "speaker_id": live_session.owner_id, "speaker_name": "alice", "colour": 0}
    ]
    bob_stream = stream_communicator(live_session.id, token=bob_token)
    assert (await bob_stream.connect(timeout=10))[0]
    presence = await receive_until(late, "stt_presence", timeout_s=10)
    assert [s["speaker"] for s in presence["speakers"]] == ["alice", "bob"]
    await alice.disconnect()
    presence = await receive_until(late, "stt_presence", timeout_s=10)
    assert [s["speaker"] for s in presence["speakers"]] == ["bob"]
    await bob_stream.disconnect()
    assert (await receive_until(late, "stt_presence", timeout_s=10))["speakers"] == []
    await viewer.disconnect()
    await late.disconnect()


async def make_user_async(make_user, name):
    return await database_sync_to_async(make_user)(name)


async def do_add_member_async(session, name):
    await database_sync_to_async(do_add_member)(session, name, "speaker")


async def token_async(user):
    return (await database_sync_to_async(Token.objects.create)(user=user)).key
