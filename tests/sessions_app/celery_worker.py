"""Start a real Celery worker subprocess that uses the same (test) database as this process.

Shared by the worker tests and bench/batch_bench.py. The worker gets a private queue name,
so a development worker running on the same broker never takes the test's tasks.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

BASE_DIR = Path(__file__).resolve().parents[2]
WORKER_OPTIONS = (
    "--pool=solo",
    "--concurrency=1",
    "--without-gossip",
    "--without-mingle",
    "--without-heartbeat",
    "--loglevel=INFO",
)


def database_url(settings_dict: dict) -> str:
    """A DATABASE_URL for the database this process is connected to (the test database in tests)."""
    engine = settings_dict["ENGINE"]
    if engine == "django.db.backends.sqlite3":
        return f"sqlite:///{Path(settings_dict['NAME']).resolve()}"
    if engine.startswith("django.db.backends.postgresql"):
        auth = quote(settings_dict.get("USER") or "")
        if settings_dict.get("PASSWORD"):
            auth += ":" + quote(settings_dict["PASSWORD"])
        host = settings_dict.get("HOST") or "localhost"
        port = settings_dict.get("PORT") or 5432
        return f"postgres://{auth}@{host}:{port}/{quote(settings_dict['NAME'])}"
    raise RuntimeError(f"Do not know how to hand database engine {engine} to a worker.")


@dataclass
class Worker:
    process: subprocess.Popen
    queue: str
    log_path: Path

    @property
    def pid(self) -> int:
        return self.process.pid

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)


def start_worker(
    settings_dict: dict, media_root: Path, log_path: Path, extra_env: dict | None = None, queue: str | None = None
) -> Worker:
    """Start ``celery -A transcribe_site worker --pool=solo`` and wait until it is ready.

    ``queue``: the queue it serves (default: a new private name), for a server started before it.
    """
    queue = queue or f"test-{uuid.uuid4().hex[:10]}"
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "transcribe_site.settings",
        "DATABASE_URL": database_url(settings_dict),
        "MEDIA_ROOT": str(media_root),
        "BATCH_QUEUE": queue,
        **(extra_env or {}),
    }
    env.pop("CELERY_TASK_ALWAYS_EAGER", None)
    log = log_path.open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "transcribe_site", "worker", *WORKER_OPTIONS, "-Q", queue],
        cwd=BASE_DIR,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    log.close()
    worker = Worker(process, queue, log_path)
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"The Celery worker exited with {process.returncode}:\n{worker.log()[-3000:]}")
        if " ready." in worker.log():
            return worker
        time.sleep(0.3)
    worker.stop()
    raise RuntimeError(f"The Celery worker did not become ready:\n{worker.log()[-3000:]}")
