"""Revoking access reaches open sockets: a new share token, a removed member, a speaker made viewer."""

from __future__ import annotations

import json

import pytest
from channels.db import database_sync_to_async
from django.urls import reverse
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from sessions_app.actions import do_add_member
from sessions_app.models import SessionMember, TranscriptionSession
from sessions_app.protocol import CloseCode
from tests.sessions_app.live_helpers import caption_communicator, receive_until, send_json, stream_communicator

REVOKED_WITHIN_S = 10  # (the close comes at once; the bound only keeps a broken build from hanging)


def _api(user) -> APIClient:
    client = APIClient()
    client.force_authenticate(user)
    return client


async def _connected_viewer(communicator) -> None:
    assert (await communicator.connect(timeout=10))[0]
    assert (await receive_until(communicator, "stt_viewing"))["type"] == "stt_viewing"


async def _expect_revoked(communicator) -> None:
    error = json.loads(await communicator.receive_from(timeout=REVOKED_WITHIN_S))
    assert error["type"] == "stt_error" and error["code"] == "ACCESS_REVOKED", error
    assert await communicator.receive_output(timeout=5) == {"type": "websocket.close", "code": CloseCode.FORBIDDEN}


async def _expect_still_open(communicator, session_id) -> None:
    await send_json(communicator, {"type": "ping"})
    assert (await receive_until(communicator, "pong", timeout_s=10))["session_id"] == str(session_id)


@pytest.mark.django_db(transaction=True)
@pytest.mark.asyncio
@pytest.mark.usefixtures("live_settings")
async def test_a_new_share_token_closes_the_old_links_viewers_and_keeps_the_members(live_session, make_user):
    member = await database_sync_to_async(make_user)("vera")
    await database_sync_to_async(do_add_member)(live_session, "vera", "viewer")
    member_token = (await database_sync_to_async(Token.objects.create)(user=member)).key
    old_token = live_session.share_token
    by_link = caption_communicator(live_session.id, token=old_token)
    by_membership = caption_communicator(live_session.id, api_token=member_token)
    await _connected_viewer(by_link)
    await _connected_viewer(by_membership)

    owner = _api(live_session.owner)
    response = await database_sync_to_async(owner.post)(f"/api/sessions/{live_session.id}/share-token/")
    assert response.status_code == 200
    new_token = response.json()["share_token"]
    assert new_token != old_token

    await _expect_revoked(by_link)
    await _expect_still_open(by_membership, live_session.id)
    refused = caption_communicator(live_session.id, token=old_token)
    await refused.connect(timeout=10)
    assert json.loads(await refused.receive_from(timeout=10))["code"] == "FORBIDDEN"
    await _connected_viewer(fresh := caption_communicator(live_session.id, token=new_token))
    await fresh.disconnect()
    await by_membership.disconnect()


@pytest.mark.django_db(transaction=True)
@pytest.mark.asyncio
@pytest.mark.usefixtures("live_settings")
async def test_a_removed_member_is_closed_out_and_a_speaker_made_viewer_stops_streaming(live_session, make_user):
    viewer = await database_sync_to_async(make_user)("vic")
    speaker = await database_sync_to_async(make_user)("sam")
    await database_sync_to_async(do_add_member)(live_session, "vic", "viewer")
    await database_sync_to_async(do_add_member)(live_session, "sam", "speaker")
    viewer_socket = caption_communicator(
        live_session.id, api_token=(await database_sync_to_async(Token.objects.create)(user=viewer)).key
    )
    speaker_socket = stream_communicator(
        live_session.id, token=(await database_sync_to_async(Token.objects.create)(user=speaker)).key
    )
    await _connected_viewer(viewer_socket)
    assert (await speaker_socket.connect(timeout=10))[0]
    await _expect_still_open(speaker_socket, live_session.id)

    owner = _api(live_session.owner)
    response = await database_sync_to_async(owner.delete)(f"/api/sessions/{live_session.id}/members/vic/")
    assert response.status_code == 204
    await _expect_revoked(viewer_socket)
    await _expect_still_open(speaker_socket, live_session.id)  # (the others' sockets are checked and kept)

    await database_sync_to_async(do_add_member)(live_session, "sam", "viewer")
    await _expect_revoked(speaker_socket)
    await speaker_socket.disconnect()


@pytest.mark.django_db
def test_only_the_owner_rotates_the_token_or_removes_members(user, make_user, make_session):
    session = make_session(user, "Owned")
    member = make_user("mia")
    do_add_member(session, "mia", "speaker")
    as_member = _api(member)
    assert as_member.post(f"/api/sessions/{session.id}/share-token/").json()["code"] == "NOT_FOUND"
    assert as_member.delete(f"/api/sessions/{session.id}/members/mia/").status_code == 404
    owner = _api(user)
    assert owner.delete(f"/api/sessions/{session.id}/members/{user.username}/").status_code == 404  # not the owner
    assert owner.delete(f"/api/sessions/{session.id}/members/nobody/").json()["code"] == "NOT_FOUND"
    assert SessionMember.objects.filter(session=session).count() == 2


@pytest.mark.django_db
def test_the_owner_renews_the_link_and_removes_a_member_from_the_session_list(client, user, make_user, make_session):
    session = make_session(user, "Owned")
    make_user("mia")
    do_add_member(session, "mia", "viewer")
    client.force_login(user)
    page = client.get(reverse("session-list")).content.decode()
    assert "New caption link" in page and "Remove mia" in page
    old_token = session.share_token
    assert client.post(reverse("session-rotate-share-link", args=[session.id])).status_code == 302
    assert TranscriptionSession.objects.get(pk=session.pk).share_token != old_token
    assert client.post(reverse("session-remove-member", args=[session.id, "mia"])).status_code == 302
    assert not SessionMember.objects.filter(session=session, user__username="mia").exists()
    client.force_login(make_user("eve"))
    assert client.post(reverse("session-rotate-share-link", args=[session.id])).status_code == 404
