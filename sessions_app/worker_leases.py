"""Leases on running work: which batch jobs and post-session passes a live worker process is doing.

A worker killed with SIGKILL (out of memory, a redeploy) leaves its job ``running`` and its
session ``refining``, and its message is not redelivered soon: the embedded file broker (kombu's
filesystem transport) deletes a message as it is read, so late acks cannot bring it back, and
Redis keeps an unacknowledged message until its visibility timeout (above the task time limit,
hours). So each task holds a lease while it works, and a worker that starts (and every
``BATCH_RECOVERY_S`` while it runs) queues again the work whose lease nobody holds
(``sessions_app.lost_work``).

The operating system lets a lease go when its process dies, so "nobody holds it" is exact, with
no heartbeat age to guess:

* PostgreSQL: a session-level advisory lock, on a database connection of its own (the lease's);
  the server drops it when that connection closes. Seen from any machine (``pg_locks``). A
  machine that vanishes closes nothing: the lease's connection asks the server for TCP
  keepalives (30 s idle, then 3 probes 10 s apart), so its lease goes within about a minute.
* Other databases (SQLite: the embedded mode, one machine): an ``flock`` on a file under
  ``VAR_DIR/leases``.

A task that finds its lease held returns at once: the same work is being done by a live
worker (a duplicate message, or one queued again while its first delivery was still running).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import time
from pathlib import Path

from django.conf import settings
from django.db import connections

__all__ = ["JOB", "PASS", "Lease", "hold", "is_held"]

JOB = 1  # a batch job (BatchJob id)
PASS = 2  # the post-session pass of a session (TranscriptionSession id)
_NAMESPACE = 0x53540000  # the advisory lock's first key is _NAMESPACE + kind (one int4)
_FILE_LOCK_TRIES = 20  # a checker holds a file's lock for microseconds; a taker tries again meanwhile


def _keys(kind: int, key) -> tuple[int, int]:
    digest = hashlib.blake2b(str(key).encode(), digest_size=4).digest()
    return _NAMESPACE + kind, int.from_bytes(digest, "big") & 0x7FFFFFFF


def _uses_postgres() -> bool:
    return connections["default"].vendor == "postgresql"


def _lease_file(kind: int, key) -> Path:
    return Path(settings.VAR_DIR) / "leases" / f"{kind}-{key}.lock"


class Lease:
    """A held lease; :meth:`release` (or leaving the ``with`` block) lets it go."""

    def __init__(self, kind: int, key, *, connection=None, fd: int | None = None) -> None:
        self.kind, self.key = kind, key
        self._connection = connection
        self._fd = fd

    def release(self) -> None:
        if self._connection is not None:
            connection, self._connection = self._connection, None
            with contextlib.suppress(Exception), connection.cursor() as cursor:
                cursor.execute("SELECT pg_advisory_unlock(%s::int4, %s::int4)", _keys(self.kind, self.key))
            connection.close()
        if self._fd is not None:
            fd, self._fd = self._fd, None
            os.close(fd)  # (closing lets the lock go; the empty file stays: unlinking it would race a taker)

    def __enter__(self) -> Lease:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.release()


def hold(kind: int, key) -> Lease | None:
    """Take the lease of ``key`` for this process, or ``None`` if a live process holds it."""
    if _uses_postgres():
        connection = connections.create_connection("default")
        try:
            with connection.cursor() as cursor:
                cursor.execute(
                    "SELECT set_config('tcp_keepalives_idle', '30', false),"
                    " set_config('tcp_keepalives_interval', '10', false),"
                    " set_config('tcp_keepalives_count', '3', false)"
                )
                cursor.execute("SELECT pg_try_advisory_lock(%s::int4, %s::int4)", _keys(kind, key))
                taken = cursor.fetchone()[0]
        except Exception:
            connection.close()
            raise
        if not taken:
            connection.close()
            return None
        return Lease(kind, key, connection=connection)
    path = _lease_file(kind, key)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    for attempt in range(_FILE_LOCK_TRIES):
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return Lease(kind, key, fd=fd)
        except BlockingIOError:
            if attempt + 1 < _FILE_LOCK_TRIES:
                time.sleep(0.01)
    os.close(fd)
    return None


def is_held(kind: int, key) -> bool:
    """Whether a live process holds the lease of ``key`` (this one included)."""
    if _uses_postgres():
        with connections["default"].cursor() as cursor:
            cursor.execute(
                "SELECT EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND granted"
                " AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
                " AND classid = %s::int8::oid AND objid = %s::int8::oid AND objsubid = 2)",
                _keys(kind, key),
            )
            return bool(cursor.fetchone()[0])
    path = _lease_file(kind, key)
    try:
        fd = os.open(path, os.O_RDWR)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)  # (lets a shared lock go at once)
    return False
