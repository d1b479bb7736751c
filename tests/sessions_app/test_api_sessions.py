from __future__ import annotations

import pytest
from rest_framework.test import APIClient

from sessions_app.actions import do_add_member
from sessions_app.models import AudioRecording, SessionMember, Utterance

pytestmark = pytest.mark.django_db


def _client(user) -> APIClient:
    client = APIClient()
    client.force_authenticate(user)
    return client


@pytest.fixture
def session_with_talk(user, make_user, make_session):
    session = make_session(user, "Planning")
    bob = make_user("bob")
    do_add_member(session, "bob", "speaker")
    rows = [
        (user, 0.0, 2.0, "Good morning everyone."),
        (bob, 2.5, 4.0, "Morning, the budget is ready."),
        (user, 4.5, 7.0, "Great, let us review the budget."),
    ]
    for seq, (speaker, start, end, text) in enumerate(rows, start=1):
        Utterance.objects.create(session=session, speaker=speaker, sequence=seq, start_s=start, end_s=end, text=text)
    return session


def test_creating_a_session_makes_the_requester_owner_and_speaker(user):
    response = _client(user).post("/api/sessions/", {"title": " Standup ", "language": "en"}, format="json")
    assert response.status_code == 201
    body = response.json()
    assert body["title"] == "Standup" and body["owner"] == "alice" and body["role"] == "speaker"
    assert body["share_token"]
    assert SessionMember.objects.get(session_id=body["id"], user=user).role == "speaker"


def test_the_session_list_holds_only_my_sessions(user, other_user, make_session):
    mine = make_session(user)
    theirs = make_session(other_user)
    shared = make_session(other_user, "Shared")
    do_add_member(shared, "alice", "viewer")
    ids = {row["id"] for row in _client(user).get("/api/sessions/").json()["results"]}
    assert ids == {str(mine.id), str(shared.id)} and str(theirs.id) not in ids
    detail = _client(user).get(f"/api/sessions/{shared.id}/").json()
    assert detail["role"] == "viewer" and detail["share_token"] is None


def test_utterances_are_paginated_and_filtered(user, session_with_talk):
    api = _client(user)
    url = f"/api/sessions/{session_with_talk.id}/utterances/"
    body = api.get(url).json()
    assert body["count"] == 3 and [u["sequence"] for u in body["results"]] == [1, 2, 3]
    assert [u["speaker"] for u in api.get(url, {"speaker": "bob"}).json()["results"]] == ["bob"]
    assert api.get(url, {"speaker": str(user.pk)}).json()["count"] == 2
    assert [u["sequence"] for u in api.get(url, {"start_after": 2.5, "end_before": 4.0}).json()["results"]] == [2]
    assert api.get(url, {"search": "BUDGET"}).json()["count"] == 2
    assert api.get(url, {"start_after": "soon"}).json()["code"] == "BAD_FILTER"
    assert api.get(url, {"page_size": 1}).json()["count"] == 3


def test_speakers_correct_utterances_and_the_original_is_kept(user, make_user, session_with_talk):
    utterance = session_with_talk.utterances.get(sequence=2)
    bob = utterance.speaker
    url = f"/api/sessions/{session_with_talk.id}/utterances/{utterance.pk}/"
    response = _client(bob).patch(url, {"corrected_text": "Morning, the budget is final."}, format="json")
    assert response.status_code == 200
    assert response.json()["text"] == "Morning, the budget is ready."
    assert response.json()["corrected_by"] == "bob"
    utterance.refresh_from_db()
    assert utterance.corrected_text == "Morning, the budget is final." and utterance.corrected_at
    assert _client(user).get(f"/api/sessions/{session_with_talk.id}/utterances/", {"search": "final"}).json()["count"]


def test_viewers_may_read_but_not_correct(make_user, session_with_talk):
    viewer = make_user("victor")
    do_add_member(session_with_talk, "victor", "viewer")
    utterance = session_with_talk.utterances.first()
    url = f"/api/sessions/{session_with_talk.id}/utterances/{utterance.pk}/"
    assert _client(viewer).get(url).status_code == 200
    assert _client(viewer).patch(url, {"corrected_text": "hacked"}, format="json").status_code == 403
    utterance.refresh_from_db()
    assert utterance.corrected_text == ""


