"""Speakers in Chromium: the owner renames one on the transcript page and the open caption page shows the
new name without a reload (stt_speakers), in each speaker's own colour; a join link brings a signed-out
visitor through sign-up onto the live page as a speaker, and says so once it is revoked."""

from __future__ import annotations

import datetime as dt

import pytest
from django.utils import timezone
from playwright.sync_api import expect

from sessions_app.actions import do_add_member
from sessions_app.models import SessionMember, Utterance
from tests.browser.conftest import PASSWORD, sign_in

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

ROWS = [
    ("alice", 0.3, 2.2, "And so my fellow Americans"),
    ("bob", 0.4, 1.2, "Go on."),
    ("alice", 3.0, 6.0, "ask not what your country can do for you"),
]


@pytest.fixture
def talk(site, make_user, make_session):
    alice = make_user("alice", password=PASSWORD)
    bob = make_user("bob", password=PASSWORD)
    session = make_session(alice, "Speakers", "en")
    do_add_member(session, "bob", "speaker")
    t0 = timezone.now().replace(microsecond=0) - dt.timedelta(minutes=5)
    users = {"alice": alice, "bob": bob}
    for seq, (who, start, end, text) in enumerate(ROWS, start=1):
        Utterance.objects.create(
            session=session, speaker=users[who], sequence=seq, start_s=start, end_s=end, text=text,
            spoken_at=t0 + dt.timedelta(seconds=2 * seq),
        )  # fmt: skip
    return session, bob


def _colours(page, selector: str) -> list[tuple[str, str]]:
    """(name colour, left border colour) of every turn under ``selector``."""
    return page.eval_on_selector_all(
        f"{selector} .turn",
        "turns => turns.map(t => [getComputedStyle(t.querySelector('.who')).color,"
        " getComputedStyle(t).borderLeftColor])",
    )


def test_a_renamed_speaker_shows_on_the_transcript_and_the_open_caption_page_in_their_colour(
    site, browser, talk, screenshot
):
    session, bob = talk
    viewer_context = browser.new_context(viewport={"width": 1000, "height": 650})
    owner_context = browser.new_context(viewport={"width": 1280, "height": 900})
    try:
        viewer = viewer_context.new_page()
        viewer.goto(f"{site.url}/captions/{session.pk}/?token={session.share_token}")
        expect(viewer.locator("#finals .turn .who")).to_have_text(["alice", "bob", "alice"])
        # Each speaker in their colour (the black page's shades): alice's two turns alike, bob's another.
        colours = _colours(viewer, "#finals")
        assert colours[0] == colours[2] and colours[0] != colours[1], colours
        assert colours[0][0] == colours[0][1] == "rgb(147, 197, 253)"  # (.speaker-c0 on black)
        assert colours[1][0] == "rgb(252, 165, 165)"  # (.speaker-c1 on black)

        page = owner_context.new_page()
        sign_in(page, site, "alice")
        page.goto(f"{site.url}/sessions/{session.pk}/transcript/")
        turns = page.locator("#utterances .turn")
        expect(turns).to_have_count(3)
        panel = page.locator("#speakers")
        expect(panel.locator(".speaker .who")).to_have_text(["alice", "bob"])
        colours = _colours(page, "#utterances")
        assert colours[0] == colours[2] and colours[0] != colours[1], colours
        assert colours[0][0] == "rgb(29, 78, 216)" and colours[1][0] == "rgb(185, 28, 28)"  # (on white)
        swatch = panel.locator(".speaker").nth(1).locator(".swatch")
        assert swatch.evaluate("s => getComputedStyle(s).backgroundColor") == "rgb(185, 28, 28)"
        screenshot(page, "speakers-transcript-before")

        panel.get_by_role("button", name="Rename bob").click()
        name = panel.get_by_label("Name of bob in this session")
        expect(name).to_be_focused()
        name.fill("Robert Smith")
        screenshot(page, "speakers-transcript-renaming")
        panel.get_by_role("button", name="Save").click()
        expect(turns.locator(".who")).to_have_text(["alice", "Robert Smith", "alice"])
        expect(panel.locator(".speaker .who")).to_have_text(["alice", "Robert Smith"])
        expect(panel.locator(".speaker .username")).to_have_text(["(bob)"])
        expect(page.locator("#speaker-filter option")).to_have_text(["Everyone", "alice", "Robert Smith"])
        assert _colours(page, "#utterances") == colours  # (a new name, the same colour)
        screenshot(page, "speakers-transcript-renamed")
        assert SessionMember.objects.get(session=session, user=bob).display_name == "Robert Smith"

        # The caption page that was open all along: the new name without a reload, in the same colour.
        expect(viewer.locator("#finals .turn .who")).to_have_text(["alice", "Robert Smith", "alice"])
        assert viewer.locator("#finals .turn").nth(1).evaluate(
            "t => getComputedStyle(t.querySelector('.who')).color"
        ) == "rgb(252, 165, 165)"  # fmt: skip
        screenshot(viewer, "speakers-captions-renamed-live")
        viewer.reload()
        expect(viewer.locator("#finals .turn .who")).to_have_text(["alice", "Robert Smith", "alice"])
        screenshot(viewer, "speakers-captions-after-reload")

        # The live page and a reload of the transcript say it too.
        page.goto(f"{site.url}/sessions/{session.pk}/live/")
        expect(page.locator("#finals .turn .who")).to_have_text(["alice", "Robert Smith", "alice"])
        screenshot(page, "speakers-live")
        page.goto(f"{site.url}/sessions/{session.pk}/transcript/")
        expect(turns.locator(".who")).to_have_text(["alice", "Robert Smith", "alice"])
    finally:
        owner_context.close()
        viewer_context.close()


