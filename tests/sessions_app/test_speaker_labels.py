"""Diarized voices of a room microphone (labels S1, S2, ...): named "Speaker N" until the session's
owner renames them, coloured apart from each other and from the account, told to open pages."""

from __future__ import annotations

import datetime as dt

import pytest
from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.utils import timezone
from rest_framework.test import APIClient

from sessions_app.actions import do_add_member
from sessions_app.live_stream import session_group
from sessions_app.models import (
    SPEAKER_COLOURS,
    BatchJob,
    SessionMember,
    SpeakerLabelName,
    TranscriptionSession,
    Utterance,
)
from sessions_app.speakers import (
    do_rename_label,
    label_display_name,
    label_names,
    line_namer,
    line_speaker,
    speakers_message,
)


@pytest.fixture
def room(db, user, make_user, make_session):
    """alice's session: her room microphone heard two voices (S1, S2); bob, a speaker, spoke alone."""
    bob = make_user("bob")
    session = make_session(user, "Board meeting", "en")
    do_add_member(session, "bob", "speaker")
    t0 = timezone.now().replace(microsecond=0)
    rows = [
        (user, "S1", "Welcome to the board meeting"),
        (user, "S2", "Thanks, the numbers are in"),
        (user, "S1", "Let us begin"),
        (bob, "", "I joined from home"),
    ]
    for sequence, (who, label, text) in enumerate(rows, start=1):
        Utterance.objects.create(
            session=session, speaker=who, speaker_label=label, sequence=sequence, start_s=2.0 * sequence,
            end_s=2.0 * sequence + 1.5, text=text, spoken_at=t0 + dt.timedelta(seconds=2 * sequence),
        )  # fmt: skip
    return session, bob


def _colour(session, user) -> int:
    return SessionMember.objects.get(session=session, user=user).colour


@pytest.mark.parametrize(
    ("label", "name"), [("S1", "Speaker 1"), ("S3", "Speaker 3"), ("S12", "Speaker 12"), ("guest", "guest")]
)
def test_a_label_reads_as_speaker_n(label, name):
    assert label_display_name(label) == name


def test_every_label_a_session_spoke_with_is_named_speaker_n_in_colours_of_its_own(room, user):
    session, _bob = room
    names = label_names(session.pk)
    assert list(names) == [(user.pk, "S1"), (user.pk, "S2")]
    one, two = names[(user.pk, "S1")], names[(user.pk, "S2")]
    assert (one.name, two.name) == ("Speaker 1", "Speaker 2")
    assert (one.label, one.username, one.speaker_id) == ("S1", "alice", user.pk)
    account = _colour(session, user)
    assert one.colour == (account + 1) % SPEAKER_COLOURS
    assert two.colour == (account + 2) % SPEAKER_COLOURS
    assert len({one.colour, two.colour, account}) == 3


def test_a_named_label_keeps_its_name_and_colour_and_one_not_yet_heard_is_listed(room, user):
    session, _bob = room
    SpeakerLabelName.objects.create(session=session, speaker=user, label="S2", display_name="Carol", colour=6)
    SpeakerLabelName.objects.create(session=session, speaker=user, label="S3", display_name="Dave")
    names = label_names(session.pk)
    assert [key[1] for key in names] == ["S1", "S2", "S3"]
    assert (names[(user.pk, "S2")].name, names[(user.pk, "S2")].colour) == ("Carol", 6)
    assert names[(user.pk, "S3")].name == "Dave"
    assert names[(user.pk, "S3")].display_name == "Dave"
    assert names[(user.pk, "S3")].colour == (_colour(session, user) + 3) % SPEAKER_COLOURS


def test_an_empty_name_reads_as_speaker_n_again(room, user):
    session, _bob = room
    SpeakerLabelName.objects.create(session=session, speaker=user, label="S2", display_name="")
    assert label_names(session.pk)[(user.pk, "S2")].name == "Speaker 2"


def test_a_line_is_named_by_its_label_when_it_has_one_else_by_its_account(room, user):
    session, bob = room
    SessionMember.objects.filter(session=session, user=bob).update(display_name="Robert")
    lines = list(Utterance.objects.filter(session=session).order_by("sequence"))
    name = line_namer(session.pk)
    assert [name(line).name for line in lines] == ["Speaker 1", "Speaker 2", "Speaker 1", "Robert"]
    assert name(lines[3]).colour == _colour(session, bob)
    assert name(lines[3]).label == ""
    assert line_speaker(session.pk, lines[1]) == name(lines[1])
    # A live message's utterance (a dict) with a label never seen before is "Speaker N" too.
    unheard = line_speaker(session.pk, {"speaker_id": user.pk, "speaker_label": "S4"})
    assert (unheard.name, unheard.colour) == ("Speaker 4", (_colour(session, user) + 4) % SPEAKER_COLOURS)


