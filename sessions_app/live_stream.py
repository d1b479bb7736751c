"""What every live-audio WebSocket endpoint shares: admission, recording, the engine, the relay.

``LiveStreamConsumer`` is the base of our own protocol's ``StreamConsumer`` and of the
OpenAI-compatible realtime endpoint. It holds the stream's slot (``stream_limits``), appends the
audio to the speaker's recording (``recordings``), feeds it to an engine process of the server's
pool (``engine_hosting``), saves finals and revisions (``live_transcripts``) and relays the
engine's events to the session's group. The subclasses speak their protocols: they parse client
messages, call ``begin_stream`` / ``accept_audio`` / ``flush_stream`` / ``end_stream``, and turn
relayed events into their own messages in ``on_engine_message``.

Handlers only check, record and queue: audio is written to disk as it arrives and put in
``commands``, which one task (``_feed_engine``) hands to an engine in order. That task takes an
engine from the pool when a stream starts, so audio sent while an engine gets ready is held in
the queue, not refused; and since no handler waits for an engine, a disconnect is handled at
once and gives the stream's slot back then. After a stop (or the disconnect) the engine finishes
the last final, and goes back to the pool to serve the next stream.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer
from django.conf import settings
from django.db.models import F
from django.db.models.functions import Greatest
from django.utils import timezone

from sessions_app import access
from sessions_app.audio_replay import ReplayBuffer
from sessions_app.engine_hosting import acquire_engine, engine_returning, release_engine
from sessions_app.live_transcripts import do_save_final, do_save_revision, revision_message, utterance_message
from sessions_app.models import TranscriptionSession
from sessions_app.protocol import CloseCode, ErrorCode, ProtocolError, error_message
from sessions_app.recordings import close_recording, open_recording
from sessions_app.speakers import speaker_of
from sessions_app.stream_limits import TOO_MANY_STREAMS, stream_slots
from stt_engine import EngineCrashedError, EngineProcess, SttEngineError, events

__all__ = ["CaptionGroupMixin", "EngineStream", "LiveStreamConsumer", "session_group", "session_if_allowed"]

log = logging.getLogger(__name__)

_STOP_WAIT_S = 60.0  # longest wait for the last final when a stream ends
_cleanups: set[asyncio.Task] = set()  # strong references, so running clean-ups are not collected


@dataclass
class EngineStream:
    """One engine serving (part of) one stream: its events are relayed on the stream's clock."""

    engine: EngineProcess
    clock_offset_s: float  # where the engine's time 0 is on the speaker's recording clock
    idle: asyncio.Event = field(default_factory=asyncio.Event)  # its last event (after stop) was relayed
    relay: asyncio.Task | None = None
    released: bool = False  # given back to the pool
    stream_number: int = 0  # which stream (begin_stream call) of the connection it serves
    # Engine utterance_index -> the Utterance ids that stand for it now (a final's row, or the rows
    # of a revision, which carry the index of the first final they replaced): for revisions.
    saved: dict[int, list[int]] = field(default_factory=dict)
    # The audio it was given since its last final (shared with the engine that replaces it after a crash).
    replay: ReplayBuffer | None = None
    language: str = "auto"
    overrides: dict[str, float | bool] | None = None
    stopped: bool = False  # told to stop: only its last final is still to come
    replaced_by: asyncio.Task | None = None  # a fresh engine that hears a stopped stream's open utterance again


def session_group(session_id) -> str:
    return f"session-{session_id}"


@database_sync_to_async
def _count_stream(session_id, change: int) -> int:
    """Count a stream of the session in (+1) or out (-1); returns how many are still open.

    Kept in the database so that every server process and the post-session pass see it.
    """
    TranscriptionSession.objects.filter(pk=session_id).update(
        streams_open=Greatest(F("streams_open") + change, 0), last_stream_at=timezone.now()
    )
    return TranscriptionSession.objects.filter(pk=session_id).values_list("streams_open", flat=True).first() or 0


