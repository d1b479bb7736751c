"""Speakers' display names and colours: renamed by the session's owner, shown by every page and export,
told to open pages (stt_speakers) and carried by live messages (speaker_name) of the real engine."""

from __future__ import annotations

import datetime as dt
import io
import json

import docx
import pytest
from channels.db import database_sync_to_async
from django.utils import timezone
from rest_framework.test import APIClient

from sessions_app.actions import do_add_member, do_remove_member
from sessions_app.models import SPEAKER_COLOURS, SessionMember, Utterance
from sessions_app.speakers import do_rename_speaker, session_speakers
from tests.sessions_app.live_helpers import (
    caption_communicator,
    pcm16,
    receive_finals_until_idle,
    receive_until,
    send_json,
    start,
    stream_audio,
    stream_communicator,
)
from tests.speech import dev_clip, word_error_rate

EXPORTS = ["txt", "txt&times=1", "json", "srt", "vtt", "docx"]


def _client(user) -> APIClient:
    client = APIClient()
    client.force_authenticate(user)
    return client


@pytest.fixture
def meeting(db, user, make_user, make_session):
    """alice's session: bob (a speaker) answers her; both have said something."""
    bob = make_user("bob")
    session = make_session(user, "Standup", "en")
    do_add_member(session, "bob", "speaker")
    t0 = timezone.now().replace(microsecond=0)
    rows = [(user, 0.0, 1.5, "Good morning everyone"), (bob, 0.5, 2.0, "Morning, the build is green")]
    for sequence, (who, begin, end, text) in enumerate(rows, start=1):
        Utterance.objects.create(
            session=session, speaker=who, sequence=sequence, start_s=begin, end_s=end, text=text,
            spoken_at=t0 + dt.timedelta(seconds=2 * sequence),
        )  # fmt: skip
    return session, bob


def _rename(client: APIClient, session, user_id: int, name):
    return client.patch(f"/api/sessions/{session.pk}/speakers/{user_id}/", {"display_name": name}, format="json")


def _export_text(client: APIClient, session, fmt: str) -> str:
    response = client.get(f"/api/sessions/{session.pk}/export?format={fmt}")
    assert response.status_code == 200, response.content
    if fmt == "docx":
        return "\n".join(p.text for p in docx.Document(io.BytesIO(response.content)).paragraphs)
    return response.content.decode()


def test_the_owner_renames_a_speaker_and_every_export_and_page_uses_the_name(meeting, user, client):
    session, bob = meeting
    owner = _client(user)
    response = _rename(owner, session, bob.pk, "  Robert   Smith ")
    assert response.status_code == 200, response.content
    assert response.json() == {
        "speaker_id": bob.pk, "speaker": "bob", "speaker_name": "Robert Smith", "display_name": "Robert Smith",
        "colour": 1, "role": "speaker",
    }  # fmt: skip
    assert SessionMember.objects.get(session=session, user=bob).display_name == "Robert Smith"

    for fmt in EXPORTS:
        text = _export_text(owner, session, fmt)
        assert "Robert Smith" in text, fmt
        if fmt != "json":  # (JSON keeps the username beside the name)
            assert "bob" not in text, fmt
        assert "alice" in text, fmt  # (alice has no display name: her username)
    exported = json.loads(_export_text(owner, session, "json"))
    assert [s["speaker"] for s in exported["segments"]] == ["alice", "Robert Smith"]
    assert [s["speaker_username"] for s in exported["segments"]] == ["alice", "bob"]
    assert [t["speaker"] for t in exported["turns"]] == ["alice", "Robert Smith"]
    assert exported["turns"][1]["speaker_username"] == "bob"
    assert "Robert Smith: Morning, the build is green" in _export_text(owner, session, "txt")
    docx_text = _export_text(owner, session, "docx")
    assert "alice, Robert Smith" in docx_text  # the speakers under the title

    # The utterances API names the speaker too; the speakers API lists both.
    utterances = owner.get(f"/api/sessions/{session.pk}/utterances/").json()["results"]
    assert [(u["speaker"], u["speaker_name"]) for u in utterances] == [("alice", "alice"), ("bob", "Robert Smith")]
    listed = owner.get(f"/api/sessions/{session.pk}/speakers/").json()
    assert [(s["speaker"], s["speaker_name"], s["colour"]) for s in listed] == [
        ("alice", "alice", 0), ("bob", "Robert Smith", 1)
    ]  # fmt: skip

    # The pages: live and caption turns rendered by the server, the transcript's config.
    client.force_login(user)
    for url in (f"/sessions/{session.pk}/live/", f"/captions/{session.pk}/", f"/sessions/{session.pk}/transcript/"):
        page = client.get(url).content.decode()
        assert "Robert Smith" in page, url
    assert "2 speakers: alice, Robert Smith" in client.get("/").content.decode()  # (the session list)
    live = client.get(f"/sessions/{session.pk}/live/").content.decode()
    assert 'class="turn speaker-c1" data-speaker="bob"' in live
    assert '<span class="who">Robert Smith</span>' in live

    # An empty name gives bob his username back.
    assert _rename(owner, session, bob.pk, "").json()["speaker_name"] == "bob"
    assert "bob: Morning" in _export_text(owner, session, "txt")


