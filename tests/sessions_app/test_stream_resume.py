"""Acknowledged audio and resumable streams: a lost connection loses no audio and no words.

The in-process tests lose the connection as daphne reports a dropped TCP stream (a
``websocket.disconnect`` with 1006, no ``stt_stop``); the last test aborts a real TCP connection
to a real daphne process.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import wave

import pytest
import websockets
from channels.db import database_sync_to_async
from django.core.files.storage import default_storage
from rest_framework.authtoken.models import Token

from sessions_app.actions import do_add_member
from sessions_app.models import AudioRecording, Utterance
from sessions_app.stream_limits import stream_slots
from sessions_app.stream_resume import held_streams, live_speakers
from tests.sessions_app.live_helpers import (
    frames,
    pcm16,
    receive_finals_until_idle,
    receive_until,
    send_json,
    start,
    stream_audio,
    stream_communicator,
)
from tests.speech import dev_clip, word_error_rate

pytestmark = [pytest.mark.django_db(transaction=True)]

LOST = 1006  # what daphne reports for a connection that ended without a close handshake
FRAME_BYTES = 3200  # 0.1 s at 16 kHz
CLIP = "ls_dev-clean_2412-153948-0000"  # 11.7 s, several utterances


@pytest.fixture
def no_stream_left_held():
    yield
    assert len(held_streams) == 0, "a test left a stream held"
    assert len(live_speakers) == 0, "a stream that ended is still registered"


async def ack_of(communicator, samples: int, seen: list | None = None, timeout_s: float = 30.0) -> dict:
    """Receive until an ``stt_ack`` acknowledges ``samples``; acks never go back."""
    last = -1
    while True:
        ack = await receive_until(communicator, "stt_ack", timeout_s=timeout_s, seen=seen)
        assert ack["samples"] >= last
        last = ack["samples"]
        if last >= samples:
            assert last == samples
            return ack


def resume_start(stream_id: str, samples: int) -> dict:
    return {
        "type": "stt_start",
        "language": "en",
        "sample_rate": 16000,
        "resume": {"stream_id": stream_id, "samples": samples},
    }


async def resume(communicator, stream_id: str, samples: int, seen: list | None = None) -> dict:
    """Connect, start with ``resume`` and return the ``stt_listening`` answer (what came before it in ``seen``)."""
    connected, _ = await communicator.connect(timeout=10)
    assert connected
    await send_json(communicator, resume_start(stream_id, samples))
    return await receive_until(communicator, "stt_listening", timeout_s=60, seen=seen)


@database_sync_to_async
def saved_finals(session) -> list[Utterance]:
    return list(Utterance.objects.filter(session=session, source=Utterance.Source.LIVE).order_by("sequence"))


def recorded_samples(recording: AudioRecording) -> int:
    with wave.open(default_storage.path(recording.file.name)) as wav:
        return wav.getnframes()


async def wait_for(condition, timeout_s: float, what: str) -> None:
    for _ in range(int(timeout_s / 0.2)):
        if await condition():
            return
        await asyncio.sleep(0.2)
    raise AssertionError(f"not within {timeout_s} s: {what}")


@pytest.mark.asyncio
@pytest.mark.usefixtures("live_settings", "no_stream_left_held")
async def test_a_stream_resumed_twice_on_a_full_server_keeps_its_id_every_sample_and_its_words(
    live_session, speaker_token, settings
):
    settings.STT_MAX_STREAMS_PER_SERVER = 1  # the resumed stream takes its own slot back: no TOO_MANY_STREAMS
    clip = dev_clip(CLIP)
    pcm = pcm16(clip.path, seconds_of_silence_after=1.5)
    first_cut, second_cut = (len(pcm) * n // 3 // FRAME_BYTES * FRAME_BYTES for n in (1, 2))

    first = stream_communicator(live_session.id, token=speaker_token)
    listening = await start(first)
    stream_id = listening["stream_id"]
    assert listening["resumed"] is False and listening["samples"] == 0
    await stream_audio(first, pcm[:first_cut])
    await ack_of(first, first_cut // 2)
    await first.disconnect(code=LOST)  # in the middle of speech, without stt_stop
    assert held_streams.for_speaker(live_session.id, live_session.owner_id) is not None
    assert stream_slots.total == 1

    second = stream_communicator(live_session.id, token=speaker_token)
    resumed = await resume(second, stream_id, first_cut // 2)
    assert resumed["resumed"] is True and resumed["stream_id"] == stream_id
    assert resumed["samples"] == first_cut // 2 and resumed["clock_offset"] == 0
    await stream_audio(second, pcm[first_cut:second_cut])
    await ack_of(second, second_cut // 2)
    await second.disconnect(code=LOST)

    # This client resumes from an older acknowledgement: the second it sends again is skipped.
    third = stream_communicator(live_session.id, token=speaker_token)
    again_from = second_cut - 16000 * 2
    resumed = await resume(third, stream_id, again_from // 2)
    assert resumed["resumed"] is True and resumed["samples"] == second_cut // 2
    await stream_audio(third, pcm[again_from:])
    seen: list[dict] = []
    await ack_of(third, len(pcm) // 2, seen=seen)
    await send_json(third, {"type": "stt_stop"})
    finals = await receive_finals_until_idle(third, seen=seen, stream_id=stream_id)
    await third.disconnect(timeout=30)
    assert finals and all(f["stream_id"] == stream_id for f in finals)

    recording = await database_sync_to_async(AudioRecording.objects.get)(session=live_session)
    assert recorded_samples(recording) == len(pcm) // 2  # every sample once, none twice
    assert recording.duration_s == pytest.approx(len(pcm) / 2 / 16000, abs=1e-6)
    saved = await saved_finals(live_session)
    assert {u.stream_id for u in saved} == {stream_id}
    assert word_error_rate([clip.text], [" ".join(u.text for u in saved)]) <= 0.15


@pytest.mark.asyncio
@pytest.mark.usefixtures("live_settings", "no_stream_left_held")
async def test_a_stream_not_resumed_within_its_grace_period_is_ended_and_its_last_utterance_saved(
    live_session, speaker_token, settings
):
    settings.STT_RESUME_GRACE_S = 1
    clip = dev_clip(CLIP)
    pcm = pcm16(clip.path)
    sent = pcm[: len(pcm) * 2 // 3 // FRAME_BYTES * FRAME_BYTES]
    speaker = stream_communicator(live_session.id, token=speaker_token)
    stream_id = (await start(speaker))["stream_id"]
    await stream_audio(speaker, sent)
    await ack_of(speaker, len(sent) // 2)
    await speaker.disconnect(code=LOST)

    async def ended() -> bool:
        recording = await database_sync_to_async(AudioRecording.objects.get)(session=live_session)
        return (
            stream_slots.claimed_sessions == 0 and recording.duration_s > 0 and bool(await saved_finals(live_session))
        )

    await wait_for(ended, 120, "the held stream ended: last utterance saved, recording closed, claim given back")
    assert len(held_streams) == 0 and stream_slots.total == 0
    saved = await saved_finals(live_session)
    first_words = " ".join(clip.text.split()[:4])
    assert word_error_rate([first_words], [" ".join(saved[0].text.split()[:4])]) <= 0.5
    recording = await database_sync_to_async(AudioRecording.objects.get)(session=live_session)
    assert recorded_samples(recording) == len(sent) // 2

    late = stream_communicator(live_session.id, token=speaker_token)
    seen: list[dict] = []
    fresh = await resume(late, stream_id, len(sent) // 2, seen=seen)
    assert [m["code"] for m in seen if m["type"] == "stt_error"] == ["BAD_RESUME"]
    assert fresh["resumed"] is False and fresh["stream_id"] != stream_id and fresh["samples"] == 0
    assert fresh["clock_offset"] == pytest.approx(len(sent) / 2 / 16000, abs=0.001)  # it appends to the recording
    await late.disconnect()


@pytest.mark.asyncio
@pytest.mark.usefixtures("live_settings", "no_stream_left_held")
async def test_nobody_resumes_another_speakers_stream_nor_one_of_another_session(
    live_session, speaker_token, make_user, make_session
):
    alice = stream_communicator(live_session.id, token=speaker_token)
    stream_id = (await start(alice))["stream_id"]
    one_second = pcm16(dev_clip(CLIP).path)[: 16000 * 2]
    await stream_audio(alice, one_second)
    await ack_of(alice, 16000)
    await alice.disconnect(code=LOST)

    mallory = await database_sync_to_async(make_user)("mallory")
    await database_sync_to_async(do_add_member)(live_session, "mallory", "speaker")
    mallory_token = (await database_sync_to_async(Token.objects.create)(user=mallory)).key
    intruder = stream_communicator(live_session.id, token=mallory_token)
    seen: list[dict] = []
    fresh = await resume(intruder, stream_id, 0, seen=seen)
    assert [m["code"] for m in seen if m["type"] == "stt_error"] == ["BAD_RESUME"]
    assert fresh["resumed"] is False and fresh["stream_id"] != stream_id and fresh["speaker"] == "mallory"

    other_session = await database_sync_to_async(make_session)(live_session.owner, title="Other meeting")
    elsewhere = stream_communicator(other_session.id, token=speaker_token)
    seen = []
    fresh = await resume(elsewhere, stream_id, 16000, seen=seen)
    assert [m["code"] for m in seen if m["type"] == "stt_error"] == ["BAD_RESUME"]
    assert fresh["resumed"] is False and fresh["stream_id"] != stream_id
    assert held_streams.for_speaker(live_session.id, live_session.owner_id) is not None  # still alice's to resume
    await intruder.disconnect()
    await elsewhere.disconnect()

    # A malformed resume is refused the same way; and the speaker starting afresh ends the held
    # stream (its audio stays in the recording, the fresh stream appends to it).
    back = stream_communicator(live_session.id, token=speaker_token)
    assert (await back.connect(timeout=10))[0]
    seen = []
    await send_json(back, {"type": "stt_start", "language": "en", "resume": {"stream_id": stream_id}})
    fresh = await receive_until(back, "stt_listening", timeout_s=60, seen=seen)
    assert [m["code"] for m in seen if m["type"] == "stt_error"] == ["BAD_RESUME"]
    assert fresh["resumed"] is False and fresh["clock_offset"] == pytest.approx(1.0, abs=0.001)
    assert len(held_streams) == 0
    await back.disconnect(timeout=30)


class RealClient:
    """A speaker's client over real TCP: remembers the last acknowledged count, as a page would."""

    def __init__(self, port: int, session_id, token: str) -> None:
        self.url = f"ws://127.0.0.1:{port}/ws/sessions/{session_id}/stream/"
        self.headers = {"Authorization": f"Token {token}"}
        self.messages: list[dict] = []
        self.acked = 0

    async def open(self, start_message: dict) -> dict:
        self.socket = await websockets.connect(self.url, additional_headers=self.headers)
        self.reader = asyncio.create_task(self._read())
        await self.socket.send(json.dumps(start_message))
        return await self.wait_for(lambda m: m["type"] == "stt_listening", 180)

    async def _read(self) -> None:
        async for text in self.socket:
            message = json.loads(text)
            self.messages.append(message)
            if message["type"] == "stt_ack":
                self.acked = message["samples"]

    async def wait_for(self, matches, timeout_s: float) -> dict:
        deadline = asyncio.get_running_loop().time() + timeout_s
        seen = 0
        while asyncio.get_running_loop().time() < deadline:
            for message in self.messages[seen:]:
                if matches(message):
                    return message
            seen = len(self.messages)
            await asyncio.sleep(0.05)
        raise AssertionError(f"not within {timeout_s} s; saw {[m['type'] for m in self.messages]}")

    async def send_audio(self, pcm: bytes) -> None:
        for index, frame in enumerate(frames(pcm)):
            if index:
                await asyncio.sleep(0.025)  # 4x real time
            await self.socket.send(frame)

    def abort(self) -> None:
        """Drop the TCP connection, no close handshake: a network that went away."""
        self.socket.transport.abort()
        self.reader.cancel()

    async def close(self) -> None:
        await self.socket.close()
        with contextlib.suppress(asyncio.CancelledError, websockets.ConnectionClosed):
            await self.reader


