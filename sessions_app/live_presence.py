"""Who is connected to speak in a session: for the caption page's "waiting" screen.

A speaker's stream socket holds their claim on the session (``stream_limits``: one stream per
speaker per session) from the moment it is admitted until their recording file is closed, so
the claims say who has a live page open to speak, even before a word is said. With Redis the
claims of every daphne process are keys there (``SharedCounts.claim_key``); without it (the
embedded mode, one process) they are this process's. Caption viewers ask every
``PRESENCE_POLL_S``; answers are cached for ``_CACHE_S`` so that a hundred viewers of one
session cost one lookup.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import redis
from django.conf import settings
from django.contrib.auth import get_user_model

from sessions_app.models import SPEAKER_COLOURS, SessionMember
from sessions_app.stream_limits import stream_slots

__all__ = ["PRESENCE_POLL_S", "connected_speakers"]

log = logging.getLogger(__name__)

PRESENCE_POLL_S = 2.0
_CACHE_S = 1.0
_cache: dict[str, tuple[float, list[dict[str, Any]]]] = {}
_client: redis.Redis | None = None


def _redis() -> redis.Redis:
    global _client
    if _client is None:
        _client = redis.Redis.from_url(settings.REDIS_URL, socket_timeout=2, socket_connect_timeout=2)
    return _client


def _claimed_speaker_ids(session_id) -> set[int]:
    ids: set[int] = set()
    shared = stream_slots.shared
    if shared is not None:
        prefix = shared.claim_key(session_id, "")
        try:
            for key in _redis().scan_iter(match=f"{prefix}*", count=1000):
                tail = key.decode()[len(prefix) :]
                if tail.isdigit():
                    ids.add(int(tail))
        except redis.RedisError as exc:
            log.warning("presence: Redis unreachable (%s); this process's speakers only", exc)
    # This process's claims (all of them without Redis). StreamSlots has no public reader of them.
    with stream_slots._lock:
        ids |= {user_id for sid, user_id in stream_slots._sessions if sid == str(session_id)}
    return ids


def _presence_entry(user, member: SessionMember | None) -> dict[str, Any]:
    username = user.get_username()
    colour = member.colour if member is not None and member.colour is not None else user.pk % SPEAKER_COLOURS
    name = (member.display_name if member is not None else "") or username
    return {"speaker": username, "speaker_id": user.pk, "speaker_name": name, "colour": colour}


def connected_speakers(session_id) -> list[dict[str, Any]]:
    """``[{"speaker": username, "speaker_id": id, "speaker_name": display name, "colour": n}]`` of the
    speakers connected to stream, by username.

    Blocking (Redis and the database): call it off the event loop.
    """
    key = str(session_id)
    cached = _cache.get(key)
    now = time.monotonic()
    if cached is not None and now - cached[0] < _CACHE_S:
        return cached[1]
    ids = _claimed_speaker_ids(session_id)
    users = get_user_model().objects.filter(pk__in=ids).order_by("username") if ids else []
    members = {
        m.user_id: m for m in SessionMember.objects.filter(session_id=session_id, user_id__in=ids).only(
            "user_id", "display_name", "colour"
        )
    } if ids else {}  # fmt: skip
    speakers = [_presence_entry(user, members.get(user.pk)) for user in users]
    _cache[key] = (now, speakers)
    if len(_cache) > 1000:  # (sessions come and go: forget the stale ones)
        for stale in [k for k, (at, _) in _cache.items() if now - at >= _CACHE_S]:
            del _cache[stale]
    return speakers
