"""The caption page before anyone speaks: it says so and names who is connected; once a speaker
streams (the dev clip as Chromium's microphone), the message gives way to their lines."""

from __future__ import annotations

import threading

import pytest
from playwright.sync_api import expect

from sessions_app.meeting_record.post_session import end_session
from tests.browser.conftest import PASSWORD, sign_in

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_the_caption_page_waits_for_a_speaker_then_shows_their_lines(
    site, browser, make_user, make_session, screenshot
):
    alice = make_user("alice", password=PASSWORD)
    session = make_session(alice, "Town hall", "en")
    viewer_context = browser.new_context(viewport={"width": 1000, "height": 650})
    speaker_context = browser.new_context(viewport={"width": 1200, "height": 900})
    try:
        viewer = viewer_context.new_page()
        viewer.goto(f"{site.url}/captions/{session.pk}/?token={session.share_token}")
        waiting = viewer.locator("#waiting")
        expect(waiting).to_be_visible()
        expect(waiting).to_contain_text("Waiting for someone to speak")
        expect(viewer.locator("#waiting-who")).to_have_text("No speaker is connected yet.")
        screenshot(viewer, "captions-waiting")

        # alice opens her live page: her stream socket is connected, she has not spoken yet.
        page = speaker_context.new_page()
        sign_in(page, site, "alice")
        page.goto(f"{site.url}/sessions/{session.pk}/live/")
        expect(page.locator("#stt-state")).to_have_text("Idle")
        expect(viewer.locator("#waiting-who")).to_have_text("alice is connected.", timeout=15_000)
        expect(viewer.locator("#presence")).to_have_text("Connected: alice")
        expect(waiting).to_be_visible()
        screenshot(viewer, "captions-waiting-connected")

        page.get_by_role("button", name="Start microphone").click()
        expect(viewer.locator("#finals .final").first).to_be_visible(timeout=120_000)
        expect(waiting).to_be_hidden()
        expect(viewer.locator("#finals .turn .who").first).to_have_text("alice")
        screenshot(viewer, "captions-speaking")
        page.get_by_role("button", name="Stop microphone").click()
        expect(page.locator("#stt-state")).to_have_text("Idle", timeout=60_000)

        # A reload after the first words: the lines, no waiting message.
        viewer.reload()
        expect(viewer.locator("#finals .final").first).to_be_visible()
        expect(waiting).to_be_hidden()
    finally:
        speaker_context.close()
        viewer_context.close()


def test_a_session_that_ends_before_anyone_spoke_says_so(site, browser, make_user, make_session, screenshot):
    alice = make_user("alice", password=PASSWORD)
    session = make_session(alice, "Cancelled", "en")
    context = browser.new_context(viewport={"width": 1000, "height": 650})
    try:
        viewer = context.new_page()
        viewer.goto(f"{site.url}/captions/{session.pk}/?token={session.share_token}")
        expect(viewer.locator("#live-dot")).to_have_attribute("data-live", "true")
        # (Playwright's sync API keeps an event loop in this thread; ending sends through the channel layer.)
        ending = threading.Thread(target=end_session, args=(session, alice))
        ending.start()
        ending.join(30)
        expect(viewer.locator("#waiting .waiting-title")).to_have_text("This session has ended")
        expect(viewer.locator("#waiting-who")).to_have_text("Nobody spoke in it.")
        screenshot(viewer, "captions-ended-unspoken")
    finally:
        context.close()
