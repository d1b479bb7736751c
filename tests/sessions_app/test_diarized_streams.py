"""A room microphone through the real router, engine and post-session pass, on two LibriSpeech readers.

One meeting is held once for the module (the engine runs are the cost): the chair's laptop is the
room's microphone (the session's ``room_microphone``) and hears readers 1688 and 3331 take turns;
a guest then streams from their own laptop with ``"diarize": false``. The tests read what it left: the
messages, the stored rows, the exports, and the rows after the post-session pass.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import pytest
from channels.db import database_sync_to_async
from channels.layers import channel_layers
from django.test import override_settings
from rest_framework.authtoken.models import Token

from sessions_app import exports
from sessions_app.actions import do_add_member, do_create_session
from sessions_app.meeting_record.post_session import run_post_session_pass
from sessions_app.models import TranscriptionSession, Utterance
from sessions_app.stream_limits import stream_slots
from tests.sessions_app.diarized_helpers import Conversation, two_voices
from tests.sessions_app.live_helpers import (
    pcm16,
    receive_finals_until_idle,
    receive_until,
    send_json,
    stream_audio,
    stream_communicator,
)
from tests.speech import dev_clip

GUEST_CLIP = "ls_dev-clean_2412-153948-0002"


@dataclass
class Meeting:
    """What the module's meeting left, read while its rows existed (later tests may flush the database)."""

    conversation: Conversation
    chair_listening: dict[str, Any] = field(default_factory=dict)
    chair_finals: list[dict[str, Any]] = field(default_factory=list)
    chair_revisions: list[dict[str, Any]] = field(default_factory=list)
    guest_listening: dict[str, Any] = field(default_factory=dict)
    guest_finals: list[dict[str, Any]] = field(default_factory=list)
    live_rows: list[dict[str, Any]] = field(default_factory=list)  # every row after the streams, by sequence
    live_exports: dict[str, str] = field(default_factory=dict)
    pass_state: str = ""
    archive_rows: list[dict[str, Any]] = field(default_factory=list)  # the current rows after the pass
    archive_txt: str = ""


def _rows(session_id) -> list[dict[str, Any]]:
    return list(
        Utterance.objects.filter(session_id=session_id)
        .order_by("sequence")
        .values("id", "speaker__username", "speaker_label", "source", "start_s", "end_s", "text", "superseded_by")
    )


async def _stream(session_id, token: str, pcm: bytes, start: dict[str, Any]) -> tuple[dict, list[dict], list[dict]]:
    """Stream ``pcm`` after ``start`` (an stt_start); returns its stt_listening, stt_finals, stt_reviseds."""
    socket = stream_communicator(session_id, token=token)
    connected, _ = await socket.connect(timeout=10)
    assert connected
    await send_json(socket, {"type": "stt_start", "language": "en", "sample_rate": 16000, **start})
    listening = await receive_until(socket, "stt_listening", timeout_s=180)
    await stream_audio(socket, pcm)
    await send_json(socket, {"type": "stt_stop"})
    seen: list[dict] = []
    finals = await receive_finals_until_idle(socket, timeout_s=300, seen=seen, stream_id=listening["stream_id"])
    await socket.disconnect()
    return listening, finals, [m for m in seen if m["type"] == "stt_revised"]


async def _wait_for_streams_closed(session_id) -> None:
    """The consumers' clean-up (the last final saved, the stream counted out) runs after the disconnect."""
    count = database_sync_to_async(
        lambda: TranscriptionSession.objects.filter(pk=session_id).values_list("streams_open", flat=True).first()
    )
    for _ in range(1200):
        if await count() == 0 and stream_slots.total == 0:
            return
        await asyncio.sleep(0.05)
    raise AssertionError("the streams were not counted out")


def _hold_meeting(make_user_row, conversation: Conversation) -> Meeting:
    chair, guest = make_user_row("chair"), make_user_row("guest")
    session = do_create_session(chair, "Room meeting", "en", room_microphone=True)
    do_add_member(session, "guest", "speaker")
    meeting = Meeting(conversation)
    chair_token, guest_token = Token.objects.create(user=chair).key, Token.objects.create(user=guest).key

    async def stream_both() -> None:
        # The chair's stt_start says nothing of diarize: the room microphone decides.
        meeting.chair_listening, meeting.chair_finals, meeting.chair_revisions = await _stream(
            session.pk, chair_token, conversation.pcm, {}
        )
        meeting.guest_listening, meeting.guest_finals, _ = await _stream(
            session.pk, guest_token, pcm16(dev_clip(GUEST_CLIP).path, seconds_of_silence_after=2.0), {"diarize": False}
        )
        await _wait_for_streams_closed(session.pk)

    asyncio.run(stream_both())
    meeting.live_rows = _rows(session.pk)
    meeting.live_exports = {fmt: exports.export_session(session, fmt).content for fmt in ("txt", "json", "srt", "vtt")}
    TranscriptionSession.objects.filter(pk=session.pk).update(
        status=TranscriptionSession.Status.CLOSED, transcript_state=TranscriptionSession.TranscriptState.REFINING
    )
    meeting.pass_state = run_post_session_pass(session.pk)
    meeting.archive_rows = [row for row in _rows(session.pk) if row["superseded_by"] is None]
    meeting.archive_txt = exports.export_session(session, "txt").content
    return meeting


