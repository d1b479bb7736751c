"""One clock everywhere: a browser in New York sees every line's time in New York time, the same
format for a line that came live and for the same line after a reload, on the live, caption and
transcript pages."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import pytest
from playwright.sync_api import expect

from sessions_app.live_transcripts import utterance_message
from sessions_app.models import Utterance
from tests.browser.conftest import PASSWORD, sign_in

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

NEW_YORK = ZoneInfo("America/New_York")
# 14:20:14 UTC is 10:20:14 in New York (summer time); the second line is a minute later.
FIRST = dt.datetime(2026, 7, 1, 14, 20, 14, tzinfo=dt.UTC)
SECOND = FIRST + dt.timedelta(seconds=61)


def _new_york(when: dt.datetime) -> str:
    return when.astimezone(NEW_YORK).strftime("%H:%M:%S")


def test_a_new_york_browser_shows_new_york_time_live_and_after_a_reload(
    site, browser, make_user, make_session, screenshot, broadcast
):
    alice = make_user("alice", password=PASSWORD)
    session = make_session(alice, "Time zones", "en")
    Utterance.objects.create(
        session=session, speaker=alice, sequence=1, start_s=0.0, end_s=1.5, text="Good morning New York.",
        spoken_at=FIRST,
    )  # fmt: skip
    context = browser.new_context(
        timezone_id="America/New_York", locale="en-US", viewport={"width": 1200, "height": 800}
    )
    try:
        page = context.new_page()
        sign_in(page, site, "alice")
        viewer = context.new_page()
        viewer.goto(f"{site.url}/captions/{session.pk}/?token={session.share_token}")
        page.goto(f"{site.url}/sessions/{session.pk}/live/")
        for shown in (page, viewer):
            expect(shown.locator("#finals .turn-head time")).to_have_text([_new_york(FIRST)])
        expect(viewer.locator("#live-dot")).to_have_attribute("data-live", "true")
        expect(page.locator("#stt-state")).to_have_text("Idle")

        # A line that comes live (after a pause long enough to start a new turn) shows the same clock.
        later = Utterance.objects.create(
            session=session, speaker=alice, sequence=2, start_s=61.0, end_s=63.0, text="A minute later.",
            spoken_at=SECOND,
        )  # fmt: skip
        broadcast(utterance_message(later, "alice"), session.pk, listeners=2)
        expected = [_new_york(FIRST), _new_york(SECOND)]
        for shown in (page, viewer):
            expect(shown.locator("#finals .turn-head time")).to_have_text(expected)
            assert (
                shown.locator("#finals .turn-head time")
                .last.get_attribute("datetime")
                .startswith("2026-07-01T14:21:15")
            )
        screenshot(page, "live-new-york")

        # After a reload the server renders both lines: the browser still shows New York time.
        for shown in (page, viewer):
            shown.reload()
            expect(shown.locator("#finals .turn-head time")).to_have_text(expected)
        screenshot(viewer, "captions-new-york")

        # The transcript page: the same clock, and each turn's time into the session.
        page.goto(f"{site.url}/sessions/{session.pk}/transcript/")
        expect(page.locator("#utterances .turn-head time")).to_have_text(expected)
        expect(page.locator("#utterances .turn-head .when")).to_have_text(["0:00", "1:01"])
        created = session.created_at.astimezone(NEW_YORK)
        expect(page.locator(".page-head time")).to_contain_text(f"{created:%H:%M} {created.tzname()}")
        screenshot(page, "transcript-new-york")
    finally:
        context.close()
