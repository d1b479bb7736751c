"""Odd input from an adversarial probe: every frame and request gets a coded answer, nothing crashes.

Through the real router (``WebsocketCommunicator``) and the API client; the frames above daphne's
message limit go to a real daphne process, since only daphne enforces that limit.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import random
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import websockets
from django.db import connection
from rest_framework.test import APIClient

from sessions_app.models import Utterance
from sessions_app.protocol import CloseCode
from tests.sessions_app.celery_worker import database_url
from tests.sessions_app.live_helpers import (
    caption_communicator,
    receive_until,
    send_json,
    start,
    stream_communicator,
)

ROOT = Path(__file__).resolve().parents[2]
ODD_LANGUAGES = [0, [], {}, False, "", "zz", "eng", "ñañ", "en-US", True, 3.5]

def socket_test(test):
    """A test of the sockets through the real router: its own event loop, committed rows, live settings."""
    for mark in (pytest.mark.usefixtures("live_settings"), pytest.mark.asyncio,
                 pytest.mark.django_db(transaction=True)):
        test = mark(test)
    return test


def _deeply_nested(depth: int) -> str:
    return '{"type": "ping", "x": ' + "[" * depth + "]" * depth + "}"


def _problems(records: list[logging.LogRecord]) -> list[str]:
    """Log records that mean something broke: errors and anything with a traceback."""
    return [f"{r.name}: {r.getMessage()}" for r in records if r.levelno >= logging.ERROR or r.exc_info]


async def _expect_error_and_survive(communicator, code: str, session_id) -> dict:
    message = await receive_until(communicator, "stt_error", timeout_s=30)
    assert message["code"] == code, message
    await send_json(communicator, {"type": "ping"})
    assert (await receive_until(communicator, "pong"))["session_id"] == str(session_id)
    return message


# --- WebSocket frames ------------------------------------------------------------------------------


@socket_test
@pytest.mark.parametrize("endpoint", ["stream", "captions"])
async def test_frames_the_parser_cannot_take_get_bad_message(endpoint, live_session, speaker_token, caplog):
    communicator = (
        stream_communicator(live_session.id, token=speaker_token)
        if endpoint == "stream"
        else caption_communicator(live_session.id, token=live_session.share_token)
    )
    assert (await communicator.connect(timeout=10))[0]
    for frame in [
        _deeply_nested(100_000),  # RecursionError in json.loads
        '{"type": "ping", "n": ' + "9" * 5000 + "}",  # past Python's int digit limit (ValueError)
        '{"type": "' + "x" * (2 * 1024 * 1024) + '"}',  # 2 MiB of text
        "\udcff",  # a lone surrogate
    ]:
        await communicator.send_to(text_data=frame)
        await _expect_error_and_survive(communicator, "BAD_MESSAGE", live_session.id)
    await communicator.disconnect()
    assert _problems(caplog.records) == []


@socket_test
async def test_a_big_binary_frame_on_an_unstarted_stream_gets_not_started(live_session, speaker_token):
    speaker = stream_communicator(live_session.id, token=speaker_token)
    assert (await speaker.connect(timeout=10))[0]
    await speaker.send_to(bytes_data=b"\x01" * (3 * 512 * 1024))  # 1.5 MiB
    await _expect_error_and_survive(speaker, "NOT_STARTED", live_session.id)
    await speaker.disconnect()


@socket_test
@pytest.mark.parametrize("token", ["ñañ", "\u00b2" * 43, "tok\u0000en", "😀" * 10])
async def test_a_share_token_with_non_ascii_characters_is_refused_with_4403(token, live_session):
    from urllib.parse import quote

    viewer = caption_communicator(live_session.id, token=quote(token))
    assert (await viewer.connect(timeout=10))[0]
    error = json.loads(await viewer.receive_from(timeout=10))
    assert error["type"] == "stt_error" and error["code"] == "FORBIDDEN"
    assert (await viewer.receive_output(timeout=5)) == {"type": "websocket.close", "code": CloseCode.FORBIDDEN}


@socket_test
async def test_an_invalid_language_is_refused_at_start_and_a_valid_start_still_works(live_session, speaker_token):
    speaker = stream_communicator(live_session.id, token=speaker_token)
    assert (await speaker.connect(timeout=10))[0]
    for language in ODD_LANGUAGES:
        await send_json(speaker, {"type": "stt_start", "language": language, "sample_rate": 16000})
        error = await _expect_error_and_survive(speaker, "BAD_START", live_session.id)
        assert "language" in error["error"]
    listening = await start(speaker, connect=False)
    assert listening["language"] == "en"
    await send_json(speaker, {"type": "stt_stop"})
    await speaker.disconnect()


def test_the_language_list_is_whispers():
    from faster_whisper.tokenizer import _LANGUAGE_CODES

    from stt_engine.languages import WHISPER_LANGUAGES, normalize_language

    assert set(_LANGUAGE_CODES) == WHISPER_LANGUAGES
    assert normalize_language(" DE ") == "de" and normalize_language("auto") == "auto"
    assert [normalize_language(value) for value in ODD_LANGUAGES] == [None] * len(ODD_LANGUAGES)


# --- the fuzz run ------------------------------------------------------------------------------------


def _random_value(rng: random.Random, depth: int = 0):
    kind = rng.randrange(9 if depth < 3 else 6)
    if kind == 0:
        return rng.randint(-(2**70), 2**70)
    if kind == 1:
        return rng.random() * rng.choice([1, 1e6, 1e308])
    if kind == 2:
        return rng.choice([True, False, None])
    if kind == 3:
        return "".join(chr(rng.randrange(0x20, 0x2FFF)) for _ in range(rng.randrange(12)))
    if kind == 4:
        return rng.choice(["en", "auto", "zz", "", "eng", 16000, 8000, 48000, 7999, "16000"])
    if kind == 5:
        return rng.choice(["stt_start", "stt_flush", "stt_stop", "ping", "stt_final", "caption.event"])
    if kind == 6:
        return [_random_value(rng, depth + 1) for _ in range(rng.randrange(4))]
    return {rng.choice(["type", "language", "sample_rate", "x", "resume"]): _random_value(rng, depth + 1)
            for _ in range(rng.randrange(4))}


def _random_frame(rng: random.Random) -> dict[str, str | bytes]:
    """One frame a confused or hostile client might send: structured, broken or binary."""
    kind = rng.random()
    if kind < 0.30:
        return {"bytes": rng.randbytes(rng.choice([0, 1, 2, 3, 320, 321, 1600, 3200, 65_537]))}
    if kind < 0.70:
        message = {"type": rng.choice(["stt_start", "stt_flush", "stt_stop", "ping", "stt_dance", 7, None])}
        for field in rng.sample(["language", "sample_rate", "stream_id", "resume", "extra"], rng.randrange(3)):
            message[field] = _random_value(rng)
        return {"text": json.dumps(message)}
    if kind < 0.85:
        return {"text": json.dumps(_random_value(rng))}
    if kind < 0.95:
        text = json.dumps({"type": "ping", "x": _random_value(rng)})
        cut = rng.randrange(len(text) + 1)
        return {"text": text[:cut] + "".join(chr(rng.randrange(1, 0x10FFFF)) for _ in range(3))}
    return {"text": _deeply_nested(rng.choice([10, 1000, 50_000]))}


def _is_ping(text: str | None) -> bool:
    try:
        message = json.loads(text) if text is not None else None
    except (ValueError, RecursionError):
        return False
    return isinstance(message, dict) and message.get("type") == "ping"


def _is_pong(output: dict) -> bool:
    return output["type"] == "websocket.send" and json.loads(output.get("text") or "{}").get("type") == "pong"


async def _drain(communicator) -> list[dict]:
    """What the consumer has sent so far, without waiting for more."""
    await asyncio.sleep(0)
    out = []
    while not communicator.output_queue.empty():
        out.append(await communicator.receive_output(timeout=1))
    return out


@socket_test
@pytest.mark.parametrize("endpoint, frames", [("stream", 2500), ("captions", 800)])
async def test_a_seeded_fuzz_run_gets_coded_answers_only(endpoint, frames, live_session, speaker_token, caplog):
    caplog.set_level(logging.WARNING)
    rng = random.Random(20261202)
    communicator = (
        stream_communicator(live_session.id, token=speaker_token)
        if endpoint == "stream"
        else caption_communicator(live_session.id, token=live_session.share_token)
    )
    assert (await communicator.connect(timeout=10))[0]
    outputs: list[dict] = []
    pings = 0
    for _ in range(frames):
        frame = _random_frame(rng)  # (as ASGI input: send_to refuses an empty frame, which clients can send)
        pings += _is_ping(frame.get("text"))
        await communicator.send_input({"type": "websocket.receive", "text": None, "bytes": None, **frame})
        outputs += await _drain(communicator)
        assert not any(o["type"] == "websocket.close" for o in outputs), outputs[-3:]
    await send_json(communicator, {"type": "ping"})
    pings += 1
    while sum(_is_pong(o) for o in outputs) < pings:  # the consumer took every frame in turn
        outputs.append(await communicator.receive_output(timeout=60))
    assert not any(o["type"] == "websocket.close" for o in outputs), outputs[-3:]
    if endpoint == "stream":
        await send_json(communicator, {"type": "stt_stop"})
    await communicator.disconnect()
    messages = [json.loads(o["text"]) for o in outputs if o["type"] == "websocket.send" and "text" in o]
    errors = {m["code"] for m in messages if m["type"] == "stt_error"}
    documented = {"BAD_MESSAGE", "UNKNOWN_TYPE", "BAD_START", "ALREADY_STARTED", "NOT_STARTED", "BAD_AUDIO",
                  "FRAME_TOO_LARGE", "RATE_LIMITED", "READ_ONLY", "BAD_RESUME"}
    assert errors and errors <= documented, errors
    assert _problems(caplog.records) == []


# --- REST ---------------------------------------------------------------------------------------------


def _api(user) -> APIClient:
    client = APIClient()
    client.force_authenticate(user)
    return client


@pytest.mark.django_db
@pytest.mark.parametrize("debug", [False, True])
@pytest.mark.parametrize("path, status", [
    ("/api/sessions/{id}/utterances/?speaker=%C2%B2", 200),
    ("/api/sessions/{id}/utterances/?speaker=99999999999999999999999", 200),
    ("/api/sessions/{id}/utterances/?start_after=abc", 400),
    ("/api/sessions/{id}/utterances/?speaker=a%00b", 400),  # (PostgreSQL refuses NUL in text)
    ("/api/sessions/{id}/utterances/?search=%00", 400),
    ("/api/sessions/not-a-uuid/", 404),
    ("/api/sessions/not-a-uuid/utterances/", 404),
    ("/api/sessions/{id}/utterances/99999999999999999999999/", 404),
    ("/api/jobs/not-a-uuid/", 404),
    ("/api/sessions/{other}/", 404),
])  # fmt: skip
def test_odd_rest_input_gets_a_4xx_in_the_apis_error_shape(
    path, status, debug, settings, user, other_user, make_session
):
    settings.DEBUG = debug
    session = make_session(user, "Mine")
    Utterance.objects.create(session=session, speaker=user, sequence=1, text="hello", start_s=0, end_s=1)
    url = path.format(id=session.id, other=make_session(other_user, "Theirs").id)
    response = _api(user).get(url)
    assert response.status_code == status, response.content[:300]
    if status >= 400:
        body = response.json()
        assert set(body) >= {"code", "error"} and body["code"] in ("NOT_FOUND", "BAD_FILTER"), body


@pytest.mark.django_db
def test_the_caption_page_with_a_non_ascii_token_is_refused_not_a_500(client, user, make_session):
    session = make_session(user, "Mine")
    response = client.get(f"/captions/{session.id}/?token=%C3%B1a%C3%B1")
    assert response.status_code in (403, 404)


@pytest.mark.django_db
@pytest.mark.parametrize("language", ["zz", "eng", "ñañ", "en-US"])
def test_an_upload_or_a_session_in_an_unknown_language_is_refused_with_bad_language(language, user):
    from django.core.cache import cache

    from tests.sessions_app.test_api_jobs import _wav

    cache.clear()  # (the upload throttle's history)
    api = _api(user)
    response = api.post("/api/jobs/", {"file": _wav(), "language": language}, format="multipart")
    assert response.status_code == 400 and response.json()["code"] == "BAD_LANGUAGE", response.json()
    response = api.post("/api/sessions/", {"title": "Odd", "language": language}, format="json")
    assert response.status_code == 400 and response.json()["code"] == "BAD_REQUEST", response.json()
    assert "language" in response.json()["fields"]


# --- frames above daphne's limit ------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def daphne_url(tmp_path):
    """A real daphne (embedded mode, no engines) on the test database."""
    port = _free_port()
    env = {
        **os.environ,
        "DATABASE_URL": database_url(connection.settings_dict),
        "MEDIA_ROOT": str(tmp_path / "media"),
        "STT_WARM_ENGINES": "0",
        "STT_WARM_ON_START": "false",
    }
    env.pop("REDIS_URL", None)
    log_path = tmp_path / "daphne.log"
    process = subprocess.Popen(
        [sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port), "transcribe_site.asgi:application"],
        cwd=ROOT, env=env, stdout=log_path.open("wb"), stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + 60
    while socket.socket().connect_ex(("127.0.0.1", port)) != 0:
        assert time.monotonic() < deadline and process.poll() is None, log_path.read_text()
        time.sleep(0.2)
    yield f"ws://127.0.0.1:{port}"
    process.terminate()
    process.wait(timeout=30)
    log = log_path.read_text(errors="replace")
    assert "Traceback" not in log, log[-3000:]


@pytest.mark.django_db(transaction=True)
def test_frames_above_daphnes_limit_close_with_1009_and_the_server_keeps_serving(daphne_url, user, make_session):
    from rest_framework.authtoken.models import Token

    session = make_session(user, "Big frames", "en")
    token = Token.objects.create(user=user).key
    stream_url = f"{daphne_url}/ws/sessions/{session.id}/stream/"
    headers = {"Authorization": f"Token {token}"}

    async def close_code_after(frame) -> int:
        async with websockets.connect(stream_url, additional_headers=headers, max_size=None) as speaker:
            await speaker.send(json.dumps({"type": "ping"}))
            assert json.loads(await asyncio.wait_for(speaker.recv(), 10))["type"] == "pong"
            await speaker.send(frame)
            with pytest.raises(websockets.ConnectionClosed) as closed:
                await asyncio.wait_for(speaker.recv(), 10)
            return closed.value.rcvd.code if closed.value.rcvd else 1006

    async def still_serving() -> str:
        async with websockets.connect(stream_url, additional_headers=headers) as speaker:
            await speaker.send(json.dumps({"type": "ping"}))
            return json.loads(await asyncio.wait_for(speaker.recv(), 10))["type"]

    assert asyncio.run(close_code_after(b"\x01" * (3 * 512 * 1024))) == 1009  # a 1.5 MiB binary frame
    assert asyncio.run(close_code_after("x" * (2 * 1024 * 1024))) == 1009  # a 2 MiB text frame
    assert asyncio.run(still_serving()) == "pong"


@pytest.mark.django_db
@pytest.mark.parametrize("key", ["ab\x00cd", "ñañ", "x" * 500, "0123456789abcdef0123456789abcdef0123456z"])
def test_a_malformed_api_token_is_a_401_not_a_500(key, user, make_session):
    response = APIClient().get("/api/sessions/", HTTP_AUTHORIZATION=f"Token {key}")
    assert response.status_code == 401 and response.json()["code"] == "NOT_AUTHENTICATED", response.content[:200]
    session = make_session(user, "Mine")
    owner = _api(user)
    assert owner.delete(f"/api/sessions/{session.id}/members/a%00b/").status_code == 404


@socket_test
@pytest.mark.parametrize("key", [b"ab\x00cd", "ñañ".encode("latin-1"), b"x" * 500])
async def test_a_malformed_api_token_on_the_socket_is_refused_with_4403(key, live_session):
    from channels.testing import WebsocketCommunicator

    from transcribe_site.asgi import application

    headers = [(b"origin", b"http://testserver"), (b"authorization", b"Token " + key)]
    speaker = WebsocketCommunicator(application, f"/ws/sessions/{live_session.id}/stream/", headers=headers)
    assert (await speaker.connect(timeout=10))[0]
    assert json.loads(await speaker.receive_from(timeout=10))["code"] == "FORBIDDEN"
    assert (await speaker.receive_output(timeout=5)) == {"type": "websocket.close", "code": CloseCode.FORBIDDEN}