def _schedule_auto_end(session_id) -> None:
    from sessions_app.meeting_record.post_session import schedule_auto_end

    schedule_auto_end(session_id)


@database_sync_to_async
def session_if_allowed(user, session_id, share_token: str | None, *, stream: bool) -> TranscriptionSession | None:
    """The session if ``user`` (or the share token) may stream in it (``stream``) or view it."""
    session = TranscriptionSession.objects.filter(pk=session_id).first()
    if session is None:
        return None
    allowed = access.can_stream(user, session) if stream else access.can_view(user, session, share_token)
    return session if allowed else None


class CaptionGroupMixin:
    revoked = False  # closed out by access_changed

    async def caption_event(self, event: dict[str, Any]) -> None:
        await self.send(text_data=json.dumps(event["message"]))

    async def session_ended(self, event: dict[str, Any]) -> None:
        """The session was ended: viewers stay (revisions and the transcript's state still come)."""
        await self.send_json({"type": "stt_session_ended", "session_id": str(self.session_id)})

    async def send_json(self, message: dict[str, Any]) -> None:
        await self.send(text_data=json.dumps(message))

    async def speakers_changed(self, event: dict[str, Any]) -> None:
        """A speaker was renamed (``speakers.do_rename_speaker``): the page shows the new name (``stt_speakers``)."""
        await self.send_json(event["message"])

    async def refuse(self, code: str, text: str, close_code: int) -> None:
        await self.send_json(error_message(code, text, session_id=str(self.session_id)))
        await self.close(code=close_code)

    async def access_changed(self, event: dict[str, Any]) -> None:
        """The session's access changed (new share token, member removed): is this socket still allowed?"""
        if self.revoked:  # (one change may send several notices, e.g. an admin save and the deletion it made)
            return
        if not await self.still_allowed():
            self.revoked = True
            await self.leave_group()
            await self.refuse(ErrorCode.ACCESS_REVOKED, "Your access to this session was revoked.", CloseCode.FORBIDDEN)


