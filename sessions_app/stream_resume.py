"""Streams held for a resume: a speaker's connection was lost without ``stt_stop``.

Such a stream is not ended: its engine (with the utterance in progress), its recording and
clock, its slot and its claim on the session stay as they are for ``STT_RESUME_GRACE_S``, and
the audio it had received still reaches the engine. A connection of the same speaker to the same
session whose ``stt_start`` carries ``resume`` with the stream's id takes it over (the consumer
that held it goes on serving it, through the new socket); after the grace period it is ended as a
disconnect ends a stream (its last utterance flushed and saved, the recording closed).

The registry is this process's: a resume that reaches another daphne process (this one was
restarted) finds nothing and gets ``BAD_RESUME`` and a fresh stream.

The audio count of a stream (``samples``, acknowledged by ``stt_ack``) is in the client's sample
rate: the samples of the stream's start that are in the recording file and in the engine
feeder's queue. :class:`AudioCursor` keeps it, and skips what a resumed client sends again.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from sessions_app.protocol import ResumeRequest

__all__ = ["AudioCursor", "HeldStream", "HeldStreams", "LiveSpeakers", "held_streams", "live_speakers"]

log = logging.getLogger(__name__)


@dataclass
class AudioCursor:
    """How much audio a stream holds, and how much of what comes next was already held."""

    samples: int = 0  # held: in the recording file and queued for the engine
    acknowledged: int = 0  # the count the client was last told (stt_ack)
    skip: int = 0  # samples still to drop from the incoming audio (a resumed client sent them again)

    def restart(self) -> None:
        self.samples = self.acknowledged = self.skip = 0

    def resume_from(self, client_samples: int) -> None:
        """The client sends again from ``client_samples``; what the stream holds beyond it is dropped."""
        self.skip = self.samples - client_samples
        self.acknowledged = -1  # (acknowledge again, even an unchanged count)

    def new_audio(self, data: bytes) -> bytes:
        """``data`` without the samples the stream already holds (whole 16-bit samples only)."""
        if not self.skip or len(data) % 2:
            return data
        dropped = min(self.skip, len(data) // 2)
        self.skip -= dropped
        return data[dropped * 2 :]

    def held(self, data: bytes) -> None:
        self.samples += len(data) // 2


@dataclass
class HeldStream:
    """A stream without a connection, waiting for its speaker."""

    stream_id: str
    session_id: str
    user_id: int
    samples: int
    owner: Any  # the consumer that serves the stream (sessions_app.consumers.StreamConsumer)
    expiry: asyncio.Task | None = field(default=None, repr=False)


class HeldStreams:
    def __init__(self) -> None:
        self._held: dict[str, HeldStream] = {}

    def hold(
        self,
        owner: Any,
        *,
        stream_id: str,
        session_id,
        user_id: int,
        samples: int,
        grace_s: float,
        on_expiry: Callable[[], Awaitable[None]],
    ) -> HeldStream:
        """Hold ``owner``'s stream for ``grace_s`` seconds, then call ``on_expiry`` (unless it was taken)."""
        held = HeldStream(stream_id, str(session_id), user_id, samples, owner)

        async def expire() -> None:
            await asyncio.sleep(grace_s)
            if self._held.get(stream_id) is held:
                del self._held[stream_id]
                log.info("stream %s of session %s: no resume within %s s; ending it", stream_id, session_id, grace_s)
                await on_expiry()

        self._held[stream_id] = held
        # (a strong reference: the task must not be collected while it waits)
        held.expiry = asyncio.get_running_loop().create_task(expire())
        return held

    def for_speaker(self, session_id, user_id: int) -> HeldStream | None:
        """The held stream of this speaker in this session (one at most: they share one recording)."""
        return next((h for h in self._held.values() if h.session_id == str(session_id) and h.user_id == user_id), None)

    def check(self, resume: ResumeRequest, session_id, user_id: int, sample_rate: int) -> str | None:
        """Why ``resume`` cannot continue a stream here (the text of ``BAD_RESUME``), or ``None``."""
        held = self._held.get(resume.stream_id)
        if held is None:
            return (
                "No stream with that stream_id is held here: it ended, its grace period passed, or it was held by "
                "another server process. A fresh stream starts; send the audio that was not acknowledged."
            )
        if held.user_id != user_id:
            return "That stream is another speaker's. A fresh stream starts."
        if held.session_id != str(session_id):
            return "That stream belongs to another session. A fresh stream starts."
        if held.owner.sample_rate != sample_rate:
            return f"That stream is at {held.owner.sample_rate} Hz; resume it at the same rate. A fresh stream starts."
        if resume.samples > held.samples:
            return (
                f"The stream holds {held.samples} samples, fewer than the {resume.samples} of the resume. "
                "A fresh stream starts."
            )
        return None

    def take(self, stream_id: str) -> HeldStream | None:
        """Take the stream off hold (its grace period stops), ``None`` if it is no longer held."""
        held = self._held.pop(stream_id, None)
        if held is not None and held.expiry is not None:
            held.expiry.cancel()
        return held

    def __len__(self) -> int:
        return len(self._held)


class LiveSpeakers:
    """The streams of this process by speaker, so that a resume can take one over from a dead socket.

    A client whose network went away may reconnect before the server notices that its old socket
    is gone (no TCP reset reached it: the server learns only at daphne's ping timeout). A resume
    of such a stream moves it to the new connection at once and closes the old socket.
    """

    def __init__(self) -> None:
        self._streams: dict[tuple[str, int], Any] = {}

    def add(self, session_id, user_id: int, owner: Any) -> None:
        self._streams[(str(session_id), user_id)] = owner

    def discard(self, session_id, user_id: int, owner: Any) -> None:
        if self._streams.get((str(session_id), user_id)) is owner:
            del self._streams[(str(session_id), user_id)]

    def get(self, session_id, user_id: int) -> Any | None:
        return self._streams.get((str(session_id), user_id))

    def __len__(self) -> int:
        return len(self._streams)


held_streams = HeldStreams()
live_speakers = LiveSpeakers()
