"""Helpers for the WebSocket tests: real clips as PCM frames, communicators through the real router."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import numpy as np
import soundfile
from channels.testing import WebsocketCommunicator

from transcribe_site.asgi import application


def pcm16(path, seconds_of_silence_after: float = 0.0, rate: int = 16000) -> bytes:
    audio, file_rate = soundfile.read(str(path), dtype="int16")
    assert file_rate == rate
    silence = np.zeros(int(seconds_of_silence_after * rate), dtype=np.int16)
    return np.concatenate([audio, silence]).astype("<i2").tobytes()


def frames(pcm: bytes, frame_s: float = 0.1, rate: int = 16000) -> list[bytes]:
    size = int(frame_s * rate) * 2
    return [pcm[i : i + size] for i in range(0, len(pcm), size)]


def stream_communicator(session_id, token: str | None = None, query: str = "") -> WebsocketCommunicator:
    headers = [(b"origin", b"http://testserver")]
    if token:
        headers.append((b"authorization", f"Token {token}".encode()))
    return WebsocketCommunicator(application, f"/ws/sessions/{session_id}/stream/{query}", headers=headers)


def caption_communicator(session_id, token: str | None = None, api_token: str | None = None) -> WebsocketCommunicator:
    path = f"/ws/sessions/{session_id}/captions/" + (f"?token={token}" if token else "")
    headers = [(b"origin", b"http://testserver")]
    if api_token:
        headers.append((b"authorization", f"Token {api_token}".encode()))
    return WebsocketCommunicator(application, path, headers=headers)


async def receive_until(communicator, message_type: str, timeout_s: float = 60.0, seen: list | None = None) -> dict:
    """Receive messages until one of ``message_type`` arrives; collect all in ``seen``."""
    deadline = asyncio.get_running_loop().time() + timeout_s
    while True:
        left = deadline - asyncio.get_running_loop().time()
        if left <= 0:
            raise AssertionError(f"no {message_type} within {timeout_s} s; saw {[m.get('type') for m in seen or []]}")
        message = json.loads(await communicator.receive_from(timeout=left))
        if seen is not None:
            seen.append(message)
        if message.get("type") == message_type:
            return message


async def wait_for(condition, what: str, timeout_s: float = 180.0) -> None:
    """Poll ``condition`` (a plain callable) until it is true: a state decides, not a time."""
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not condition():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"{what} did not happen within {timeout_s} s")
        await asyncio.sleep(0.05)


async def receive_finals_until_idle(
    communicator, timeout_s: float = 120.0, seen: list | None = None, stream_id: str | None = None
) -> list[dict]:
    """After ``stt_stop``: every ``stt_final`` until the engine reports ``idle``.

    With ``stream_id``, the lines of other streams of the session (which every speaker's
    socket gets too) are skipped.
    """
    seen = [] if seen is None else seen
    deadline = asyncio.get_running_loop().time() + timeout_s
    while True:
        left = deadline - asyncio.get_running_loop().time()
        received: list[dict] = []
        message = await receive_until(communicator, "stt_state", timeout_s=left, seen=received)
        seen += [m for m in received if stream_id is None or m.get("stream_id") in (None, stream_id)]
        if message["state"] == "idle" and (stream_id is None or message.get("stream_id") == stream_id):
            return [m for m in seen if m["type"] == "stt_final"]


async def send_json(communicator, message: dict[str, Any]) -> None:
    await communicator.send_to(text_data=json.dumps(message))


async def stream_audio(communicator, pcm: bytes, speed: float = 4.0, frame_s: float = 0.1) -> None:
    """Send PCM in frames at ``speed`` times real time."""
    for frame in frames(pcm, frame_s):
        await communicator.send_to(bytes_data=frame)
        await asyncio.sleep(frame_s / speed)


async def start(communicator, sample_rate: int = 16000, connect: bool = True) -> dict:
    """Connect (unless told not to), send ``stt_start`` and return the ``stt_listening`` answer."""
    if connect:
        connected, _ = await communicator.connect(timeout=10)
        assert connected
    await send_json(communicator, {"type": "stt_start", "language": "en", "sample_rate": sample_rate})
    return await receive_until(communicator, "stt_listening", timeout_s=180)
