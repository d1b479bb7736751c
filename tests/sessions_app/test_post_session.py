"""The post-session pass: ending a session, the archival transcript, failures, retries and auto-end."""

from __future__ import annotations

import datetime as dt
import time
from pathlib import Path

import pytest
import soundfile
from asgiref.sync import async_to_sync
from channels.layers import channel_layers, get_channel_layer
from django.urls import reverse
from django.utils import timezone
from rest_framework.test import APIClient

from sessions_app.meeting_record import post_session
from sessions_app.models import SessionMember, TranscriptionSession, Utterance
from sessions_app.recordings import close_recording, open_recording
from sessions_app.tasks import auto_end_session, post_session_pass
from stt_engine.batch import BatchResult, BatchSegment, Word, transcribe_file
from tests.speech import dev_clip, word_error_rate

State = TranscriptionSession.TranscriptState
T0 = dt.datetime(2026, 5, 4, 9, 0, 0, tzinfo=dt.UTC)


class FailingTranscribeForTest:
    """Stands in for the batch function and always fails (only the error path uses it)."""

    def __call__(self, *args, **kwargs) -> BatchResult:
        raise RuntimeError("the batch decoder broke (a fake for the error path)")


class CannedTranscribeForTest:
    """Stands in for the batch function with one fixed segment (the retry after a failure)."""

    def __call__(self, path, **kwargs) -> BatchResult:
        words = [Word(" Ask", 1.0, 1.4, 0.9), Word(" not.", 1.4, 2.0, 0.8)]
        return BatchResult([BatchSegment(1.0, 2.0, "Ask not.", words)], "en", 11.0)


@pytest.fixture
def queued(monkeypatch) -> list[str]:
    """Sessions whose pass was queued; nothing goes to a broker."""
    sent: list[str] = []
    monkeypatch.setattr(post_session, "_queue_pass", lambda session_id: sent.append(str(session_id)))
    return sent


def _record(session, speaker, clip_path: Path) -> None:
    """The speaker's recording of the session holds the clip, as the stream consumer writes it."""
    pcm, rate = soundfile.read(clip_path, dtype="int16")
    recording, appender = open_recording(session.pk, speaker.pk, rate)
    appender.append(pcm.tobytes())
    close_recording(recording, appender)


def _live(session, speaker, pieces: list[tuple[float, float, str]], spoken_from: dt.datetime) -> list[Utterance]:
    """Live finals with rough times, as the engine would have sent them."""
    last = Utterance.objects.filter(session=session).count()
    return [
        Utterance.objects.create(
            session=session,
            speaker=speaker,
            sequence=last + n,
            start_s=start,
            end_s=end,
            text=text,
            source=Utterance.Source.LIVE,
            spoken_at=spoken_from + dt.timedelta(seconds=start),
        )
        for n, (start, end, text) in enumerate(pieces, start=1)
    ]


def _wait_until_done(api: APIClient, session_id, running, timeout_s: float = 300) -> dict:
    deadline = time.monotonic() + timeout_s
    seen: list[int] = []
    while time.monotonic() < deadline:
        body = api.get(f"/api/sessions/{session_id}/").json()
        seen.append(body["refine_progress"])
        if body["transcript_state"] in (State.FINAL, State.FAILED):
            assert seen == sorted(seen), seen
            return body
        time.sleep(0.5)
    pytest.fail(f"the pass of {session_id} did not finish; worker log:\n{running.log()[-4000:]}")


