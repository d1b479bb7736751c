from __future__ import annotations

import datetime as dt
import io
import itertools
import json
import re

import docx
import pytest
from django.utils import timezone

from sessions_app import exports
from sessions_app.exports import MAX_LINE_CHARS, Piece, split_into_cues, to_srt, to_txt, to_vtt
from sessions_app.models import BatchJob, Utterance

LONG = (
    "And so my fellow Americans ask not what your country can do for you ask what you can do for "
    "your country and my fellow citizens of the world ask not what America will do for you"
)
SRT_TIME = r"\d{2}:\d{2}:\d{2},\d{3}"
VTT_TIME = r"\d{2}:\d{2}:\d{2}\.\d{3}"


def _seconds(stamp: str) -> float:
    h, m, s = stamp.replace(",", ".").split(":")
    return int(h) * 3600 + int(m) * 60 + float(s)


def _pieces() -> list[Piece]:
    words = []
    for i, token in enumerate(LONG.split()):
        words.append({"word": " " + token, "start": 3600 + i * 0.3, "end": 3600 + i * 0.3 + 0.25, "probability": 0.9})
    return [
        Piece(start=3600.0, end=3600 + len(words) * 0.3, text=LONG, words=words, speaker="alice"),
        Piece(start=3601.0, end=3604.0, text="Overlapping words from bob.", speaker="bob"),
    ]


def _check_cue_text(lines: list[str]) -> None:
    assert 1 <= len(lines) <= 2
    assert all(0 < len(line) <= MAX_LINE_CHARS for line in lines)


def test_srt_follows_the_format_rules():
    blocks = to_srt(_pieces()).strip().split("\n\n")
    assert len(blocks) > 3
    previous_start = 0.0
    for number, block in enumerate(blocks, start=1):
        lines = block.split("\n")
        assert lines[0] == str(number)
        match = re.fullmatch(rf"({SRT_TIME}) --> ({SRT_TIME})", lines[1])
        assert match, lines[1]
        start, end = _seconds(match.group(1)), _seconds(match.group(2))
        assert previous_start <= start <= end
        previous_start = start
        _check_cue_text(lines[2:])
    assert blocks[0].split("\n")[2].startswith("alice: ")
    assert blocks[0].split("\n")[1].startswith("01:00:00,000")


def test_vtt_follows_the_format_rules():
    text = to_vtt(_pieces())
    assert text.startswith("WEBVTT\n\n")
    blocks = text.strip().split("\n\n")[1:]
    previous_start = 0.0
    for block in blocks:
        lines = block.split("\n")
        match = re.fullmatch(rf"({VTT_TIME}) --> ({VTT_TIME})", lines[0])
        assert match, lines[0]
        start, end = _seconds(match.group(1)), _seconds(match.group(2))
        assert previous_start <= start <= end
        previous_start = start
        _check_cue_text(lines[1:])
    assert any(block.split("\n")[1].startswith("bob: ") for block in blocks)


def test_cues_keep_every_word_in_order():
    piece = _pieces()[0]
    cues = split_into_cues(piece)
    joined = " ".join(" ".join(cue.lines) for cue in cues).replace("alice: ", "")
    assert joined.split() == LONG.split()
    assert cues[0].start == pytest.approx(3600.0) and cues[-1].end <= piece.end


def test_a_corrected_text_without_matching_words_is_timed_by_interpolation():
    piece = Piece(start=10.0, end=20.0, text="completely different words " * 6, words=_pieces()[0].words)
    cues = split_into_cues(piece)
    assert cues[0].start == 10.0 and cues[-1].end == pytest.approx(20.0)
    assert all(a.end <= b.start + 1e-9 for a, b in itertools.pairwise(cues))


def test_a_word_longer_than_a_line_is_wrapped():
    cues = split_into_cues(Piece(start=0, end=1, text="x" * 100))
    assert all(len(line) <= MAX_LINE_CHARS for cue in cues for line in cue.lines)


def test_txt_labels_speakers_one_utterance_a_line():
    assert to_txt(_pieces()).splitlines() == [f"alice: {LONG}", "bob: Overlapping words from bob."]


@pytest.mark.django_db
def test_session_json_export_has_words_times_and_corrections(user, make_session):
    session = make_session(user)
    utterance = Utterance.objects.create(
        session=session, speaker=user, sequence=1, start_s=1.0, end_s=2.0, text="helo world",
        words=[{"word": " helo", "start": 1.0, "end": 1.4, "probability": 0.5}],
    )  # fmt: skip
    utterance.correct("hello world", user)
    data = json.loads(exports.export_session(session, "json").content)
    segment = data["segments"][0]
    assert segment["speaker"] == "alice" and segment["text"] == "hello world"
    assert segment["original_text"] == "helo world" and segment["words"][0]["start"] == 1.0


@pytest.mark.django_db
def test_job_export_uses_the_segments(user):
    job = BatchJob.objects.create(
        owner=user, status="done",
        segments=[{"start": 0.0, "end": 1.5, "text": "Hello there.", "words": []}],
    )  # fmt: skip
    assert exports.export_job(job, "txt").content == "Hello there.\n"
    assert "00:00:00,000 --> 00:00:01,500" in exports.export_job(job, "srt").content
    assert exports.export_job(job, "txt", times=True).content == "[0:00] Hello there.\n"
    assert _docx_paragraphs(exports.export_job(job, "docx").content)[-2:] == ["0:00", "Hello there."]
    with pytest.raises(ValueError, match="format"):
        exports.export_job(job, "pdf")


def _docx_paragraphs(content: bytes) -> list[str]:
    return [p.text for p in docx.Document(io.BytesIO(content)).paragraphs]


