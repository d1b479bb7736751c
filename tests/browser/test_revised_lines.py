"""End to end in Chromium: the engine re-decodes a finished turn and broadcasts ``stt_revised``;
the live page and a caption page replace the turn's fragments in place with the revised lines."""

from __future__ import annotations

import time

import pytest
from playwright.sync_api import expect

from sessions_app import worker_leases
from sessions_app.models import TranscriptionSession, Utterance
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


# Applies an stt_revised to the page's own transcript list through the page's module (a second
# LiveTranscript on the same elements), and reports where the reader's view was before and after.
APPLY_REVISION = """
async ({ replaces, utterances, scrollTo }) => {
  const { LiveTranscript } = await import('/static/js/lines.js');
  const scroller = document.getElementById('caption-scroller');
  const transcript = new LiveTranscript(
    document.getElementById('finals'), document.getElementById('partials'), scroller);
  if (scrollTo === 'bottom') scroller.scrollTop = scroller.scrollHeight;
  else scroller.scrollTop = document.querySelector(scrollTo).offsetTop - scroller.offsetTop;
  scroller.dispatchEvent(new Event('scroll'));
  const top = scroller.getBoundingClientRect().top;
  const firstInView = () => [...document.querySelectorAll('#finals .turn')]
    .find((turn) => turn.getBoundingClientRect().bottom > top);
  const anchor = firstInView();
  const before = anchor.getBoundingClientRect().top;
  const mutations = [];
  const observer = new MutationObserver((records) => mutations.push(records.length));
  observer.observe(document.getElementById('finals'), { subtree: true, childList: true });
  transcript.handle({ type: 'stt_revised', speaker: 'alice', speaker_id: 0, replaces, utterances });
  await new Promise((resolve) => setTimeout(resolve, 50));
  observer.disconnect();
  return {
    moved: anchor.getBoundingClientRect().top - before,
    atBottom: scroller.scrollHeight - scroller.scrollTop - scroller.clientHeight < 2,
    batches: mutations.length,
  };
}
"""


def test_a_revision_keeps_the_readers_view_where_it_was(site, browser, make_user, make_session):
    alice = make_user("alice", password=PASSWORD)
    bob = make_user("bob")
    session = make_session(alice, "Long meeting", "en")
    rows = []
    for i in range(40):
        speaker = alice if i % 4 < 2 else bob  # turns of two utterances each
        rows.append(
            Utterance.objects.create(
                session=session, speaker=speaker, sequence=i + 1, start_s=i * 3.0, end_s=i * 3.0 + 2.5,
                text=f"Line {i} of the meeting, " + "with some words to fill it " * 2,
            )
        )  # fmt: skip
    context = browser.new_context(viewport={"width": 800, "height": 600})
    try:
        page = context.new_page()
        page.goto(f"{site.url}/captions/{session.pk}/?token={session.share_token}")
        expect(page.locator("#finals .turn")).to_have_count(20)

        def revised(pk: int, text: str) -> dict:
            return {"utterance_id": pk, "text": text, "start": 0.0, "end": 1.0, "source": "refined"}

        # Scrolled up to the middle, a turn above the view gets a much longer version: the view stays.
        longer = "A far longer refined version of these lines. " * 12
        result = page.evaluate(
            APPLY_REVISION,
            {
                "replaces": [rows[4].pk, rows[5].pk],
                "utterances": [revised(9001, longer)],
                "scrollTo": ".turn:nth-child(10)",
            },
        )
        assert abs(result["moved"]) < 1 and result["batches"] == 1, result
        assert page.locator('#finals .final[data-utterance-id="9001"]').count() == 1
        assert page.locator(f'#finals .final[data-utterance-id="{rows[4].pk}"]').count() == 0
        assert page.locator(f'#finals .final[data-utterance-id="{rows[5].pk}"]').count() == 0
        # In the same turn, where the first replaced line was.
        turn = page.locator("#finals .turn").nth(2)
        expect(turn.locator(".final")).to_have_count(1)
        expect(turn.locator(".final .text")).to_have_text(longer.strip())

        # A reader at the bottom stays at the bottom, whatever changes.
        result = page.evaluate(
            APPLY_REVISION,
            {
                "replaces": [rows[38].pk],
                "utterances": [revised(9002, "x"), revised(9003, longer)],
                "scrollTo": "bottom",
            },
        )
        assert result["atBottom"] and result["batches"] == 1, result
        last_turn = page.locator("#finals .turn").last
        expect(last_turn.locator(".final")).to_have_count(3)
        ids = last_turn.locator(".final").evaluate_all("(nodes) => nodes.map((n) => n.dataset.utteranceId)")
        assert ids == ["9002", "9003", str(rows[39].pk)]
    finally:
        context.close()


def test_the_transcript_page_shows_the_refining_progress_then_the_final_transcript(
    site, browser, make_user, make_session, screenshot
):
    alice = make_user("alice", password=PASSWORD)
    session = make_session(alice, "Ended meeting", "en")
    live = Utterance.objects.create(
        session=session, speaker=alice, sequence=1, start_s=0.0, end_s=2.0, text="helo wold"
    )
    # The pass holds its lease while it works; a "refining" session whose lease nobody holds is
    # lost work, and the site's worker (every BATCH_RECOVERY_S) would run the pass again.
    lease = worker_leases.hold(worker_leases.PASS, session.pk)
    assert lease is not None
    TranscriptionSession.objects.filter(pk=session.pk).update(transcript_state="refining", refine_progress=40)
    context = browser.new_context(viewport={"width": 1100, "height": 700})
    try:
        page = context.new_page()
        sign_in(page, site, "alice")
        page.goto(f"{site.url}/sessions/{session.pk}/transcript/")
        # (waits of 30 s: the page polls every 3 s, and on a busy machine its script and each poll are slow)
        expect(page.locator("#refine-status")).to_have_text("Refining the transcript… 40%", timeout=30_000)
        expect(page.locator(f'#utterances [data-utterance-id="{live.pk}"]')).to_have_count(1)
        TranscriptionSession.objects.filter(pk=session.pk).update(refine_progress=70)
        expect(page.locator("#refine-status")).to_have_text("Refining the transcript… 70%", timeout=30_000)
        screenshot(page, "transcript-refining")

        archive = Utterance.objects.create(
            session=session, speaker=alice, sequence=2, start_s=0.0, end_s=2.0, text="Hello world.",
            source=Utterance.Source.ARCHIVE,
        )  # fmt: skip
        Utterance.objects.filter(pk=live.pk).update(superseded_by=archive)
        TranscriptionSession.objects.filter(pk=session.pk).update(transcript_state="final", refine_progress=100)
        expect(page.locator(f'#utterances [data-utterance-id="{archive.pk}"] .text')).to_have_text(
            "Hello world.", timeout=30_000
        )
        expect(page.locator(f'#utterances [data-utterance-id="{live.pk}"]')).to_have_count(0)
        expect(page.locator("#refine-status")).to_be_hidden(timeout=30_000)
    finally:
        context.close()
        lease.release()
