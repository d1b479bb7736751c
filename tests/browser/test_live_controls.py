"""The live page's controls in Chromium: push-to-talk flushes on release; a refused microphone is explained."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from tests.browser.conftest import PASSWORD, sign_in

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

RECORD_SENT_MESSAGES = """
window.sentTypes = [];
const send = WebSocket.prototype.send;
WebSocket.prototype.send = function (data) {
  if (typeof data === 'string') window.sentTypes.push(JSON.parse(data).type);
  return send.call(this, data);
};
"""

REFUSE_MICROPHONE = """
navigator.mediaDevices.getUserMedia = () => Promise.reject(new DOMException('Permission denied', 'NotAllowedError'));
"""


@pytest.fixture
def speaker_page(site, browser, make_user, make_session):
    bob = make_user("bob", password=PASSWORD)
    session = make_session(bob, "Push to talk", "en")
    context = browser.new_context()
    page = context.new_page()
    sign_in(page, site, "bob")
    yield page, f"{site.url}/sessions/{session.pk}/live/"
    context.close()


def test_holding_the_button_streams_and_releasing_it_flushes_the_utterance(speaker_page):
    page, live_url = speaker_page
    page.add_init_script(RECORD_SENT_MESSAGES)
    page.goto(live_url)
    expect(page.locator("#stt-state")).to_have_text("Idle")
    hold = page.get_by_role("button", name="Hold to talk")
    hold.hover()
    page.mouse.down()
    expect(page.locator("#partials .partial-line:not([hidden])")).to_have_count(1, timeout=60_000)
    page.mouse.up()
    expect(page.locator("#finals .final")).not_to_have_count(0, timeout=60_000)
    sent = page.evaluate("window.sentTypes")
    assert sent[: sent.index("stt_flush")].count("stt_start") == 1 and "stt_stop" not in sent
    assert page.locator("#mic-toggle").get_attribute("aria-pressed") == "false"


def test_a_refused_microphone_is_explained(speaker_page):
    page, live_url = speaker_page
    page.add_init_script(REFUSE_MICROPHONE)
    page.goto(live_url)
    page.get_by_role("button", name="Start microphone").click()
    expect(page.get_by_role("alert")).to_contain_text("Microphone access was denied")
    expect(page.locator("#mic-toggle")).to_have_attribute("aria-pressed", "false")
