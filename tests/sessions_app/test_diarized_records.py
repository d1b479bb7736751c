"""Speaker labels through the server without the engine: storage, turns, exports, the session and job APIs.

The engine's part (labels on real speech, live and in batch) is in test_diarized_streams.py and
test_diarized_jobs.py; here the labels are given, as the engine's messages carry them.
"""

from __future__ import annotations

import datetime as dt
import io
import json

import docx
import pytest
from django.utils import timezone
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from sessions_app import exports
from sessions_app.actions import do_add_member
from sessions_app.live_transcripts import do_save_final, do_save_revision, utterance_message
from sessions_app.meeting_record.turns import group_into_turns
from sessions_app.meeting_record.versions import do_apply_version
from sessions_app.models import BatchJob, SpeakerLabelName, TranscriptionSession, Utterance
from sessions_app.protocol import ErrorCode, ProtocolError, parse_diarize

pytestmark = pytest.mark.django_db


def _final(text: str, start: float, end: float, label: str = "") -> dict:
    """An ``stt_final`` as the engine's ``Final.to_message()`` gives it (times on the stream's clock)."""
    words = text.split()
    step = (end - start) / len(words)
    return {
        "type": "stt_final",
        "text": text,
        "start": start,
        "end": end,
        "at": end + 0.3,
        "words": [
            {"word": f" {w}", "start": start + i * step, "end": start + (i + 1) * step, "probability": 0.9}
            for i, w in enumerate(words)
        ],
        "language": "en",
        "speaker_label": label,
    }


@pytest.fixture
def room(user, make_user, make_session):
    """alice's room microphone heard S1, S2, S1 (and S2 was renamed "Dana"); bob spoke from his own laptop."""
    session = make_session(user, "Board meeting", "en")
    session.room_microphone = True
    session.save(update_fields=["room_microphone"])
    bob = make_user("bob")
    do_add_member(session, "bob", "speaker")
    t0 = timezone.now().replace(microsecond=0) - dt.timedelta(minutes=5)
    rows = [
        (user, "S1", 0.0, 2.0, "Welcome to the board meeting."),
        (user, "S1", 2.3, 4.0, "We have two items."),
        (user, "S2", 5.0, 7.0, "Thanks, the numbers are in."),
        (bob, "", 8.0, 9.0, "I joined from home."),
        (user, "S1", 10.0, 11.5, "Let us begin."),
    ]
    for sequence, (who, label, start, end, text) in enumerate(rows, start=1):
        Utterance.objects.create(
            session=session, speaker=who, speaker_label=label, sequence=sequence, start_s=start, end_s=end,
            text=text, spoken_at=t0 + dt.timedelta(seconds=start),
            words=[{"word": f" {w}", "start": start, "end": end, "probability": 0.9} for w in text.split()[:1]],
        )  # fmt: skip
    SpeakerLabelName.objects.create(session=session, speaker=user, label="S2", display_name="Dana")
    return session, bob


# --- the protocol -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("message", "room_microphone", "expected"),
    [
        ({}, False, False),
        ({}, True, True),
        ({"diarize": True}, False, True),
        ({"diarize": False}, True, False),
        ({"diarize": None}, True, True),
    ],
)
def test_stt_start_diarize_decides_and_the_room_microphone_is_the_default(message, room_microphone, expected):
    assert parse_diarize(message, room_microphone) is expected


@pytest.mark.parametrize(("value", "shown"), [("yes", "'yes'"), (1, "a int"), ([True], "a list"), (0.0, "a float")])
def test_a_diarize_that_is_not_a_bool_is_a_bad_start(value, shown):
    with pytest.raises(ProtocolError) as caught:
        parse_diarize({"diarize": value}, True)
    assert caught.value.code == ErrorCode.BAD_START
    assert caught.value.message == f"diarize must be true or false, not {shown}."


# --- storage and messages ---------------------------------------------------------------


