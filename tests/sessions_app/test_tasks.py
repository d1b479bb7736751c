"""The transcription task called in-process (the real-worker path is in test_tasks_worker.py)."""

from __future__ import annotations

import pytest
from django.core.files.base import ContentFile

from sessions_app import tasks
from sessions_app.models import BatchJob
from tests.speech import dev_clip

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def media(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path


def _job(user, content: bytes, **fields) -> BatchJob:
    job = BatchJob(owner=user, **fields)
    job.upload.save("in.wav", ContentFile(content), save=False)
    job.save()
    return job


def test_the_task_stores_segments_language_and_duration(user):
    job = _job(user, dev_clip("jfk").path.read_bytes(), model_name="tiny.en", language="en")
    assert tasks.transcribe_job(str(job.pk)) == "done"
    job.refresh_from_db()
    assert job.status == "done" and job.progress == 100 and job.detected_language == "en"
    assert job.audio_duration_s == pytest.approx(11.0, abs=0.1)
    assert job.segments and job.segments[0]["words"] and job.started_at <= job.finished_at
    assert "country" in " ".join(s["text"] for s in job.segments).lower()


def test_a_broken_file_fails_the_job_with_its_code(user):
    job = _job(user, b"garbage" * 100)
    assert tasks.transcribe_job(str(job.pk)) == "failed"
    job.refresh_from_db()
    assert job.status == "failed" and job.error_code == "NOT_AUDIO" and job.error_message and job.finished_at


def test_an_unknown_model_fails_the_job(user):
    job = _job(user, dev_clip("jfk").path.read_bytes(), model_name="/nowhere/model")
    assert tasks.transcribe_job(str(job.pk)) == "failed"
    job.refresh_from_db()
    assert job.error_code == "MODEL_UNAVAILABLE"


def test_a_deleted_job_is_skipped_and_deletion_stops_a_running_one(user):
    assert tasks.transcribe_job("6f1c54a2-3b7e-4c1e-9a53-000000000000") == "deleted"
    job = _job(user, b"x")
    writer = tasks._ProgressWriter(str(job.pk))
    writer(0.5)
    assert BatchJob.objects.get(pk=job.pk).progress == 50
    writer(0.6)  # within a second of the last write: not written
    assert BatchJob.objects.get(pk=job.pk).progress == 50
    job.delete()
    writer.last_write = 0
    with pytest.raises(tasks.JobDeletedError):
        writer(0.7)


def test_a_finished_job_is_not_run_again_on_redelivery(user):
    job = _job(user, b"x", status="done", progress=100)
    assert tasks.transcribe_job(str(job.pk)) == "done"
