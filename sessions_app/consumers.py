"""WebSocket consumers: a speaker's stream and a viewer's captions.

Thin by design: the protocol, permissions and limits are here; what every live-audio endpoint
shares (the stream's slot, its recording, the engine process of the server's pool, saving finals
and relaying the engine's events) is ``live_stream.LiveStreamConsumer``. No model ever runs on
this event loop.
"""

from __future__ import annotations

import time
from typing import Any
from urllib.parse import parse_qs

from channels.generic.websocket import AsyncWebsocketConsumer
from django.conf import settings

from sessions_app.live_stream import CaptionGroupMixin, LiveStreamConsumer, session_group, session_if_allowed
from sessions_app.protocol import (
    CloseCode,
    ErrorCode,
    ProtocolError,
    error_message,
    parse_client_message,
    parse_start,
)

__all__ = ["CaptionConsumer", "StreamConsumer", "session_group"]


class CaptionConsumer(CaptionGroupMixin, AsyncWebsocketConsumer):
    """Read-only live captions for members and holders of the session's share token."""

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

    async def still_allowed(self) -> bool:
        user = self.scope.get("user")
        return await session_if_allowed(user, self.session_id, self.share_token, stream=False) is not None

    async def leave_group(self) -> None:
        if self.joined:
            self.joined = False
            await self.channel_layer.group_discard(session_group(self.session_id), self.channel_name)

    async def disconnect(self, code: int) -> None:
        await self.leave_group()


class StreamConsumer(LiveStreamConsumer):
    """One speaker's live stream (our protocol): audio in, the engine's events out to the whole session.

    The handlers check the protocol and drive the stream of ``LiveStreamConsumer``: ``stt_start``
    begins it, binary frames are its audio, ``stt_flush`` finalizes the utterance, ``stt_stop``
    ends it (``stt_start`` may follow).
    """

    async def connect(self) -> None:
        self.init_stream_state(self.scope["url_route"]["kwargs"]["session_id"])
        self.session = await session_if_allowed(self.user, self.session_id, None, stream=True)
        await self.accept()
        if self.session is None:
            await self.refuse(
                ErrorCode.FORBIDDEN, "Only signed-in speakers of an open session may stream.", CloseCode.FORBIDDEN
            )
            return
        await self.admit_stream()

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
        sample_rate, language = parse_start(message, default_language)
        clock_offset_s = await self.begin_stream(sample_rate, language)
        await self.send_json(
            {
                "type": "stt_listening",
                "session_id": str(self.session_id),
                "speaker": self.user.username,
                "sample_rate": self.sample_rate,
                "language": self.language,
                "clock_offset": round(clock_offset_s, 3),
                "stream_id": self.stream_id,
            }
        )

    async def _on_audio(self, data: bytes) -> None:
        if not self.started:
            raise ProtocolError(ErrorCode.NOT_STARTED, "Send stt_start before audio.")
        await self.accept_audio(data)

    async def _on_flush(self, message: dict[str, Any]) -> None:
        if not self.started:
            raise ProtocolError(ErrorCode.NOT_STARTED, "Nothing to flush: send stt_start first.")
        self.flush_stream()

    async def _on_stop(self, message: dict[str, Any]) -> None:
        if not self.started:
            raise ProtocolError(ErrorCode.NOT_STARTED, "Nothing to stop: send stt_start first.")
        await self._stop_stream()
