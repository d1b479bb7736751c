"""The voices of a room microphone in Chromium: lines a diarized stream labelled S1, S2 read
"Speaker 1", "Speaker 2" in colours of their own on the transcript and caption pages; the owner
renames one in the Speakers panel and the open caption page shows it without a reload; a voice first
heard live reads "Speaker 3"; the room-microphone and identify-speakers options are saved and sent."""

from __future__ import annotations

import datetime as dt
import os
import re
import shutil
from pathlib import Path

import pytest
from django.utils import timezone
from playwright.sync_api import expect

from sessions_app.live_transcripts import utterance_fields, utterance_message
from sessions_app.models import BatchJob, SpeakerLabelName, TranscriptionSession, Utterance
from tests.browser.conftest import PASSWORD, sign_in, wait_until

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

# What a board meeting's one laptop heard: two voices, then the first again.
ROWS = [
    ("S1", 0.3, 3.2, "Welcome everyone, let us start with the budget."),
    ("S2", 3.8, 6.0, "Thanks. The numbers are in and they look good."),
    ("S1", 6.6, 8.0, "Good, then the next item."),
]
# .speaker-c1 .. c3 (alice has colour 0: her label Sn has colour n): on black (captions.css) and on white (site.css)
ON_BLACK = {1: "rgb(252, 165, 165)", 2: "rgb(134, 239, 172)", 3: "rgb(216, 180, 254)"}
ON_WHITE = {1: "rgb(185, 28, 28)", 2: "rgb(21, 128, 61)", 3: "rgb(126, 34, 206)"}
# Where the screenshots also go for a reviewer to look at (set to "" to keep only test-artifacts/screenshots).
SHOTS = Path(os.environ.get("SCREENSHOTS_COPY_TO", "/tmp/shots_h4"))


@pytest.fixture
def shot(screenshot):
    def take(page, name: str) -> Path:
        path = screenshot(page, name)
        if str(SHOTS) not in ("", "."):
            SHOTS.mkdir(parents=True, exist_ok=True)
            shutil.copy(path, SHOTS / path.name)
        return path

    return take


@pytest.fixture
def board(site, make_user, make_session):
    alice = make_user("alice", password=PASSWORD)
    session = make_session(alice, "Board meeting", "en")
    TranscriptionSession.objects.filter(pk=session.pk).update(room_microphone=True)
    t0 = timezone.now().replace(microsecond=0) - dt.timedelta(minutes=5)
    for seq, (label, start, end, text) in enumerate(ROWS, start=1):
        Utterance.objects.create(
            session=session, speaker=alice, speaker_label=label, sequence=seq, start_s=start, end_s=end, text=text,
            spoken_at=t0 + dt.timedelta(seconds=start),
        )  # fmt: skip
    return session, alice


def _colours(page, selector: str) -> list[tuple[str, str]]:
    """(name colour, left border colour) of every turn under ``selector``."""
    found = page.eval_on_selector_all(
        f"{selector} .turn",
        "turns => turns.map(t => [getComputedStyle(t.querySelector('.who')).color,"
        " getComputedStyle(t).borderLeftColor])",
    )
    return [tuple(pair) for pair in found]


