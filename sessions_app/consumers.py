"""WebSocket consumers: a speaker's stream and a viewer's captions.

Thin by design: the protocol, permissions and limits are here; audio goes to disk
(``recordings``) and to the speaker's engine process (``engine_hosting``); finals are saved
by ``live_transcripts``. No model ever runs on this event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
import uuid
from typing import Any
from urllib.parse import parse_qs

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer
from django.conf import settings

from sessions_app import access
from sessions_app.engine_hosting import acquire_engine
from sessions_app.live_transcripts import do_save_final, utterance_message
from sessions_app.models import TranscriptionSession
from sessions_app.protocol import (
    CloseCode,
    ErrorCode,
    ProtocolError,
    error_message,
    parse_client_message,
    parse_start,
)
from sessions_app.recordings import close_recording, open_recording
from sessions_app.stream_limits import stream_slots
from stt_engine import EngineCrashedError, EngineProcess, SttEngineError, events

log = logging.getLogger(__name__)

_STOP_WAIT_S = 60.0  # longest wait for the last final when a stream ends
_cleanups: set[asyncio.Task] = set()  # strong references, so running clean-ups are not collected


def session_group(session_id) -> str:
    return f"session-{session_id}"


@database_sync_to_async
def _session_if_allowed(user, session_id, share_token: str | None, *, stream: bool) -> TranscriptionSession | None:
    session = TranscriptionSession.objects.filter(pk=session_id).first()
    if session is None:
        return None
    allowed = access.can_stream(user, session) if stream else access.can_view(user, session, share_token)
    return session if allowed else None


class _CaptionGroupMixin:
    async def caption_event(self, event: dict[str, Any]) -> None:
        await self.send(text_data=json.dumps(event["message"]))

    async def send_json(self, message: dict[str, Any]) -> None:
        await self.send(text_data=json.dumps(message))

    async def refuse(self, code: str, text: str, close_code: int) -> None:
        await self.send_json(error_message(code, text, session_id=str(self.session_id)))
        await self.close(code=close_code)


class CaptionConsumer(_CaptionGroupMixin, AsyncWebsocketConsumer):
    """Read-only live captions for members and holders of the session's share token."""

    async def connect(self) -> None:
        self.session_id = self.scope["url_route"]["kwargs"]["session_id"]
        query = parse_qs(self.scope.get("query_string", b"").decode())
        token = (query.get("token") or [None])[0]
        self.joined = False
        session = await _session_if_allowed(self.scope.get("user"), self.session_id, token, stream=False)
        await self.accept()
        if session is None:
            await self.refuse(ErrorCode.FORBIDDEN, "You may not view this session.", CloseCode.FORBIDDEN)
            return
        await self.channel_layer.group_add(session_group(self.session_id), self.channel_name)
        self.joined = True
        await self.send_json({"type": "stt_viewing", "session_id": str(self.session_id), "title": session.title})

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        if text_data is not None:
            try:
                message = parse_client_message(text_data)
            except ProtocolError as exc:
                await self.send_json(error_message(exc.code, exc.message, session_id=str(self.session_id)))
                return
            if message["type"] == "ping":
                await self.send_json({"type": "pong", "session_id": str(self.session_id)})
                return
        await self.send_json(
            error_message(ErrorCode.READ_ONLY, "The captions endpoint is read-only.", session_id=str(self.session_id))
        )

    async def disconnect(self, code: int) -> None:
        if self.joined:
            await self.channel_layer.group_discard(session_group(self.session_id), self.channel_name)