def test_exports_label_speakers_in_every_format(user, session_with_talk):
    api = _client(user)
    base = f"/api/sessions/{session_with_talk.id}/export/"
    txt = api.get(base, {"format": "txt"}).content.decode()
    # One block per turn: "speaker: paragraph"; with times=1 "[time] speaker", then the paragraph.
    assert txt.split("\n\n")[1].startswith("bob: Morning, the budget is ready.")
    timed = api.get(base, {"format": "txt", "times": "1"}).content.decode()
    assert timed.split("\n\n")[1].startswith("[0:02] bob\nMorning, the budget is ready.")
    docx_export = api.get(base, {"format": "docx", "download": "1"})
    assert docx_export["Content-Disposition"].startswith("attachment") and docx_export.content.startswith(b"PK")
    srt = api.get(base, {"format": "srt"})
    assert srt["Content-Type"].startswith("application/x-subrip")
    assert srt.content.decode().startswith("1\n00:00:00,000 --> 00:00:02,000\nalice: Good morning")
    assert api.get(base, {"format": "vtt"}).content.decode().startswith("WEBVTT")
    data = api.get(base).json()
    assert [s["speaker"] for s in data["segments"]] == ["alice", "bob", "alice"]
    assert api.get(base, {"format": "pdf"}).json()["code"] == "BAD_FORMAT"


def test_another_users_session_is_refused_through_every_endpoint(other_user, session_with_talk, client):
    api = _client(other_user)
    sid = session_with_talk.id
    utterance = session_with_talk.utterances.first()
    recording = AudioRecording.objects.create(session=session_with_talk, speaker=utterance.speaker, file="x.wav")
    assert api.get("/api/sessions/").json()["results"] == []
    for url in (
        f"/api/sessions/{sid}/",
        f"/api/sessions/{sid}/utterances/",
        f"/api/sessions/{sid}/utterances/{utterance.pk}/",
        f"/api/sessions/{sid}/export/?format=srt",
        f"/api/sessions/{sid}/export/?format=json",
    ):
        assert api.get(url).status_code == 404, url
    patch = api.patch(f"/api/sessions/{sid}/utterances/{utterance.pk}/", {"corrected_text": "x"}, format="json")
    assert patch.status_code == 404
    client.force_login(other_user)
    assert client.get(f"/recordings/{recording.pk}/audio").status_code == 404
    utterance.refresh_from_db()
    assert utterance.corrected_text == ""


def test_an_utterance_of_another_session_is_not_found(user, make_session, session_with_talk):
    other = make_session(user, "Other")
    utterance = session_with_talk.utterances.first()
    assert _client(user).get(f"/api/sessions/{other.id}/utterances/{utterance.pk}/").status_code == 404


def test_the_utterance_list_serves_the_current_version_unless_asked_for_all(user, session_with_talk):
    api = _client(user)
    url = f"/api/sessions/{session_with_talk.id}/utterances/"
    first = session_with_talk.utterances.get(sequence=1)
    refined = Utterance.objects.create(
        session=session_with_talk, speaker=user, sequence=4, start_s=0.0, end_s=2.0, text="Good morning, everyone.",
        source=Utterance.Source.REFINED,
    )  # fmt: skip
    first.superseded_by = refined
    first.save(update_fields=["superseded_by"])

    current = api.get(url).json()["results"]
    assert [u["id"] for u in current] == [
        refined.pk,
        *session_with_talk.utterances.filter(sequence__in=[2, 3]).order_by("sequence").values_list("pk", flat=True),
    ]
    assert current[0]["source"] == "refined" and current[0]["superseded_by"] is None and "spoken_at" in current[0]

    every = api.get(url, {"versions": "all"}).json()["results"]
    assert [u["sequence"] for u in every] == [1, 2, 3, 4]
    assert every[0]["superseded_by"] == refined.pk and every[0]["source"] == "live"
    assert api.get(url, {"versions": "some"}).json()["code"] == "BAD_FILTER"
    # The export serves the current version too, and keeps its segments.
    segments = api.get(f"/api/sessions/{session_with_talk.id}/export/", {"format": "json"}).json()["segments"]
    assert segments[0]["text"] == "Good morning, everyone."
    assert "Good morning everyone." not in [s["text"] for s in segments]