def test_labelled_voices_read_speaker_n_in_their_colours_and_a_rename_reaches_the_open_caption_page(
    site, browser, board, shot
):
    session, alice = board
    viewer_context = browser.new_context(viewport={"width": 1000, "height": 650})
    owner_context = browser.new_context(viewport={"width": 1280, "height": 900})
    try:
        viewer = viewer_context.new_page()
        viewer.goto(f"{site.url}/captions/{session.pk}/?token={session.share_token}")
        expect(viewer.locator("#finals .turn .who")).to_have_text(["Speaker 1", "Speaker 2", "Speaker 1"])
        expect(viewer.locator("#live-dot")).to_have_attribute("data-live", "true")
        colours = _colours(viewer, "#finals")
        assert colours == [(ON_BLACK[1], ON_BLACK[1]), (ON_BLACK[2], ON_BLACK[2]), (ON_BLACK[1], ON_BLACK[1])]
        shot(viewer, "labels-captions")

        page = owner_context.new_page()
        sign_in(page, site, "alice")
        page.goto(f"{site.url}/sessions/{session.pk}/transcript/")
        turns = page.locator("#utterances .turn")
        expect(turns.locator(".who")).to_have_text(["Speaker 1", "Speaker 2", "Speaker 1"])
        assert [c[0] for c in _colours(page, "#utterances")] == [ON_WHITE[1], ON_WHITE[2], ON_WHITE[1]]
        panel = page.locator("#speakers")
        expect(panel.locator(".speaker .who")).to_have_text(["alice", "Speaker 1", "Speaker 2"])
        expect(panel.locator(".voice .microphone")).to_have_text(["(alice's microphone)"] * 2)
        swatch = panel.locator(".voice").nth(1).locator(".swatch")
        assert swatch.evaluate("s => getComputedStyle(s).backgroundColor") == ON_WHITE[2]
        expect(page.locator("#speaker-filter option")).to_have_text(["Everyone", "alice", "Speaker 1", "Speaker 2"])
        shot(page, "labels-transcript")

        # The filter shows one voice's lines.
        page.locator("#speaker-filter").select_option(label="Speaker 1")
        expect(page.locator("#utterances .turn:not([hidden]) .who")).to_have_text(["Speaker 1", "Speaker 1"])
        page.locator("#speaker-filter").select_option(label="Everyone")

        panel.get_by_role("button", name="Rename Speaker 2").click()
        name = panel.get_by_label("Name of Speaker 2 on alice's microphone")
        expect(name).to_be_focused()
        name.fill("Carol (treasurer)")
        shot(page, "labels-transcript-renaming")
        panel.get_by_role("button", name="Save").click()
        expect(turns.locator(".who")).to_have_text(["Speaker 1", "Carol (treasurer)", "Speaker 1"])
        expect(panel.locator(".speaker .who")).to_have_text(["alice", "Speaker 1", "Carol (treasurer)"])
        expect(page.locator("#speaker-filter option")).to_have_text(
            ["Everyone", "alice", "Speaker 1", "Carol (treasurer)"]
        )
        assert [c[0] for c in _colours(page, "#utterances")] == [ON_WHITE[1], ON_WHITE[2], ON_WHITE[1]]
        shot(page, "labels-transcript-renamed")
        row = SpeakerLabelName.objects.get(session=session, speaker=alice, label="S2")
        assert row.display_name == "Carol (treasurer)"

        # The caption page open all along: the new name without a reload, in the same colour.
        expect(viewer.locator("#finals .turn .who")).to_have_text(["Speaker 1", "Carol (treasurer)", "Speaker 1"])
        assert _colours(viewer, "#finals") == colours
        shot(viewer, "labels-captions-renamed")
        viewer.reload()
        expect(viewer.locator("#finals .turn .who")).to_have_text(["Speaker 1", "Carol (treasurer)", "Speaker 1"])

        # An empty name gives "Speaker 2" back.
        panel.get_by_role("button", name="Rename Carol (treasurer)").click()
        panel.get_by_label("Name of Speaker 2 on alice's microphone").fill("")
        panel.get_by_role("button", name="Save").click()
        expect(turns.locator(".who")).to_have_text(["Speaker 1", "Speaker 2", "Speaker 1"])
        expect(viewer.locator("#finals .turn .who")).to_have_text(["Speaker 1", "Speaker 2", "Speaker 1"])
    finally:
        owner_context.close()
        viewer_context.close()


