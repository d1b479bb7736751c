"""Revoking access reaches open sockets: a new share token, a removed member, a speaker made viewer."""

from __future__ import annotations

import asyncio
import json

import pytest
from channels.db import database_sync_to_async
from django.contrib.auth import get_user_model
from django.forms import MultiWidget
from django.test import Client
from django.urls import reverse
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from sessions_app.actions import do_add_member
from sessions_app.models import AudioRecording, SessionMember, TranscriptionSession, Utterance
from sessions_app.protocol import CloseCode
from tests.sessions_app.live_helpers import (
    caption_communicator,
    pcm16,
    receive_until,
    send_json,
    start,
    stream_audio,
    stream_communicator,
)
from tests.speech import dev_clip

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


async def _closed_out(communicator) -> list[dict]:
    """Everything the socket got up to its close (a speaker's socket is busy); the close must be 4403."""
    received = []
    while (output := await communicator.receive_output(timeout=REVOKED_WITHIN_S))["type"] != "websocket.close":
        received.append(json.loads(output["text"]))
    assert output["code"] == CloseCode.FORBIDDEN, received
    return received


def _admin_change_form_data(client: Client, url: str) -> dict:
    """What the admin's change form of a session would post unchanged (its inlines' management forms included)."""
    page = client.get(url)
    assert page.status_code == 200
    forms = [page.context["adminform"].form]
    for inline in page.context["inline_admin_formsets"]:
        forms += [inline.formset.management_form, *inline.formset.forms]
    data = {}
    for form in forms:
        for name in form.fields:
            value, widget = form[name].value(), form.fields[name].widget
            if value is None:
                continue
            if isinstance(widget, MultiWidget):  # (admin's split date and time: one key per part)
                for suffix, part in zip(widget.widgets_names, widget.decompress(value), strict=True):
                    data[form.add_prefix(name) + suffix] = part.isoformat() if part is not None else ""
            else:
                data[form.add_prefix(name)] = value
    return data


