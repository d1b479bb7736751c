"""Counting live streams, per server process and per user, against the configured limits.

The counts live in this process: each daphne process enforces its own share. (With several
daphne processes the per-user limit is per process; a shared counter in Redis is the next step.)

A stream holds two things: a slot (counted against the server's and the user's limits), given
back as soon as its connection ends, and its speaker's claim on the session (one stream per
speaker per session, since their streams share one recording file), given back once that file
is closed. Both are taken together by :meth:`StreamSlots.admit`, which waits a little when the
limits are full: a client that reconnects at once may be seen before its old connection's end.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import Counter

_RECHECK_S = 0.05

TOO_MANY_STREAMS = "TOO_MANY_STREAMS"
ALREADY_STREAMING = "ALREADY_STREAMING"


class StreamSlots:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._per_user: Counter[int] = Counter()
        self._sessions: set[tuple[str, int]] = set()

    def try_admit(self, session_id, user_id: int, max_total: int, max_per_user: int) -> str | None:
        """Take a slot and the session claim; ``None`` when admitted, else why not."""
        with self._lock:
            if sum(self._per_user.values()) >= max_total or self._per_user[user_id] >= max_per_user:
                return TOO_MANY_STREAMS
            key = (str(session_id), user_id)
            if key in self._sessions:
                return ALREADY_STREAMING
            self._per_user[user_id] += 1
            self._sessions.add(key)
            return None

    async def admit(self, session_id, user_id: int, max_total: int, max_per_user: int, wait_s: float) -> str | None:
        """:meth:`try_admit`, retried for up to ``wait_s`` seconds while the limits are full."""
        deadline = time.monotonic() + wait_s
        while (refused := self.try_admit(session_id, user_id, max_total, max_per_user)) is not None:
            if time.monotonic() >= deadline:
                return refused
            await asyncio.sleep(_RECHECK_S)
        return None

    def release(self, user_id: int) -> None:
        """Give back the stream's slot (its connection ended)."""
        with self._lock:
            self._per_user[user_id] -= 1
            if self._per_user[user_id] <= 0:
                del self._per_user[user_id]

    def release_session(self, session_id, user_id: int) -> None:
        """Give back the speaker's claim on the session (their recording file is closed)."""
        with self._lock:
            self._sessions.discard((str(session_id), user_id))

    @property
    def total(self) -> int:
        with self._lock:
            return sum(self._per_user.values())

    @property
    def claimed_sessions(self) -> int:
        with self._lock:
            return len(self._sessions)


stream_slots = StreamSlots()
