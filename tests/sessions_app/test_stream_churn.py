"""Streams that come and go: engines reused across connections, no audio refused while one
gets ready, and slots given back as soon as a connection ends. Real engine, real speech."""

from __future__ import annotations

import asyncio
import os
import signal
import time

import pytest
from channels.db import database_sync_to_async

from sessions_app.engine_hosting import engine_pool
from sessions_app.models import Utterance
from sessions_app.stream_limits import stream_slots
from tests.sessions_app.live_helpers import (
    pcm16,
    receive_finals_until_idle,
    send_json,
    start,
    stream_audio,
    stream_communicator,
)
from tests.speech import dev_clip, word_error_rate

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.asyncio, pytest.mark.usefixtures("live_settings")]

JFK_ONLY_WORDS = {"americans", "fellow", "country"}  # in the JFK clip, not in the other clip used here


async def _wait_until(predicate, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, f"{what} within {timeout_s} s"
        await asyncio.sleep(0.05)


async def _saved_texts(session) -> list[str]:
    return await database_sync_to_async(list)(
        Utterance.objects.filter(session=session).order_by("sequence").values_list("text", flat=True)
    )


async def test_a_stream_right_after_another_gets_the_same_engine_and_nothing_of_the_previous_one(
    user, make_session, speaker_token, engines_handed_out
):
    jfk, other = dev_clip("jfk"), dev_clip("ls_dev-clean_2412-153948-0002")
    first_session = await database_sync_to_async(make_session)(user, title="First", language="en")
    first = stream_communicator(first_session.id, token=speaker_token)
    await start(first)
    # Cut off in the middle of speech, without stt_stop: the engine still holds the utterance,
    # finishes it after the disconnect, and must hand none of it to the next stream.
    pcm = pcm16(jfk.path)
    await stream_audio(first, pcm[: len(pcm) * 3 // 4], speed=4.0)
    await first.disconnect(timeout=60)
    reused = engines_handed_out[0]
    pool = engine_pool()
    await _wait_until(lambda: reused.pid in pool.warm_pids, 60, "the first engine back in the pool")
    loads_before = pool.loads

    second_session = await database_sync_to_async(make_session)(user, title="Second", language="en")
    second = stream_communicator(second_session.id, token=speaker_token)
    await start(second)
    seen: list[dict] = []
    await stream_audio(second, pcm16(other.path, seconds_of_silence_after=1.5), speed=4.0)
    await send_json(second, {"type": "stt_stop"})
    finals = await receive_finals_until_idle(second, seen=seen)
    await second.disconnect(timeout=60)

    assert engines_handed_out[1].pid == reused.pid  # the same process, models already loaded
    assert pool.loads == loads_before
    first_texts = await _saved_texts(first_session)
    assert first_texts and "fellow" in " ".join(first_texts).lower()  # the cut-off utterance was saved
    second_text = " ".join(f["text"] for f in finals)
    assert word_error_rate([other.text], [second_text]) <= 0.2
    heard = {word.strip(".,!?").lower() for message in seen for word in message.get("text", "").split()}
    assert not heard & JFK_ONLY_WORDS, seen
    assert not set(" ".join(await _saved_texts(second_session)).lower().split()) & JFK_ONLY_WORDS


async def test_audio_sent_at_real_time_while_an_engine_gets_ready_is_all_transcribed(
    live_session, speaker_token, settings, monkeypatch
):
    """The allowance for audio counts from stt_start, and audio that arrives before the engine is
    held for it, so a slow engine start refuses and loses nothing."""
    from sessions_app import live_stream

    settings.STT_MAX_AUDIO_SPEED = 1.2
    settings.STT_AUDIO_BURST_S = 0.5
    real_acquire = live_stream.acquire_engine

    def slow_engine_acquisition_for_test():  # a fake delay, for this error path only
        time.sleep(4.0)
        return real_acquire()

    monkeypatch.setattr(live_stream, "acquire_engine", slow_engine_acquisition_for_test)
    clip = dev_clip("jfk")
    speaker = stream_communicator(live_session.id, token=speaker_token)
    assert (await speaker.connect(timeout=10))[0]
    # Like a client that does not wait for the server's answer: the first frame follows at once.
    await send_json(speaker, {"type": "stt_start", "language": "en", "sample_rate": 16000})
    seen: list[dict] = []
    await stream_audio(speaker, pcm16(clip.path, seconds_of_silence_after=1.5), speed=1.0, frame_s=0.05)
    await send_json(speaker, {"type": "stt_stop"})
    finals = await receive_finals_until_idle(speaker, seen=seen)
    await speaker.disconnect(timeout=60)
    listening = next(m for m in seen if m["type"] == "stt_listening")
    assert listening["clock_offset"] == 0
    assert not [m for m in seen if m["type"] == "stt_error"], seen
    assert word_error_rate([clip.text], [" ".join(f["text"] for f in finals)]) <= 0.15
    assert finals[0]["start"] < 1.0  # the first words, spoken while the engine was not there yet


async def test_a_reconnect_on_a_full_server_is_admitted_as_soon_as_the_old_connection_is_gone(
    live_session, speaker_token, settings, engines_handed_out
):
    settings.STT_MAX_STREAMS_PER_SERVER = 1
    settings.STT_ADMISSION_WAIT_S = 30  # a busy machine may take a while to see the old connection close
    clip = dev_clip("jfk")
    old = stream_communicator(live_session.id, token=speaker_token)
    await start(old)
    await stream_audio(old, pcm16(clip.path)[: 16000 * 2 * 4], speed=4.0)
    await _wait_until(lambda: engines_handed_out, 180, "an engine for the stream")
    frozen = engines_handed_out[0]
    os.kill(frozen.pid, signal.SIGSTOP)  # its last final will take as long as we like
    try:
        await send_json(old, {"type": "stt_stop"})
        # The new connection arrives first (a reconnect often does), then the old one closes.
        new = stream_communicator(live_session.id, token=speaker_token)
        connecting = asyncio.create_task(new.connect(timeout=30))
        await asyncio.sleep(0.3)
        old_gone = asyncio.create_task(old.disconnect(timeout=90))
        assert (await connecting)[0]
        listening = await start(new, connect=False)
        assert listening["stream_id"]
        assert stream_slots.total == 1
        assert not old_gone.done()  # the old stream's clean-up still waits for its engine
    finally:
        os.kill(frozen.pid, signal.SIGCONT)
    await old_gone
    texts = await _saved_texts(live_session)
    assert "fellow" in " ".join(texts).lower()  # the old stream's last utterance, saved after it was gone
    await stream_audio(new, pcm16(clip.path, seconds_of_silence_after=1.5), speed=4.0)
    await send_json(new, {"type": "stt_stop"})
    finals = await receive_finals_until_idle(new, stream_id=listening["stream_id"])
    assert word_error_rate([clip.text], [" ".join(f["text"] for f in finals)]) <= 0.15
    await new.disconnect(timeout=60)
    await _wait_until(lambda: stream_slots.claimed_sessions == 0, 10, "every session claim given back")