@pytest.fixture(scope="module")
def meeting(django_db_setup, django_db_blocker, tmp_path_factory) -> Meeting:
    from django.contrib.auth import get_user_model

    users = []

    def make_user_row(username: str):
        users.append(get_user_model().objects.create_user(username=username, password="s3cret-Passw0rd"))
        return users[-1]

    media = tmp_path_factory.mktemp("media")
    with (
        django_db_blocker.unblock(),
        override_settings(MEDIA_ROOT=media, STT_MAX_AUDIO_SPEED=8.0, STT_AUDIO_BURST_S=5.0),
    ):
        channel_layers.backends.clear()
        try:
            yield _hold_meeting(make_user_row, two_voices())
        finally:
            channel_layers.backends.clear()
            for user in users:  # (its sessions, rows and tokens go with it)
                get_user_model().objects.filter(pk=user.pk).delete()


def _label_of_each_voice(conversation: Conversation, lines: list[dict[str, Any]]) -> dict[str, Counter]:
    """For each reader, how often each label was given to a line said in their turns."""
    seen: dict[str, Counter] = {}
    for line in lines:
        voice = conversation.voice_at(line["start"], line["end"])
        if voice is not None:
            seen.setdefault(voice, Counter())[line["speaker_label"]] += 1
    return seen


def _as_line(row: dict[str, Any]) -> dict[str, Any]:
    return {"start": row["start_s"], "end": row["end_s"], "speaker_label": row["speaker_label"]}


def test_a_room_microphone_stream_is_diarized_without_asking(meeting):
    assert meeting.chair_listening["diarize"] is True
    assert meeting.guest_listening["diarize"] is False


def test_two_readers_taking_turns_get_two_stable_labels_in_stt_final(meeting):
    finals = meeting.chair_finals
    assert {f["speaker_label"] for f in finals} == {"S1", "S2"}, [(f["speaker_label"], f["text"]) for f in finals]
    by_voice = _label_of_each_voice(meeting.conversation, finals)
    # Every line of a reader's turns carries that reader's one label; the first to speak is S1.
    assert {voice: set(labels) for voice, labels in by_voice.items()} == {"1688": {"S1"}, "3331": {"S2"}}, by_voice


def test_revisions_carry_the_labels_too(meeting):
    revised = [u for message in meeting.chair_revisions for u in message["utterances"]]
    assert revised, "no stt_revised came"
    by_voice = _label_of_each_voice(meeting.conversation, revised)
    assert {voice: set(labels) for voice, labels in by_voice.items()} == {"1688": {"S1"}, "3331": {"S2"}}


def test_the_stored_rows_keep_the_labels_of_their_messages(meeting):
    rows = {row["id"]: row for row in meeting.live_rows}
    for final in meeting.chair_finals:
        assert rows[final["utterance_id"]]["speaker_label"] == final["speaker_label"]
    current = [r for r in meeting.live_rows if r["superseded_by"] is None and r["speaker__username"] == "chair"]
    assert current and {r["speaker_label"] for r in current} == {"S1", "S2"}
    by_voice = _label_of_each_voice(meeting.conversation, [_as_line(r) for r in current])
    assert {voice: set(labels) for voice, labels in by_voice.items()} == {"1688": {"S1"}, "3331": {"S2"}}


def test_diarize_false_leaves_the_lines_unlabelled(meeting):
    assert meeting.guest_finals and all(f["speaker_label"] == "" for f in meeting.guest_finals)
    assert all(f["speaker"] == "guest" and f["speaker_name"] == "guest" for f in meeting.guest_finals)
    assert {r["speaker_label"] for r in meeting.live_rows if r["speaker__username"] == "guest"} == {""}


