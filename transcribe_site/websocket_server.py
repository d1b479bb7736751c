"""How daphne treats a WebSocket message above its size limit (1 MiB by default).

Autobahn, under daphne, fails such a connection by dropping its TCP stream, so the client
sees 1006 (abnormal closure) and no reason. With ``failByDrop`` off it sends a close frame
instead: 1009 (message too big) with the limit as its reason, a code the README documents.
daphne has no option for it, so the factory's default is changed when the ASGI application
is imported (daphne imports it before it builds its factory).
"""

from __future__ import annotations


def close_oversized_messages_with_1009() -> None:
    try:
        from daphne.ws_protocol import WebSocketFactory
    except ImportError:  # another ASGI server: its own limits apply
        return
    if getattr(WebSocketFactory, "closes_oversized_with_1009", False):
        return
    reset_defaults = WebSocketFactory.resetProtocolOptions

    def reset_protocol_options(self) -> None:
        reset_defaults(self)
        self.failByDrop = False

    WebSocketFactory.resetProtocolOptions = reset_protocol_options
    WebSocketFactory.closes_oversized_with_1009 = True