@pytest.mark.django_db(transaction=True)
def test_a_real_worker_replaces_the_live_transcript_with_the_archive_and_keeps_a_correction(
    worker, settings, make_user, make_session
):
    running, media = worker
    settings.MEDIA_ROOT = media
    settings.BATCH_QUEUE = running.queue
    owner, guest = make_user("chair"), make_user("guest")
    session = make_session(owner, "Board meeting", "en")
    SessionMember.objects.create(session=session, user=guest, role=SessionMember.Role.SPEAKER)
    jfk, austen = dev_clip("jfk"), dev_clip("librivox_sense_and_sensibility_01_0870")
    _record(session, owner, jfk.path)
    _record(session, guest, austen.path)
    # The live finals: rough, cut mid-sentence, as a fast engine without context makes them.
    owner_pieces = [
        (0.3, 5.0, "And so my fellow American."),
        (5.5, 10.8, "Ask not what your country can do for you ask what you can."),
    ]
    guest_pieces = [
        (0.2, 3.5, "and mister john dash would had then leisure"),
        (3.6, 7.0, "to consider how much there might be prudent"),
    ]
    owner_live = _live(session, owner, owner_pieces, T0)
    guest_live = _live(session, guest, guest_pieces, T0 + dt.timedelta(seconds=20))
    corrected = guest_live[1]
    corrected.correct("to consider how much there might be prudently in his power to do for them", guest)

    api = APIClient()
    api.force_authenticate(owner)
    response = api.post(f"/api/sessions/{session.pk}/end/")
    assert response.status_code == 202, response.content
    assert response.json()["status"] == "closed" and response.json()["transcript_state"] == State.REFINING
    body = _wait_until_done(api, session.pk, running)
    assert body["transcript_state"] == State.FINAL, (body, running.log()[-3000:])
    assert body["refine_progress"] == 100 and body["refine_error_code"] == ""

    current = list(Utterance.objects.filter(session=session).current())
    by_speaker = {owner.pk: [u for u in current if u.speaker_id == owner.pk],
                  guest.pk: [u for u in current if u.speaker_id == guest.pk]}  # fmt: skip
    assert by_speaker[owner.pk] and all(u.source == Utterance.Source.ARCHIVE for u in by_speaker[owner.pk])
    assert all(u.words and {"word", "start", "end", "probability"} <= set(u.words[0]) for u in by_speaker[owner.pk])
    # Interleaved by time: the owner spoke first.
    assert [u.speaker_id for u in current] == sorted((u.speaker_id for u in current), key=[owner.pk, guest.pk].index)
    # Every live row is kept, marked superseded, except the corrected one, which stays current.
    for row in [*owner_live, guest_live[0]]:
        row.refresh_from_db()
        assert row.superseded_by is not None and row.superseded_by.source == Utterance.Source.ARCHIVE
    corrected.refresh_from_db()
    assert corrected.is_current and corrected in by_speaker[guest.pk]
    archive_over_it = [u for u in by_speaker[guest.pk] if u.source == Utterance.Source.ARCHIVE
                       and corrected.start_s <= (u.start_s + u.end_s) / 2 <= corrected.end_s]  # fmt: skip
    assert not archive_over_it
    assert "power" not in " ".join(u.text for u in by_speaker[guest.pk] if u.source == Utterance.Source.ARCHIVE)

    # The export's WER bound: the archive is no worse than offline base, beam 5, on the same clip.
    export = api.get(f"/api/sessions/{session.pk}/export", {"format": "json"})
    assert export.status_code == 200
    archive_text = " ".join(u.text for u in by_speaker[owner.pk])
    offline = transcribe_file(jfk.path, model_path_or_name="base", language="en", beam_size=5)
    offline_text = " ".join(s.text for s in offline.segments)
    assert word_error_rate([jfk.text], [archive_text]) <= word_error_rate([jfk.text], [offline_text])
    live_text = " ".join(u.text for u in owner_live)
    assert word_error_rate([jfk.text], [archive_text]) <= word_error_rate([jfk.text], [live_text])


