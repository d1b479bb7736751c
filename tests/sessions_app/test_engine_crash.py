"""An engine process killed in the middle of an utterance: the fresh engine hears that utterance again.

Real engines on real speech: the engine serving a stream is SIGKILLed while the utterance it holds
has no final yet, and the words of that utterance must still come in a final, on the recording
clock, and be stored; the stream then goes on.
"""

from __future__ import annotations

import os
import signal
import threading

import pytest
from channels.db import database_sync_to_async

from sessions_app.models import Utterance
from tests.sessions_app.live_helpers import (
    pcm16,
    receive_finals_until_idle,
    receive_until,
    send_json,
    start,
    stream_audio,
    stream_communicator,
    wait_for,
)
from tests.speech import dev_clip, word_error_rate

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.asyncio, pytest.mark.usefixtures("live_settings")]

RATE = 16000
LEAD_S = 1.0  # silence before the speech, so the utterance starts well after the stream's 0
# One read sentence with no pause long enough to end an utterance (0.6 s) in its first 4 s.
CLIP = "librivox_sense_and_sensibility_01_0870"
CUT_S = 4.0  # the engine dies after hearing this much of the sentence


def _silence(seconds: float) -> bytes:
    return b"\x00\x00" * int(seconds * RATE)


async def _stored(session) -> list[Utterance]:
    """The session's current utterances (a refined turn's rows replace those of its finals)."""
    return await database_sync_to_async(list)(Utterance.objects.current().filter(session=session).order_by("start_s"))


async def test_an_engine_killed_mid_utterance_loses_no_word_of_it(live_session, speaker_token, engines_handed_out):
    clip = dev_clip(CLIP)
    speech = pcm16(clip.path)
    cut = int(CUT_S * RATE) * 2
    speaker = stream_communicator(live_session.id, token=speaker_token)
    await start(speaker)
    seen: list[dict] = []
    await stream_audio(speaker, _silence(LEAD_S) + speech[:cut], speed=8.0)
    # The engine has begun the utterance (it heard speech) and, with no pause sent yet, cannot
    # have ended it: it holds the only copy of that utterance's audio outside the recording file.
    await receive_until(speaker, "stt_recording_start", timeout_s=180, seen=seen)
    assert not [m for m in seen if m["type"] == "stt_final"]
    os.kill(engines_handed_out[0].pid, signal.SIGKILL)
    crash = await receive_until(speaker, "stt_error", timeout_s=60, seen=seen)
    assert crash["code"] == "ENGINE_CRASHED"
    assert not [m for m in seen if m["type"] == "stt_final"]

    # The stream goes on: the rest of the sentence, a pause, and another sentence after it.
    other = dev_clip("librivox_sense_and_sensibility_01_0880")
    await stream_audio(speaker, speech[cut:] + _silence(1.5) + pcm16(other.path) + _silence(1.5), speed=8.0)
    await send_json(speaker, {"type": "stt_stop"})
    finals = await receive_finals_until_idle(speaker, timeout_s=240, seen=seen)
    await speaker.disconnect(timeout=30)

    assert len(engines_handed_out) == 2 and engines_handed_out[1].is_alive()
    assert finals, [m["type"] for m in seen]
    first_sentence = [f for f in finals if f["start"] < LEAD_S + clip.duration_s]
    # The final of the utterance the dead engine held comes from the fresh engine, with all its
    # words (the beginning too, heard only by the dead engine), at its place on the recording clock.
    assert word_error_rate([clip.text], [" ".join(f["text"] for f in first_sentence)]) <= 0.15
    assert LEAD_S - 0.6 <= first_sentence[0]["start"] <= LEAD_S + 0.6
    assert first_sentence[-1]["end"] <= LEAD_S + clip.duration_s + 1.0
    assert word_error_rate([f"{clip.text} {other.text}"], [" ".join(f["text"] for f in finals)]) <= 0.15
    # Each word once: the replayed audio is not transcribed twice.
    assert len(" ".join(f["text"] for f in finals).split()) <= len(f"{clip.text} {other.text}".split()) + 2

    stored = await _stored(live_session)
    assert word_error_rate([f"{clip.text} {other.text}"], [" ".join(u.text for u in stored)]) <= 0.15
    assert LEAD_S - 0.6 <= stored[0].start_s <= LEAD_S + 0.6


