"""The upload page in Chromium: a file goes up with progress, a real Celery worker transcribes it."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from tests.browser.conftest import PASSWORD, sign_in
from tests.speech import word_error_rate

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_an_uploaded_file_shows_progress_then_its_transcript(site, browser, make_user, speech_clip, screenshot):
    make_user("uma", password=PASSWORD)
    context = browser.new_context(viewport={"width": 1100, "height": 900})
    try:
        page = context.new_page()
        sign_in(page, site, "uma")
        page.get_by_role("link", name="Upload").click()
        page.wait_for_url(f"{site.url}/upload/")  # waits for "load": the page's module has run
        page.locator("#file").set_input_files(str(speech_clip.path))
        expect(page.locator("#chosen-file")).to_contain_text(speech_clip.path.name)
        page.get_by_label("Language").select_option("en")
        page.get_by_role("button", name="Upload and transcribe").click()

        expect(page.locator("#result")).to_be_visible(timeout=240_000)
        assert page.locator("#upload-progress").evaluate("p => p.value") == 100
        assert page.locator("#job-progress").evaluate("p => p.value") == 100
        text = " ".join(page.locator("#segments .segment .text").all_inner_texts())
        assert word_error_rate([speech_clip.text], [text]) <= 0.25, text
        href = page.locator("#job-exports").get_by_role("link", name="SRT").get_attribute("href")
        assert href.startswith("/api/jobs/") and "format=srt" in href
        srt = page.request.get(f"{site.url}{href}")
        assert srt.ok and "-->" in srt.text()
        screenshot(page, "upload-done")
    finally:
        context.close()
