"""End to end in Chromium: the engine re-decodes a finished turn and broadcasts ``stt_revised``;
the live page and a caption page replace the turn's fragments in place with the revised lines."""

from __future__ import annotations

import time

import pytest
from playwright.sync_api import expect

from sessions_app.models import Utterance
from tests.browser.conftest import PASSWORD, sign_in, wait_until

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

# Every utterance id a page ever showed, so that a test can tell "replaced" from "never there".
RECORD_IDS = """
() => {
  const finals = document.getElementById('finals');
  window.shownIds = new Set([...finals.querySelectorAll('.final')].map((n) => n.dataset.utteranceId));
  new MutationObserver(() => {
    for (const n of finals.querySelectorAll('.final')) window.shownIds.add(n.dataset.utteranceId);
  }).observe(finals, { subtree: true, childList: true });
}
"""

PAGE_STATE = """
() => ({
  shown: [...document.querySelectorAll('#finals .final')].map((n) => Number(n.dataset.utteranceId)),
  ever: [...window.shownIds].map(Number),
  turns: [...document.querySelectorAll('#finals .turn')].map((t) =>
    [...t.querySelectorAll('.final')].map((n) => Number(n.dataset.utteranceId))),
})
"""


def _wait_for_revision(session, timeout_s: float = 180) -> tuple[list[int], list[int]]:
    """(replaced ids, refined ids) once the server stored a refined turn of the session."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        refined = list(
            Utterance.objects.filter(session=session, source=Utterance.Source.REFINED).values_list("pk", flat=True)
        )
        if refined:
            replaced = list(Utterance.objects.filter(superseded_by__in=refined).values_list("pk", flat=True))
            current = set(
                Utterance.objects.filter(pk__in=refined, superseded_by__isnull=True).values_list("pk", flat=True)
            )
            return replaced, [pk for pk in refined if pk in current]
        time.sleep(0.5)
    pytest.fail("the server stored no refined turn (no stt_revised)")


def test_a_revised_turn_replaces_its_fragments_on_the_live_and_caption_pages(
    site, browser, make_user, make_session, screenshot
):
    alice = make_user("alice", password=PASSWORD)
    session = make_session(alice, "Refined rehearsal", "en")
    speaker_context = browser.new_context(viewport={"width": 1200, "height": 900})
    viewer_context = browser.new_context(viewport={"width": 900, "height": 700})
    try:
        viewer = viewer_context.new_page()
        viewer.goto(f"{site.url}/captions/{session.pk}/?token={session.share_token}")
        expect(viewer.locator("#live-dot")).to_have_attribute("data-live", "true")
        viewer.evaluate(RECORD_IDS)

        page = speaker_context.new_page()
        sign_in(page, site, "alice")
        page.goto(f"{site.url}/sessions/{session.pk}/live/")
        expect(page.locator("#stt-state")).to_have_text("Idle")
        page.evaluate(RECORD_IDS)
        page.get_by_role("button", name="Start microphone").click()
        expect(page.locator("#finals .final")).not_to_have_count(0, timeout=120_000)

        replaced, refined = _wait_for_revision(session)
        assert replaced and refined, (replaced, refined)
        page.get_by_role("button", name="Stop microphone").click()
        expect(page.locator("#stt-state")).to_have_text("Idle", timeout=60_000)
        replaced, refined = _wait_for_revision(session)  # (the stop may have refined one more turn)

        for name, shown_page in (("live", page), ("captions", viewer)):
            for pk in refined:
                expect(shown_page.locator(f'#finals .final[data-utterance-id="{pk}"]')).to_have_count(1, timeout=15_000)
            state = shown_page.evaluate(PAGE_STATE)
            # The fragments were on the page, and the revision took their place.
            assert set(replaced) <= set(state["ever"]), (name, replaced, state)
            assert not set(replaced) & set(state["shown"]), (name, replaced, state)
            # The revised lines sit together in one turn, in order.
            (turn,) = [t for t in state["turns"] if set(refined) & set(t)]
            assert [pk for pk in turn if pk in refined] == sorted(refined, key=turn.index), (name, state)
            text = " ".join(
                shown_page.locator(f'#finals .final[data-utterance-id="{pk}"] .text').inner_text() for pk in refined
            )
            assert text.strip(), name
        wait_until(viewer, "document.querySelectorAll('#finals .turn .who').length > 0")

        screenshot(page, "revised-live")
        screenshot(viewer, "revised-captions")
        page.goto(f"{site.url}/sessions/{session.pk}/transcript/")
        for pk in refined:
            expect(page.locator(f'#utterances [data-utterance-id="{pk}"]')).to_have_count(1)
        for pk in replaced:
            expect(page.locator(f'#utterances [data-utterance-id="{pk}"]')).to_have_count(0)
        screenshot(page, "revised-transcript")
    finally:
        speaker_context.close()
        viewer_context.close()
