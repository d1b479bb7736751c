"""End to end in Chromium: a speaker streams a clip as microphone, a caption viewer follows,
the transcript page plays the audio from a clicked word, and a correction keeps the original."""

from __future__ import annotations

import time

import pytest
from playwright.sync_api import expect

from sessions_app.models import Utterance
from tests.browser.conftest import PASSWORD, sign_in, wait_until
from tests.speech import word_error_rate

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

SAW_PARTIAL = """
() => {
  window.sawPartial = false;
  const partials = document.getElementById('partials');
  new MutationObserver(() => {
    const line = partials.querySelector('.partial-line:not([hidden])');
    if (line && line.querySelector('.unstable, .stable').textContent.trim()) window.sawPartial = true;
  }).observe(partials, { subtree: true, childList: true, characterData: true, attributes: true });
}
"""

FIRST_PASS_FINALS = """
(untilS) => [...document.querySelectorAll('#finals .final')]
  .filter((li) => li.dataset.start !== undefined && Number(li.dataset.start) < untilS)
  .map((li) => ({ id: li.dataset.utteranceId, text: li.querySelector('.text').textContent }))
"""


def _wait_for_clip_finals(page, clip, timeout_s: float = 150) -> list[dict]:
    """Finals of the clip's first pass (Chromium loops the file) once they match the reference."""
    deadline = time.monotonic() + timeout_s
    finals: list[dict] = []
    while time.monotonic() < deadline:
        finals = page.evaluate(FIRST_PASS_FINALS, clip.duration_s + 1.5)
        hypothesis = " ".join(f["text"] for f in finals)
        if finals and word_error_rate([clip.text], [hypothesis]) <= 0.25:
            return finals
        time.sleep(0.5)
    pytest.fail(f"no finals close to {clip.text!r}; got {finals!r}")


SHOWN_IDS = "() => [...document.querySelectorAll('#finals .final')].map((final) => final.dataset.utteranceId)"


def _wait_for_current_version(page, session, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        shown = page.evaluate(SHOWN_IDS)
        current = [str(pk) for pk in Utterance.objects.current().filter(session=session).values_list("pk", flat=True)]
        if shown and sorted(shown) == sorted(current):
            return
        time.sleep(0.5)
    pytest.fail(f"the page shows {shown}, the current transcript is {current}")


def test_a_speaker_streams_a_viewer_follows_and_the_transcript_plays_from_a_word(
    site, browser, make_user, make_session, speech_clip, screenshot
):
    alice = make_user("alice", password=PASSWORD)
    session = make_session(alice, "Inaugural rehearsal", "en")

    speaker_context = browser.new_context(viewport={"width": 1200, "height": 900})
    viewer_context = browser.new_context(viewport={"width": 390, "height": 780}, is_mobile=True, has_touch=True)
    try:
        page = speaker_context.new_page()
        sign_in(page, site, "alice")
        screenshot(page, "session-list")

        viewer = viewer_context.new_page()
        viewer.goto(f"{site.url}/captions/{session.pk}/?token={session.share_token}")
        expect(viewer.locator("#live-dot")).to_have_attribute("data-live", "true")

        page.goto(f"{site.url}/sessions/{session.pk}/live/")
        expect(page.locator("#stt-state")).to_have_text("Idle")
        page.evaluate(SAW_PARTIAL)
        page.get_by_role("button", name="Start microphone").click()
        expect(page.locator("#mic-toggle")).to_have_attribute("aria-pressed", "true")
        wait_until(page, "window.sawPartial === true", timeout=90_000)
        screenshot(page, "live-partial")
        # The meter follows the voice, so it reads 0 between words: wait for it to move.
        wait_until(page, "document.getElementById('mic-level').value > 0", timeout=10_000)

        _wait_for_clip_finals(page, speech_clip)
        page.get_by_role("button", name="Stop microphone").click()
        expect(page.locator("#stt-state")).to_have_text("Idle", timeout=60_000)
        # The engine re-decodes each finished turn (stt_revised replaces its finals in place):
        # wait until the page shows the current version, then read it.
        _wait_for_current_version(page, session)
        finals = _wait_for_clip_finals(page, speech_clip)
        screenshot(page, "live-finals")

        # The caption viewer (no account, share token only) saw the same finals.
        for final in finals:
            line = viewer.locator(f'#finals [data-utterance-id="{final["id"]}"] .text')
            expect(line).to_have_text(final["text"], timeout=10_000)
        expect(viewer.locator("#finals .turn .who").first).to_have_text("alice")
        viewer.get_by_role("button", name="Larger text").click()
        screenshot(viewer, "captions-phone")

        # The transcript page: click a word of the first final and the audio plays from there.
        page.goto(f"{site.url}/sessions/{session.pk}/transcript/")
        first = page.locator(f'#utterances [data-utterance-id="{finals[0]["id"]}"]')
        expect(first).to_be_visible()
        words = first.locator(".word")
        word = words.nth(min(3, words.count() - 1))
        start = float(word.get_attribute("data-start"))
        word.click()
        # (playing from the word once the seek is done: waited for, however slow the machine)
        playing = f"(a => !a.paused && a.currentTime >= {start - 0.05})(document.querySelector('audio'))"
        wait_until(page, playing, timeout=15_000)
        state = page.locator("audio").first.evaluate("a => ({ t: a.currentTime, paused: a.paused, error: a.error })")
        assert state["error"] is None and not state["paused"], state
        assert start - 0.05 <= state["t"] <= start + 3.0, (start, state)
        expect(page.locator(".word.current")).to_have_count(1)
        screenshot(page, "transcript-playing")
        page.locator("audio").first.evaluate("a => a.pause()")

        # Search filters the list.
        page.get_by_label("Search").fill("zebra crossing")
        expect(page.locator("#search-count")).to_contain_text("0 of")
        page.get_by_label("Search").fill("")

        # A correction is saved through the API; the original stays visible.
        first.get_by_role("button", name="Correct").click()
        page.get_by_label("Corrected text").fill("And so, my fellow Americans: corrected.")
        page.get_by_role("button", name="Save").click()
        expect(first.locator(".text.corrected")).to_have_text("And so, my fellow Americans: corrected.")
        expect(first.locator(".original")).to_contain_text(finals[0]["text"].split()[0])
        screenshot(page, "transcript-corrected")
        page.set_viewport_size({"width": 390, "height": 800})
        screenshot(page, "transcript-phone")
        page.goto(f"{site.url}/sessions/{session.pk}/live/")
        screenshot(page, "live-phone")
        assert session.utterances.get(pk=finals[0]["id"]).corrected_text == "And so, my fellow Americans: corrected."
    finally:
        speaker_context.close()
        viewer_context.close()
