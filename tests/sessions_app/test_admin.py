from __future__ import annotations

import pytest
from django.core.files.base import ContentFile
from django.urls import reverse

from sessions_app.models import AudioRecording, BatchJob, Utterance

pytestmark = pytest.mark.django_db


@pytest.fixture
def admin_client_with_data(client, make_user, make_session, settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path
    admin = make_user("root", is_staff=True, is_superuser=True)
    session = make_session(admin, title="Board meeting")
    Utterance.objects.create(
        session=session, speaker=admin, sequence=1, start_s=0.5, end_s=2.0, text="the budget is approved",
        words=[{"word": "the", "start": 0.5, "end": 0.7, "probability": 0.9}],
    )
    recording = AudioRecording(session=session, speaker=admin, duration_s=2.0)
    recording.file.save("a.wav", ContentFile(b"RIFF"), save=True)
    job = BatchJob(owner=admin, original_filename="talk.wav", segments=[{"start": 0, "end": 1, "text": "hi"}])
    job.upload.save("talk.wav", ContentFile(b"RIFF"), save=True)
    client.force_login(admin)
    return client, {"transcriptionsession": session, "utterance": Utterance.objects.get(),
                    "audiorecording": recording, "batchjob": job}


@pytest.mark.parametrize("model", ["transcriptionsession", "utterance", "audiorecording", "batchjob"])
def test_admin_list_search_and_change_pages_render(admin_client_with_data, model):
    client, rows = admin_client_with_data
    changelist = reverse(f"admin:sessions_app_{model}_changelist")
    assert client.get(changelist).status_code == 200
    assert client.get(changelist, {"q": "budget"}).status_code == 200
    response = client.get(reverse(f"admin:sessions_app_{model}_change", args=[rows[model].pk]))
    assert response.status_code == 200


def test_the_session_page_lists_its_utterances_inline_with_an_audio_player(admin_client_with_data):
    client, rows = admin_client_with_data
    page = client.get(reverse("admin:sessions_app_transcriptionsession_change", args=[rows["transcriptionsession"].pk]))
    html = page.content.decode()
    assert "the budget is approved" in html
    assert "<audio controls" in html


def test_searching_sessions_finds_them_by_spoken_words(admin_client_with_data):
    client, _ = admin_client_with_data
    page = client.get(reverse("admin:sessions_app_transcriptionsession_changelist"), {"q": "budget"})
    assert "Board meeting" in page.content.decode()
    page = client.get(reverse("admin:sessions_app_transcriptionsession_changelist"), {"q": "weather"})
    assert "Board meeting" not in page.content.decode()


def test_a_correction_in_admin_keeps_the_original_and_records_the_reviewer(admin_client_with_data):
    client, rows = admin_client_with_data
    utterance = rows["utterance"]
    url = reverse("admin:sessions_app_utterance_change", args=[utterance.pk])
    response = client.post(url, {"corrected_text": "the budget was approved"})
    assert response.status_code == 302
    utterance.refresh_from_db()
    assert utterance.text == "the budget is approved"
    assert utterance.corrected_text == "the budget was approved"
    assert utterance.corrected_by.username == "root"


def test_recording_audio_supports_range_requests_for_seeking(admin_client_with_data):
    client, rows = admin_client_with_data
    url = reverse("recording-audio", args=[rows["audiorecording"].pk])
    response = client.get(url, HTTP_RANGE="bytes=1-2")
    assert response.status_code == 206
    assert b"".join(response.streaming_content) == b"IF"
    assert response["Content-Range"] == "bytes 1-2/4"


def test_a_stranger_cannot_fetch_a_recording(admin_client_with_data, make_user, client):
    _, rows = admin_client_with_data
    client.force_login(make_user("stranger"))
    assert client.get(reverse("recording-audio", args=[rows["audiorecording"].pk])).status_code == 404