@pytest.mark.django_db
def test_a_failed_pass_leaves_the_live_transcript_and_can_be_retried(
    settings, tmp_path, make_user, make_session, queued, monkeypatch, django_capture_on_commit_callbacks
):
    settings.MEDIA_ROOT = tmp_path
    owner = make_user("chair")
    session = make_session(owner, "Stand-up", "en")
    _record(session, owner, dev_clip("jfk").path)
    live = _live(session, owner, [(0.3, 5.0, "And so my fellow American."), (5.5, 10.8, "Ask not.")], T0)
    monkeypatch.setattr("sessions_app.tasks.cached_model", lambda name: None)  # (the fakes need no model)
    monkeypatch.setattr(post_session, "transcribe_file", FailingTranscribeForTest())
    api = APIClient()
    api.force_authenticate(owner)

    with django_capture_on_commit_callbacks(execute=True):
        assert api.post(f"/api/sessions/{session.pk}/end/").status_code == 202
    assert queued == [str(session.pk)]
    assert post_session_pass.apply(args=[str(session.pk)]).get() == State.FAILED
    body = api.get(f"/api/sessions/{session.pk}/").json()
    assert body["transcript_state"] == State.FAILED and body["refine_error_code"] == "ENGINE_ERROR"
    assert list(Utterance.objects.filter(session=session).current()) == live
    assert not Utterance.objects.filter(session=session, source=Utterance.Source.ARCHIVE).exists()

    monkeypatch.setattr(post_session, "transcribe_file", CannedTranscribeForTest())
    with django_capture_on_commit_callbacks(execute=True):
        retried = api.post(f"/api/sessions/{session.pk}/end/")
    assert retried.status_code == 202 and retried.json()["transcript_state"] == State.REFINING
    assert retried.json()["refine_error_code"] == "" and len(queued) == 2
    assert post_session_pass.apply(args=[str(session.pk)]).get() == State.FINAL
    session.refresh_from_db()
    assert session.transcript_state == State.FINAL and session.refine_progress == 100 and session.refined_at
    current = list(Utterance.objects.filter(session=session).current())
    assert [(u.text, u.source) for u in current] == [("Ask not.", Utterance.Source.ARCHIVE)]
    assert current[0].words[0] == {"word": " Ask", "start": 1.0, "end": 1.4, "probability": 0.9}
    assert current[0].spoken_at == T0 + dt.timedelta(seconds=1.0)
    # A message redelivered after the pass finished does nothing.
    assert post_session_pass.apply(args=[str(session.pk)]).get() == "skipped"


@pytest.mark.django_db
def test_a_missing_recording_fails_the_pass_with_not_audio(settings, tmp_path, make_user, make_session, queued):
    settings.MEDIA_ROOT = tmp_path
    owner = make_user("chair")
    session = make_session(owner, "Lost audio", "en")
    _record(session, owner, dev_clip("jfk").path)
    live = _live(session, owner, [(0.3, 5.0, "And so my fellow American.")], T0)
    next(tmp_path.rglob("*.wav")).unlink()
    post_session.end_session(session, owner)
    assert post_session.run_post_session_pass(session.pk, transcribe=FailingTranscribeForTest()) == State.FAILED
    session.refresh_from_db()
    assert session.transcript_state == State.FAILED and session.refine_error_code == "NOT_AUDIO"
    assert list(Utterance.objects.filter(session=session).current()) == live


@pytest.mark.django_db
def test_only_the_owner_may_end_a_session(make_user, make_session, queued, django_capture_on_commit_callbacks):
    owner, member, stranger = make_user("chair"), make_user("member"), make_user("stranger")
    session = make_session(owner, "Planning")
    SessionMember.objects.create(session=session, user=member, role=SessionMember.Role.SPEAKER)
    url = f"/api/sessions/{session.pk}/end/"
    api = APIClient()
    assert api.post(url).status_code in (401, 403)
    api.force_authenticate(stranger)
    assert api.post(url).status_code == 404
    api.force_authenticate(member)
    refused = api.post(url)
    assert refused.status_code == 403 and refused.json()["code"] == "FORBIDDEN" and refused.json()["error"]
    assert queued == []
    session.refresh_from_db()
    assert session.is_active and session.transcript_state == State.LIVE

    channel_layers.backends.clear()  # (a Redis layer is bound to the loop that first used it)
    layer = get_channel_layer()
    channel = async_to_sync(layer.new_channel)()
    async_to_sync(layer.group_add)(f"session-{session.pk}", channel)
    api.force_authenticate(owner)
    with django_capture_on_commit_callbacks(execute=True):
        ended = api.post(url)
    assert ended.status_code == 202
    body = ended.json()
    assert (body["status"], body["transcript_state"], body["refine_progress"]) == ("closed", State.REFINING, 0)
    assert body["ended_at"] and queued == [str(session.pk)]
    assert async_to_sync(layer.receive)(channel) == {"type": "session.ended"}
    state = async_to_sync(layer.receive)(channel)
    assert state["type"] == "caption.event"
    assert state["message"] == {"type": "stt_transcript_state", "session_id": str(session.pk),
                                "state": State.REFINING, "progress": 0}  # fmt: skip
    # Ending it again while its pass runs queues nothing more.
    with django_capture_on_commit_callbacks(execute=True):
        assert api.post(url).status_code == 202
    assert queued == [str(session.pk)]
    async_to_sync(layer.group_discard)(f"session-{session.pk}", channel)
    channel_layers.backends.clear()


