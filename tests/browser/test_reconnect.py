"""Connection trouble in Chromium: a cut connection comes back by itself (and a running
microphone stream resumes); a refusal that retrying cannot fix is explained and not retried."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from sessions_app.models import new_share_token
from tests.browser.conftest import PASSWORD, sign_in, wait_until

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

TRACK_SOCKETS = """
window.openedSockets = [];
window.sentTypes = [];
const NativeWebSocket = window.WebSocket;
window.WebSocket = class extends NativeWebSocket {
  constructor(...args) {
    super(...args);
    window.openedSockets.push(this);
  }
  send(data) {
    if (typeof data === 'string') window.sentTypes.push(JSON.parse(data).type);
    return super.send(data);
  }
};
// What the banner and the live dot showed, however briefly: a reconnection on an idle machine is
// over in half a second, too soon for a check that polls (and on a busy one, polls come late).
window.shown = [];
document.addEventListener('DOMContentLoaded', () => {
  const record = () => {
    const banner = document.getElementById('connection-banner');
    const dot = document.getElementById('live-dot');
    if (banner && !banner.hidden && banner.textContent) window.shown.push(banner.textContent);
    if (dot) window.shown.push(`live=${dot.dataset.live}`);
  };
  new MutationObserver(record).observe(document.body, { subtree: true, childList: true, characterData: true,
                                                        attributes: true });
});
"""


def was_shown(text: str) -> str:
    """A JS expression: the banner showed ``text`` (or the live dot ``live=...``) at some moment."""
    return f"window.shown.some((shown) => shown.includes({text!r}))"


STREAMING_STATES = "['listening', 'recording', 'transcribing']"
CUT_THE_CONNECTION = "window.openedSockets.at(-1).close()"  # as a dropped network would, unasked


@pytest.fixture
def context(browser):
    context = browser.new_context()
    yield context
    context.close()


def test_a_caption_viewer_reconnects_after_the_connection_drops(site, context, make_user, make_session, screenshot):
    session = make_session(make_user("carol", password=PASSWORD), "Town hall", "en")
    viewer = context.new_page()
    viewer.add_init_script(TRACK_SOCKETS)
    viewer.goto(f"{site.url}/captions/{session.pk}/?token={session.share_token}")
    expect(viewer.locator("#live-dot")).to_have_attribute("data-live", "true")

    viewer.evaluate("window.shown = []")
    viewer.evaluate(CUT_THE_CONNECTION)
    banner = viewer.locator("#connection-banner")
    wait_until(viewer, was_shown("Connection lost. Reconnecting"))
    wait_until(viewer, was_shown("live=false"))
    screenshot(viewer, "captions-reconnecting")  # (it may have reconnected already)

    expect(banner).to_be_hidden(timeout=15_000)
    expect(viewer.locator("#live-dot")).to_have_attribute("data-live", "true")
    assert viewer.evaluate("window.openedSockets.length") == 2


def test_a_speaker_stream_resumes_after_the_connection_drops(site, context, make_user, make_session):
    session = make_session(make_user("dave", password=PASSWORD), "Stand-up", "en")
    page = context.new_page()
    page.add_init_script(TRACK_SOCKETS)
    sign_in(page, site, "dave")
    page.goto(f"{site.url}/sessions/{session.pk}/live/")
    page.get_by_role("button", name="Start microphone").click()
    # Streaming: the stream was started and the server listens ("Connecting…" at first is neither
    # Idle nor Offline; a cut then came before any stt_start, on a slow machine).
    wait_until(page, f"{STREAMING_STATES}.includes(document.getElementById('stt-state').dataset.state)", 60_000)
    assert page.evaluate("window.sentTypes").count("stt_start") == 1

    page.evaluate("window.shown = []")
    page.evaluate(CUT_THE_CONNECTION)
    wait_until(page, was_shown("Reconnecting"))
    # The server may still be closing the first stream (its last utterance is being saved); the
    # page keeps retrying until the server takes the speaker's stream again.
    expect(page.locator("#connection-banner")).to_be_hidden(timeout=60_000)
    expect(page.locator("#mic-toggle")).to_have_attribute("aria-pressed", "true")
    wait_until(page, "window.sentTypes.filter((t) => t === 'stt_start').length >= 2", timeout=30_000)
    # The resumed stream is transcribed: a final arrives over the new connection.
    finals_before = page.locator("#finals .final").count()
    expect(page.locator("#finals .final")).not_to_have_count(finals_before, timeout=90_000)
    page.get_by_role("button", name="Stop microphone").click()


def test_a_viewer_whose_link_was_revoked_is_told_and_not_retried(site, context, make_user, make_session):
    session = make_session(make_user("erin", password=PASSWORD), "Private", "en")
    viewer = context.new_page()
    viewer.add_init_script(TRACK_SOCKETS)
    viewer.goto(f"{site.url}/captions/{session.pk}/?token={session.share_token}")
    expect(viewer.locator("#live-dot")).to_have_attribute("data-live", "true")

    session.share_token = new_share_token()  # the owner replaces the link
    session.save(update_fields=["share_token"])
    viewer.evaluate(CUT_THE_CONNECTION)

    expect(viewer.locator("#connection-banner")).to_contain_text("Access refused", timeout=15_000)
    viewer.wait_for_timeout(2_000)
    assert viewer.evaluate("window.openedSockets.length") == 2  # the refused retry, and no more