def test_a_labelled_final_is_stored_and_announced_with_its_label(user, make_session):
    session = make_session(user, language="en")
    labelled = do_save_final(session.pk, user.pk, _final("Good morning all", 1.0, 2.0, "S2"), 10.0, "stream1")
    plain = do_save_final(session.pk, user.pk, _final("And a plain line", 3.0, 4.0), 10.0, "stream1")
    assert (labelled.speaker_label, labelled.start_s) == ("S2", 11.0)
    assert plain.speaker_label == ""
    assert utterance_message(labelled, "alice")["speaker_label"] == "S2"
    assert utterance_message(plain, "alice")["speaker_label"] == ""


def test_a_refined_turn_keeps_each_pieces_label(user, make_session):
    """A revision split at a speaker change: each new row has its own label, on the recording clock."""
    session = make_session(user, language="en")
    live = do_save_final(session.pk, user.pk, _final("Good morning all thanks Anna", 0.0, 3.0, "S1"), 0.0, "s")
    pieces = [_final("Good morning all", 0.0, 1.6, "S1"), _final("thanks Anna", 1.8, 3.0, "S2")]
    applied = do_save_revision(session.pk, user.pk, [live.pk], pieces, 5.0, "s")
    assert [(u.speaker_label, u.start_s, u.source) for u in applied.created] == [
        ("S1", 5.0, "refined"), ("S2", 6.8, "refined"),
    ]  # fmt: skip
    live.refresh_from_db()
    assert live.superseded_by_id in {u.pk for u in applied.created}


def test_a_machine_version_without_labels_stores_none(user, make_session):
    session = make_session(user)
    live = do_save_final(session.pk, user.pk, _final("one two three", 0.0, 1.0), 0.0)
    segment = {k: v for k, v in _final("one two three", 0.0, 1.0).items() if k != "speaker_label"}
    applied = do_apply_version(session.pk, user.pk, [live.pk], [segment], Utterance.Source.ARCHIVE)
    assert applied.created[0].speaker_label == ""


# --- turns and exports ------------------------------------------------------------------


def _current(session):
    return list(session.utterances.current().with_speaker_names().select_related("speaker"))


def test_turns_change_at_every_change_of_voice_and_are_named_by_label(room, user):
    session, _bob = room
    turns = group_into_turns(_current(session))
    assert [(t.speaker, t.speaker_label, len(t.utterances)) for t in turns] == [
        ("Speaker 1", "S1", 2), ("Dana", "S2", 1), ("bob", "", 1), ("Speaker 1", "S1", 1),
    ]  # fmt: skip
    assert {t.member_name for t in turns if t.speaker_label} == {"alice"}
    # Each voice has its own colour, apart from the account's.
    assert turns[0].colour != turns[1].colour


def test_unlabelled_lines_of_one_speaker_still_make_one_turn(user, make_session):
    session = make_session(user)
    for sequence in (1, 2):
        Utterance.objects.create(
            session=session, speaker=user, sequence=sequence, start_s=sequence, end_s=sequence + 0.5, text="Hi."
        )  # fmt: skip
    turns = group_into_turns(_current(session))
    assert [(t.speaker, t.speaker_label, len(t.utterances)) for t in turns] == [("alice", "", 2)]


def test_session_txt_and_docx_name_each_voice(room):
    session, _bob = room
    text = exports.export_session(session, "txt").content
    assert text.split("\n\n") == [
        "Speaker 1: Welcome to the board meeting. We have two items.",
        "Dana: Thanks, the numbers are in.",
        "bob: I joined from home.",
        "Speaker 1: Let us begin.\n",
    ]
    timed = exports.export_session(session, "txt", times=True).content
    assert [block.split("\n")[0].split("] ")[1] for block in timed.strip().split("\n\n")] == [
        "Speaker 1", "Dana", "bob", "Speaker 1",
    ]  # fmt: skip
    document = docx.Document(io.BytesIO(exports.export_session(session, "docx").content))
    heads = [p.runs[0].text for p in document.paragraphs[2:] if p.text][0::2]
    assert heads == ["Speaker 1", "Dana", "bob", "Speaker 1"]
    assert "Speaker 1, Dana, bob" in document.paragraphs[1].text