async def speak(port: int, session_id, token: str, pcm: bytes, drop_at: int | None = None) -> tuple[str, int]:
    """Stream ``pcm`` (dropping the connection at byte ``drop_at`` for 5 s, then resuming) and stop.

    Returns the stream's id and the last acknowledged count.
    """
    client = RealClient(port, session_id, token)
    listening = await client.open({"type": "stt_start", "language": "en", "sample_rate": 16000})
    stream_id = listening["stream_id"]
    if drop_at is not None:
        await client.send_audio(pcm[:drop_at])
        client.abort()  # in the middle of speech; the last frames are not acknowledged yet
        acked = client.acked
        assert acked * 2 < drop_at
        await asyncio.sleep(5)
        client = RealClient(port, session_id, token)
        resumed = await client.open(resume_start(stream_id, acked))
        assert resumed["resumed"] is True and resumed["stream_id"] == stream_id
        assert acked <= resumed["samples"] <= drop_at // 2
        pcm = pcm[acked * 2 :]
    await client.send_audio(pcm)
    await client.socket.send(json.dumps({"type": "stt_stop"}))
    await client.wait_for(
        lambda m: m["type"] == "stt_state" and m["state"] == "idle" and m.get("stream_id") == stream_id, 180
    )
    final_ack = client.acked
    await client.close()
    return stream_id, final_ack


