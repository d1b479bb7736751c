"""Corrections of a batch job's segments (``/api/jobs/<id>/segments/<index>/``), the exports that say them,
and the job's transcript page (``/jobs/<id>/transcript/``)."""

from __future__ import annotations

import io
import json
import threading

import docx
import pytest
from django.db import connection
from rest_framework.test import APIClient

from sessions_app.job_segments import do_correct_segment
from sessions_app.models import BatchJob

pytestmark = pytest.mark.django_db

SEGMENTS = [
    {
        "start": 0.3,
        "end": 2.2,
        "text": " And so my fellow Americans,",
        "words": [
            {"word": " And", "start": 0.3, "end": 0.5},
            {"word": " so", "start": 0.5, "end": 0.8},
            {"word": " my", "start": 0.8, "end": 1.1},
            {"word": " fellow", "start": 1.1, "end": 1.5},
            {"word": " Americans,", "start": 1.5, "end": 2.2},
        ],
    },
    {"start": 3.0, "end": 6.0, "text": " ask not what your country can do for you.", "words": []},
]


@pytest.fixture
def job(user) -> BatchJob:
    return BatchJob.objects.create(
        owner=user, status="done", original_filename="jfk.wav", segments=json.loads(json.dumps(SEGMENTS))
    )


def _api(user) -> APIClient:
    client = APIClient()
    client.force_authenticate(user)
    return client


def _patch(client: APIClient, job: BatchJob, index, text):
    return client.patch(f"/api/jobs/{job.pk}/segments/{index}/", {"corrected_text": text}, format="json")


def test_the_owner_corrects_a_segment_and_the_original_stays(user, job):
    response = _patch(_api(user), job, 1, "  ask not what your country can do for you,  ")
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["index"] == 1 and body["corrected_text"] == "ask not what your country can do for you,"
    assert body["text"] == "ask not what your country can do for you." and body["corrected_by"] == "alice"
    job.refresh_from_db()
    assert job.segments[1]["text"] == SEGMENTS[1]["text"]  # the machine's text is never edited
    assert job.segments[1]["corrected_text"] == "ask not what your country can do for you,"
    assert job.segments[0] == SEGMENTS[0]
    assert _api(user).get(f"/api/jobs/{job.pk}/segments/1").json() == body


def test_an_empty_correction_restores_the_original(user, job):
    _patch(_api(user), job, 0, "And so, my fellow Americans,")
    response = _patch(_api(user), job, 0, "")
    assert response.status_code == 200 and response.json()["corrected_text"] == ""
    job.refresh_from_db()
    assert job.segments[0] == SEGMENTS[0]


def test_every_export_says_the_correction_and_json_keeps_the_original(user, job):
    _patch(_api(user), job, 1, "ask what you can do for your country.")
    api = _api(user)
    url = f"/api/jobs/{job.pk}/transcript"
    assert api.get(url, {"format": "txt"}).content.decode() == (
        "And so my fellow Americans,\nask what you can do for your country.\n"
    )
    timed = api.get(url, {"format": "txt", "times": "1"}).content.decode()
    assert timed == "[0:00] And so my fellow Americans,\n[0:03] ask what you can do for your country.\n"
    assert "ask what you can do for your country." in api.get(url, {"format": "srt"}).content.decode()
    assert "ask what you can do for your country." in api.get(url, {"format": "vtt"}).content.decode()
    paragraphs = [p.text for p in docx.Document(io.BytesIO(api.get(url, {"format": "docx"}).content)).paragraphs]
    assert "ask what you can do for your country." in paragraphs
    assert "ask not what your country can do for you." not in paragraphs
    segments = api.get(url, {"format": "json"}).json()["segments"]
    assert segments[1]["text"] == "ask what you can do for your country."
    assert segments[1]["original_text"] == "ask not what your country can do for you." and segments[1]["corrected"]
    assert "original_text" not in segments[0]


def test_a_whole_text_correction_of_old_data_is_the_txt_until_a_segment_is_corrected(user, job):
    job.corrected_text = "And so, my fellow Americans: ask not."
    job.save(update_fields=["corrected_text"])
    api = _api(user)
    url = f"/api/jobs/{job.pk}/transcript"
    assert api.get(url, {"format": "txt"}).content.decode() == "And so, my fellow Americans: ask not.\n"
    assert "A reviewer corrected this job" in _page(user, job).content.decode()
    _patch(api, job, 0, "And so, my fellow Americans,")
    assert api.get(url, {"format": "txt"}).content.decode().startswith("And so, my fellow Americans,\nask not what")


def test_another_user_sees_no_such_job(user, other_user, job):
    response = _patch(_api(other_user), job, 0, "Mine now.")
    assert response.status_code == 404 and response.json()["code"] == "NOT_FOUND"
    assert _api(other_user).get(f"/api/jobs/{job.pk}/segments/0/").status_code == 404
    job.refresh_from_db()
    assert job.segments == SEGMENTS


