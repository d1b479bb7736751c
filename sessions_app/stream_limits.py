"""Counting live streams, per server process and per user, against the configured limits.

The counts live in this process: each daphne process enforces its own share. (With several
daphne processes the per-user limit is per process; a shared counter in Redis is the next step.)
"""

from __future__ import annotations

import threading
from collections import Counter


class StreamSlots:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._per_user: Counter[int] = Counter()
        self._sessions: set[tuple[str, int]] = set()

    def try_take(self, user_id: int, max_total: int, max_per_user: int) -> bool:
        with self._lock:
            if sum(self._per_user.values()) >= max_total or self._per_user[user_id] >= max_per_user:
                return False
            self._per_user[user_id] += 1
            return True

    def release(self, user_id: int) -> None:
        with self._lock:
            self._per_user[user_id] -= 1
            if self._per_user[user_id] <= 0:
                del self._per_user[user_id]

    def try_claim_session(self, session_id, user_id: int) -> bool:
        """One stream per speaker per session: their streams share one recording file and clock."""
        with self._lock:
            key = (str(session_id), user_id)
            if key in self._sessions:
                return False
            self._sessions.add(key)
            return True

    def release_session(self, session_id, user_id: int) -> None:
        with self._lock:
            self._sessions.discard((str(session_id), user_id))

    @property
    def total(self) -> int:
        with self._lock:
            return sum(self._per_user.values())


stream_slots = StreamSlots()