def test_a_voice_first_heard_live_reads_speaker_3_and_is_renamed_in_place(site, browser, board, shot, broadcast):
    session, alice = board
    context = browser.new_context(viewport={"width": 1200, "height": 800})
    try:
        page = context.new_page()
        sign_in(page, site, "alice")
        page.goto(f"{site.url}/sessions/{session.pk}/live/")
        expect(page.get_by_text("Room microphone", exact=True)).to_be_visible()
        viewer = context.new_page()
        viewer.goto(f"{site.url}/captions/{session.pk}/?token={session.share_token}")
        expect(viewer.locator("#live-dot")).to_have_attribute("data-live", "true")
        expect(page.locator("#stt-state")).to_have_text("Idle")

        # S1 goes on (its turn continues), then a voice the session has not heard (S3): a turn of its own.
        last = Utterance.objects.get(session=session, sequence=len(ROWS))  # (spoken at its start_s on this clock)
        more = [("S1", 8.3, 9.5, "Any objections?"), ("S3", 10.0, 12.0, "Sorry I am late, I agree.")]
        for seq, (label, start, end, text) in enumerate(more, start=len(ROWS) + 1):
            line = Utterance.objects.create(
                session=session, speaker=alice, speaker_label=label, sequence=seq, start_s=start, end_s=end,
                text=text, spoken_at=last.spoken_at + dt.timedelta(seconds=start - last.start_s),
            )  # fmt: skip
            broadcast(utterance_message(line, "alice"), session.pk, listeners=2)
        for shown, palette in ((page, ON_WHITE), (viewer, ON_BLACK)):
            expect(shown.locator("#finals .turn .who")).to_have_text(
                ["Speaker 1", "Speaker 2", "Speaker 1", "Speaker 3"]
            )
            expect(shown.locator("#finals .turn").nth(2).locator(".final")).to_have_count(2)
            assert [c[0] for c in _colours(shown, "#finals")] == [palette[1], palette[2], palette[1], palette[3]]
        shot(page, "labels-live-new-voice")

        # The owner names the new voice (the API the Speakers panel uses): both pages rename it in place.
        response = page.request.patch(
            f"{site.url}/api/sessions/{session.pk}/speaker-labels/",
            data={"speaker_id": alice.pk, "label": "S3", "display_name": "Dave"},
            headers={"X-CSRFToken": _csrf(page)},
        )
        assert response.status == 200, response.text()
        for shown in (page, viewer):
            expect(shown.locator("#finals .turn .who")).to_have_text(["Speaker 1", "Speaker 2", "Speaker 1", "Dave"])
        assert [c[0] for c in _colours(viewer, "#finals")][-1] == ON_BLACK[3]
        shot(viewer, "labels-captions-live-renamed")

        # The refinement hears the third turn's two lines as two voices: the turn splits where the voice changes.
        third = list(Utterance.objects.filter(session=session, sequence__in=[3, 4]).order_by("sequence"))
        revised = []
        for seq, (old, label) in enumerate(zip(third, ["S1", "S2"], strict=True), start=len(ROWS) + len(more) + 1):
            revised.append(
                Utterance.objects.create(
                    session=session, speaker=alice, speaker_label=label, sequence=seq, start_s=old.start_s,
                    end_s=old.end_s, text=old.text, spoken_at=old.spoken_at, source=Utterance.Source.REFINED,
                )
            )  # fmt: skip
        Utterance.objects.filter(pk=third[0].pk).update(superseded_by=revised[0])
        Utterance.objects.filter(pk=third[1].pk).update(superseded_by=revised[1])
        message = {
            "type": "stt_revised", "replaces": [u.pk for u in third],
            "utterances": [utterance_fields(u) for u in revised], "speaker": "alice", "speaker_id": alice.pk,
            "session_id": str(session.pk),
        }  # fmt: skip
        broadcast(message, session.pk, listeners=2)
        split = ["Speaker 1", "Speaker 2", "Speaker 1", "Speaker 2", "Dave"]
        for shown, palette in ((page, ON_WHITE), (viewer, ON_BLACK)):
            expect(shown.locator("#finals .turn .who")).to_have_text(split)
            expect(shown.locator("#finals .turn").nth(3)).to_have_text(re.compile(r"Speaker 2 .*Any objections\?"))
            assert [c[0] for c in _colours(shown, "#finals")] == [palette[n] for n in (1, 2, 1, 2, 3)]
        shot(page, "labels-live-revised-split")
        page.reload()  # (the server's turns say the same)
        expect(page.locator("#finals .turn .who")).to_have_text(split)
    finally:
        context.close()


def _csrf(page) -> str:
    return next(c["value"] for c in page.context.cookies() if c["name"] == "csrftoken")


def test_the_room_microphone_checkbox_saves_on_a_new_session_and_in_its_settings(site, browser, make_user, shot):
    make_user("alice", password=PASSWORD)
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    try:
        page = context.new_page()
        sign_in(page, site, "alice")
        page.get_by_label("Title").fill("Board room")
        room = page.get_by_label("Room microphone (several people share one microphone)")
        expect(room).not_to_be_checked()
        room.check()
        shot(page, "labels-new-session-room-microphone")
        page.get_by_role("button", name="Create").click()
        expect(page.get_by_text("Session “Board room” created.")).to_be_visible()
        session = TranscriptionSession.objects.get(title="Board room")
        assert session.room_microphone
        card = page.locator(f'.session-card[data-session-id="{session.pk}"]')
        expect(card.locator(".room-mic")).to_have_text("room microphone")

        # The session's Settings turn it off again (and show it as it is).
        card.get_by_text("Settings", exact=True).click()
        setting = card.get_by_label("Room microphone (several people share one microphone)")
        expect(setting).to_be_checked()
        shot(page, "labels-session-settings")
        setting.uncheck()
        card.get_by_role("button", name="Save settings").click()
        expect(page.get_by_text("“Board room”: room microphone off")).to_be_visible()
        session.refresh_from_db()
        assert not session.room_microphone
        expect(card.locator(".room-mic")).to_have_count(0)

    finally:
        context.close()