def test_the_labels_reach_every_export(meeting):
    txt = meeting.live_exports["txt"]
    heads = [block.split(": ")[0] for block in txt.strip().split("\n\n")]
    assert heads[:4] == ["Speaker 1", "Speaker 2", "Speaker 1", "Speaker 2"] and heads[-1] == "guest", txt
    segments = json.loads(meeting.live_exports["json"])["segments"]
    assert {(s["speaker"], s["speaker_name"], s["speaker_label"]) for s in segments} == {
        ("chair", "Speaker 1", "S1"), ("chair", "Speaker 2", "S2"), ("guest", "guest", ""),
    }  # fmt: skip
    for fmt in ("srt", "vtt"):
        cues = meeting.live_exports[fmt]
        assert "Speaker 1: " in cues and "Speaker 2: " in cues and "guest: " in cues, fmt


def test_the_post_session_pass_keeps_the_live_labels_of_each_voice(meeting):
    assert meeting.pass_state == "final"
    chair = [r for r in meeting.archive_rows if r["speaker__username"] == "chair"]
    assert chair and all(r["source"] == "archive" for r in chair)
    by_voice = _label_of_each_voice(meeting.conversation, [_as_line(r) for r in chair])
    assert {voice: set(labels) for voice, labels in by_voice.items()} == {"1688": {"S1"}, "3331": {"S2"}}
    assert {r["speaker_label"] for r in meeting.archive_rows if r["speaker__username"] == "guest"} == {""}
    assert meeting.archive_txt.startswith("Speaker 1: ") and "\n\nSpeaker 2: " in meeting.archive_txt


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("live_settings")
@pytest.mark.parametrize("value", ["yes", 1, {"on": True}])
async def test_a_diarize_that_is_not_true_or_false_is_a_bad_start(live_session, speaker_token, value):
    socket = stream_communicator(live_session.id, token=speaker_token)
    assert (await socket.connect(timeout=10))[0]
    await send_json(socket, {"type": "stt_start", "diarize": value})
    error = await receive_until(socket, "stt_error", timeout_s=10)
    assert error["code"] == "BAD_START" and "diarize must be true or false" in error["error"]
    await send_json(socket, {"type": "ping"})
    assert (await receive_until(socket, "pong", timeout_s=10))["type"] == "pong"  # the connection stays
    await socket.disconnect()


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("live_settings")
async def test_a_room_microphone_switched_on_after_connecting_applies_to_the_next_stt_start(
    live_session, speaker_token
):
    socket = stream_communicator(live_session.id, token=speaker_token)
    assert (await socket.connect(timeout=10))[0]
    await database_sync_to_async(TranscriptionSession.objects.filter(pk=live_session.pk).update)(room_microphone=True)
    await send_json(socket, {"type": "stt_start", "language": "en", "sample_rate": 16000})
    assert (await receive_until(socket, "stt_listening", timeout_s=60))["diarize"] is True
    await socket.disconnect()


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("live_settings")
async def test_the_engine_that_replaces_a_crashed_one_diarizes_too(live_session, speaker_token, engines_handed_out):
    """(The crash's own handling is test_engine_crash.py's; here: the stream's diarize reaches the fresh engine.)"""
    clip = dev_clip("librivox_sense_and_sensibility_01_0870")  # no pause in its first 4 s
    speech = pcm16(clip.path, seconds_of_silence_after=2.0)
    cut = 4 * 16000 * 2
    socket = stream_communicator(live_session.id, token=speaker_token)
    assert (await socket.connect(timeout=10))[0]
    await send_json(socket, {"type": "stt_start", "language": "en", "sample_rate": 16000, "diarize": True})
    assert (await receive_until(socket, "stt_listening", timeout_s=180))["diarize"] is True
    seen: list[dict] = []
    await stream_audio(socket, speech[:cut], speed=8.0)
    await receive_until(socket, "stt_recording_start", timeout_s=180, seen=seen)
    os.kill(engines_handed_out[0].pid, signal.SIGKILL)
    assert (await receive_until(socket, "stt_error", timeout_s=60, seen=seen))["code"] == "ENGINE_CRASHED"
    await stream_audio(socket, speech[cut:], speed=8.0)
    await send_json(socket, {"type": "stt_stop"})
    finals = await receive_finals_until_idle(socket, timeout_s=240, seen=seen)
    await socket.disconnect(timeout=30)
    assert len(engines_handed_out) == 2
    assert finals and {f["speaker_label"] for f in finals} == {"S1"}, [(f["speaker_label"], f["text"]) for f in finals]
    stored = await database_sync_to_async(list)(
        Utterance.objects.filter(session=live_session).values_list("speaker_label", flat=True)
    )
    assert stored and set(stored) == {"S1"}