def test_only_the_owner_renames_and_bad_names_get_a_coded_error(meeting, user, other_user):
    session, bob = meeting
    response = _rename(_client(bob), session, user.pk, "The boss")
    assert response.status_code == 403 and response.json()["code"] == "FORBIDDEN"
    response = _rename(_client(other_user), session, bob.pk, "Bobby")
    assert response.status_code == 404 and response.json()["code"] == "NOT_FOUND"
    response = APIClient().patch(f"/api/sessions/{session.pk}/speakers/{bob.pk}/", {"display_name": "x"})
    assert response.status_code in (401, 403) and response.json()["code"] == "NOT_AUTHENTICATED"

    owner = _client(user)
    for bad in ("x" * 81, "Bob\u0000by", "Bob\u200bby"):
        response = _rename(owner, session, bob.pk, bad)
        assert response.status_code == 400 and response.json()["code"] == "BAD_DISPLAY_NAME", bad
    response = owner.patch(f"/api/sessions/{session.pk}/speakers/{bob.pk}/", {}, format="json")
    assert response.status_code == 400 and response.json()["code"] == "BAD_REQUEST"
    for unknown in (other_user.pk, 2**70):
        response = _rename(owner, session, unknown, "Nobody")
        assert response.status_code == 404 and response.json()["code"] == "NOT_FOUND"
    assert SessionMember.objects.get(session=session, user=bob).display_name == ""


def test_members_get_distinct_colours_in_the_order_they_joined_and_keep_them(db, user, make_user, make_session):
    session = make_session(user, "Colours")
    names = [f"member{i}" for i in range(SPEAKER_COLOURS + 1)]
    for name in names:
        make_user(name)
        do_add_member(session, name, "speaker")
    colours = {s.username: s.colour for s in session_speakers(session.pk)}
    assert [colours[n] for n in ["alice", *names[: SPEAKER_COLOURS - 1]]] == list(range(SPEAKER_COLOURS))
    assert 0 <= colours[names[-1]] < SPEAKER_COLOURS  # (the palette is round)

    # A member who leaves frees their colour for the next one; the others keep theirs.
    assert do_remove_member(session, "member2")
    make_user("late")
    do_add_member(session, "late", "viewer")
    do_add_member(session, "late", "speaker")  # (a change of role keeps the colour)
    after = {s.username: s.colour for s in session_speakers(session.pk)}
    assert after["late"] == colours["member2"]
    assert all(after[n] == colours[n] for n in colours if n != "member2")


@pytest.mark.django_db(transaction=True)
@pytest.mark.asyncio
@pytest.mark.usefixtures("live_settings")
async def test_a_rename_reaches_open_pages_and_the_live_finals_of_the_real_engine(live_session, speaker_token):
    clip = dev_clip("jfk")
    viewer = caption_communicator(live_session.id, token=live_session.share_token)
    assert (await viewer.connect(timeout=10))[0]
    await receive_until(viewer, "stt_viewing")
    speaker = stream_communicator(live_session.id, token=speaker_token)
    await start(speaker)  # (admitted as "alice": the rename below must reach the stream)

    await database_sync_to_async(do_rename_speaker)(live_session, live_session.owner_id, "President Kennedy")
    for socket in (viewer, speaker):
        told = await receive_until(socket, "stt_speakers", timeout_s=10)
        assert told["speakers"] == [
            {"speaker_id": live_session.owner_id, "speaker": "alice", "speaker_name": "President Kennedy", "colour": 0}
        ]

    await stream_audio(speaker, pcm16(clip.path, seconds_of_silence_after=2.0))
    await send_json(speaker, {"type": "stt_stop"})
    seen: list[dict] = []
    finals = await receive_finals_until_idle(speaker, seen=seen)
    assert word_error_rate([clip.text], [" ".join(f["text"] for f in finals)]) <= 0.15
    for final in finals:
        assert final["speaker"] == "alice" and final["speaker_name"] == "President Kennedy"
        assert final["speaker_colour"] == 0
    # Every relayed event names the speaker so (states, VAD, partials where the machine had time for them).
    relayed = [m for m in seen if "speaker_id" in m]
    assert {"stt_state", "stt_final"} <= {m["type"] for m in relayed}
    assert all(m["speaker_name"] == "President Kennedy" for m in relayed), {m["type"] for m in relayed}
    viewer_final = await receive_until(viewer, "stt_final", timeout_s=30)
    assert viewer_final["speaker_name"] == "President Kennedy"
    await speaker.disconnect()
    await viewer.disconnect()