def test_a_client_that_aborts_its_tcp_connection_mid_speech_and_resumes_5_s_later_loses_nothing(
    start_daphne, tmp_path, user, make_session
):
    undisturbed, disturbed = (make_session(user, title=title, language="en") for title in ("Calm", "Flaky Wi-Fi"))
    token = Token.objects.create(user=user).key
    port = start_daphne(warm_engines=1, STT_MAX_AUDIO_SPEED="8")
    clip = dev_clip(CLIP)
    pcm = pcm16(clip.path, seconds_of_silence_after=1.5)
    drop_at = len(pcm) // 2 // FRAME_BYTES * FRAME_BYTES + FRAME_BYTES // 2  # mid-speech, mid-frame

    asyncio.run(speak(port, undisturbed.id, token, pcm))
    stream_id, final_ack = asyncio.run(speak(port, disturbed.id, token, pcm, drop_at=drop_at))
    assert final_ack == len(pcm) // 2

    def texts(session) -> list[str]:
        return list(
            Utterance.objects.filter(session=session, source=Utterance.Source.LIVE)
            .order_by("sequence")
            .values_list("text", flat=True)
        )

    def closed_recording(session) -> AudioRecording:
        for _ in range(300):
            recording = AudioRecording.objects.get(session=session)
            if recording.duration_s:
                return recording
            time.sleep(0.2)
        raise AssertionError("the recording was not closed")

    recording = closed_recording(disturbed)
    with wave.open(str(tmp_path / "media" / recording.file.name)) as wav:
        assert wav.getnframes() == len(pcm) // 2  # exactly the audio sent, to the sample
    assert set(Utterance.objects.filter(session=disturbed).values_list("stream_id", flat=True)) == {stream_id}
    calm_wer = word_error_rate([clip.text], [" ".join(texts(undisturbed))])
    flaky_wer = word_error_rate([clip.text], [" ".join(texts(disturbed))])
    assert flaky_wer <= calm_wer + 0.02, (texts(undisturbed), texts(disturbed))
    assert calm_wer <= 0.15


