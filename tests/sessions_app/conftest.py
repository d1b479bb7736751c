"""Fixtures of the live-streaming tests: settings, a speaker's token, the engines handed out, daphne servers."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from channels.layers import channel_layers
from django.db import connection
from rest_framework.authtoken.models import Token

from sessions_app.stream_limits import stream_slots
from tests.sessions_app.celery_worker import database_url, start_worker

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def worker(django_db_setup, django_db_blocker, tmp_path_factory):
    """A real Celery worker for the module's tests, on the test database, with its own MEDIA_ROOT
    (yielded with it: point the server's at it)."""
    media = tmp_path_factory.mktemp("media")
    with django_db_blocker.unblock():
        settings_dict = dict(connection.settings_dict)
    running = start_worker(settings_dict, media, tmp_path_factory.mktemp("worker") / "worker.log")
    yield running, media
    running.stop()


@pytest.fixture
def live_settings(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path / "media"
    settings.STT_MAX_AUDIO_SPEED = 8.0
    settings.STT_AUDIO_BURST_S = 5.0
    # Each test runs on its own event loop; a Redis channel layer binds its locks to the loop
    # that first used it, and a lock a finished test's loop still held broke the next test.
    channel_layers.backends.clear()
    yield
    channel_layers.backends.clear()
    assert stream_slots.total == 0, "a stream slot leaked"


@pytest.fixture
def speaker_token(user):
    return Token.objects.create(user=user).key


@pytest.fixture
def engines_handed_out(monkeypatch) -> list:
    """Every engine process the consumers acquire, in order (so a test can signal one)."""
    from sessions_app import live_stream

    handed_out = []
    real_acquire = live_stream.acquire_engine

    def acquire_and_remember(*args, **kwargs):
        engine = real_acquire(*args, **kwargs)
        handed_out.append(engine)
        return engine

    monkeypatch.setattr(live_stream, "acquire_engine", acquire_and_remember)
    return handed_out


@pytest.fixture
def live_session(user, make_session):
    return make_session(user, title="Live test", language="en")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def launch_daphne(log_dir: Path, settings_dict: dict, warm_engines: int, **env: str) -> tuple[int, subprocess.Popen]:
    """A daphne process serving this test run's database; returns its port once it listens.

    ``env`` adds to (or overrides) the server's environment, e.g. ``REDIS_URL``.
    """
    port = _free_port()
    env = {
        **os.environ,
        "DATABASE_URL": database_url(settings_dict),
        "MEDIA_ROOT": str(log_dir / "media"),
        "STT_WARM_ENGINES": str(warm_engines),
        "STT_WARM_ON_START": "true" if warm_engines else "false",
        **env,
    }
    log_path = log_dir / f"daphne-{port}.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port), "transcribe_site.asgi:application"],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return port, process
        time.sleep(0.2)
    process.terminate()
    raise RuntimeError(f"daphne on {port} did not start: {log_path.read_text()}")


def stop_daphne(process: subprocess.Popen) -> None:
    process.terminate()
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()


@pytest.fixture
def start_daphne(tmp_path):
    """Start daphne processes on the test database: ``start(warm_engines, **env) -> port``."""
    processes: list[subprocess.Popen] = []

    def start(warm_engines: int, **env: str) -> int:
        port, process = launch_daphne(tmp_path, connection.settings_dict, warm_engines, **env)
        processes.append(process)
        return port

    yield start
    for process in processes:
        stop_daphne(process)