def test_identify_speakers_on_the_upload_page_labels_the_jobs_segments(site, browser, make_user, shot, speech_clip):
    make_user("ulla", password=PASSWORD)
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    try:
        page = context.new_page()
        sign_in(page, site, "ulla")
        page.goto(f"{site.url}/upload/")
        page.locator("#file").set_input_files(str(speech_clip.path))
        identify = page.get_by_label("Identify speakers")
        expect(identify).not_to_be_checked()
        identify.check()
        shot(page, "labels-upload-identify-speakers")
        page.get_by_role("button", name="Upload and transcribe").click()
        wait_until(page, "!document.getElementById('result').hidden || !document.getElementById('problems').hidden",
                   timeout=240_000)  # fmt: skip
        job = BatchJob.objects.get(owner__username="ulla")
        assert job.diarize
        assert job.status == BatchJob.Status.DONE, (job.error_code, job.error_message)
        # One voice (the clip is one speaker): every segment is "Speaker 1", in S1's colour.
        whos = page.locator("#segments .segment .who")
        expect(whos.first).to_have_text("Speaker 1")
        assert set(whos.all_inner_texts()) == {"Speaker 1"}
        assert whos.first.evaluate("w => getComputedStyle(w).color") == ON_WHITE[1]
        shot(page, "labels-upload-result")
    finally:
        context.close()


def test_a_diarized_jobs_transcript_page_shows_speaker_n_in_colours(site, browser, make_user, shot):
    owner = make_user("otto", password=PASSWORD)
    words = [{"word": w, "start": 0.2 * i, "end": 0.2 * i + 0.15} for i, w in enumerate(["Hello", "there."])]
    job = BatchJob.objects.create(
        owner=owner, original_filename="interview.wav", status="done", progress=100, diarize=True,
        audio_duration_s=9.0, segments=[
            {"start": 0.0, "end": 2.0, "text": "Hello there.", "speaker_label": "S1", "words": words},
            {"start": 2.5, "end": 5.0, "text": "Hi, thanks for having me.", "speaker_label": "S2", "words": []},
            {"start": 5.5, "end": 9.0, "text": "Let us begin.", "speaker_label": "S1", "words": []},
        ],
    )  # fmt: skip
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    try:
        page = context.new_page()
        sign_in(page, site, "otto")
        page.goto(f"{site.url}/jobs/{job.pk}/transcript/")
        turns = page.locator("#utterances .turn")
        expect(turns.locator(".who")).to_have_text(["Speaker 1", "Speaker 2", "Speaker 1"])
        # A job's labels have the colours of an account with colour 0: Sn has colour n.
        assert [c[0] for c in _colours(page, "#utterances")] == [ON_WHITE[1], ON_WHITE[2], ON_WHITE[1]]
        expect(turns.first.get_by_role("button", name="Play Speaker 1 at 0:00")).to_be_visible()
        shot(page, "labels-job-transcript")
    finally:
        context.close()


def test_a_room_microphone_streamed_from_chromium_labels_its_voice_speaker_1(
    site, browser, make_user, make_session, shot
):
    """The real path: Chromium's microphone (one speaker, the dev clip) into a room-microphone session,
    the engine's diarizer labels the finals, the pages name them by their label."""
    alice = make_user("alice", password=PASSWORD)
    session = make_session(alice, "Room rehearsal", "en")
    TranscriptionSession.objects.filter(pk=session.pk).update(room_microphone=True)
    context = browser.new_context(viewport={"width": 1200, "height": 800})
    try:
        viewer = context.new_page()
        viewer.goto(f"{site.url}/captions/{session.pk}/?token={session.share_token}")
        expect(viewer.locator("#live-dot")).to_have_attribute("data-live", "true")
        page = context.new_page()
        sign_in(page, site, "alice")
        page.goto(f"{site.url}/sessions/{session.pk}/live/")
        expect(page.locator("#stt-state")).to_have_text("Idle")
        page.get_by_role("button", name="Start microphone").click()
        expect(page.locator("#finals .final")).not_to_have_count(0, timeout=150_000)
        page.get_by_role("button", name="Stop microphone").click()
        expect(page.locator("#stt-state")).to_have_text("Idle", timeout=60_000)

        labels = set(Utterance.objects.filter(session=session).values_list("speaker_label", flat=True))
        assert labels == {"S1"}, labels
        for shown, palette in ((page, ON_WHITE), (viewer, ON_BLACK)):
            expect(shown.locator("#finals .turn .who").first).to_have_text("Speaker 1")
            assert set(shown.locator("#finals .turn .who").all_inner_texts()) == {"Speaker 1"}
            assert {c[0] for c in _colours(shown, "#finals")} == {palette[1]}
            assert set(shown.eval_on_selector_all("#finals .final", "ls => ls.map(l => l.dataset.speakerLabel)")) == {
                "S1"
            }
        shot(page, "labels-live-room-microphone")
    finally:
        context.close()