def test_session_json_keeps_the_account_and_adds_the_label_and_its_name(room):
    session, _bob = room
    data = json.loads(exports.export_session(session, "json").content)
    assert [(s["speaker"], s["speaker_name"], s["speaker_label"]) for s in data["segments"]] == [
        ("alice", "Speaker 1", "S1"), ("alice", "Speaker 1", "S1"), ("alice", "Dana", "S2"),
        ("bob", "bob", ""), ("alice", "Speaker 1", "S1"),
    ]  # fmt: skip
    assert all(s["speaker_username"] in ("alice", "bob") for s in data["segments"])
    assert [(t["speaker"], t["speaker_name"], t["speaker_label"]) for t in data["turns"]] == [
        ("alice", "Speaker 1", "S1"), ("alice", "Dana", "S2"), ("bob", "bob", ""), ("alice", "Speaker 1", "S1"),
    ]  # fmt: skip


@pytest.mark.parametrize("fmt", ["srt", "vtt"])
def test_subtitle_cues_start_with_the_voices_name(room, fmt):
    session, _bob = room
    blocks = exports.export_session(session, fmt).content.strip().split("\n\n")
    # SRT: index, times, text; WebVTT: a "WEBVTT" head, then times, text.
    first_lines = [b.split("\n")[2] for b in blocks] if fmt == "srt" else [b.split("\n")[1] for b in blocks[1:]]
    assert [line.split(": ")[0] for line in first_lines] == ["Speaker 1", "Speaker 1", "Dana", "bob", "Speaker 1"]


def test_a_rename_reaches_the_exports(room, user):
    session, _bob = room
    SpeakerLabelName.objects.create(session=session, speaker=user, label="S1", display_name="Chair")
    assert exports.export_session(session, "txt").content.startswith("Chair: Welcome")


def test_a_session_without_labels_exports_as_before(user, make_session):
    session = make_session(user)
    Utterance.objects.create(session=session, speaker=user, sequence=1, start_s=0.0, end_s=1.0, text="Hello.")
    data = json.loads(exports.export_session(session, "json").content)
    assert (data["segments"][0]["speaker"], data["segments"][0]["speaker_label"]) == ("alice", "")
    assert exports.export_session(session, "txt").content == "alice: Hello.\n"
    assert "alice: Hello." in exports.export_session(session, "srt").content


def test_job_exports_name_diarized_segments_speaker_n(user):
    segments = [
        {"start": 0.0, "end": 1.5, "text": "Hello there.", "words": [], "speaker_label": "S1"},
        {"start": 2.0, "end": 3.0, "text": "Hi.", "words": [], "speaker_label": "S2"},
    ]
    job = BatchJob.objects.create(owner=user, status="done", diarize=True, segments=segments)
    assert exports.export_job(job, "txt").content == "Speaker 1: Hello there.\nSpeaker 2: Hi.\n"
    assert (
        exports.export_job(job, "txt", times=True).content == "[0:00] Speaker 1: Hello there.\n[0:02] Speaker 2: Hi.\n"
    )
    assert "Speaker 2: Hi." in exports.export_job(job, "srt").content
    assert "Speaker 1: Hello there." in exports.export_job(job, "vtt").content
    data = json.loads(exports.export_job(job, "json").content)
    assert [(s["speaker"], s["speaker_name"], s["speaker_label"]) for s in data["segments"]] == [
        ("Speaker 1", "Speaker 1", "S1"), ("Speaker 2", "Speaker 2", "S2"),
    ]  # fmt: skip
    paragraphs = [p.text for p in docx.Document(io.BytesIO(exports.export_job(job, "docx").content)).paragraphs]
    assert "Speaker 1  0:00" in paragraphs and "Speaker 2  0:02" in paragraphs


# --- the REST API -----------------------------------------------------------------------


def _api(user) -> APIClient:
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.get_or_create(user=user)[0].key}")
    return api


