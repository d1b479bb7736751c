"""`/v1/realtime?intent=transcription`: OpenAI's Realtime transcription WebSocket on our engine.

Each connection is a new session of the token's user (titled by the time, so it shows in the
history with its audio and transcript), streamed like our own protocol's ``StreamConsumer``:
same slots and limits, recording, engine pool, saved finals and refinement
(``live_stream.LiveStreamConsumer``). This module only speaks OpenAI's events
(``realtime_events``):

- ``server_vad`` (the default): each engine utterance is an item. ``speech_started`` when the
  engine starts recording it, ``delta`` as its live text firms up, ``speech_stopped`` when it
  stops recording, ``committed`` and ``completed`` at its final. ``input_audio_buffer.commit``
  finalizes the utterance in progress now.
- ``turn_detection: null``: the audio since the last commit is one item. ``commit`` answers
  ``committed`` at once; the engine stream is stopped (its last final comes) and a new one
  takes the audio that follows; ``completed`` carries the finals of the committed audio.
- ``input_audio_buffer.clear``: the audio not yet committed (the open utterance, in server VAD)
  gives no item. The audio stays in the recording and whatever the engine made of it in the
  session's transcript: nothing received is ever thrown away.
"""

from __future__ import annotations

import time
from typing import Any
from urllib.parse import parse_qs

from channels.db import database_sync_to_async
from django.conf import settings
from django.utils import timezone

from sessions_app.actions import do_create_session
from sessions_app.live_stream import EngineStream, LiveStreamConsumer
from sessions_app.models import TranscriptionSession
from sessions_app.openai_api.realtime_events import (
    MAX_EVENT_CHARS,
    ItemText,
    RealtimeConfig,
    RealtimeError,
    VadSettings,
    apply_session_update,
    beta_session_object,
    client_event_id,
    decode_audio,
    error_event,
    new_id,
    parse_client_event,
    server_event,
    session_object,
)
from sessions_app.protocol import CloseCode, ProtocolError
from stt_engine import events

__all__ = ["RealtimeTranscriptionConsumer"]

_MIN_COMMIT_S = 0.1  # OpenAI refuses to commit less ("buffer too small")
_CLOSE_BAD_REQUEST = 4400


@database_sync_to_async
def _create_session(user) -> TranscriptionSession:
    return do_create_session(user, f"Realtime {timezone.now():%Y-%m-%d %H:%M} UTC", "auto")


@database_sync_to_async
def _delete_session(session_id) -> None:
    TranscriptionSession.objects.filter(pk=session_id).delete()


@database_sync_to_async
def _set_session_language(session_id, language: str) -> None:
    TranscriptionSession.objects.filter(pk=session_id).update(language=language)


def _vad_settings(config: RealtimeConfig) -> VadSettings:
    """The stream's VAD as OpenAI names it: the client's turn_detection over the server's settings."""
    vad = config.engine_vad
    return VadSettings(
        threshold=round(1.0 - vad.get("silero_sensitivity", settings.STT_SILERO_SENSITIVITY), 4),
        prefix_padding_ms=round(vad.get("pre_recording_buffer_s", settings.STT_PRE_ROLL_S) * 1000),
        silence_duration_ms=round(vad.get("post_speech_silence_s", settings.STT_POST_SPEECH_SILENCE_S) * 1000),
    )


def _ms(seconds: float | None) -> int:
    return max(0, round((seconds or 0.0) * 1000))


