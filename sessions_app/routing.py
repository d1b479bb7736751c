"""WebSocket routes (the HTTP ones are in urls.py)."""

from __future__ import annotations

from django.urls import path

from sessions_app.consumers import CaptionConsumer, StreamConsumer
from sessions_app.openai_api.realtime import RealtimeTranscriptionConsumer

websocket_urlpatterns = [
    path("ws/sessions/<uuid:session_id>/stream/", StreamConsumer.as_asgi()),
    path("ws/sessions/<uuid:session_id>/captions/", CaptionConsumer.as_asgi()),
    # OpenAI's Realtime API (transcription sessions); the query string carries intent and model.
    path("v1/realtime", RealtimeTranscriptionConsumer.as_asgi()),
]
