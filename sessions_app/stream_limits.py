"""Counting live streams, per server process and per user, against the configured limits.

A stream holds two things: a slot (counted against the server's and the user's limits), given
back as soon as its stream ends (a stream held for a resume keeps it), and its speaker's claim
on the session (one stream per speaker per session, since their streams share one recording
file), given back once that file is closed. Both are taken together by :meth:`StreamSlots.admit`,
which waits a little when the limits are full: a client that reconnects at once may be seen
before its old connection's end.

The server's limit is this process's (it is about this process's engines and cores). The user's
limit and the session claims are shared by every daphne process when ``REDIS_URL`` is set: each
slot is a member of the user's sorted set in Redis, scored by when it expires, and each claim a
key with an expiry. A thread refreshes this process's members every third of ``ttl_s``, so the
slots of a process that was killed expire within ``ttl_s`` instead of blocking their user for
good. Without Redis (the embedded mode, one process) the counts are this process's only. If
Redis cannot be reached the process falls back to its own counts (and logs it) rather than
refusing every speaker.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable

import redis

__all__ = ["ALREADY_STREAMING", "TOO_MANY_STREAMS", "SharedCounts", "StreamSlots", "stream_slots"]

log = logging.getLogger(__name__)

_RECHECK_S = 0.05
SLOT_TTL_S = 15.0  # a killed process's streams stop counting this long after its last refresh

TOO_MANY_STREAMS = "TOO_MANY_STREAMS"
ALREADY_STREAMING = "ALREADY_STREAMING"

# Redis' own clock, so that the processes' clocks need not agree. KEYS: the user's slot set, the
# speaker's session claim. ARGV: the slot's member, the user's limit, the expiry in ms.
_ADMIT = """
local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[2]) then return 1 end
if not redis.call('SET', KEYS[2], ARGV[1], 'NX', 'PX', ARGV[3]) then return 2 end
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[3]), ARGV[1])
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return 0
"""
# KEYS: slot sets and claims, alternating ("" for none); ARGV: the expiry in ms, then the members.
# Only members still there are refreshed: one released meanwhile must not come back.
_REFRESH = """
local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
local ttl = tonumber(ARGV[1])
for i = 1, #KEYS, 2 do
  local member = ARGV[(i + 1) / 2 + 1]
  if KEYS[i] ~= '' then
    if redis.call('ZADD', KEYS[i], 'XX', 'CH', now + ttl, member) == 1 then redis.call('PEXPIRE', KEYS[i], ttl) end
  end
  if KEYS[i + 1] ~= '' then
    if redis.call('GET', KEYS[i + 1]) == member then redis.call('PEXPIRE', KEYS[i + 1], ttl) end
  end