@pytest.mark.django_db
def test_the_close_button_ends_the_session_and_queues_the_pass(
    client, user, make_session, queued, django_capture_on_commit_callbacks
):
    session = make_session(user)
    client.force_login(user)
    with django_capture_on_commit_callbacks(execute=True):
        assert client.post(reverse("session-close", args=[session.pk])).status_code == 302
    session.refresh_from_db()
    assert not session.is_active and session.transcript_state == State.REFINING and queued == [str(session.pk)]


@pytest.mark.django_db
def test_a_session_ends_by_itself_only_when_nobody_streamed_for_the_set_time(
    settings, make_user, make_session, queued, monkeypatch
):
    settings.STT_SESSION_AUTO_END_S = 600
    session = make_session(make_user("chair"))
    now = timezone.now()

    def set_state(**fields) -> None:
        TranscriptionSession.objects.filter(pk=session.pk).update(**fields)

    assert auto_end_session(str(session.pk)) is False  # never streamed
    set_state(streams_open=1, last_stream_at=now - dt.timedelta(seconds=700))
    assert auto_end_session(str(session.pk)) is False  # a stream is still open
    set_state(streams_open=0, last_stream_at=now - dt.timedelta(seconds=300))
    assert auto_end_session(str(session.pk)) is False  # a stream stopped only 5 minutes ago
    settings.STT_SESSION_AUTO_END_S = 0
    set_state(last_stream_at=now - dt.timedelta(seconds=700))
    assert auto_end_session(str(session.pk)) is False  # auto-end is off
    settings.STT_SESSION_AUTO_END_S = 600
    assert queued == []
    assert auto_end_session(str(session.pk)) is True
    session.refresh_from_db()
    assert not session.is_active and session.transcript_state == State.REFINING
    assert auto_end_session(str(session.pk)) is False  # already ended

    scheduled = []
    monkeypatch.setattr(auto_end_session, "apply_async", lambda **kwargs: scheduled.append(kwargs))
    post_session.schedule_auto_end(session.pk)
    assert scheduled == [{"args": [str(session.pk)], "countdown": 600, "queue": settings.BATCH_QUEUE}]
    settings.STT_SESSION_AUTO_END_S = 0
    post_session.schedule_auto_end(session.pk)
    assert len(scheduled) == 1


@pytest.mark.django_db
def test_the_admin_runs_the_pass_again_and_lists_the_current_version_first(
    client, make_user, make_session, queued, django_capture_on_commit_callbacks
):
    admin = make_user("root", is_staff=True, is_superuser=True)
    session = make_session(admin, "Review")
    old, new = _live(session, admin, [(0.0, 1.0, "the old words"), (0.0, 1.0, "the archive words")], T0)
    Utterance.objects.filter(pk=old.pk).update(superseded_by=new, superseded_at=timezone.now())
    Utterance.objects.filter(pk=new.pk).update(source=Utterance.Source.ARCHIVE)
    TranscriptionSession.objects.filter(pk=session.pk).update(
        status=TranscriptionSession.Status.CLOSED, transcript_state=State.REFINING, refine_progress=40
    )  # a pass whose worker died: only the admin's forced re-run queues it again
    client.force_login(admin)
    changelist = reverse("admin:sessions_app_transcriptionsession_changelist")
    listing = client.get(changelist).content.decode()
    assert "Refining" in listing and "40" in listing
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(changelist, {"action": "run_post_session_pass", "_selected_action": [str(session.pk)]})
    assert response.status_code == 302 and queued == [str(session.pk)]
    session.refresh_from_db()
    assert session.transcript_state == State.REFINING and session.refine_progress == 0

    page = client.get(reverse("admin:sessions_app_transcriptionsession_change", args=[session.pk])).content.decode()
    assert page.index("the archive words") < page.index("the old words")
    utterances = client.get(reverse("admin:sessions_app_utterance_changelist")).content.decode()
    assert utterances.index("the archive words") < utterances.index("the old words")
