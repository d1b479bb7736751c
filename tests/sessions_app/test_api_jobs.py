from __future__ import annotations

import datetime as dt

import pytest
from django.core.cache import cache
from django.core.files.uploadedfile import SimpleUploadedFile
from django.utils import timezone
from rest_framework.test import APIClient

from sessions_app.jobs import recover_stale_jobs
from sessions_app.models import BatchJob
from tests.speech import dev_clip

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def isolated(settings, tmp_path, monkeypatch):
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


@pytest.fixture
def other_api(other_user) -> APIClient:
    client = APIClient()
    client.force_authenticate(other_user)
    return client


def _wav(name: str = "jfk") -> SimpleUploadedFile:
    clip = dev_clip(name)
    return SimpleUploadedFile(clip.path.name, clip.path.read_bytes(), content_type="audio/wav")


def _upload(api: APIClient, upload, **extra):
    return api.post("/api/jobs/", {"file": upload, **extra}, format="multipart")


def test_an_upload_is_accepted_and_queued(api, isolated, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        response = _upload(api, _wav(), language="en", model="tiny.en")
    assert response.status_code == 202, response.content
    body = response.json()
    assert body["status"] == "queued" and body["progress"] == 0
    assert body["audio_duration_s"] == pytest.approx(11.0, abs=0.1)
    assert body["model"] == "tiny.en" and body["language"] == "en"
    assert isolated == [body["id"]]
    assert api.get("/api/jobs/").json()["results"][0]["id"] == body["id"]


@pytest.mark.parametrize(
    ("content", "name", "code"),
    [
        (b"", "empty.wav", "EMPTY_FILE"),
        (b"not audio at all, just some text\n" * 40, "notes.mp3", "NOT_AUDIO"),
        (b"\x00\x01" * 3000, "noise.wav", "NOT_AUDIO"),
    ],
)
def test_bad_uploads_are_refused_with_a_code(api, isolated, content, name, code):
    response = _upload(api, SimpleUploadedFile(name, content))
    assert response.status_code == 400
    assert response.json()["code"] == code and response.json()["error"]
    assert not BatchJob.objects.exists() and isolated == []


def test_a_request_without_a_file_is_refused(api):
    response = api.post("/api/jobs/", {}, format="multipart")
    assert response.status_code == 400 and response.json()["code"] == "NO_FILE"


def test_too_large_and_too_long_uploads_are_refused(api, settings):
    settings.UPLOAD_MAX_SECONDS = 5
    assert _upload(api, _wav()).json()["code"] == "AUDIO_TOO_LONG"
    settings.UPLOAD_MAX_BYTES = 2048
    response = _upload(api, _wav())
    assert response.status_code == 400 and response.json()["code"] == "FILE_TOO_LARGE"


def test_an_unknown_model_is_refused(api):
    response = _upload(api, _wav(), model="large-v3")
    assert response.status_code == 400 and response.json()["code"] == "BAD_REQUEST"


def test_uploads_are_throttled_per_user(api, other_api, settings):
    settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK, "DEFAULT_THROTTLE_RATES": {"uploads": "2/hour"}}
    from rest_framework.throttling import ScopedRateThrottle

    ScopedRateThrottle.THROTTLE_RATES = {"uploads": "2/hour"}
    try:
        assert _upload(api, _wav()).status_code == 202
        assert _upload(api, _wav()).status_code == 202
        assert _upload(api, _wav()).status_code == 429
        assert _upload(other_api, _wav()).status_code == 202
        assert api.get("/api/jobs/").status_code == 200  # only uploads are throttled
    finally:
        from rest_framework.settings import api_settings

        ScopedRateThrottle.THROTTLE_RATES = api_settings.DEFAULT_THROTTLE_RATES