end
return 0
"""
_RELEASE_CLAIM = """
if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) end
return 0
"""


class SharedCounts:
    """The user's slots and the session claims in Redis, shared by every process that uses ``prefix``."""

    def __init__(self, url: str, prefix: str, ttl_s: float = SLOT_TTL_S) -> None:
        self._redis = redis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2)
        self._prefix = prefix
        self.ttl_ms = int(ttl_s * 1000)
        self._admit = self._redis.register_script(_ADMIT)
        self._refresh = self._redis.register_script(_REFRESH)
        self._release_claim = self._redis.register_script(_RELEASE_CLAIM)

    def user_key(self, user_id: int) -> str:
        return f"{self._prefix}:user:{user_id}"

    def claim_key(self, session_id, user_id: int) -> str:
        return f"{self._prefix}:claim:{session_id}:{user_id}"

    def admit(self, session_id, user_id: int, member: str, max_per_user: int) -> str | None:
        keys = [self.user_key(user_id), self.claim_key(session_id, user_id)]
        result = self._admit(keys=keys, args=[member, max_per_user, self.ttl_ms])
        return {0: None, 1: TOO_MANY_STREAMS, 2: ALREADY_STREAMING}[int(result)]

    def refresh(self, slots: list[tuple[int | None, tuple[str, int] | None, str]]) -> None:
        """Push back the expiry of ``(user_id or None, (session_id, user_id) or None, member)``."""
        if not slots:
            return
        keys: list[str] = []
        for user_id, claim, _member in slots:
            keys.append("" if user_id is None else self.user_key(user_id))
            keys.append("" if claim is None else self.claim_key(*claim))
        self._refresh(keys=keys, args=[self.ttl_ms, *[member for *_, member in slots]])

    def release_slot(self, user_id: int, member: str) -> None:
        self._redis.zrem(self.user_key(user_id), member)

    def release_claim(self, session_id, user_id: int, member: str) -> None:
        self._release_claim(keys=[self.claim_key(session_id, user_id)], args=[member])

    def user_count(self, user_id: int) -> int:
        """The user's live slots in every process (expired ones not counted)."""
        now_s, now_us = self._redis.time()
        return int(self._redis.zcount(self.user_key(user_id), now_s * 1000 + now_us // 1000 + 1, "+inf"))


def _shared_from_settings() -> SharedCounts | None:
    from django.conf import settings

    if not getattr(settings, "REDIS_URL", None):
        return None
    # The database's name keeps the counts of two deployments (or test runs) on one Redis apart.
    database = settings.DATABASES["default"].get("NAME") or "default"
    return SharedCounts(settings.REDIS_URL, f"stt:slots:{database}")


class StreamSlots:
    """This process's slots and claims, and (``shared``) their Redis counterparts.

    ``shared`` is a :class:`SharedCounts`, ``None`` for this process's counts only, or by default
    one made from the settings on first use (``REDIS_URL``).
    """

    def __init__(self, shared: SharedCounts | Callable[[], SharedCounts | None] | None = _shared_from_settings):
        self._lock = threading.Lock()
        self._per_user: Counter[int] = Counter()
        self._sessions: set[tuple[str, int]] = set()
        self._shared_source = shared
        self._shared: SharedCounts | None = None
        self._shared_ready = False
        # Redis members of this process: the user's slots (several per user), one per claim.
        self._slot_members: dict[int, list[str]] = {}
        self._claim_members: dict[tuple[str, int], str] = {}
        self._refresher: threading.Thread | None = None

    @property
    def shared(self) -> SharedCounts | None:
        if not self._shared_ready:
            source = self._shared_source
            self._shared = source() if callable(source) else source
            self._shared_ready = True
        return self._shared

    def try_admit(self, session_id, user_id: int, max_total: int, max_per_user: int) -> str | None:
        """Take a slot and the session claim; ``None`` when admitted, else why not."""
        shared = self.shared
        key = (str(session_id), user_id)
        with self._lock:
            if sum(self._per_user.values()) >= max_total:
                return TOO_MANY_STREAMS
            member = None
            if shared is not None:
                member = uuid.uuid4().hex
                try:
                    refused = shared.admit(session_id, user_id, member, max_per_user)
                except redis.RedisError as exc:
                    log.warning("stream limits: Redis unreachable (%s); counting this process's streams only", exc)
                    member = None
                else:
                    if refused is not None:
                        return refused
            if member is None:
                if self._per_user[user_id] >= max_per_user:
                    return TOO_MANY_STREAMS
                if key in self._sessions:
                    return ALREADY_STREAMING
            self._per_user[user_id] += 1
            self._sessions.add(key)
            if member is not None:
                self._slot_members.setdefault(user_id, []).append(member)
                self._claim_members[key] = member
                self._start_refresher()
            return None

    async def admit(self, session_id, user_id: int, max_total: int, max_per_user: int, wait_s: float) -> str | None:
        """:meth:`try_admit`, retried for up to ``wait_s`` seconds while the limits are full."""
        deadline = time.monotonic() + wait_s
        while (refused := await self._try_admit_off_loop(session_id, user_id, max_total, max_per_user)) is not None:
            if time.monotonic() >= deadline:
                return refused
            await asyncio.sleep(_RECHECK_S)
        return None

    async def _try_admit_off_loop(self, *args) -> str | None:
        if self.shared is None:
            return self.try_admit(*args)
        return await asyncio.to_thread(self.try_admit, *args)  # (a call to Redis)

    def release(self, user_id: int) -> None:
        """Give back the stream's slot (its stream ended)."""
        with self._lock:
            self._per_user[user_id] -= 1
            if self._per_user[user_id] <= 0:
                del self._per_user[user_id]
            members = self._slot_members.get(user_id)
            member = members.pop() if members else None
            if members == []:
                del self._slot_members[user_id]
        if member is not None:
            self._shared_call("release_slot", user_id, member)

    def release_session(self, session_id, user_id: int) -> None:
        """Give back the speaker's claim on the session (their recording file is closed)."""
        key = (str(session_id), user_id)
        with self._lock:
            self._sessions.discard(key)
            member = self._claim_members.pop(key, None)
        if member is not None:
            self._shared_call("release_claim", str(session_id), user_id, member)

    def refresh(self) -> None:
        """Push back the expiry of this process's slots and claims in Redis."""
        with self._lock:
            slots = [(user_id, None, m) for user_id, members in self._slot_members.items() for m in members]
            slots += [(None, key, member) for key, member in self._claim_members.items()]
        if slots and self.shared is not None:
            self._shared_call("refresh", slots)

    def _shared_call(self, name: str, *args) -> None:
        try:
            getattr(self.shared, name)(*args)
        except redis.RedisError as exc:  # (it expires in Redis by itself)
            log.warning("stream limits: Redis %s failed: %s", name, exc)

    def _start_refresher(self) -> None:
        if self._refresher is not None and self._refresher.is_alive():
            return

        def run() -> None:
            while True:
                time.sleep(self.shared.ttl_ms / 3000)
                with self._lock:
                    if not self._slot_members and not self._claim_members:
                        self._refresher = None
                        return
                self.refresh()

        self._refresher = threading.Thread(target=run, name="stream-slots-refresh", daemon=True)
        self._refresher.start()

    @property
    def total(self) -> int:
        with self._lock:
            return sum(self._per_user.values())

    @property
    def claimed_sessions(self) -> int:
        with self._lock:
            return len(self._sessions)


stream_slots = StreamSlots()