def test_the_session_detail_lists_its_recordings_and_the_owner_can_fetch_each(
    user, make_user, make_session, settings, tmp_path
):
    import soundfile

    from sessions_app.recordings import close_recording, open_recording
    from sessions_app.speakers import do_rename_speaker
    from tests.speech import dev_clip

    settings.MEDIA_ROOT = tmp_path
    session = make_session(user, "Recorded")
    bob = make_user("bob")
    do_add_member(session, "bob", "speaker")
    do_rename_speaker(session, bob.pk, "Robert Smith")
    pcm, rate = soundfile.read(dev_clip("jfk").path, dtype="int16")
    # Alice's stream is closed; Bob's is still being written (its row has not been updated yet).
    recording, appender = open_recording(session.pk, user.pk, rate)
    appender.append(pcm.tobytes())
    close_recording(recording, appender)
    _, open_appender = open_recording(session.pk, bob.pk, 8000)
    open_appender.append(pcm[: 8000 * 2].tobytes())  # 2 s at 8 kHz, stored at 16 kHz
    open_appender._write_header()  # (as it does every second)

    api = _client(user)
    body = api.get(f"/api/sessions/{session.pk}/").json()
    recordings = {r["speaker"]: r for r in body["recordings"]}
    assert set(recordings) == {"alice", "bob"}
    alice, robert = recordings["alice"], recordings["bob"]
    assert alice["speaker_id"] == user.pk and alice["speaker_name"] == "alice"
    assert alice["duration_s"] == pytest.approx(len(pcm) / rate, abs=0.001)
    assert alice["sample_rate"] == 16000 and alice["bytes"] == 44 + len(pcm) * 2
    assert robert["speaker_name"] == "Robert Smith"
    assert robert["duration_s"] == pytest.approx(2.0, abs=0.05) and robert["bytes"] > 44 + 60000
    assert "recordings" not in api.get("/api/sessions/").json()["results"][0]  # (the list stays light)

    wav = api.get(alice["audio_url"])
    assert wav.status_code == 200 and wav["Content-Type"] == "audio/wav"
    audio = b"".join(wav.streaming_content) if wav.streaming else wav.content
    assert len(audio) == alice["bytes"] and audio[:4] == b"RIFF" and audio[44:] == pcm.tobytes()
    ranged = api.get(alice["audio_url"], HTTP_RANGE="bytes=44-99")
    assert ranged.status_code == 206
    assert (b"".join(ranged.streaming_content) if ranged.streaming else ranged.content) == pcm.tobytes()[:56]
    open_appender.close()


def test_a_recording_is_served_only_in_its_session_and_to_its_members(user, other_user, make_user, make_session,
                                                                      settings, tmp_path):  # fmt: skip
    from sessions_app.recordings import close_recording, open_recording

    settings.MEDIA_ROOT = tmp_path
    session = make_session(user, "Mine")
    elsewhere = make_session(user, "Also mine")
    recording, appender = open_recording(session.pk, user.pk, 16000)
    appender.append(b"\x01\x00" * 1600)
    close_recording(recording, appender)
    url = f"/api/sessions/{session.pk}/recordings/{recording.pk}/audio/"
    assert _client(user).get(url).status_code == 200
    wrong_session = _client(user).get(f"/api/sessions/{elsewhere.pk}/recordings/{recording.pk}/audio/")
    assert wrong_session.status_code == 404 and wrong_session.json()["code"] == "NOT_FOUND"
    assert _client(user).get(f"/api/sessions/{session.pk}/recordings/999999/audio/").status_code == 404
    assert _client(other_user).get(url).status_code == 404
    assert APIClient().get(url).status_code in (401, 403)
    do_add_member(session, other_user.username, "viewer")
    assert _client(other_user).get(url).status_code == 200  # (members may listen, as on the transcript page)
