"""Batch jobs with ``diarize``: the API option, and a real transcription of two readers taking turns."""

from __future__ import annotations

import io
import json
import re

import docx
import pytest
from django.core.cache import cache
from django.core.files.base import ContentFile
from django.core.files.uploadedfile import SimpleUploadedFile
from rest_framework.test import APIClient

from sessions_app import tasks
from sessions_app.models import BatchJob
from tests.sessions_app.diarized_helpers import two_voices
from tests.speech import dev_clip

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def isolated(settings, tmp_path, monkeypatch) -> list[str]:
    settings.MEDIA_ROOT = tmp_path / "media"
    cache.clear()  # throttle history
    queued: list[str] = []
    monkeypatch.setattr("sessions_app.tasks.transcribe_job.apply_async", lambda args, **_: queued.append(args[0]))
    return queued


@pytest.fixture
def api(user) -> APIClient:
    client = APIClient()
    client.force_authenticate(user)
    return client


def _upload(api: APIClient, **extra):
    clip = dev_clip("jfk")
    upload = SimpleUploadedFile(clip.path.name, clip.path.read_bytes(), content_type="audio/wav")
    return api.post("/api/jobs/", {"file": upload, **extra}, format="multipart")


@pytest.mark.parametrize(("sent", "stored"), [({"diarize": "true"}, True), ({"diarize": "false"}, False), ({}, False)])
def test_an_upload_asks_for_diarization_and_the_job_says_so(api, sent, stored):
    response = _upload(api, **sent)
    assert response.status_code == 202, response.content
    assert response.json()["diarize"] is stored
    assert BatchJob.objects.get(pk=response.json()["id"]).diarize is stored
    assert api.get(f"/api/jobs/{response.json()['id']}/").json()["diarize"] is stored


def test_a_diarize_that_is_not_a_boolean_is_refused(api, isolated):
    response = _upload(api, diarize="sometimes")
    assert response.status_code == 400
    assert response.json()["code"] == "BAD_REQUEST" and response.json()["error"].startswith("diarize:")
    assert not BatchJob.objects.exists() and isolated == []


def test_a_diarized_job_labels_each_readers_segments_and_every_export_names_them(api, user, tmp_path):
    conversation = two_voices()
    job = BatchJob(owner=user, model_name="base", language="en", diarize=True)
    job.upload.save("room.wav", ContentFile(conversation.write_wav(tmp_path / "room.wav").read_bytes()), save=False)
    job.save()
    assert tasks.transcribe_job(str(job.pk)) == "done"
    job.refresh_from_db()
    labels_by_voice: dict[str, set[str]] = {}
    for segment in job.segments:
        voice = conversation.voice_at(segment["start"], segment["end"])
        if voice is not None:
            labels_by_voice.setdefault(voice, set()).add(segment.get("speaker_label", ""))
    assert labels_by_voice == {"1688": {"S1"}, "3331": {"S2"}}, [
        (s.get("speaker_label"), s["text"]) for s in job.segments
    ]

    base = f"/api/jobs/{job.pk}/transcript/"
    txt = api.get(base, {"format": "txt"}).content.decode()
    assert [line.split(": ")[0] for line in txt.splitlines()][:1] == ["Speaker 1"] and "Speaker 2: " in txt
    timed = api.get(base, {"format": "txt", "times": "1"}).content.decode()
    assert re.match(r"\[0:00\] Speaker 1: ", timed), timed
    data = json.loads(api.get(base, {"format": "json"}).content)
    assert {(s["speaker_name"], s["speaker_label"]) for s in data["segments"]} == {
        ("Speaker 1", "S1"),
        ("Speaker 2", "S2"),
    }
    for fmt in ("srt", "vtt"):
        cues = api.get(base, {"format": fmt}).content.decode()
        assert "Speaker 1: " in cues and "Speaker 2: " in cues, fmt
    document = docx.Document(io.BytesIO(api.get(base, {"format": "docx"}).content))
    heads = {p.runs[0].text for p in document.paragraphs if p.runs and p.runs[0].bold}
    assert {"Speaker 1", "Speaker 2"} <= heads


def test_the_segments_api_says_each_segments_label(api, user):
    segments = [
        {"start": 0.0, "end": 1.0, "text": "One.", "words": [], "speaker_label": "S1"},
        {"start": 1.5, "end": 2.0, "text": "Two.", "words": [], "speaker_label": "S2"},
    ]
    job = BatchJob.objects.create(owner=user, status="done", diarize=True, segments=segments)
    assert api.get(f"/api/jobs/{job.pk}/segments/1/").json()["speaker_label"] == "S2"
    plain = BatchJob.objects.create(owner=user, status="done", segments=[{"start": 0, "end": 1, "text": "Hi."}])
    assert api.get(f"/api/jobs/{plain.pk}/segments/0/").json()["speaker_label"] == ""
