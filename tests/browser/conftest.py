"""Browser tests: headless Chromium (Debian's) driven by Playwright against a real daphne server.

pytest-django's ``live_server`` speaks WSGI only, so the server here is a daphne subprocess
(HTTP and WebSockets) plus a real Celery worker, both on this test run's database. Test rows
are made in this process under ``transaction=True`` so the server sees them.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import soundfile
from django.conf import settings
from django.db import connection

from tests.sessions_app.celery_worker import BASE_DIR, Worker, database_url, start_worker
from tests.speech import Clip, dev_clip

SCREENSHOTS = BASE_DIR / "test-artifacts" / "screenshots"
PASSWORD = "s3cret-Passw0rd"
SPEECH_CLIP = "jfk"


def chromium_path() -> str | None:
    return os.environ.get("CHROMIUM_PATH") or shutil.which("chromium") or shutil.which("chromium-browser")


def pytest_collection_modifyitems(config, items):
    missing = []
    try:
        import playwright  # noqa: F401
    except ImportError:
        missing.append("the playwright package")
    if chromium_path() is None:
        missing.append("a chromium binary")
    if missing:
        skip = pytest.mark.skip(reason=f"browser tests need {' and '.join(missing)}")
        for item in items:
            if "browser" in item.keywords:
                item.add_marker(skip)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """A failed browser test shows the end of the server's log (what CI prints is all we get)."""
    outcome = yield
    report = outcome.get_result()
    site = item.funcargs.get("site") if hasattr(item, "funcargs") else None
    if report.failed and isinstance(site, Site):
        report.sections.append(("daphne log (last 6000 characters)", site.log()[-6000:]))


@dataclass
class Site:
    url: str
    media: Path
    worker: Worker
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_until_up(url: str, process: subprocess.Popen, site: Site, timeout_s: float = 120) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"daphne exited with {process.returncode}:\n{site.log()[-3000:]}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.3)
    raise RuntimeError(f"daphne did not answer at {url}:\n{site.log()[-3000:]}")


@contextlib.contextmanager
def _daphne(settings_dict: dict, media: Path, worker: Worker, log_path: Path, env_changes: dict[str, str | None]):
    """A daphne subprocess on the test database; ``env_changes`` sets (or, with None, removes) variables."""
    port = _free_port()
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "transcribe_site.settings",
        "DATABASE_URL": database_url(settings_dict),
        "MEDIA_ROOT": str(media),
        "BATCH_QUEUE": worker.queue,
    }
    env.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
    for name, value in env_changes.items():
        if value is None:
            env.pop(name, None)
        else:
            env[name] = value
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port), "transcribe_site.asgi:application"],
            cwd=BASE_DIR,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    running = Site(f"http://127.0.0.1:{port}", media, worker, log_path)
    try:
        _wait_until_up(f"{running.url}/accounts/login/", process, running)
        yield running
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()


@pytest.fixture(scope="session")
def site(django_db_setup, django_db_blocker, tmp_path_factory):
    """A daphne server and a Celery worker on the test database, with a private MEDIA_ROOT."""
    media = tmp_path_factory.mktemp("browser-media")
    logs = tmp_path_factory.mktemp("browser-logs")
    with django_db_blocker.unblock():
        settings_dict = dict(connection.settings_dict)
    worker = start_worker(settings_dict, media, logs / "worker.log")
    try:
        # Development mode (DEBUG=true): a failing page shows Django's traceback in the server's log.
        with _daphne(settings_dict, media, worker, logs / "daphne.log", {"DEBUG": "1", "STT_WARM_ENGINES": "1"}) as up:
            yield up
    finally:
        worker.stop()


@pytest.fixture(scope="session")
def local_run_site(site, django_db_blocker, tmp_path_factory):
    """A second server as `make run` starts it: no DEBUG in the environment (its error pages, its generated
    secret key in var/), and no warm engine (the pages that use it do not stream)."""
    with django_db_blocker.unblock():
        settings_dict = dict(connection.settings_dict)
    logs = tmp_path_factory.mktemp("local-run-logs")
    changes = {"DEBUG": None, "SECRET_KEY": None, "STT_WARM_ENGINES": "0"}
    with _daphne(settings_dict, site.media, site.worker, logs / "daphne.log", changes) as up:
        yield up