def test_a_join_link_brings_a_newcomer_through_sign_up_onto_the_live_page(site, browser, talk, screenshot):
    session, _ = talk
    owner_context = browser.new_context(viewport={"width": 1280, "height": 900})
    guest_context = browser.new_context(viewport={"width": 1000, "height": 800})
    try:
        owner = owner_context.new_page()
        sign_in(owner, site, "alice")
        card = owner.locator(f'.session-card[data-session-id="{session.pk}"]')
        card.get_by_text("Speaker join link").click()
        card.get_by_role("button", name="Create join link").click()
        expect(owner.get_by_text("has a new speaker join link")).to_be_visible()
        link = card.locator(".join-link code").inner_text()
        assert link.startswith(f"{site.url}/join/")
        screenshot(owner, "speakers-join-link-created")

        guest = guest_context.new_page()
        guest.goto(link)
        guest.wait_for_url("**/accounts/login/?next=/join/**")
        guest.get_by_role("link", name="Create one").click()
        guest.get_by_label("Username").fill("carol")
        guest.get_by_label("Password", exact=True).fill("a-Long-passphrase-9")
        guest.get_by_label("Password confirmation").fill("a-Long-passphrase-9")
        guest.get_by_role("button", name="Create account").click()
        guest.wait_for_url(f"{site.url}/sessions/{session.pk}/live/")
        expect(guest.get_by_text("You joined “Speakers” as a speaker.")).to_be_visible()
        expect(guest.get_by_role("button", name="Start microphone")).to_be_visible()
        screenshot(guest, "speakers-joined-live")
        assert SessionMember.objects.filter(session=session, user__username="carol", role="speaker").exists()

        owner.reload()
        card.get_by_role("button", name="Revoke join link").click()
        expect(owner.get_by_text("was revoked")).to_be_visible()
        gone = guest.goto(link)
        assert gone.status == 410
        expect(guest.get_by_role("heading", name="This join link no longer works")).to_be_visible()
        expect(guest.locator(".join-problem")).to_have_text(
            "This join link was revoked by the session's owner. Ask them for a new one."
        )
        screenshot(guest, "speakers-join-link-revoked")
    finally:
        guest_context.close()
        owner_context.close()