class StreamConsumer(_CaptionGroupMixin, AsyncWebsocketConsumer):
    """One speaker's live stream: audio in, the engine's events out to the whole session."""

    async def connect(self) -> None:
        self.session_id = self.scope["url_route"]["kwargs"]["session_id"]
        self.user = self.scope.get("user")
        self.group = session_group(self.session_id)
        # Tells this connection's lines from those of the same user's other devices.
        self.stream_id = uuid.uuid4().hex[:12]
        self.session: TranscriptionSession | None = None
        self.has_slot = False
        self.started = False
        self.engine: EngineProcess | None = None
        self.relayed_engine: EngineProcess | None = None
        # Commands (audio, flush, stop) that arrive while a crashed engine is being replaced:
        # the fresh engine gets them, so no accepted audio goes untranscribed.
        self.held_for_engine: list[tuple[str, bytes | None]] | None = None
        self.clock_offset_s = 0.0
        self.recording = None
        self.appender = None
        self.tasks: list[asyncio.Task] = []
        self.connected_at = self.last_message_at = self.last_engine_event_at = time.monotonic()
        self.stopping = False  # stt_stop sent; the engine still owes this stream's last finals
        self.session = await _session_if_allowed(self.user, self.session_id, None, stream=True)
        await self.accept()
        if self.session is None:
            await self.refuse(
                ErrorCode.FORBIDDEN, "Only signed-in speakers of an open session may stream.", CloseCode.FORBIDDEN
            )
            return
        if not stream_slots.try_take(
            self.user.pk, settings.STT_MAX_STREAMS_PER_SERVER, settings.STT_MAX_STREAMS_PER_USER
        ):
            await self.refuse(ErrorCode.TOO_MANY_STREAMS, "Too many live streams; try again later.",
                              CloseCode.TOO_MANY_STREAMS)
            return
        if not stream_slots.try_claim_session(self.session_id, self.user.pk):
            stream_slots.release(self.user.pk)
            await self.refuse(
                ErrorCode.ALREADY_STREAMING, "You already stream in this session from another connection.",
                CloseCode.ALREADY_STREAMING,
            )
            return
        self.has_slot = True
        await self.channel_layer.group_add(self.group, self.channel_name)
        self.tasks.append(asyncio.create_task(self._watch_time_limits()))

    # --- client messages -------------------------------------------------------------

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        if not self.has_slot:
            return
        self.last_message_at = time.monotonic()
        try:
            if bytes_data is not None:
                await self._on_audio(bytes_data)
                return
            message = parse_client_message(text_data)
            handler = {
                "stt_start": self._on_start,
                "stt_flush": self._on_flush,
                "stt_stop": self._on_stop,
                "ping": self._on_ping,
            }.get(message["type"])
            if handler is None:
                raise ProtocolError(ErrorCode.UNKNOWN_TYPE, f"Unknown message type {message['type']!r}.")
            await handler(message)
        except ProtocolError as exc:
            await self._send_error(exc.code, exc.message)

    async def _on_ping(self, message: dict[str, Any]) -> None:
        await self.send_json({"type": "pong", "session_id": str(self.session_id)})

    async def _on_start(self, message: dict[str, Any]) -> None:
        if self.started:
            raise ProtocolError(ErrorCode.ALREADY_STARTED, "This stream is already started; send stt_stop first.")
        default_language = self.session.language if self.session.language != "auto" else settings.STT_DEFAULT_LANGUAGE
        self.sample_rate, self.language = parse_start(message, default_language)
        self.started = True
        if self.engine is None or not self.engine.is_alive():
            try:
                self.engine = await asyncio.to_thread(acquire_engine)
            except SttEngineError as exc:
                self.started = False
                await self._send_error(ErrorCode.ENGINE_UNAVAILABLE, f"No speech engine is available: {exc}")
                return
        self.recording, self.appender = await database_sync_to_async(open_recording)(
            self.session_id, self.user.pk, self.sample_rate
        )
        self.stream_started_at = time.monotonic()
        self.audio_s_received = 0.0
        self.audio_s_sent = 0.0
        self.idle_after_stop = asyncio.Event()
        self.commands: asyncio.Queue = asyncio.Queue()
        self._start_engine_stream(self.engine, clock_offset_s=self.appender.start_offset_s)
        self.tasks.append(asyncio.create_task(self._forward_commands(self.commands)))
        await self.send_json({
            "type": "stt_listening", "session_id": str(self.session_id), "speaker": self.user.username,
            "sample_rate": self.sample_rate, "language": self.language,
            "clock_offset": round(self.appender.start_offset_s, 3), "stream_id": self.stream_id,
        })

    async def _on_audio(self, data: bytes) -> None:
        if not self.started:
            raise ProtocolError(ErrorCode.NOT_STARTED, "Send stt_start before audio.")
        if len(data) > settings.STT_MAX_FRAME_BYTES:
            raise ProtocolError(
                ErrorCode.FRAME_TOO_LARGE, f"Audio frames may hold at most {settings.STT_MAX_FRAME_BYTES} bytes."
            )
        if len(data) % 2:
            raise ProtocolError(ErrorCode.BAD_AUDIO, "Audio must be whole 16-bit samples (an even byte count).")
        seconds = len(data) / 2 / self.sample_rate
        elapsed = time.monotonic() - self.stream_started_at
        if self.audio_s_received + seconds > settings.STT_AUDIO_BURST_S + settings.STT_MAX_AUDIO_SPEED * elapsed:
            raise ProtocolError(ErrorCode.RATE_LIMITED, "Audio arrives much faster than real time; frame dropped.")
        self.audio_s_received += seconds
        self.commands.put_nowait(("audio", data))

    async def _on_flush(self, message: dict[str, Any]) -> None:
        if not self.started:
            raise ProtocolError(ErrorCode.NOT_STARTED, "Nothing to flush: send stt_start first.")
        self.commands.put_nowait(("flush", None))

    async def _on_stop(self, message: dict[str, Any]) -> None:
        if not self.started:
            raise ProtocolError(ErrorCode.NOT_STARTED, "Nothing to stop: send stt_start first.")
        await self._end_stream()

    # --- audio and engine --------------------------------------------------------------

    async def _forward_commands(self, commands: asyncio.Queue) -> None:
        """Write audio to disk and pass it and the commands to the engine, in arrival order."""
        while True:
            kind, data = await commands.get()
            if kind == "end":
                return
            if kind == "audio":
                await asyncio.to_thread(self.appender.append, data)
            with contextlib.suppress(EngineCrashedError):  # the event pump sees it and replaces the engine
                self._pass_to_engine(kind, data)

    def _pass_to_engine(self, kind: str, data: bytes | None) -> None:
        """Give one command to the engine, or hold it while a crashed engine is replaced."""
        if self.engine is None:
            if self.held_for_engine is not None:
                self.held_for_engine.append((kind, data))
        elif kind == "audio":
            self.engine.send_audio(data)
            self.audio_s_sent += len(data) / 2 / self.sample_rate
        elif kind == "flush":
            self.engine.flush()
        elif kind == "stop":
            self.engine.stop()

    def _start_engine_stream(self, engine: EngineProcess, clock_offset_s: float) -> None:
        """Start a stream in ``engine``; its events are relayed with times moved by ``clock_offset_s``.

        An engine kept from an earlier stream of this connection already has its relay task
        (and the earlier stream's last event, ``idle``, has been relayed before this is called).
        """
        self.clock_offset_s = clock_offset_s
        engine.start_stream(sample_rate=self.sample_rate, language=self.language)
        if engine is not self.relayed_engine:
            self.relayed_engine = engine
            self.tasks.append(asyncio.create_task(self._relay_engine_events(engine)))

    async def _relay_engine_events(self, engine: EngineProcess) -> None:
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
                    await self._replace_crashed_engine(engine)
                    return
                for event in engine_events:
                    await self._relay(event, self.clock_offset_s)
        finally:
            with contextlib.suppress(Exception):
                loop.remove_reader(engine.fileno())

    async def _relay(self, event: events.Event, clock_offset_s: float) -> None:
        self.last_engine_event_at = time.monotonic()
        if isinstance(event, events.Final):
            if not event.text.strip():
                return
            utterance = await database_sync_to_async(do_save_final)(
                self.session_id, self.user.pk, event.to_message(), clock_offset_s
            )
            message = utterance_message(utterance, self.user.username)  # broadcast after the commit
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
            session_id=str(self.session_id), speaker=self.user.username, speaker_id=self.user.pk,
            stream_id=self.stream_id,
        )
        await self.channel_layer.group_send(self.group, {"type": "caption.event", "message": message})
        if isinstance(event, events.StateChanged) and event.state == "idle":
            self.idle_after_stop.set()

    async def _replace_crashed_engine(self, dead: EngineProcess) -> None:
        log.warning("engine process %s died in session %s; replacing it", dead.pid, self.session_id)
        if self.engine is dead:
            self.engine = None
            self.held_for_engine = []
        await asyncio.to_thread(dead.close)
        await self._send_error(ErrorCode.ENGINE_CRASHED, "The speech engine crashed; a fresh one takes over.")
        if not self.started:
            self.held_for_engine = None
            self.idle_after_stop.set()
            return
        try:
            fresh = await asyncio.to_thread(acquire_engine)
        except SttEngineError as exc:
            self.held_for_engine = None
            await self._send_error(ErrorCode.ENGINE_UNAVAILABLE, f"No speech engine is available: {exc}")
            return
        # The fresh engine's clock starts at the audio it has not seen yet; it first gets what
        # arrived during the replacement (no await in between, so nothing overtakes it).
        held, self.held_for_engine = self.held_for_engine or [], None
        self.engine = fresh
        self._start_engine_stream(fresh, clock_offset_s=self.appender.start_offset_s + self.audio_s_sent)
        with contextlib.suppress(EngineCrashedError):  # its event pump reports this crash in turn
            for kind, data in held:
                self._pass_to_engine(kind, data)

    async def _end_stream(self) -> None:
        """Flush the engine, wait for its last final, close the recording. The engine stays for a restart."""
        if not self.started:
            return
        self.started = False
        self.idle_after_stop.clear()
        self.commands.put_nowait(("stop", None))
        self.commands.put_nowait(("end", None))
        if self.engine is not None:
            self.stopping = True
            try:
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(self.idle_after_stop.wait(), _STOP_WAIT_S)
            finally:
                self.stopping = False
        await asyncio.sleep(0)
        await database_sync_to_async(close_recording)(self.recording, self.appender)

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
            if not self.stopping and now - quiet_since > settings.STT_IDLE_TIMEOUT_S:
                await self.refuse(ErrorCode.IDLE_TIMEOUT, "No message for too long; closing.", CloseCode.IDLE_TIMEOUT)
                return
            if now - self.connected_at > settings.STT_MAX_SESSION_S:
                await self.refuse(
                    ErrorCode.SESSION_TOO_LONG, "The stream reached its longest allowed duration.",
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
        stream_slots.release(self.user.pk)
        stream_slots.release_session(self.session_id, self.user.pk)
        # The server may cancel this handler after its close timeout; the last final of a stream
        # cut off mid-speech must still be saved, so the clean-up runs as a task of its own.
        cleanup = asyncio.create_task(self._clean_up())
        _cleanups.add(cleanup)
        cleanup.add_done_callback(_cleanups.discard)
        await asyncio.shield(cleanup)

    async def _clean_up(self) -> None:
        try:
            await self._end_stream()  # a disconnect in the middle of speech still saves that utterance
        finally:
            for task in self.tasks:
                task.cancel()
            if self.engine is not None:
                engine, self.engine = self.engine, None
                await asyncio.to_thread(engine.close)
            await self.channel_layer.group_discard(self.group, self.channel_name)