def _export_text(session, fmt: str) -> str:
    content = exports.export_session(session, fmt).content
    return "\n".join(_docx_paragraphs(content)) if fmt == "docx" else content


@pytest.fixture
def revised_talk(user, make_user, make_session):
    """alice says two fragments (the first superseded by a refined row), bob answers, alice again."""
    session = make_session(user)
    bob = make_user("bob")
    t0 = timezone.now().replace(microsecond=0)
    rows = [
        (user, 0.0, 1.0, "helo every", "live"),
        (user, 1.2, 2.0, "one today.", "live"),
        (bob, 2.5, 3.5, "Hi alice.", "live"),
        (user, 0.0, 2.0, "Hello everyone, today.", "refined"),
        (user, 4.0, 5.0, "Let us start.", "live"),
    ]
    made = [
        Utterance.objects.create(
            session=session, speaker=speaker, sequence=i, start_s=start, end_s=end, text=text, source=source,
            spoken_at=t0 + dt.timedelta(seconds=start),
        )
        for i, (speaker, start, end, text, source) in enumerate(rows, start=1)
    ]  # fmt: skip
    for old in made[:2]:
        old.superseded_by = made[3]
        old.save(update_fields=["superseded_by"])
    return session, made


def test_session_exports_leave_superseded_rows_out(revised_talk):
    session, made = revised_talk
    for fmt in exports.FORMATS:
        content = _export_text(session, fmt)
        assert "helo every" not in content and "one today." not in content, fmt
        assert "Hello everyone, today." in content, fmt
    data = json.loads(exports.export_session(session, "json").content)
    assert [s["utterance_id"] for s in data["segments"]] == [made[3].pk, made[2].pk, made[4].pk]
    assert all({"text", "speaker", "start", "end", "words"} <= set(s) for s in data["segments"])
    assert data["segments"][0]["source"] == "refined"


def test_session_json_and_txt_group_utterances_into_turns(revised_talk, user, make_user):
    session, made = revised_talk
    # bob's line ends alice's first turn; her next line starts a new one.
    data = json.loads(exports.export_session(session, "json").content)
    assert [(t["speaker"], t["utterance_ids"]) for t in data["turns"]] == [
        ("alice", [made[3].pk]), ("bob", [made[2].pk]), ("alice", [made[4].pk]),
    ]  # fmt: skip
    turn = data["turns"][0]
    assert turn["text"] == "Hello everyone, today." and (turn["start"], turn["end"]) == (0.0, 2.0)
    # Another line of bob's right after his first joins his turn, one paragraph in TXT.
    Utterance.objects.filter(pk=made[4].pk).update(speaker=made[2].speaker)
    text = exports.export_session(session, "txt").content
    assert text.split("\n\n") == ["alice: Hello everyone, today.", "bob: Hi alice. Let us start.\n"]


def test_txt_with_times_gives_each_turn_its_session_time_and_clock(revised_talk):
    session, made = revised_talk
    blocks = exports.export_session(session, "txt", times=True).content.strip().split("\n\n")
    heads = [block.split("\n")[0] for block in blocks]
    # Time 0 is when the recordings began; bob spoke 2.5 s in, alice again 4 s in.
    clock = timezone.localtime(made[2].spoken_at).strftime("%H:%M:%S")
    assert heads[1] == f"[0:02 · {clock} UTC] bob", heads
    assert re.fullmatch(r"\[0:00 · \d{2}:\d{2}:\d{2} UTC\] alice", heads[0]), heads
    assert heads[2].startswith("[0:04 · ") and heads[2].endswith("] alice")
    assert [block.split("\n")[1] for block in blocks] == ["Hello everyone, today.", "Hi alice.", "Let us start."]


def test_session_docx_opens_with_python_docx_and_holds_the_turns(revised_talk):
    session, _ = revised_talk
    export = exports.export_session(session, "docx")
    assert export.filename.endswith(".docx") and export.content_type.endswith("wordprocessingml.document")
    document = docx.Document(io.BytesIO(export.content))
    paragraphs = [p for p in document.paragraphs if p.text]
    assert paragraphs[0].text == session.title and paragraphs[0].style.name == "Heading 1"
    assert "alice, bob" in paragraphs[1].text
    turns = paragraphs[2:]
    # Per turn: a head (the speaker in bold, then the times), then the paragraph.
    heads, texts = turns[0::2], turns[1::2]
    assert [p.runs[0].text for p in heads] == ["alice", "bob", "alice"]
    assert all(p.runs[0].bold for p in heads)
    assert [p.runs[-1].text.split(" · ")[0] for p in heads] == ["0:00", "0:02", "0:04"]
    assert [p.text for p in texts] == ["Hello everyone, today.", "Hi alice.", "Let us start."]
    assert "helo every" not in "\n".join(p.text for p in document.paragraphs)


def test_turn_offsets_and_their_format(revised_talk):
    session, _ = revised_talk
    data = json.loads(exports.export_session(session, "json").content)
    assert [t["offset"] for t in data["turns"]] == [0.0, 2.5, 4.0]
    assert [exports.format_offset(s) for s in (0, 5.9, 62, 3723)] == ["0:00", "0:05", "1:02", "1:02:03"]


def test_srt_keeps_one_cue_run_per_utterance(revised_talk):
    session, _ = revised_talk
    blocks = exports.export_session(session, "srt").content.strip().split("\n\n")
    assert [b.split("\n")[2] for b in blocks] == [
        "alice: Hello everyone, today.",
        "bob: Hi alice.",
        "alice: Let us start.",
    ]