@pytest.fixture(scope="session")
def speech_clip() -> Clip:
    return dev_clip(SPEECH_CLIP)


@pytest.fixture(scope="session")
def fake_microphone_wav(speech_clip, tmp_path_factory) -> Path:
    """The clip with 3 s of silence after it: Chromium loops the file, the pause ends the utterance."""
    audio, rate = soundfile.read(str(speech_clip.path), dtype="int16")
    padded = np.concatenate([audio, np.zeros(3 * rate, dtype=np.int16)])
    path = tmp_path_factory.mktemp("fake-mic") / "speech-then-silence.wav"
    soundfile.write(str(path), padded, rate, subtype="PCM_16")
    return path


@pytest.fixture(scope="module")
def browser(fake_microphone_wav):
    """Chromium with the clip as its microphone.

    Playwright's sync API keeps an asyncio loop running in this thread, which makes Django refuse
    ORM calls as "async unsafe"; the tests themselves are plain sync code, so the check is lifted,
    only while a browser is open (module scope), so that other tests keep its protection.
    """
    from playwright.sync_api import sync_playwright

    previous = os.environ.get("DJANGO_ALLOW_ASYNC_UNSAFE")
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=chromium_path(),
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--disable-background-networking",
                "--disable-component-update",
                "--use-fake-ui-for-media-stream",
                "--use-fake-device-for-media-stream",
                f"--use-file-for-fake-audio-capture={fake_microphone_wav}",
                "--autoplay-policy=no-user-gesture-required",
            ],
        )
        try:
            yield chromium
        finally:
            chromium.close()
            if previous is None:
                os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
            else:
                os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = previous


@pytest.fixture
def screenshot():
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)

    def take(page, name: str) -> Path:
        path = SCREENSHOTS / f"{name}.png"
        page.screenshot(path=str(path), full_page=True)
        return path

    return take


def wait_until(page, expression: str, timeout: float = 30_000) -> None:
    """Wait until ``expression`` is truthy in the page.

    Playwright's ``wait_for_function`` polls through ``eval`` in the page, which the site's
    Content-Security-Policy forbids (``script-src 'self'``); ``evaluate`` goes through the
    DevTools protocol, which the policy does not govern, so the tests keep the real policy.
    """
    deadline = time.monotonic() + timeout / 1000
    while not page.evaluate(expression):
        if time.monotonic() > deadline:
            raise AssertionError(f"not true within {timeout / 1000:.0f} s: {expression}")
        time.sleep(0.1)


def sign_in(page, site: Site, username: str, password: str = PASSWORD) -> None:
    page.goto(f"{site.url}/accounts/login/")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(f"{site.url}/")


@pytest.fixture
def broadcast():
    """Send a caption event to a session's group as a speaker's stream does, from this process.

    It reaches the site's daphne only through a channel layer both processes share (Redis: CI sets
    REDIS_URL); with the in-memory layer of the embedded mode the test is skipped. A page's socket
    opens before the server has added it to the session's group, so the send first waits until the
    group has ``listeners`` members. Playwright's sync API keeps an event loop in this thread, so the
    send runs in a thread of its own.
    """
    if "redis" not in settings.CHANNEL_LAYERS["default"]["BACKEND"].lower():
        pytest.skip("needs a channel layer shared with the site's server (set REDIS_URL; CI does)")
    from channels.layers import get_channel_layer

    from sessions_app.live_stream import session_group

    async def wait_and_send(layer, group: str, message: dict, listeners: int) -> None:
        deadline = time.monotonic() + 30
        redis = layer.connection(layer.consistent_hash(group))
        while await redis.zcard(layer._group_key(group)) < listeners:
            if time.monotonic() > deadline:
                raise AssertionError(f"fewer than {listeners} sockets joined {group} within 30 s")
            await asyncio.sleep(0.1)
        await layer.group_send(group, {"type": "caption.event", "message": message})

    def send(message: dict, session_id, listeners: int = 1) -> None:
        errors: list[BaseException] = []

        def run() -> None:
            try:
                asyncio.run(wait_and_send(get_channel_layer(), session_group(session_id), message, listeners))
            except BaseException as exc:  # (re-raised below, in the test's thread)
                errors.append(exc)

        thread = threading.Thread(target=run)
        thread.start()
        thread.join(40)
        if errors:
            raise errors[0]

    return send
