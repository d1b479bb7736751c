"""The transcript page in Chromium: search marks its hits, a turn's Play stops at the turn's end,
the sidebar player fills the sidebar, and the export menu offers TXT with times and DOCX."""

from __future__ import annotations

import datetime as dt
import io
import shutil
import urllib.request

import docx
import pytest
from django.utils import timezone
from playwright.sync_api import expect

from sessions_app.actions import do_add_member
from sessions_app.models import AudioRecording, Utterance
from tests.browser.conftest import PASSWORD, sign_in, wait_until

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

# Test rows over the dev clip "And so, my fellow Americans, ask not what your country can do for
# you, ...": alice's recording is the clip; bob answers between her two turns (no audio of his).
# bob's recording began 2 s after alice's: his line 0.4 s into it is 2.4 s into the session.
ROWS = [
    ("alice", 0.3, 2.2, "And so my fellow Americans"),
    ("bob", 0.4, 1.2, "Go on."),
    ("alice", 3.0, 6.0, "ask not what your country can do for you"),
]


def _words(text: str, start: float, end: float) -> list[dict]:
    tokens = text.split()
    step = (end - start) / len(tokens)
    return [
        {"word": f" {t}", "start": round(start + i * step, 3), "end": round(start + (i + 1) * step - 0.02, 3)}
        for i, t in enumerate(tokens)
    ]


@pytest.fixture
def talk(site, make_user, make_session, speech_clip):
    alice = make_user("alice", password=PASSWORD)
    bob = make_user("bob", password=PASSWORD)
    session = make_session(alice, "Transcript page", "en")
    do_add_member(session, "bob", "speaker")
    name = f"recordings/{session.pk}/speaker-{alice.pk}.wav"
    (site.media / name).parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(speech_clip.path, site.media / name)
    AudioRecording.objects.create(session=session, speaker=alice, file=name, duration_s=speech_clip.duration_s)
    t0 = timezone.now().replace(microsecond=0) - dt.timedelta(minutes=5)
    speakers = {"alice": alice, "bob": bob}
    for seq, (who, start, end, text) in enumerate(ROWS, start=1):
        origin = t0 if who == "alice" else t0 + dt.timedelta(seconds=2)
        Utterance.objects.create(
            session=session, speaker=speakers[who], sequence=seq, start_s=start, end_s=end, text=text,
            words=_words(text, start, end), spoken_at=origin + dt.timedelta(seconds=start),
        )  # fmt: skip
    return session


def test_search_marks_hits_and_play_stops_at_the_end_of_its_turn(site, browser, talk, screenshot):
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    try:
        page = context.new_page()
        sign_in(page, site, "alice")
        page.goto(f"{site.url}/sessions/{talk.pk}/transcript/")
        turns = page.locator("#utterances .turn")
        expect(turns).to_have_count(3)
        # Session-relative times: alice at 0:00, bob 2.4 s in (his own clock said 0.4), alice at 0:03.
        expect(turns.locator(".turn-head .when")).to_have_text(["0:00", "0:02", "0:03"])

        # The sidebar's player fills the sidebar's width.
        widths = page.evaluate(
            "() => { const a = document.querySelector('.side audio'); const p = a.closest('.side');"
            " const s = getComputedStyle(p); return [a.getBoundingClientRect().width,"
            " p.clientWidth - parseFloat(s.paddingLeft) - parseFloat(s.paddingRight)]; }"
        )
        assert widths[0] >= widths[1] - 1, widths

        # Search: every hit is marked, also one that spans two words.
        page.get_by_label("Search").fill("country")
        expect(page.locator("mark.hit")).to_have_text(["country"])
        expect(page.locator("#search-count")).to_have_text("1 of 3 utterances match (1 hit).")
        page.get_by_label("Search").fill("fellow amer")
        expect(page.locator("mark.hit")).to_have_text(["fellow", "Amer"])
        expect(page.locator("#utterances .turn:visible")).to_have_count(1)
        screenshot(page, "transcript-search")
        page.get_by_label("Search").fill("")
        expect(page.locator("mark.hit")).to_have_count(0)
        expect(page.locator("#utterances .turn:visible")).to_have_count(3)

        # Play on alice's first turn (0.3-2.2 s) plays it and stops at its end.
        audio = page.locator(".side audio").first
        wait_until(page, "document.querySelector('.side audio').readyState >= 1", timeout=20_000)
        # At a quarter of the speed the page's stop (checked every animation frame) lands within
        # 0.5 s of media time even when a busy machine delays frames by up to 2 s.
        audio.evaluate("a => { a.playbackRate = 0.25; }")
        turns.first.get_by_role("button", name="Play").click()
        wait_until(page, "!document.querySelector('.side audio').paused", timeout=10_000)
        wait_until(page, "document.querySelector('.side audio').paused", timeout=40_000)
        state = audio.evaluate("a => ({ t: a.currentTime, paused: a.paused, error: a.error })")
        assert state["error"] is None and state["paused"], state
        assert 2.2 <= state["t"] <= 2.7, state
        screenshot(page, "transcript-played-turn")

        # A word click plays on past the turn's end (only Play stops by itself).
        audio.evaluate("a => { a.playbackRate = 1; }")
        turns.first.locator(".word").last.click()
        # (waited for, not slept: a busy machine starts playback late)
        wait_until(page, "document.querySelector('.side audio').currentTime > 2.6", timeout=20_000)
        assert not audio.evaluate("a => a.paused")
        audio.evaluate("a => a.pause()")

        # The export menu: TXT with times and DOCX, from the same endpoint.
        timed = page.get_by_role("link", name="TXT with times")
        word = page.get_by_role("link", name="Word (DOCX)")
        expect(timed).to_have_attribute("href", f"/api/sessions/{talk.pk}/export?format=txt&times=1&download=1")
        cookies = "; ".join(f"{c['name']}={c['value']}" for c in context.cookies())
        request = urllib.request.Request(site.url + word.get_attribute("href"), headers={"Cookie": cookies})
        with urllib.request.urlopen(request, timeout=20) as response:
            document = docx.Document(io.BytesIO(response.read()))
        texts = [p.text for p in document.paragraphs]
        assert texts[0] == "Transcript page"
        assert "And so my fellow Americans" in texts and "ask not what your country can do for you" in texts
        page.set_viewport_size({"width": 390, "height": 800})
        screenshot(page, "transcript-phone")
    finally:
        context.close()