class LiveStreamConsumer(CaptionGroupMixin, AsyncWebsocketConsumer):
    """One speaker's live audio in one session: slot, recording, engine and relay (see the module)."""

    def init_stream_state(self, session_id) -> None:
        """Set up the connection's state; call first in ``connect``."""
        self.session_id = session_id
        self.user = self.scope.get("user")
        self.group = session_group(session_id)
        # Tells this connection's lines from those of the same user's other devices.
        self.stream_id = uuid.uuid4().hex[:12]
        self.session: TranscriptionSession | None = None
        self.has_slot = False
        self.started = False  # a stream was begun and not yet ended
        self.starts = 0  # streams begun on this connection
        self.sample_rate = 16000
        self.recording = None
        self.appender = None
        self.commands: asyncio.Queue = asyncio.Queue()
        self.tasks: list[asyncio.Task] = []
        self.feeder: asyncio.Task | None = None
        # The feeder's state: the stream it feeds, and the engine serving it now.
        self.stream_open = False
        self.stream_number = 0  # which begun stream of the connection the open one is
        self.stream_format: tuple[int, str] = (16000, "auto")
        self.stream_overrides: dict[str, float | bool] | None = None
        self.replay: ReplayBuffer | None = None  # the open stream's audio since its last final
        self.current: EngineStream | None = None
        self.finishing: set[asyncio.Task] = set()  # engines still owing a stopped stream's last final
        self.counted: set[int] = set()  # streams counted in the session's streams_open
        self.connected_at = self.last_message_at = self.last_engine_event_at = time.monotonic()
        # What the session's pages call this speaker (their display name) and their colour: set on
        # admission, kept up to date by stt_speakers.
        username = getattr(self.user, "username", "")
        self.speaker_name, self.speaker_colour = username, 0

    async def admit_stream(self) -> bool:
        """Take a stream slot (waiting a little when the limits are full) and join the session's group.

        Call after ``accept`` with ``self.session`` set. Returns whether the connection may stream;
        if not, it was refused and closed.
        """
        refused = await stream_slots.admit(
            self.session_id,
            self.user.pk,
            settings.STT_MAX_STREAMS_PER_SERVER,
            settings.STT_MAX_STREAMS_PER_USER,
            wait_s=settings.STT_ADMISSION_WAIT_S,
        )
        if refused == TOO_MANY_STREAMS:
            await self.refuse(
                ErrorCode.TOO_MANY_STREAMS, "Too many live streams; try again later.", CloseCode.TOO_MANY_STREAMS
            )
            return False
        if refused is not None:
            await self.refuse(
                ErrorCode.ALREADY_STREAMING,
                "You already stream in this session from another connection.",
                CloseCode.ALREADY_STREAMING,
            )
            return False
        self.has_slot = True
        speaker = await database_sync_to_async(speaker_of)(self.session_id, self.user.pk)
        if speaker is not None:
            self.speaker_name, self.speaker_colour = speaker.name, speaker.colour
        await self.channel_layer.group_add(self.group, self.channel_name)
        self.feeder = asyncio.create_task(self._feed_engine())
        self.tasks.append(asyncio.create_task(self._watch_time_limits()))
        # A change of access while this connection waited for its slot sent its notice before the join.
        await self.access_changed({"type": "access.changed"})
        return not self.revoked

    async def session_ended(self, event: dict[str, Any]) -> None:
        """The session was ended (its owner, or by itself): stop the stream, its last final still comes."""
        if self.revoked:
            return
        self.revoked = True
        if self.started:
            await self._stop_stream()
        await self.refuse(ErrorCode.SESSION_ENDED, "The session has ended.", CloseCode.SESSION_ENDED)

    async def still_allowed(self) -> bool:
        return await session_if_allowed(self.user, self.session_id, None, stream=True) is not None

    def learn_speakers(self, message: dict[str, Any]) -> None:
        """Take this speaker's name and colour from an ``stt_speakers`` message."""
        for speaker in message.get("speakers", []):
            if speaker.get("speaker_id") == self.user.pk:
                self.speaker_name, self.speaker_colour = speaker["speaker_name"], speaker["colour"]

    async def speakers_changed(self, event: dict[str, Any]) -> None:
        self.learn_speakers(event["message"])
        await super().speakers_changed(event)

    async def leave_group(self) -> None:
        """(A stream stays in its group until its clean-up: its last final still goes to everyone.)"""

    # --- the stream, as the subclasses' handlers drive it --------------------------------

    async def begin_stream(
        self,
        sample_rate: int,
        language: str,
        *,
        keep_allowance: bool = False,
        engine_overrides: dict[str, float | bool] | None = None,
    ) -> float:
        """Begin a stream of PCM at ``sample_rate``; returns its start on the recording clock.

        ``engine_overrides`` are the stream's own values of ``stt_engine.PER_STREAM_SETTINGS``
        (how its utterances are cut, whether they are diarized), checked by the caller. They stay
        the stream's for every engine that serves it (one that replaces a crashed engine too).

        Audio is allowed from the moment the stream is asked for, however long an engine takes.
        With ``keep_allowance`` (a stream that directly follows the previous one on the same
        connection, at the same rate) the rate limit goes on counting from the earlier start.
        """
        self.sample_rate, self.language = sample_rate, language
        if not keep_allowance:
            self.stream_started_at = time.monotonic()
            self.audio_s_received = 0.0
        if self.appender is None:  # (still open when an earlier start found no engine)
            self.recording, self.appender = await database_sync_to_async(open_recording)(
                self.session_id, self.user.pk, sample_rate
            )
        self.started = True
        self.starts += 1
        self.counted.add(self.starts)
        await _count_stream(self.session_id, +1)
        clock_offset_s = self.appender.duration_s
        self.commands.put_nowait(("start", self.starts, sample_rate, language, clock_offset_s, engine_overrides))
        return clock_offset_s

    async def accept_audio(self, data: bytes, *, max_bytes: int | None = None) -> None:
        """Check a piece of the stream's PCM, put it on disk, then queue it for the engine.

        Raises:
            ProtocolError: ``FRAME_TOO_LARGE`` (above ``max_bytes``, by default
                ``STT_MAX_FRAME_BYTES``), ``BAD_AUDIO`` (odd byte count) or ``RATE_LIMITED``; the
                audio is dropped.
        """
        max_bytes = settings.STT_MAX_FRAME_BYTES if max_bytes is None else max_bytes
        if len(data) > max_bytes:
            raise ProtocolError(ErrorCode.FRAME_TOO_LARGE, f"Audio frames may hold at most {max_bytes} bytes.")
        if len(data) % 2:
            raise ProtocolError(ErrorCode.BAD_AUDIO, "Audio must be whole 16-bit samples (an even byte count).")
        seconds = len(data) / 2 / self.sample_rate
        elapsed = time.monotonic() - self.stream_started_at
        if self.audio_s_received + seconds > settings.STT_AUDIO_BURST_S + settings.STT_MAX_AUDIO_SPEED * elapsed:
            raise ProtocolError(ErrorCode.RATE_LIMITED, "Audio arrives much faster than real time; frame dropped.")
        self.audio_s_received += seconds
        await asyncio.to_thread(self.appender.append, data)  # on disk before anything else happens to it
        self.commands.put_nowait(("audio", data))

    def flush_stream(self) -> None:
        """Ask the engine to finalize the utterance in progress now."""
        self.commands.put_nowait(("flush",))

    async def end_stream(self, *, close_file: bool = True) -> None:
        """End the stream: its engine is told to stop (its last finals still come).

        With ``close_file`` the recording is closed too (a later ``begin_stream`` opens it again
        and appends); without, the next stream goes on writing it.
        """
        self.started = False
        self.commands.put_nowait(("stop",))
        if close_file:
            await self._close_recording()

    async def _stop_stream(self) -> None:
        await self.end_stream()

    async def _uncount(self, stream_number: int) -> None:
        """A stream's engine work is over (or it never found an engine): it no longer counts as open."""
        if stream_number not in self.counted:
            return
        self.counted.discard(stream_number)
        if await _count_stream(self.session_id, -1) == 0:
            with contextlib.suppress(Exception):  # a broker that is down must not break the stream's end
                await asyncio.to_thread(_schedule_auto_end, self.session_id)

    async def _close_recording(self) -> None:
        if self.appender is not None:
            recording, appender, self.recording, self.appender = self.recording, self.appender, None, None
            await database_sync_to_async(close_recording)(recording, appender)

    # --- audio and engine --------------------------------------------------------------

    async def _feed_engine(self) -> None:
        """Hand the stream's commands to an engine, in arrival order, until ``end``.

        The only task that sends to engines. A stream gets an engine when it starts; what
        arrives meanwhile waits in the queue (bounded by the rate limit and ``STT_ENGINE_WAIT_S``).
        """
        while True:
            kind, *args = await self.commands.get()
            if kind == "end":
                return
            if kind == "start":
                self.stream_number, rate, language, clock_s, self.stream_overrides = args
                self.stream_open, self.stream_format = True, (rate, language)
                self.replay = ReplayBuffer(rate, clock_s, settings.STT_REPLAY_MAX_S)
                await self._open_engine_stream()
                continue
            if not self.stream_open:
                continue  # the stream found no engine: its audio is on disk, not transcribed
            if self.current is None and not await self._open_engine_stream():
                continue  # (a crashed engine is replaced at once: its relay queues "replace")
            if kind == "replace":
                continue
            stream = self.current
            if kind == "audio":  # kept first: audio sent into an engine that just died is replayed too
                self.replay.append(args[0])
            with contextlib.suppress(EngineCrashedError):  # its relay sees the crash and reports it
                if kind == "audio":
                    stream.engine.send_audio(args[0])
                elif kind == "flush":
                    stream.engine.flush()
                elif kind == "stop":
                    stream.engine.stop()
            if kind == "stop":
                stream.stopped = True
                self.stream_open, self.current = False, None
                finish = asyncio.create_task(self._finish_engine_stream(stream))
                self.finishing.add(finish)
                finish.add_done_callback(self.finishing.discard)

    async def _open_engine_stream(self) -> bool:
        """Get an engine for the open stream and start it where the engines before it left off.

        An engine that follows a crashed one starts at the end of the stream's last final and is
        first given the audio since then (the utterance that was open), so that utterance's final
        still comes, on the recording clock.
        """
        try:
            engine = await self._start_engine(
                self.stream_format[0], self.stream_format[1], self.stream_overrides, self.replay
            )
        except SttEngineError as exc:
            self.stream_open = False
            if self.starts == self.stream_number:  # the client has not started another stream since
                self.started = False
            await self._uncount(self.stream_number)
            await self._send_error(ErrorCode.ENGINE_UNAVAILABLE, f"No speech engine is available: {exc}")
            return False
        stream = EngineStream(
            engine,
            self.replay.start_s,
            stream_number=self.stream_number,
            replay=self.replay,
            language=self.stream_format[1],
            overrides=self.stream_overrides,
        )
        stream.relay = asyncio.create_task(self._relay_engine_events(stream))
        self.current = stream
        return True

    async def _start_engine(
        self, sample_rate: int, language: str, overrides: dict[str, float | bool] | None, replay: ReplayBuffer
    ) -> EngineProcess:
        """An engine from the pool with the stream started and given the audio to replay (if any).

        An engine that dies before it has its stream (between the pool's check and ours) goes
        back to the pool and the next one is taken, once.

        Raises:
            SttEngineError: no engine could be had (or the second one died too).
        """
        tries = 2
        while True:
            tries -= 1
            engine = await self._acquire_engine()
            try:
                engine.start_stream(sample_rate=sample_rate, language=language, overrides=overrides)
                replayed = replay.audio_to_replay()
                if replayed:
                    log.info("session %s: replaying %.2f s of audio to engine %s", self.session_id,
                             len(replayed) / 2 / sample_rate, engine.pid)  # fmt: skip
                    engine.send_audio(replayed)
                return engine
            except EngineCrashedError:
                await asyncio.to_thread(release_engine, engine)  # (the pool replaces a dead one)
                if not tries:
                    raise
                log.warning("engine process %s died before its stream began; taking another", engine.pid)
            except BaseException:
                await asyncio.to_thread(release_engine, engine)
                raise

    async def _acquire_engine(self) -> EngineProcess:
        """An engine from the pool; if this task is cancelled while it waits, the engine goes back."""
        waiting = asyncio.get_running_loop().run_in_executor(None, acquire_engine)
        try:
            return await asyncio.shield(waiting)
        except asyncio.CancelledError:

            def give_back(done: asyncio.Future) -> None:
                if not done.cancelled() and done.exception() is None:
                    threading.Thread(target=release_engine, args=(done.result(),), daemon=True).start()

            waiting.add_done_callback(give_back)
            raise

    async def _finish_engine_stream(self, stream: EngineStream) -> None:
        """Wait for the stopped stream's last final, then give its engine back to the pool."""
        engine_returning(stream.engine)
        try:
            await asyncio.wait_for(stream.idle.wait(), _STOP_WAIT_S)
        except TimeoutError:
            log.warning("engine process %s sent no idle %s s after stop", stream.engine.pid, _STOP_WAIT_S)
        finally:
            await self._release(stream)
            if stream.replaced_by is None:  # (else the engine that replays its last utterance counts it out)
                await self._uncount(stream.stream_number)

    async def _release(self, stream: EngineStream) -> None:
        if stream.released:
            return
        stream.released = True
        if stream.relay is not None and stream.relay is not asyncio.current_task():
            stream.relay.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await stream.relay
        await asyncio.to_thread(release_engine, stream.engine)  # reset for the next stream, or replaced

    async def _relay_engine_events(self, stream: EngineStream) -> None:
        engine = stream.engine
        loop = asyncio.get_running_loop()
        readable = asyncio.Event()
        loop.add_reader(engine.fileno(), readable.set)
        try:
            while True:
                await readable.wait()
                readable.clear()
                try:
                    engine_events = engine.poll_events(0)
                except EngineCrashedError:
                    loop.remove_reader(engine.fileno())
                    await self._engine_crashed(stream)
                    return
                for event in engine_events:
                    await self._relay(event, stream)
                    if isinstance(event, events.StateChanged) and event.state == "idle":
                        stream.idle.set()
        finally:
            with contextlib.suppress(Exception):
                loop.remove_reader(engine.fileno())

    async def _relay(self, event: events.Event, stream: EngineStream) -> None:
        """Save what the event makes final, then hand its message (our protocol's) on."""
        self.last_engine_event_at = time.monotonic()
        clock_offset_s = stream.clock_offset_s
        if isinstance(event, events.Final):
            if stream.replay is not None:
                stream.replay.final_until(event.end + clock_offset_s)
            if not event.text.strip():
                return
            utterance = await database_sync_to_async(do_save_final)(
                self.session_id, self.user.pk, event.to_message(), clock_offset_s, self.stream_id
            )
            stream.saved[event.utterance_index] = [utterance.pk]
            message = utterance_message(utterance, self.user.username)  # broadcast after the commit
        elif isinstance(event, events.Revised):
            replaces = [pk for index in event.replaces for pk in stream.saved.pop(index, [])]
            payload = event.to_message()["utterances"]
            applied = await database_sync_to_async(do_save_revision)(
                self.session_id, self.user.pk, replaces, payload, clock_offset_s, self.stream_id
            )
            if event.utterances:
                stream.saved[event.utterances[0].utterance_index] = [u.pk for u in applied.created]
            if not applied.created:
                return  # its finals were corrected or replaced meanwhile: nothing changed
            message = revision_message(applied, self.user.username, self.user.pk, self.session_id)
            message["at"] = round(event.at + clock_offset_s, 3)
        else:
            message = event.to_message()
            for key in ("start", "end", "at"):
                if key in message:
                    message[key] = round(message[key] + clock_offset_s, 3)
            if isinstance(event, events.EngineError):
                message["error"] = message.pop("message", "")
        if "at" not in message:
            message["at"] = round(event.at + clock_offset_s, 3)
        message.update(
            session_id=str(self.session_id),
            speaker=self.user.username,
            speaker_name=self.speaker_name,
            speaker_colour=self.speaker_colour,
            speaker_id=self.user.pk,
            stream_id=self.stream_id,
        )
        await self.on_engine_message(message, event, stream)

    async def on_engine_message(self, message: dict[str, Any], event: events.Event, stream: EngineStream) -> None:
        """A relayed engine event as our protocol's ``message`` (times on the recording clock).

        By default it goes to everyone in the session's group (this socket included).
        """
        await self.channel_layer.group_send(self.group, {"type": "caption.event", "message": message})

    async def _engine_crashed(self, stream: EngineStream) -> None:
        """A dead engine goes back to the pool (which replaces it); a fresh one hears the open utterance again.

        For the open stream the feeder takes the fresh engine (``replace``) before its next
        command; a stream already told to stop gets one of its own here, for its last final.
        """
        log.warning("engine process %s died in session %s; replacing it", stream.engine.pid, self.session_id)
        if self.current is stream:
            self.current = None
            self.commands.put_nowait(("replace",))
        elif stream.stopped and stream.replay is not None and stream.replay.duration_s > 0:
            stream.replaced_by = asyncio.create_task(self._replay_stopped(stream))
            self.finishing.add(stream.replaced_by)
            stream.replaced_by.add_done_callback(self.finishing.discard)
        stream.idle.set()  # nothing more will come from it
        await self._release(stream)
        await self._send_error(ErrorCode.ENGINE_CRASHED, "The speech engine crashed; a fresh one takes over.")

    async def _replay_stopped(self, crashed: EngineStream) -> None:
        """A fresh engine for the last utterance of a stopped stream whose engine died before its final."""
        replay = crashed.replay
        try:
            engine = await self._start_engine(replay.sample_rate, crashed.language, crashed.overrides, replay)
        except SttEngineError as exc:
            await self._uncount(crashed.stream_number)
            await self._send_error(ErrorCode.ENGINE_UNAVAILABLE, f"No speech engine is available: {exc}")
            return
        stream = EngineStream(
            engine,
            replay.start_s,
            stream_number=crashed.stream_number,
            replay=replay,
            language=crashed.language,
            overrides=crashed.overrides,
            stopped=True,
        )
        stream.relay = asyncio.create_task(self._relay_engine_events(stream))
        with contextlib.suppress(EngineCrashedError):  # its relay sees the crash and reports it
            engine.stop()
        await self._finish_engine_stream(stream)

    async def _send_error(self, code: str, text: str) -> None:
        await self.send_json(
            error_message(code, text, session_id=str(self.session_id), speaker=getattr(self.user, "username", ""))
        )

    async def _watch_time_limits(self) -> None:
        while True:
            await asyncio.sleep(1.0)
            now = time.monotonic()
            # A client waiting for the finals of audio it sent is not idle: an engine behind
            # real time (a busy server) may take a while, and keeps sending events meanwhile.
            quiet_since = max(self.last_message_at, self.last_engine_event_at)
            waiting_for_engine = bool(self.finishing) or not self.commands.empty()
            if not waiting_for_engine and now - quiet_since > settings.STT_IDLE_TIMEOUT_S:
                await self.refuse(ErrorCode.IDLE_TIMEOUT, "No message for too long; closing.", CloseCode.IDLE_TIMEOUT)
                return
            if now - self.connected_at > settings.STT_MAX_SESSION_S:
                await self.refuse(
                    ErrorCode.SESSION_TOO_LONG,
                    "The stream reached its longest allowed duration.",
                    CloseCode.SESSION_TOO_LONG,
                )
                return

    async def __call__(self, scope, receive, send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            # An error that escapes a handler skips Channels' call of disconnect(); the stream's
            # slot and engine must still be given back, or the server loses capacity for good.
            if getattr(self, "has_slot", False):
                await self.disconnect(1011)  # WebSocket "internal error"

    async def disconnect(self, code: int) -> None:
        if not self.has_slot:
            return
        self.has_slot = False
        # The slot first: the same speaker may be reconnecting already. The engine's remaining
        # work (the last final) is counted in the shared decode load, not as a live stream.
        stream_slots.release(self.user.pk)
        try:
            if self.started:
                await self._stop_stream()  # a disconnect in the middle of speech still saves that utterance
            await self._close_recording()
        finally:
            stream_slots.release_session(self.session_id, self.user.pk)
        # The server may cancel this handler after its close timeout; the last final of a stream
        # cut off mid-speech must still be saved, so the clean-up runs as a task of its own.
        cleanup = asyncio.create_task(self._clean_up())
        _cleanups.add(cleanup)
        cleanup.add_done_callback(_cleanups.discard)
        await asyncio.shield(cleanup)

    async def _clean_up(self) -> None:
        try:
            self.commands.put_nowait(("end",))
            if self.feeder is not None:  # held audio still reaches an engine, then its stop
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(asyncio.shield(self.feeder), settings.STT_ENGINE_WAIT_S + 5)
            deadline = time.monotonic() + _STOP_WAIT_S + 15
            while self.finishing and time.monotonic() < deadline:  # (a crash may add a replaying engine)
                await asyncio.wait(list(self.finishing), timeout=deadline - time.monotonic())
        finally:
            for task in [*self.tasks, self.feeder, *self.finishing]:
                if task is not None:
                    task.cancel()
            if self.current is not None:  # the feeder was cut off in the middle of a stream
                await self._release(self.current)
            for stream_number in list(self.counted):
                await self._uncount(stream_number)
            await self.channel_layer.group_discard(self.group, self.channel_name)
