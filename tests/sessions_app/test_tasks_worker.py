"""End to end through a REAL Celery worker process (not eager mode), on the test database."""

from __future__ import annotations

import json
import re
import time

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from rest_framework.test import APIClient

from tests.speech import dev_clip, word_error_rate


def _poll(api: APIClient, job_id: str, worker, timeout_s: float = 240) -> dict:
    deadline = time.monotonic() + timeout_s
    seen_progress: list[int] = []
    while time.monotonic() < deadline:
        body = api.get(f"/api/jobs/{job_id}/").json()
        seen_progress.append(body["progress"])
        if body["status"] in ("done", "failed"):
            assert seen_progress == sorted(seen_progress)
            return body
        time.sleep(0.5)
    pytest.fail(f"job {job_id} did not finish; worker log:\n{worker.log()[-4000:]}")


@pytest.mark.django_db(transaction=True)
def test_a_real_worker_transcribes_uploads_and_every_export_works(worker, settings, make_user):
    running, media = worker
    settings.MEDIA_ROOT = media
    settings.BATCH_QUEUE = running.queue
    api = APIClient()
    api.force_authenticate(make_user("uploader"))
    clips = [dev_clip("jfk"), dev_clip("ls_dev-clean_1988-24833-0000")]
    job_ids = []
    for clip in clips:
        upload = SimpleUploadedFile(clip.path.name, clip.path.read_bytes(), content_type="audio/wav")
        response = api.post("/api/jobs/", {"file": upload, "model": "base"}, format="multipart")
        assert response.status_code == 202, response.content
        job_ids.append(response.json()["id"])

    hypotheses = []
    for clip, job_id in zip(clips, job_ids, strict=True):
        body = _poll(api, job_id, running)
        assert body["status"] == "done", (body, running.log()[-3000:])
        assert body["progress"] == 100 and body["detected_language"] == "en"
        assert body["audio_duration_s"] == pytest.approx(clip.duration_s, abs=0.2)
        assert body["finished_at"] and body["error_code"] == ""
        base = f"/api/jobs/{job_id}/transcript/"
        txt = api.get(base, {"format": "txt"}).content.decode()
        hypotheses.append(txt)
        data = json.loads(api.get(base, {"format": "json"}).content)
        assert data["language"] == "en" and data["segments"][0]["words"][0]["word"].strip()
        srt = api.get(base, {"format": "srt"}).content.decode()
        assert srt.startswith("1\n") and re.search(r"\d{2}:\d{2}:\d{2},\d{3} --> \d{2}:\d{2}:\d{2},\d{3}", srt)
        assert api.get(base, {"format": "vtt"}).content.decode().startswith("WEBVTT\n")
    assert word_error_rate([c.text for c in clips], hypotheses) < 0.15


@pytest.mark.django_db(transaction=True)
def test_a_job_done_by_the_worker_can_be_deleted(worker, settings, make_user):
    running, media = worker
    settings.MEDIA_ROOT = media
    settings.BATCH_QUEUE = running.queue
    api = APIClient()
    api.force_authenticate(make_user("deleter"))
    clip = dev_clip("jfk")
    upload = SimpleUploadedFile("a.wav", clip.path.read_bytes())
    response = api.post("/api/jobs/", {"file": upload, "model": "tiny.en", "language": "en"}, format="multipart")
    job_id = response.json()["id"]
    assert _poll(api, job_id, running)["status"] == "done"
    assert api.delete(f"/api/jobs/{job_id}/").status_code == 204
    assert api.get(f"/api/jobs/{job_id}/").status_code == 404
    assert not list(media.rglob("a*.wav"))