def test_the_transcript_is_a_conflict_until_the_job_is_done(api):
    job_id = _upload(api, _wav()).json()["id"]
    response = api.get(f"/api/jobs/{job_id}/transcript/?format=srt")
    assert response.status_code == 409 and response.json()["code"] == "JOB_NOT_DONE"
    BatchJob.objects.filter(pk=job_id).update(status="failed", error_code="NOT_AUDIO")
    assert api.get(f"/api/jobs/{job_id}/transcript/").json()["code"] == "JOB_FAILED"
    BatchJob.objects.filter(pk=job_id).update(
        status="done", segments=[{"start": 0.5, "end": 2.0, "text": "Ask not.", "words": []}]
    )
    response = api.get(f"/api/jobs/{job_id}/transcript/?format=vtt")
    assert response.status_code == 200 and response.content.decode().startswith("WEBVTT")
    assert api.get(f"/api/jobs/{job_id}/transcript?format=txt").content.decode() == "Ask not.\n"
    assert api.get(f"/api/jobs/{job_id}/").json()["transcript_url"].startswith(f"/api/jobs/{job_id}/transcript")
    assert api.get(f"/api/jobs/{job_id}/transcript?format=txt&times=1").content.decode() == "[0:00] Ask not.\n"
    assert api.get(f"/api/jobs/{job_id}/transcript/?format=docx").content.startswith(b"PK")  # (a zip: OOXML)
    assert api.get(f"/api/jobs/{job_id}/transcript/?format=pdf").json()["code"] == "BAD_FORMAT"


def test_another_users_job_is_invisible_everywhere(api, other_api, client, other_user):
    job_id = _upload(api, _wav()).json()["id"]
    BatchJob.objects.filter(pk=job_id).update(status="done")
    assert other_api.get("/api/jobs/").json()["results"] == []
    for url in (f"/api/jobs/{job_id}/", f"/api/jobs/{job_id}/transcript/?format=txt", f"/api/jobs/{job_id}/audio/"):
        assert other_api.get(url).status_code == 404, url
    assert other_api.delete(f"/api/jobs/{job_id}/").status_code == 404
    client.force_login(other_user)
    assert client.get(f"/jobs/{job_id}/audio").status_code == 404
    assert BatchJob.objects.filter(pk=job_id).exists()
    assert api.get(f"/api/jobs/{job_id}/audio/").status_code == 200


def test_anonymous_requests_are_refused():
    assert APIClient().get("/api/jobs/").status_code in (401, 403)


def test_deleting_a_job_removes_it_and_its_file(api, django_capture_on_commit_callbacks):
    job_id = _upload(api, _wav()).json()["id"]
    path = BatchJob.objects.get(pk=job_id).upload.path
    with django_capture_on_commit_callbacks(execute=True):
        assert api.delete(f"/api/jobs/{job_id}/").status_code == 204
    assert not BatchJob.objects.filter(pk=job_id).exists()
    import os

    assert not os.path.exists(path)


def test_a_running_job_whose_worker_was_lost_is_queued_again_then_fails_the_second_time(api, settings, monkeypatch):
    queued: list[str] = []
    monkeypatch.setattr("sessions_app.lost_work._queue_job", queued.append)
    job_id = _upload(api, _wav()).json()["id"]
    old = timezone.now() - dt.timedelta(seconds=settings.BATCH_STALE_AFTER_S + 5)
    # Running, an old heartbeat and no worker holding its lease: its worker is gone.
    BatchJob.objects.filter(pk=job_id).update(status="running", heartbeat_at=old)
    fresh_id = _upload(api, _wav()).json()["id"]
    BatchJob.objects.filter(pk=fresh_id).update(status="running", heartbeat_at=timezone.now())
    body = api.get(f"/api/jobs/{job_id}/").json()
    assert body["status"] == "queued" and body["error_code"] == "WORKER_LOST" and queued == [job_id]
    assert BatchJob.objects.get(pk=fresh_id).status == "running"  # (a fresh heartbeat is not looked at)
    assert recover_stale_jobs() == 0
    # The rerun loses its worker too: now it fails.
    BatchJob.objects.filter(pk=job_id).update(status="running", heartbeat_at=old)
    body = api.get(f"/api/jobs/{job_id}/").json()
    assert body["status"] == "failed" and body["error_code"] == "WORKER_LOST" and queued == [job_id]


def test_the_openapi_schema_and_docs_are_served(api):
    schema = api.get("/api/schema/?format=json")
    assert schema.status_code == 200
    paths = schema.json()["paths"]
    assert "/api/jobs/" in paths and "/api/sessions/{id}/utterances/" in paths
    assert api.get("/api/docs/").status_code == 200