@pytest.mark.asyncio
@pytest.mark.usefixtures("live_settings", "no_stream_left_held")
async def test_a_resume_takes_the_stream_over_from_a_socket_the_server_still_thinks_open(live_session, speaker_token):
    """A network that went away without a TCP reset: the server learns of it only at daphne's ping
    timeout, but the client has reconnected long before."""
    clip = dev_clip(CLIP)
    pcm = pcm16(clip.path, seconds_of_silence_after=1.5)
    cut = len(pcm) // 2 // FRAME_BYTES * FRAME_BYTES
    first = stream_communicator(live_session.id, token=speaker_token)
    stream_id = (await start(first))["stream_id"]
    await stream_audio(first, pcm[:cut])
    await ack_of(first, cut // 2)

    second = stream_communicator(live_session.id, token=speaker_token)
    again_from = cut - 16000 * 2  # an older acknowledgement
    resumed = await resume(second, stream_id, again_from // 2)
    assert resumed["resumed"] is True and resumed["stream_id"] == stream_id and resumed["samples"] == cut // 2
    replaced = await receive_until(first, "stt_error", timeout_s=10)
    assert replaced["code"] == "ALREADY_STREAMING"
    assert (await first.receive_output(timeout=5)) == {"type": "websocket.close", "code": 4409}
    await first.send_to(bytes_data=pcm[cut : cut + FRAME_BYTES])  # a late frame of the old socket: dropped

    await stream_audio(second, pcm[again_from:])
    seen: list[dict] = []
    await ack_of(second, len(pcm) // 2, seen=seen)
    await send_json(second, {"type": "stt_stop"})
    finals = await receive_finals_until_idle(second, seen=seen, stream_id=stream_id)
    await first.disconnect()  # (the server hears of the old socket at last: nothing happens)
    await second.disconnect(timeout=30)
    assert finals and all(f["stream_id"] == stream_id for f in finals)
    recording = await database_sync_to_async(AudioRecording.objects.get)(session=live_session)
    assert recorded_samples(recording) == len(pcm) // 2
    saved = await saved_finals(live_session)
    assert {u.stream_id for u in saved} == {stream_id}
    assert word_error_rate([clip.text], [" ".join(u.text for u in saved)]) <= 0.15