def test_staff_may_read_a_segment_but_only_the_owner_corrects(user, make_user, job):
    staff = make_user("sam", is_staff=True)
    assert _api(staff).get(f"/api/jobs/{job.pk}/segments/0/").status_code == 200
    response = _patch(_api(staff), job, 0, "Edited by staff.")
    assert response.status_code == 403 and response.json()["code"] == "FORBIDDEN"
    job.refresh_from_db()
    assert job.segments == SEGMENTS


@pytest.mark.parametrize("index", ["2", "99999999999999999999999", "-1", "x", "1.5"])
def test_a_segment_that_does_not_exist_is_not_found(user, job, index):
    response = _patch(_api(user), job, index, "Nothing here.")
    assert response.status_code == 404 and response.json()["code"] == "NOT_FOUND", response.content


@pytest.mark.parametrize(
    ("status", "code"), [("queued", "JOB_NOT_DONE"), ("running", "JOB_NOT_DONE"), ("failed", "JOB_FAILED")]
)
def test_a_job_that_is_not_done_has_nothing_to_correct(user, job, status, code):
    BatchJob.objects.filter(pk=job.pk).update(status=status, error_code="NOT_AUDIO" if status == "failed" else "")
    response = _patch(_api(user), job, 0, "Too early.")
    assert response.status_code == 409 and response.json()["code"] == code
    assert _api(user).get(f"/api/jobs/{job.pk}/segments/0/").json()["code"] == code


@pytest.mark.parametrize("body", [{}, {"corrected_text": ["a list"]}, {"corrected_text": "x" * 20_001}])
def test_a_correction_without_text_is_a_bad_request(user, job, body):
    response = _api(user).patch(f"/api/jobs/{job.pk}/segments/0/", body, format="json")
    assert response.status_code == 400 and response.json()["code"] == "BAD_REQUEST", response.content


def test_anonymous_requests_are_refused(job):
    assert APIClient().patch(f"/api/jobs/{job.pk}/segments/0/", {"corrected_text": "x"}).status_code in (401, 403)


@pytest.mark.django_db(transaction=True)
def test_corrections_of_two_segments_saved_at_once_both_stay(user, job):
    """The segments JSON is read and written under a row lock: neither correction overwrites the other."""
    if connection.vendor == "sqlite":
        pytest.skip("SQLite has no row locks (select_for_update is a no-op there)")
    barrier = threading.Barrier(2)
    errors: list[BaseException] = []

    def correct(index: int) -> None:
        try:
            barrier.wait(timeout=10)
            do_correct_segment(BatchJob.objects.get(pk=job.pk), index, f"Corrected {index}.", user)
        except BaseException as exc:  # (reported below, in the test's thread)
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=correct, args=(i,)) for i in (0, 1)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert not errors, errors
    job.refresh_from_db()
    assert [s.get("corrected_text") for s in job.segments] == ["Corrected 0.", "Corrected 1."]


def _page(user, job: BatchJob, client=None):
    from django.test import Client

    client = client or Client()
    client.force_login(user)
    return client.get(f"/jobs/{job.pk}/transcript/")


def test_the_transcript_page_of_a_job_has_its_player_segments_and_exports(user, job):
    _patch(_api(user), job, 1, "ask what you can do for your country.")
    response = _page(user, job)
    assert response.status_code == 200
    page = response.content.decode()
    assert f'src="/jobs/{job.pk}/audio"' in page
    assert f"/api/jobs/{job.pk}/transcript?format=txt&amp;times=1&amp;download=1" in page
    assert f"/api/jobs/{job.pk}/transcript?format=docx&amp;download=1" in page
    assert 'id="speakers"' not in page and 'id="speaker-filter"' not in page
    config = response.context["page_config"]
    assert config["canCorrect"] and config["correctionUrl"] == f"/api/jobs/{job.pk}/segments/{{id}}/"
    assert [u["id"] for u in config["utterances"]] == [0, 1]
    assert config["utterances"][1]["corrected_text"] == "ask what you can do for your country."
    assert config["utterances"][1]["text"] == "ask not what your country can do for you."
    assert [t["utterance_ids"] for t in config["turns"]] == [[0], [1]]
    assert "transcriptState" not in config


def test_the_transcript_page_of_a_job_is_for_whoever_may_see_the_job(user, other_user, make_user, job):
    assert _page(other_user, job).status_code == 404
    staff = make_user("sam", is_staff=True)
    response = _page(staff, job)
    assert response.status_code == 200 and not response.context["page_config"]["canCorrect"]
    BatchJob.objects.filter(pk=job.pk).update(status="running", progress=40)
    response = _page(user, job)
    assert response.status_code == 200 and "still being transcribed (running, 40%)" in response.content.decode()
    assert response.context["page_config"]["utterances"] == [] and not response.context["page_config"]["canCorrect"]


def test_the_job_list_links_a_done_job_to_its_transcript_page(user, job):
    rows = _api(user).get("/api/jobs/").json()["results"]
    assert rows[0]["page_url"] == f"/jobs/{job.pk}/transcript/"
    BatchJob.objects.filter(pk=job.pk).update(status="queued")
    assert _api(user).get(f"/api/jobs/{job.pk}/").json()["page_url"] is None