def test_a_session_is_created_with_a_room_microphone_and_the_owner_can_switch_it(user):
    api = _api(user)
    created = api.post("/api/sessions/", {"title": "Board", "room_microphone": True}, format="json")
    assert created.status_code == 201 and created.json()["room_microphone"] is True
    sid = created.json()["id"]
    assert TranscriptionSession.objects.get(pk=sid).room_microphone is True
    plain = api.post("/api/sessions/", {"title": "Standup"}, format="json").json()
    assert plain["room_microphone"] is False
    patched = api.patch(f"/api/sessions/{sid}/", {"room_microphone": False}, format="json")
    assert patched.status_code == 200 and patched.json()["room_microphone"] is False
    assert api.get(f"/api/sessions/{sid}/").json()["room_microphone"] is False
    bad = api.patch(f"/api/sessions/{sid}/", {"room_microphone": "sometimes"}, format="json")
    assert bad.status_code == 400
    assert TranscriptionSession.objects.get(pk=sid).room_microphone is False


def test_only_the_owner_may_change_the_room_microphone(user, make_user, make_session):
    session = make_session(user)
    bob = make_user("bob")
    do_add_member(session, "bob", "speaker")
    response = _api(bob).patch(f"/api/sessions/{session.pk}/", {"room_microphone": True}, format="json")
    assert response.status_code == 403
    assert _api(make_user("eve")).patch(f"/api/sessions/{session.pk}/", {"room_microphone": True}).status_code == 404
    session.refresh_from_db()
    assert session.room_microphone is False
    assert _api(bob).get(f"/api/sessions/{session.pk}/").json()["room_microphone"] is False


def test_the_utterances_api_carries_each_lines_label(room, user):
    session, _bob = room
    rows = _api(user).get(f"/api/sessions/{session.pk}/utterances/").json()["results"]
    assert [(r["speaker"], r["speaker_label"]) for r in rows] == [
        ("alice", "S1"), ("alice", "S1"), ("alice", "S2"), ("bob", ""), ("alice", "S1"),
    ]  # fmt: skip


def test_the_openapi_schema_documents_diarize_and_room_microphone(user):
    from drf_spectacular.generators import SchemaGenerator

    schema = SchemaGenerator().get_schema(request=None, public=True)
    components = schema["components"]["schemas"]
    upload = schema["paths"]["/api/jobs/"]["post"]["requestBody"]["content"]["multipart/form-data"]["schema"]
    upload = components[upload["$ref"].split("/")[-1]] if "$ref" in upload else upload
    assert upload["properties"]["diarize"]["type"] == "boolean"
    assert "Speaker 1" in upload["properties"]["diarize"]["description"]
    assert components["BatchJob"]["properties"]["diarize"]["readOnly"] is True
    assert components["Session"]["properties"]["room_microphone"]["type"] == "boolean"
    assert "patch" in schema["paths"]["/api/sessions/{id}/"]


# --- the post-session pass's labels -----------------------------------------------------


def test_the_pass_renames_its_labels_to_the_live_labels_of_the_same_voices():
    from sessions_app.meeting_record.post_session import _keep_live_labels

    live = [(0.0, 4.0, "S1"), (5.0, 9.0, "S2"), (10.0, 12.0, "S1")]
    # The pass heard the second voice first (its S1 is the live S2) and a third voice at the end.
    found = [
        {"start": 0.2, "end": 3.9, "text": "a", "speaker_label": "S2"},
        {"start": 5.1, "end": 8.8, "text": "b", "speaker_label": "S1"},
        {"start": 10.0, "end": 12.0, "text": "c", "speaker_label": "S2"},
        {"start": 13.0, "end": 16.0, "text": "d", "speaker_label": "S3"},
    ]
    kept = _keep_live_labels(found, live)
    assert [s["speaker_label"] for s in kept] == ["S1", "S2", "S1", "S3"]
    assert [s["text"] for s in kept] == ["a", "b", "c", "d"]
    # Without live labels (a room microphone whose streams were not diarized) the pass's labels stay.
    assert _keep_live_labels(found, []) == found
