"""Uploads in Chromium as first-class transcripts: the upload page's list follows its jobs without a
reload, and a finished job opens in the transcript page (player, word seek, search, corrections that
keep the original, exports that say them). A real Celery worker transcribes a dev clip."""

from __future__ import annotations

import re

import pytest
from django.utils import timezone
from playwright.sync_api import expect

from sessions_app.models import BatchJob
from tests.browser.conftest import PASSWORD, sign_in, wait_until
from tests.speech import word_error_rate

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_the_upload_list_follows_a_job_through_its_states_without_a_reload(site, browser, make_user, screenshot):
    """The job's row changes in the database only: what the list shows, it read from /api/jobs/."""
    owner = make_user("ulla", password=PASSWORD)
    job = BatchJob.objects.create(owner=owner, original_filename="earlier-meeting.wav", status="queued")
    context = browser.new_context(viewport={"width": 1100, "height": 900})
    try:
        page = context.new_page()
        sign_in(page, site, "ulla")
        page.goto(f"{site.url}/upload/")
        page.evaluate("window.samePage = true")
        item = page.locator(f'#recent-jobs li[data-job-id="{job.pk}"]')
        expect(item).to_contain_text("earlier-meeting.wav · Queued")

        BatchJob.objects.filter(pk=job.pk).update(status="running", progress=40, heartbeat_at=timezone.now())
        expect(item).to_contain_text("Running 40%")
        expect(item.locator("progress")).to_have_attribute("value", "40")
        screenshot(page, "upload-list-running")

        BatchJob.objects.filter(pk=job.pk).update(
            status="done", progress=100, segments=[{"start": 0.0, "end": 1.0, "text": "Hello.", "words": []}]
        )
        expect(item).to_contain_text("earlier-meeting.wav · Done")
        expect(item.get_by_role("link", name="Open transcript")).to_have_attribute(
            "href", f"/jobs/{job.pk}/transcript/"
        )
        links = item.locator(".job-links a[download]")
        expect(links).to_have_text(["TXT", "TXT with times", "Word (DOCX)", "SRT", "WebVTT", "JSON"])
        assert page.evaluate("window.samePage") is True
    finally:
        context.close()


def test_an_uploaded_file_opens_in_the_transcript_page_to_seek_search_and_correct(
    site, browser, make_user, speech_clip, screenshot
):
    make_user("otto", password=PASSWORD)
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    try:
        page = context.new_page()
        sign_in(page, site, "otto")
        page.goto(f"{site.url}/upload/")
        expect(page.locator("#recent-jobs")).to_contain_text("No uploads yet.")
        page.evaluate("window.samePage = true")
        page.locator("#file").set_input_files(str(speech_clip.path))
        page.get_by_label("Language").select_option("en")
        page.get_by_role("button", name="Upload and transcribe").click()

        item = page.locator("#recent-jobs li.job").first
        expect(item).to_contain_text(speech_clip.path.name)
        expect(item).to_have_attribute("data-status", "done", timeout=240_000)
        assert page.evaluate("window.samePage") is True  # the list changed without a reload
        job = BatchJob.objects.get(owner__username="otto")
        expect(item).to_contain_text(f"{speech_clip.path.name} · Done")
        expect(item.get_by_role("link", name=f"TXT with times of {speech_clip.path.name}")).to_have_attribute(
            "href", f"/api/jobs/{job.pk}/transcript?format=txt&times=1&download=1"
        )
        expect(page.locator("#result-page")).to_have_attribute("href", f"/jobs/{job.pk}/transcript/")
        screenshot(page, "upload-list-done")

        item.get_by_role("link", name="Open transcript").click()
        page.wait_for_url(f"{site.url}/jobs/{job.pk}/transcript/")
        expect(page.get_by_role("heading", level=1)).to_have_text(f"{speech_clip.path.name}: transcript")
        segments = page.locator("#utterances .utt")
        expect(segments).to_have_count(len(job.segments))
        heard = " ".join(segments.all_inner_texts())
        assert word_error_rate([speech_clip.text], [heard]) <= 0.25, heard
        expect(page.locator("#speakers")).to_have_count(0)
        screenshot(page, "job-transcript")

        # A click on "country" plays the uploaded file from that word; the playing word is marked.
        wait_until(page, "document.querySelector('.side audio').readyState >= 1", timeout=20_000)
        word = page.locator("#utterances .word", has_text=re.compile(r"^country", re.I)).first
        start = float(word.get_attribute("data-start"))
        assert start > 1.0, start
        page.evaluate(
            "() => { const a = document.querySelector('.side audio');"
            " a.addEventListener('seeking', () => { window.seekedTo = a.currentTime; }, { once: true }); }"
        )
        word.click()
        wait_until(page, "window.seekedTo !== undefined", timeout=10_000)
        assert page.evaluate("window.seekedTo") == pytest.approx(start, abs=0.01)
        wait_until(page, "!document.querySelector('.side audio').paused", timeout=10_000)
        wait_until(page, "document.querySelector('#utterances .word.current') !== null", timeout=10_000)
        current = float(page.locator("#utterances .word.current").get_attribute("data-start"))
        assert current >= start, (current, start)
        page.evaluate("document.querySelector('.side audio').pause()")
        expect(page.locator("#problems")).to_be_empty()  # (a pause before playback began is no problem)

        # Search marks its hits.
        page.get_by_label("Search").fill("country")
        expect(page.locator("mark.hit").first).to_have_text(re.compile("country", re.I))
        expect(page.locator("#search-count")).to_contain_text(f"of {len(job.segments)} segments match")
        page.get_by_label("Search").fill("")

        # Correct the first segment: the page shows the correction and the original beside it.
        original = job.segments[0]["text"].strip()
        corrected = original.replace("fellow", "dear fellow", 1) if "fellow" in original else f"{original} (checked)"
        first = segments.first
        first.get_by_role("button", name="Correct").click()
        page.get_by_label("Corrected text").fill(corrected)
        page.get_by_role("button", name="Save").click()
        expect(first.locator(".text.corrected")).to_have_text(corrected)
        expect(first.locator(".original")).to_contain_text("corrected by otto")
        screenshot(page, "job-transcript-corrected")

        job.refresh_from_db()
        assert job.segments[0]["text"].strip() == original and job.segments[0]["corrected_text"] == corrected
        txt = page.request.get(site.url + page.get_by_role("link", name="TXT", exact=True).get_attribute("href"))
        assert txt.ok and txt.text().splitlines()[0] == corrected, txt.text()

        # After a reload the correction is still there, the original beside it.
        page.reload()
        expect(segments.first.locator(".text.corrected")).to_have_text(corrected)
        expect(segments.first.locator(".original .word").first).to_be_visible()
        expect(page.locator("#problems")).to_be_empty()
    finally:
        context.close()
