"""WebSocket routes (the HTTP ones are in urls.py)."""

from __future__ import annotations

websocket_urlpatterns: list = []