@pytest.mark.django_db(transaction=True)
@pytest.mark.asyncio
@pytest.mark.usefixtures("live_settings")
async def test_a_speaker_closed_out_mid_speech_keeps_what_they_said(live_session, make_user):
    clip = dev_clip("ls_dev-clean_2412-153948-0000")
    speaker = await database_sync_to_async(make_user)("sam")
    await database_sync_to_async(do_add_member)(live_session, "sam", "speaker")
    key = (await database_sync_to_async(Token.objects.create)(user=speaker)).key
    socket = stream_communicator(live_session.id, token=key)
    await start(socket)
    pcm = pcm16(clip.path)
    sent = pcm[: len(pcm) * 2 // 3]
    await stream_audio(socket, sent)

    owner = _api(live_session.owner)
    response = await database_sync_to_async(owner.delete)(f"/api/sessions/{live_session.id}/members/sam/")
    assert response.status_code == 204
    errors = [m for m in await _closed_out(socket) if m["type"] == "stt_error"]
    assert [e["code"] for e in errors] == ["ACCESS_REVOKED"]
    await socket.disconnect(timeout=1)  # (as daphne does once the close handshake is done)

    utterances = []
    for _ in range(120):  # the clean-up finishes the open utterance on its own task
        utterances = await database_sync_to_async(list)(Utterance.objects.filter(session=live_session, speaker=speaker))
        if utterances:
            break
        await asyncio.sleep(0.5)
    assert utterances and utterances[0].text.strip()
    recording = await database_sync_to_async(AudioRecording.objects.get)(session=live_session, speaker=speaker)
    assert recording.duration_s == pytest.approx(len(sent) / 2 / 16000, abs=0.15)


@pytest.mark.django_db(transaction=True)
@pytest.mark.asyncio
@pytest.mark.usefixtures("live_settings")
async def test_a_speaker_made_viewer_while_waiting_for_a_stream_slot_is_not_let_in(live_session, make_user, settings):
    """The second connection waits for the first's slot; the notice reaches only the first, which is in the group."""
    settings.STT_ADMISSION_WAIT_S = 8
    speaker = await database_sync_to_async(make_user)("sam")
    await database_sync_to_async(do_add_member)(live_session, "sam", "speaker")
    key = (await database_sync_to_async(Token.objects.create)(user=speaker)).key
    first, waiting = stream_communicator(live_session.id, token=key), stream_communicator(live_session.id, token=key)
    assert (await first.connect(timeout=10))[0]
    await _expect_still_open(first, live_session.id)
    assert (await waiting.connect(timeout=10))[0]  # (accepted; it waits for the slot inside connect)

    await database_sync_to_async(do_add_member)(live_session, "sam", "viewer")
    await _expect_revoked(first)
    await first.disconnect()  # its slot is free: the waiting connection is admitted now
    await _expect_revoked(waiting)
    await waiting.disconnect()


async def _admin_and_a_member_watching(session, make_user):
    """A signed-in superuser's client, and the viewer "vera" with her caption socket open."""
    root = await database_sync_to_async(make_user)("root", is_staff=True, is_superuser=True)
    admin = Client()
    await database_sync_to_async(admin.force_login)(root)
    member = await database_sync_to_async(make_user)("vera")
    await database_sync_to_async(do_add_member)(session, "vera", "viewer")
    socket = caption_communicator(
        session.id, api_token=(await database_sync_to_async(Token.objects.create)(user=member)).key
    )
    await _connected_viewer(socket)
    return admin, member, socket


@pytest.mark.django_db(transaction=True)
@pytest.mark.asyncio
@pytest.mark.usefixtures("live_settings")
async def test_revoking_in_admin_closes_the_sockets_once(live_session, make_user):
    admin, member, by_membership = await _admin_and_a_member_watching(live_session, make_user)
    by_link = caption_communicator(live_session.id, token=live_session.share_token)
    await _connected_viewer(by_link)

    changelist = reverse("admin:sessions_app_transcriptionsession_changelist")
    response = await database_sync_to_async(admin.post)(
        changelist, {"action": "new_share_link", "_selected_action": [str(live_session.id)]}
    )
    assert response.status_code == 302
    await _expect_revoked(by_link)
    await _expect_still_open(by_membership, live_session.id)

    # Deleting the membership in the session's inline: the deletion and the admin's save both notify.
    change = reverse("admin:sessions_app_transcriptionsession_change", args=[live_session.id])
    data = await database_sync_to_async(_admin_change_form_data)(admin, change)
    vera = await database_sync_to_async(SessionMember.objects.get)(session=live_session, user=member)
    row = next(key[: -len("-id")] for key, value in data.items() if key.startswith("memberships-") and
               key.endswith("-id") and str(value) == str(vera.pk))  # fmt: skip
    data[f"{row}-DELETE"] = "on"
    response = await database_sync_to_async(admin.post)(change, data)
    assert response.status_code == 302, response.context and response.context["errors"]
    assert not await database_sync_to_async(SessionMember.objects.filter(pk=vera.pk).exists)()
    await _expect_revoked(by_membership)
    assert await by_membership.receive_nothing(timeout=1)  # (the second notice finds it closed already)
    await by_link.disconnect()
    await by_membership.disconnect()


@pytest.mark.django_db(transaction=True)
@pytest.mark.asyncio
@pytest.mark.usefixtures("live_settings")
async def test_a_user_deleted_in_admin_loses_their_caption_socket(live_session, make_user):
    admin, member, socket = await _admin_and_a_member_watching(live_session, make_user)

    user_admin = reverse("admin:auth_user_delete", args=[member.pk])
    assert (await database_sync_to_async(admin.post)(user_admin, {"post": "yes"})).status_code == 302
    assert not await database_sync_to_async(get_user_model().objects.filter(pk=member.pk).exists)()
    await _expect_revoked(socket)
    await socket.disconnect()
