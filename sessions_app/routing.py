"""WebSocket routes (the HTTP ones are in urls.py)."""

from __future__ import annotations

from django.urls import path

from sessions_app.consumers import CaptionConsumer, StreamConsumer

websocket_urlpatterns = [
    path("ws/sessions/<uuid:session_id>/stream/", StreamConsumer.as_asgi()),
    path("ws/sessions/<uuid:session_id>/captions/", CaptionConsumer.as_asgi()),
]
