"""WebSocket consumers: a speaker's stream and a viewer's captions.

Thin by design: the protocol, permissions and limits are here; what every live-audio endpoint
shares (the stream's slot, its recording, the engine process of the server's pool, saving finals
and relaying the engine's events) is ``live_stream.LiveStreamConsumer``, and holding a stream
whose connection was lost for a resume is ``stream_resume``. No model ever runs on this event
loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from typing import Any
from urllib.parse import parse_qs

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer
from django.conf import settings

from sessions_app.live_presence import PRESENCE_POLL_S, connected_speakers
from sessions_app.live_stream import (
    CaptionGroupMixin,
    EngineStream,
    LiveStreamConsumer,
    session_group,
    session_if_allowed,
)
from sessions_app.models import TranscriptionSession
from sessions_app.protocol import (
    CloseCode,
    ErrorCode,
    ProtocolError,
    ResumeRequest,
    error_message,
    parse_client_message,
    parse_diarize,
    parse_resume,
    parse_start,
)
from sessions_app.stream_resume import AudioCursor, held_streams, live_speakers
from stt_engine import events

__all__ = ["CaptionConsumer", "StreamConsumer", "session_group"]


class CaptionConsumer(CaptionGroupMixin, AsyncWebsocketConsumer):
    """Read-only live captions for members and holders of the session's share token.

    ``stt_viewing`` names the speakers connected to stream (``speakers``); ``stt_presence``
    tells of every change of them after that (``live_presence``).
    """

    presence_task: asyncio.Task | None = None

    async def connect(self) -> None:
        self.session_id = self.scope["url_route"]["kwargs"]["session_id"]
        query = parse_qs(self.scope.get("query_string", b"").decode())
        token = self.share_token = (query.get("token") or [None])[0]
        self.joined = False
        session = await session_if_allowed(self.scope.get("user"), self.session_id, token, stream=False)
        await self.accept()
        if session is None:
            await self.refuse(ErrorCode.FORBIDDEN, "You may not view this session.", CloseCode.FORBIDDEN)
            return
        await self.channel_layer.group_add(session_group(self.session_id), self.channel_name)
        self.joined = True
        speakers = await database_sync_to_async(connected_speakers)(self.session_id)
        await self.send_json(
            {"type": "stt_viewing", "session_id": str(self.session_id), "title": session.title, "speakers": speakers}
        )
        self.presence_task = asyncio.create_task(self._follow_presence(speakers))

    async def _follow_presence(self, speakers: list[dict[str, Any]]) -> None:
        """Send ``stt_presence`` whenever the connected speakers change."""
        while True:
            await asyncio.sleep(PRESENCE_POLL_S)
            try:
                now = await database_sync_to_async(connected_speakers)(self.session_id)
            except Exception:  # (a blip of Redis or the database: ask again next time)
                continue
            if now != speakers:
                speakers = now
                await self.send_json({"type": "stt_presence", "session_id": str(self.session_id), "speakers": now})

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

    async def still_allowed(self) -> bool:
        user = self.scope.get("user")
        return await session_if_allowed(user, self.session_id, self.share_token, stream=False) is not None

    async def leave_group(self) -> None:
        if self.presence_task is not None:
            self.presence_task.cancel()
            self.presence_task = None
        if self.joined:
            self.joined = False
            await self.channel_layer.group_discard(session_group(self.session_id), self.channel_name)

    async def disconnect(self, code: int) -> None:
        await self.leave_group()


class StreamConsumer(LiveStreamConsumer):
    """One speaker's live stream (our protocol): audio in, the engine's events out to the whole session.

    The handlers check the protocol and drive the stream of ``LiveStreamConsumer``: ``stt_start``
    begins it, binary frames are its audio, ``stt_flush`` finalizes the utterance, ``stt_stop``
    ends it (``stt_start`` may follow). ``stt_ack`` tells the client how much of its audio is held.
    ``stt_start``'s ``"diarize"`` (else the session's ``room_microphone``) has the engine label each
    utterance with its voice (``speaker_label``); ``stt_listening`` says whether it does.

    A connection lost in the middle of a stream (no ``stt_stop``, not closed by the server, nor by
    the client with 1000 or 1001, nor by an error) leaves the stream held (``stream_resume``): this consumer goes on
    serving it without a socket. A later connection of the speaker that resumes it becomes its
    ``front``: that connection hands every message on to this consumer (its ``backend``), and
    what this consumer sends goes out through it.
    """

    front: StreamConsumer | None = None  # the connection that carries this (resumed) stream now
    backend: StreamConsumer | None = None  # the (resumed) stream that this connection carries
    detached = False  # this stream's socket is gone: what it sends is dropped (until a resume)
    waiting_speaker = False  # this speaker has a stream already (held, or on another socket): stt_start decides
    socket_replaced = False  # this stream's own socket was taken over by a resume: what comes on it is dropped
    closed_by_server = False
    diarize = False  # the stream's utterances get speaker labels (stt_start's "diarize", or a room microphone)
    ack_task: asyncio.Task | None = None
    admission: asyncio.Task | None = None

    async def connect(self) -> None:
        self.init_stream_state(self.scope["url_route"]["kwargs"]["session_id"])
        self.cursor = AudioCursor()
        self.clock_offset_s = 0.0
        self.missed: list[dict[str, Any]] = []  # finals and revisions made while the stream was held
        self.session = await session_if_allowed(self.user, self.session_id, None, stream=True)
        await self.accept()
        if self.session is None:
            await self.refuse(
                ErrorCode.FORBIDDEN, "Only signed-in speakers of an open session may stream.", CloseCode.FORBIDDEN
            )
            return
        if held_streams.for_speaker(self.session_id, self.user.pk) is not None:
            # The held stream's slot and claim are this speaker's: their stt_start says what becomes of it.
            self.waiting_speaker = True
            self.tasks.append(asyncio.create_task(self._watch_time_limits()))
            return
        if live_speakers.get(self.session_id, self.user.pk) is not None:
            # The speaker's stream is on another socket of this process, which may be dead without
            # the server knowing yet (no TCP reset came): a resume takes the stream over, else this
            # connection is admitted (or refused) as any other once STT_ADMISSION_WAIT_S has passed.
            self.waiting_speaker = True
            self.tasks.append(asyncio.create_task(self._watch_time_limits()))
            self.admission = asyncio.create_task(self._admit_unless_resumed())
            return
        if await self.admit_stream():
            live_speakers.add(self.session_id, self.user.pk, self)

    async def _admit_unless_resumed(self) -> None:
        await asyncio.sleep(settings.STT_ADMISSION_WAIT_S)
        if not self.waiting_speaker or held_streams.for_speaker(self.session_id, self.user.pk) is not None:
            return  # (resumed, or the other socket was seen lost: stt_start decides)
        self.waiting_speaker = False
        self._cancel_tasks()
        if await self.admit_stream():
            live_speakers.add(self.session_id, self.user.pk, self)

    # --- client messages -------------------------------------------------------------

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        if self.backend is not None:
            await self.backend.handle(text_data=text_data, bytes_data=bytes_data)
            return
        if self.socket_replaced:
            return  # (late frames of a socket that a resume replaced: the client sends them again)
        if self.admission is not None and not self.admission.done() and not self.waiting_speaker:
            await asyncio.shield(self.admission)  # (being admitted: its messages wait, as during connect)
        await self.handle(text_data=text_data, bytes_data=bytes_data)

    async def handle(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        """A client message of this stream, from its own socket or from the connection that resumed it."""
        if self.backend is not None:
            await self.backend.handle(text_data=text_data, bytes_data=bytes_data)
            return
        if not (self.has_slot or self.waiting_speaker):
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
        if self.waiting_speaker and self.admission is not None:
            self.admission.cancel()  # (still asleep) this stt_start decides
        default_language = self.session.language if self.session.language != "auto" else settings.STT_DEFAULT_LANGUAGE
        sample_rate, language = parse_start(message, default_language)
        room_microphone = await _room_microphone(self.session_id) if message.get("diarize") is None else False
        diarize = parse_diarize(message, room_microphone)
        try:
            resume = parse_resume(message)
        except ProtocolError as exc:  # (a fresh stream starts all the same)
            resume = None
            await self._send_error(exc.code, exc.message)
        if resume is not None:
            problem = held_streams.check(resume, self.session_id, self.user.pk, sample_rate)
            if problem is None and not self.waiting_speaker:  # (cannot be: the held stream has the claim)
                problem = "This connection already has a stream of its own. A fresh stream starts."
            if problem is None:
                await self._carry(held_streams.take(resume.stream_id).owner, resume.samples)
                return
            live = live_speakers.get(self.session_id, self.user.pk) if self.waiting_speaker else None
            if live is not None and live.can_be_taken_over(resume, sample_rate):
                await live.leave_socket()
                await self._carry(live, resume.samples)
                return
            await self._send_error(ErrorCode.BAD_RESUME, problem)
        if self.waiting_speaker and not await self._end_held_and_admit():
            return
        self.cursor.restart()
        self.diarize = diarize
        self.clock_offset_s = await self.begin_stream(
            sample_rate, language, engine_overrides={"diarize": True} if diarize else None
        )
        await self._send_listening(resumed=False)
        self._start_acks()

    async def _on_audio(self, data: bytes) -> None:
        if not self.started:
            raise ProtocolError(ErrorCode.NOT_STARTED, "Send stt_start before audio.")
        data = self.cursor.new_audio(data)  # (after a resume: without what the stream already holds)
        if not data:
            return
        await self.accept_audio(data)
        self.cursor.held(data)

    async def _on_flush(self, message: dict[str, Any]) -> None:
        if not self.started:
            raise ProtocolError(ErrorCode.NOT_STARTED, "Nothing to flush: send stt_start first.")
        self.flush_stream()

    async def _on_stop(self, message: dict[str, Any]) -> None:
        if not self.started:
            raise ProtocolError(ErrorCode.NOT_STARTED, "Nothing to stop: send stt_start first.")
        await self._stop_stream()
        if self.cursor.samples != self.cursor.acknowledged:
            await self._ack()

    async def _send_listening(self, *, resumed: bool) -> None:
        await self.send_json(
            {
                "type": "stt_listening",
                "session_id": str(self.session_id),
                "speaker": self.user.username,
                "sample_rate": self.sample_rate,
                "language": self.language,
                "clock_offset": round(self.clock_offset_s, 3),
                "stream_id": self.stream_id,
                "resumed": resumed,
                "samples": self.cursor.samples,
                "diarize": self.diarize,
            }
        )

    # --- acknowledgements -------------------------------------------------------------

    def _start_acks(self) -> None:
        if self.ack_task is None or self.ack_task.done():
            self.ack_task = asyncio.create_task(self._send_acks())
            self.tasks.append(self.ack_task)

    async def _send_acks(self) -> None:
        while True:
            if self.cursor.samples != self.cursor.acknowledged:
                await self._ack()
            await asyncio.sleep(ACK_EVERY_S)

    async def _ack(self) -> None:
        self.cursor.acknowledged = self.cursor.samples
        await self.send_json(
            {
                "type": "stt_ack",
                "session_id": str(self.session_id),
                "stream_id": self.stream_id,
                "samples": self.cursor.samples,
            }
        )

    # --- holding and resuming ---------------------------------------------------------

    async def _carry(self, stream: StreamConsumer, client_samples: int) -> None:
        """This connection resumes ``stream``: from now on it only carries that stream's messages."""
        self._cancel_tasks()
        self.waiting_speaker = False
        self.backend = stream
        self.has_slot = True  # (the held stream's: given back when it ends)
        await self.channel_layer.group_add(self.group, self.channel_name)
        await stream.resume_on(self, client_samples)

    async def resume_on(self, front: StreamConsumer, client_samples: int) -> None:
        """Serve this held stream through ``front``; the client sends its audio again from ``client_samples``."""
        self.front, self.detached, self.closed_by_server = front, False, False
        self.cursor.resume_from(client_samples)
        self.last_message_at = time.monotonic()
        self.tasks.append(asyncio.create_task(self._watch_time_limits()))
        await self._send_listening(resumed=True)
        missed, self.missed = self.missed, []
        for message in missed:  # (the session's other sockets had them as they came)
            await self.send_json(message)
        self._start_acks()  # (its first acknowledges at once)

    async def _end_held_and_admit(self) -> bool:
        """The speaker starts afresh while their stream is held: end that one, then take a slot for this one.

        (If their stream is on another live socket instead, admission refuses this one, as before resumes.)
        """
        self.waiting_speaker = False
        self._cancel_tasks()
        held = held_streams.for_speaker(self.session_id, self.user.pk)
        if held is not None and held_streams.take(held.stream_id) is not None:
            # Its slot and claim come back at once and once its recording is closed: admission waits for them.
            ending = asyncio.create_task(held.owner.end_held_stream())
            _endings.add(ending)
            ending.add_done_callback(_endings.discard)
        if not await self.admit_stream():
            return False
        live_speakers.add(self.session_id, self.user.pk, self)
        return True

    def can_be_taken_over(self, resume: ResumeRequest, sample_rate: int) -> bool:
        """Whether ``resume`` names this stream, served by a socket, with no more samples than it holds."""
        return (
            not self.detached
            and self.started
            and resume.stream_id == self.stream_id
            and sample_rate == self.sample_rate
            and resume.samples <= self.cursor.samples
        )

    async def leave_socket(self) -> None:
        """A resume takes this stream over: close the socket that serves it now (likely dead), keep the stream."""
        self._cancel_tasks()
        text = "This stream was resumed on another connection."
        if self.front is not None:
            old, self.front = self.front, None
            old.backend, old.has_slot = None, False
            old._cancel_tasks()
            await old.channel_layer.group_discard(old.group, old.channel_name)
        else:
            old = self
            self.socket_replaced = True
            await self.channel_layer.group_discard(self.group, self.channel_name)
        self.detached = True  # (until resume_on)
        error = error_message(ErrorCode.ALREADY_STREAMING, text, session_id=str(self.session_id))
        await AsyncWebsocketConsumer.send(old, text_data=json.dumps(error))
        await AsyncWebsocketConsumer.close(old, code=CloseCode.ALREADY_STREAMING)

    async def end_held_stream(self) -> None:
        """End the held stream as a disconnect would: its last utterance is flushed and saved, the recording closed."""
        live_speakers.discard(self.session_id, self.user.pk, self)
        await LiveStreamConsumer.disconnect(self, 1001)

    async def _hold(self) -> None:
        self._cancel_tasks()  # its time limits and acknowledgements wait for a connection
        await self.channel_layer.group_discard(self.group, self.channel_name)
        held_streams.hold(
            self,
            stream_id=self.stream_id,
            session_id=self.session_id,
            user_id=self.user.pk,
            samples=self.cursor.samples,
            grace_s=settings.STT_RESUME_GRACE_S,
            on_expiry=self.end_held_stream,
        )

    def _cancel_tasks(self) -> None:
        for task in self.tasks:
            task.cancel()
        self.tasks.clear()
        self.ack_task = None  # (a cancelled task is not done until the loop has run it)

    async def connection_lost(self, code: int, *, closed_by_server: bool = False) -> None:
        """This stream's socket is gone: hold the stream if it was cut off in the middle, else end it."""
        self.front = None
        if self.detached:
            return  # (held already, or ended)
        self.detached = True  # (what the stream still sends has nobody to go to)
        closed_by_server = closed_by_server or self.closed_by_server
        if (
            self.has_slot
            and self.started
            and not self.revoked
            and not closed_by_server
            and code not in _ENDS_NOW
            and settings.STT_RESUME_GRACE_S > 0
        ):
            await self._hold()
            return
        live_speakers.discard(self.session_id, self.user.pk, self)
        await LiveStreamConsumer.disconnect(self, code)

    # --- the socket, for a stream that may outlive it -----------------------------------

    async def on_engine_message(self, message: dict[str, Any], event: events.Event, stream: EngineStream) -> None:
        if self.detached and message["type"] in _KEPT_WHILE_HELD and len(self.missed) < _MAX_KEPT:
            self.missed.append(message)
        await super().on_engine_message(message, event, stream)

    async def send(self, text_data: str | None = None, bytes_data: bytes | None = None, close: bool = False) -> None:
        if self.front is not None:
            await self.front.send(text_data=text_data, bytes_data=bytes_data, close=close)
        elif not self.detached:
            await super().send(text_data=text_data, bytes_data=bytes_data, close=close)
        elif text_data is not None and '"stt_error"' in text_data and len(self.missed) < _MAX_KEPT:
            # Held: an engine's crash or absence is told on resume (the finals are saved and go
            # to the session's other sockets as they come).
            self.missed.append(json.loads(text_data))

    async def close(self, code: int | None = None, reason: str | None = None) -> None:
        self.closed_by_server = True
        if self.front is not None:
            await self.front.close(code, reason)
        elif not self.detached:
            await super().close(code, reason)

    # The session's group messages: a connection that carries a resumed stream hands them on; the
    # stream's own channel left the group when its socket went (what was on its way is dropped).

    def _off_its_socket(self) -> bool:
        return self.front is not None or self.detached or self.socket_replaced

    async def caption_event(self, event: dict[str, Any]) -> None:
        if not self._off_its_socket():
            await super().caption_event(event)

    async def session_ended(self, event: dict[str, Any]) -> None:
        if self.backend is not None:
            await LiveStreamConsumer.session_ended(self.backend, event)
        elif not self._off_its_socket():
            await super().session_ended(event)

    async def access_changed(self, event: dict[str, Any]) -> None:
        if self.backend is not None:
            await LiveStreamConsumer.access_changed(self.backend, event)
        elif not self._off_its_socket():
            await super().access_changed(event)

    async def speakers_changed(self, event: dict[str, Any]) -> None:
        if self.backend is not None:  # (the resumed stream's messages name the speaker as this one tells)
            self.backend.learn_speakers(event["message"])
            await self.send_json(event["message"])
        elif not self._off_its_socket():
            await super().speakers_changed(event)
        else:
            self.learn_speakers(event["message"])

    async def disconnect(self, code: int) -> None:
        if self.socket_replaced:
            return  # (the stream goes on through the connection that resumed it)
        if self.admission is not None and not self.admission.done():
            if self.waiting_speaker:
                self.admission.cancel()  # (asleep: it took nothing)
            else:  # (taking a slot: let it, then give it back below)
                with contextlib.suppress(Exception):
                    await asyncio.shield(self.admission)
        if self.waiting_speaker:  # (it took nothing)
            self.waiting_speaker = False
            self._cancel_tasks()
            return
        if self.backend is not None:
            stream, self.backend = self.backend, None
            self.has_slot = False
            self._cancel_tasks()
            await self.channel_layer.group_discard(self.group, self.channel_name)
            await stream.connection_lost(code, closed_by_server=self.closed_by_server)
            return
        await self.connection_lost(code)


@database_sync_to_async
def _room_microphone(session_id) -> bool:
    """The session's setting as it is now (its owner may have changed it since this socket connected)."""
    return bool(TranscriptionSession.objects.filter(pk=session_id).values_list("room_microphone", flat=True).first())


_KEPT_WHILE_HELD = ("stt_final", "stt_revised")  # sent on resume (so are errors); partials and states are stale by then
_MAX_KEPT = 1000
ACK_EVERY_S = 0.25  # stt_ack at most this long after audio arrived
# The client ended the connection itself (1000, 1001), or an error in a handler did (1011, see
# LiveStreamConsumer.__call__): the stream ends now.
_ENDS_NOW = (1000, 1001, 1011)
_endings: set[asyncio.Task] = set()  # held streams being ended (strong references)