def test_a_session_without_labels_has_none_and_its_lines_keep_their_accounts(db, user, make_session):
    session = make_session(user)
    Utterance.objects.create(session=session, speaker=user, sequence=1, start_s=0, end_s=1, text="Hello")
    assert label_names(session.pk) == {}
    assert line_speaker(session.pk, Utterance.objects.get(session=session)).name == "alice"
    assert speakers_message(session.pk)["labels"] == []


def test_stt_speakers_lists_every_label_with_its_name_and_colour(room, user):
    session, _bob = room
    SpeakerLabelName.objects.create(session=session, speaker=user, label="S2", display_name="Carol")
    message = speakers_message(session.pk)
    account = _colour(session, user)
    assert message["labels"] == [
        {"speaker_id": user.pk, "speaker": "alice", "label": "S1", "name": "Speaker 1", "display_name": "",
         "colour": (account + 1) % SPEAKER_COLOURS},
        {"speaker_id": user.pk, "speaker": "alice", "label": "S2", "name": "Carol", "display_name": "Carol",
         "colour": (account + 2) % SPEAKER_COLOURS},
    ]  # fmt: skip
    assert [s["speaker"] for s in message["speakers"]] == ["alice", "bob"]


def _client(user) -> APIClient:
    client = APIClient()
    client.force_authenticate(user)
    return client


def _rename_label(client: APIClient, session, body):
    return client.patch(f"/api/sessions/{session.pk}/speaker-labels/", body, format="json")


def test_the_owner_names_a_label_and_an_empty_name_gives_back_speaker_n(room, user, make_user):
    session, bob = room
    owner = _client(user)
    response = _rename_label(owner, session, {"speaker_id": user.pk, "label": "S2", "display_name": "  Carol  Jones "})
    assert response.status_code == 200, response.content
    colour = (_colour(session, user) + 2) % SPEAKER_COLOURS
    assert response.json() == {
        "speaker_id": user.pk, "speaker": "alice", "label": "S2", "name": "Carol Jones", "display_name": "Carol Jones",
        "colour": colour,
    }  # fmt: skip
    row = SpeakerLabelName.objects.get(session=session, speaker=user, label="S2")
    assert row.display_name == "Carol Jones"
    # A second rename updates the same row; a label not heard yet may be named before it speaks.
    again = _rename_label(owner, session, {"speaker_id": user.pk, "label": "S2", "display_name": "Carol"})
    assert again.json()["name"] == "Carol"
    early = _rename_label(owner, session, {"speaker_id": bob.pk, "label": "S1", "display_name": "Eve"})
    assert early.status_code == 200
    assert SpeakerLabelName.objects.filter(session=session).count() == 2

    listed = _client(bob).get(f"/api/sessions/{session.pk}/speaker-labels/").json()
    assert [(s["speaker"], s["label"], s["name"]) for s in listed] == [
        ("alice", "S1", "Speaker 1"), ("alice", "S2", "Carol"), ("bob", "S1", "Eve")
    ]  # fmt: skip

    response = _rename_label(owner, session, {"speaker_id": user.pk, "label": "S2", "display_name": ""})
    assert (response.status_code, response.json()["name"], response.json()["display_name"]) == (200, "Speaker 2", "")


def test_only_the_owner_names_labels_and_bad_requests_get_coded_errors(room, user, other_user):
    session, bob = room
    body = {"speaker_id": user.pk, "label": "S2", "display_name": "Carol"}
    response = _rename_label(_client(bob), session, body)
    assert response.status_code == 403 and response.json()["code"] == "FORBIDDEN"
    response = _rename_label(_client(other_user), session, body)
    assert response.status_code == 404 and response.json()["code"] == "NOT_FOUND"
    assert _client(other_user).get(f"/api/sessions/{session.pk}/speaker-labels/").status_code == 404
    response = APIClient().patch(f"/api/sessions/{session.pk}/speaker-labels/", body, format="json")
    assert response.status_code in (401, 403) and response.json()["code"] == "NOT_AUTHENTICATED"

    owner = _client(user)
    for bad in ("x" * 81, "Car\u0000ol", "Car\u200bol", 7):
        response = _rename_label(owner, session, {**body, "display_name": bad})
        assert response.status_code == 400 and response.json()["code"] == "BAD_DISPLAY_NAME", bad
    for bad in ("", "S0", "Speaker 2", "s2", "S" + "9" * 20, 2):
        response = _rename_label(owner, session, {**body, "label": bad})
        assert response.status_code == 400 and response.json()["code"] == "BAD_LABEL", bad
    for bad in ({}, {"label": "S2", "display_name": "x"}, {**body, "speaker_id": "1"}, {**body, "speaker_id": True}):
        response = _rename_label(owner, session, bad)
        assert response.status_code == 400 and response.json()["code"] == "BAD_REQUEST", bad
    for unknown in (other_user.pk, 2**70, -1):
        response = _rename_label(owner, session, {**body, "speaker_id": unknown})
        assert response.status_code == 404 and response.json()["code"] == "NOT_FOUND", unknown
    assert not SpeakerLabelName.objects.filter(session=session).exists()