class RealtimeTranscriptionConsumer(LiveStreamConsumer):
    """One realtime transcription connection (see the module)."""

    async def connect(self) -> None:
        query = parse_qs(self.scope.get("query_string", b"").decode("latin-1"))
        headers = dict(self.scope.get("headers") or [])
        # A client of the beta API says so; it gets the beta shape of the first event.
        self.beta = b"realtime=v1" in headers.get(b"openai-beta", b"")
        self.config = RealtimeConfig()
        self.session_key = new_id("sess")
        self.items: dict[int, ItemText] = {}  # per engine stream: its open item
        self.dropped: set[int] = set()  # engine streams whose output was cleared
        self.previous_item_id: str | None = None
        self.buffered_s = 0.0  # audio since the last commit or clear
        user = self.scope.get("user")
        self.session_id = None
        if user is None or not user.is_authenticated:
            await self.accept()
            await self._refuse_openai("invalid_api_key", "Incorrect API key provided.", CloseCode.FORBIDDEN)
            return
        if (query.get("intent") or [""])[0] != "transcription":
            await self.accept()
            await self._refuse_openai(
                "invalid_intent",
                "This server serves transcription sessions only: add ?intent=transcription.",
                _CLOSE_BAD_REQUEST,
            )
            return
        session = await _create_session(user)
        self.init_stream_state(session.pk)
        self.session = session
        await self.accept()
        if not await self.admit_stream():
            return
        await self._send_session("transcription_session.created" if self.beta else "session.created", beta=self.beta)

    # --- client events -----------------------------------------------------------------

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        if not getattr(self, "has_slot", False):
            return
        self.last_message_at = time.monotonic()
        event: dict[str, Any] | None = None
        try:
            event = parse_client_event(text_data)
            handler = {
                "session.update": self._on_session_update,
                "transcription_session.update": self._on_session_update,
                "input_audio_buffer.append": self._on_append,
                "input_audio_buffer.commit": self._on_commit,
                "input_audio_buffer.clear": self._on_clear,
            }[event["type"]]
            await handler(event)
        except RealtimeError as exc:
            event_id = exc.event_id or client_event_id(event)
            await self.send_json(error_event(exc.code, exc.message, param=exc.param, event_id=event_id))
        except ProtocolError as exc:  # the shared checks of audio: rate limit
            await self.send_json(error_event(exc.code.lower(), exc.message, event_id=client_event_id(event)))

    async def _on_session_update(self, event: dict[str, Any]) -> None:
        config = apply_session_update(self.config, event)
        if self.started and config.sample_rate != self.config.sample_rate:
            raise RealtimeError(
                "invalid_value",
                "The audio format cannot change once audio was sent; open a new connection.",
                "session.audio.input.format",
            )
        language = config.language or settings.STT_DEFAULT_LANGUAGE
        vad_changed = config.engine_vad != self.config.engine_vad
        previous, self.config = self.config, config
        if not self.started:
            await self.begin_stream(config.sample_rate, language, engine_overrides=config.engine_vad)
        elif language != self.language or vad_changed:
            # A new engine stream with the new language or VAD; the recording goes on.
            await self._next_engine_stream(language)
        if config.language and config.language != previous.language:
            await _set_session_language(self.session_id, config.language)
        beta = event["type"] == "transcription_session.update"
        await self._send_session("transcription_session.updated" if beta else "session.updated", beta=beta)

    async def _on_append(self, event: dict[str, Any]) -> None:
        if not self.config.configured:
            raise RealtimeError("session_not_configured", "Send session.update before audio.")
        data = decode_audio(event)
        if not self.started:  # (its engine could not be had: the next append asks again)
            await self.begin_stream(
                self.config.sample_rate,
                self.config.language or settings.STT_DEFAULT_LANGUAGE,
                engine_overrides=self.config.engine_vad,
            )
        await self.accept_audio(data, max_bytes=MAX_EVENT_CHARS)
        self.buffered_s += len(data) / 2 / self.config.sample_rate

    async def _on_commit(self, event: dict[str, Any]) -> None:
        if not self.config.configured:
            raise RealtimeError("session_not_configured", "Send session.update before input_audio_buffer.commit.")
        if self.buffered_s < _MIN_COMMIT_S:
            raise RealtimeError(
                "input_audio_buffer_commit_empty",
                f"Error committing input audio buffer: buffer too small. Expected at least {_MIN_COMMIT_S * 1000:.0f}ms"
                f" of audio, but buffer only has {self.buffered_s * 1000:.2f}ms of audio.",
            )
        self.buffered_s = 0.0
        if self.config.server_vad:
            self.flush_stream()  # the utterance in progress ends now; its final is an item as any other
            return
        item = self._item(self.stream_number_sent)
        item.committed = True
        await self._send_committed(item)
        await self._next_engine_stream(self.language)  # the stopped stream's idle completes the item

    async def _on_clear(self, event: dict[str, Any]) -> None:
        if not self.config.configured:
            raise RealtimeError("session_not_configured", "Send session.update before input_audio_buffer.clear.")
        self.buffered_s = 0.0
        if self.started:
            self.dropped.add(self.stream_number_sent)
            self.items.pop(self.stream_number_sent, None)
            await self._next_engine_stream(self.language)
        await self.send_json(server_event("input_audio_buffer.cleared"))

    @property
    def stream_number_sent(self) -> int:
        """The engine stream that the audio received so far went to (the feeder may lag behind)."""
        return self.starts

    async def _next_engine_stream(self, language: str) -> None:
        await self.end_stream(close_file=False)
        await self.begin_stream(
            self.config.sample_rate, language, keep_allowance=True, engine_overrides=self.config.engine_vad
        )

    # --- engine events -------------------------------------------------------------------

    def _item(self, stream_number: int) -> ItemText:
        item = self.items.get(stream_number)
        if item is None:
            item = self.items[stream_number] = ItemText(new_id("item"))
        return item

    async def on_engine_message(self, message: dict[str, Any], event: events.Event, stream: EngineStream) -> None:
        await super().on_engine_message(message, event, stream)  # caption viewers of the session see it too
        number = stream.stream_number
        if isinstance(event, events.EngineError):
            await self.send_json(error_event(event.code.lower(), event.message, error_type="server_error"))
            return
        if number in self.dropped:
            return
        manual = not self.config.server_vad
        if isinstance(event, events.RecordingStart):
            item = self._item(number)
            if item.audio_start_s is None:
                item.audio_start_s = message["start"]
                if not manual:
                    await self.send_json(
                        server_event(
                            "input_audio_buffer.speech_started",
                            audio_start_ms=_ms(item.audio_start_s),
                            item_id=item.item_id,
                        )
                    )
        elif isinstance(event, events.Stabilized) and number in self.items:
            await self._send_delta(self.items[number], self.items[number].stabilized(event.text))
        elif isinstance(event, events.RecordingStop) and number in self.items:
            item = self.items[number]
            item.audio_end_s = message["end"]
            if not manual:
                await self.send_json(
                    server_event(
                        "input_audio_buffer.speech_stopped",
                        audio_end_ms=_ms(item.audio_end_s),
                        item_id=item.item_id,
                    )
                )
        elif isinstance(event, events.Final):
            item = self._item(number)
            await self._send_delta(item, item.final(event.text))
            if not item.committed and not manual:
                await self._send_committed(item)
                await self._send_completed(item)
                del self.items[number]
        elif isinstance(event, events.StateChanged):
            item = self.items.get(number)
            if item is None:
                return
            if event.state == "idle" and item.committed:
                await self._send_completed(item)  # the committed audio's last final came before the idle
                del self.items[number]
            elif event.state in ("listening", "idle") and not item.committed and not manual:
                del self.items[number]  # an utterance too short for a final: no item

    async def _send_delta(self, item: ItemText, delta: str) -> None:
        if delta:
            await self.send_json(
                server_event(
                    "conversation.item.input_audio_transcription.delta",
                    item_id=item.item_id,
                    content_index=0,
                    delta=delta,
                )
            )

    async def _send_committed(self, item: ItemText) -> None:
        item.committed = True
        await self.send_json(
            server_event(
                "input_audio_buffer.committed",
                item_id=item.item_id,
                previous_item_id=self.previous_item_id,
            )
        )
        self.previous_item_id = item.item_id

    async def _send_completed(self, item: ItemText) -> None:
        seconds = max(0.0, (item.audio_end_s or 0.0) - (item.audio_start_s or 0.0))
        await self.send_json(
            server_event(
                "conversation.item.input_audio_transcription.completed",
                item_id=item.item_id,
                content_index=0,
                transcript=item.transcript,
                usage={"type": "duration", "seconds": round(seconds, 3)},
            )
        )

    # --- replies, errors and the end ---------------------------------------------------

    async def _send_session(self, type_: str, *, beta: bool) -> None:
        build = beta_session_object if beta else session_object
        await self.send_json(
            server_event(type_, session=build(self.config, self.session_key, _vad_settings(self.config)))
        )

    async def caption_event(self, event: dict[str, Any]) -> None:
        """(Our protocol's messages of the session's group are for its other sockets, not this client.)"""

    async def speakers_changed(self, event: dict[str, Any]) -> None:
        self.learn_speakers(event["message"])  # (for the session's pages; this client hears nothing of it)

    async def _refuse_openai(self, code: str, text: str, close_code: int) -> None:
        await self.send_json(error_event(code, text))
        await self.close(code=close_code)

    async def refuse(self, code: str, text: str, close_code: int) -> None:
        if getattr(self, "session", None) is not None and not self.has_slot:
            # Refused at the door (the limits): the session never held anything, and goes before
            # the client hears of it, so no empty session is left in the history.
            await _delete_session(self.session_id)
            self.session = None
        await self._refuse_openai(code.lower(), text, close_code)

    async def _send_error(self, code: str, text: str) -> None:
        await self.send_json(error_event(code.lower(), text, error_type="server_error"))

    async def disconnect(self, code: int) -> None:
        if getattr(self, "session_id", None) is None:
            return
        await super().disconnect(code)