async def test_an_engine_killed_after_stop_before_its_last_final_still_gives_it(
    live_session, speaker_token, engines_handed_out
):
    clip = dev_clip("jfk")
    speaker = stream_communicator(live_session.id, token=speaker_token)
    await start(speaker)
    await wait_for(lambda: len(engines_handed_out) == 1, "an engine for the stream")
    engine = engines_handed_out[0]
    stop_sent = threading.Event()
    real_stop = engine.stop

    def stop_and_tell() -> None:
        real_stop()
        stop_sent.set()

    engine.stop = stop_and_tell  # (the consumer's feeder calls it when it handles stt_stop)
    os.kill(engine.pid, signal.SIGSTOP)  # it hears nothing of what follows before it dies
    try:
        await stream_audio(speaker, pcm16(clip.path), speed=8.0)
        await send_json(speaker, {"type": "stt_stop"})
        await wait_for(stop_sent.is_set, "the stream's stop reaching its engine")
    finally:
        os.kill(engine.pid, signal.SIGKILL)
    seen: list[dict] = []
    finals = await receive_finals_until_idle(speaker, timeout_s=240, seen=seen)
    assert [m["code"] for m in seen if m["type"] == "stt_error"] == ["ENGINE_CRASHED"]
    assert word_error_rate([clip.text], [" ".join(f["text"] for f in finals)]) <= 0.15
    assert finals[0]["start"] < 1.0
    assert len(engines_handed_out) == 2
    await speaker.disconnect(timeout=30)
    stored = await _stored(live_session)
    assert word_error_rate([clip.text], [" ".join(u.text for u in stored)]) <= 0.15


async def test_the_audio_since_the_last_final_is_all_that_is_replayed(live_session, speaker_token, engines_handed_out):
    """A crash after a final: only the audio after that final reaches the fresh engine."""
    first, second = (
        dev_clip("librivox_sense_and_sensibility_01_0880"),
        dev_clip("librivox_sense_and_sensibility_01_0890"),
    )
    speaker = stream_communicator(live_session.id, token=speaker_token)
    await start(speaker)
    seen: list[dict] = []
    await stream_audio(speaker, pcm16(first.path) + _silence(1.5), speed=8.0)
    first_final = await receive_until(speaker, "stt_final", timeout_s=180, seen=seen)
    second_speech = pcm16(second.path)
    await stream_audio(speaker, second_speech[: len(second_speech) // 2], speed=8.0)
    await receive_until(speaker, "stt_recording_start", timeout_s=180, seen=seen)
    os.kill(engines_handed_out[0].pid, signal.SIGKILL)
    assert (await receive_until(speaker, "stt_error", timeout_s=60, seen=seen))["code"] == "ENGINE_CRASHED"
    await stream_audio(speaker, second_speech[len(second_speech) // 2 :] + _silence(1.5), speed=8.0)
    await send_json(speaker, {"type": "stt_stop"})
    finals = await receive_finals_until_idle(speaker, timeout_s=240, seen=seen)  # (all of them, the first too)
    await speaker.disconnect(timeout=30)
    assert finals[0] == first_final
    later = finals[1:]
    assert later
    assert all(f["start"] >= first_final["end"] - 0.01 for f in later)
    assert word_error_rate([first.text], [first_final["text"]]) <= 0.2
    assert word_error_rate([second.text], [" ".join(f["text"] for f in later)]) <= 0.2
    stored = await _stored(live_session)
    assert word_error_rate([f"{first.text} {second.text}"], [" ".join(u.text for u in stored)]) <= 0.2