def test_a_label_rename_tells_open_pages_after_the_commit(room, user, django_capture_on_commit_callbacks):
    session, _bob = room
    layer = get_channel_layer()
    channel = async_to_sync(layer.new_channel)()
    async_to_sync(layer.group_add)(session_group(session.pk), channel)
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        do_rename_label(session, user.pk, "S2", "Carol")
    assert len(callbacks) == 1  # (nothing is sent before the commit)
    callbacks[0]()
    event = async_to_sync(layer.receive)(channel)
    assert event["type"] == "speakers.changed"
    labels = {(entry["label"], entry["name"]) for entry in event["message"]["labels"]}
    assert labels == {("S1", "Speaker 1"), ("S2", "Carol")}
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        do_rename_label(session, user.pk, "S2", "Carol")
    assert callbacks == []  # (the same name again changes nothing, tells nobody)


def test_the_pages_show_a_labelled_line_by_its_label_in_its_colour(room, user, client):
    session, _bob = room
    SpeakerLabelName.objects.create(session=session, speaker=user, label="S2", display_name="Carol")
    client.force_login(user)
    account = _colour(session, user)
    for url in (f"/sessions/{session.pk}/live/", f"/captions/{session.pk}/"):
        page = client.get(url).content.decode()
        head = '<div class="turn-head"><span class="who">Speaker 1</span>'
        colour = (account + 1) % SPEAKER_COLOURS
        assert f'class="turn speaker-c{colour}" data-speaker="alice" data-speaker-id="{user.pk}" ' in page, url
        assert f'data-speaker-label="S1">{head}' in page, url
        assert '<span class="who">Carol</span>' in page, url
        assert page.count('data-speaker-label="S1"') == 4, url  # (two turns of S1, each with its one line)
        config = client.get(url).context["page_config"]
        assert [(entry["label"], entry["name"]) for entry in config["labels"]] == [("S1", "Speaker 1"), ("S2", "Carol")]

    config = client.get(f"/sessions/{session.pk}/transcript/").context["page_config"]
    assert [t["speaker_label"] for t in config["turns"]] == ["S1", "S2", "S1", ""]
    assert [u["speaker_label"] for u in config["utterances"]] == ["S1", "S2", "S1", ""]
    assert [entry["name"] for entry in config["labels"]] == ["Speaker 1", "Carol"]


def test_a_new_session_with_a_room_microphone_and_its_settings_are_saved(db, user, other_user, client):
    client.force_login(user)
    client.post("/", {"title": "Board room", "language": "en", "room_microphone": "on"})
    client.post("/", {"title": "Just me", "language": "en"})
    sessions = {s.title: s for s in TranscriptionSession.objects.filter(owner=user)}
    assert sessions["Board room"].room_microphone and not sessions["Just me"].room_microphone
    page = client.get("/").content.decode()
    assert "Room microphone (several people share one microphone)" in page
    assert page.count('name="room_microphone" checked') == 1  # (Board room's settings)

    session = sessions["Just me"]
    client.post(f"/sessions/{session.pk}/settings/", {"room_microphone": "on"})
    session.refresh_from_db()
    assert session.room_microphone
    client.post(f"/sessions/{session.pk}/settings/", {})
    session.refresh_from_db()
    assert not session.room_microphone
    client.force_login(other_user)
    assert client.post(f"/sessions/{session.pk}/settings/", {"room_microphone": "on"}).status_code == 404
    session.refresh_from_db()
    assert not session.room_microphone


def test_a_diarized_jobs_page_names_its_segments_speaker_n(db, user, client):
    job = BatchJob.objects.create(
        owner=user, status=BatchJob.Status.DONE, original_filename="meeting.wav", diarize=True,
        segments=[
            {"start": 0.0, "end": 2.0, "text": "Hello", "speaker_label": "S1"},
            {"start": 2.0, "end": 4.0, "text": "Hi there", "speaker_label": "S2"},
            {"start": 4.0, "end": 5.0, "text": "Unlabelled"},
        ],
    )  # fmt: skip
    client.force_login(user)
    config = client.get(f"/jobs/{job.pk}/transcript/").context["page_config"]
    assert [(t["speaker"], t["speaker_label"]) for t in config["turns"]] == [
        ("Speaker 1", "S1"), ("Speaker 2", "S2"), ("", "")
    ]  # fmt: skip
    upload = client.get("/upload/").content.decode()
    assert 'id="diarize"' in upload and "Identify speakers" in upload


def test_the_session_list_counts_a_room_microphones_voices_as_speakers(room, user, client):
    session, _bob = room
    SpeakerLabelName.objects.create(session=session, speaker=user, label="S2", display_name="Carol")
    client.force_login(user)
    assert "3 speakers: bob, Carol, Speaker 1" in client.get("/").content.decode()
