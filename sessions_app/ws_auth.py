"""WebSocket authentication by DRF token, for API clients that have no browser session.

Runs inside ``AuthMiddlewareStack``: when the handshake carries ``Authorization: Token <key>``
(DRF's scheme) or ``Authorization: Bearer <key>`` (what OpenAI's SDK sends, for ``/v1/realtime``)
and the key is valid, that user replaces the (anonymous) session user.
"""

from __future__ import annotations

from channels.db import database_sync_to_async
from channels.middleware import BaseMiddleware
from channels.security.websocket import OriginValidator
from django.conf import settings

from sessions_app.api.authentication import is_plausible_token_key


@database_sync_to_async
def _user_for_token(key: str):
    from rest_framework.authtoken.models import Token

    token = Token.objects.select_related("user").filter(key=key).first()
    return token.user if token and token.user.is_active else None


class TokenAuthMiddleware(BaseMiddleware):
    async def __call__(self, scope, receive, send):
        headers = dict(scope.get("headers") or [])
        authorization = headers.get(b"authorization", b"").decode("latin-1")
        scheme, _, key = authorization.partition(" ")
        if scheme.lower() in ("token", "bearer") and is_plausible_token_key(key.strip()):
            user = await _user_for_token(key.strip())
            if user is not None:
                scope = dict(scope, user=user)
        return await super().__call__(scope, receive, send)


class NonBrowserFriendlyOriginValidator(OriginValidator):
    """Channels' ``AllowedHostsOriginValidator``, except that a handshake with no Origin passes.

    Browsers always send Origin, so pages of other sites are still refused; API clients
    (which authenticate with a token, never with a browser's cookies) usually send none.
    """

    def __init__(self, application) -> None:
        allowed_hosts = settings.ALLOWED_HOSTS
        if settings.DEBUG and not allowed_hosts:
            allowed_hosts = ["localhost", "127.0.0.1", "[::1]"]
        super().__init__(application, allowed_hosts)

    def valid_origin(self, parsed_origin) -> bool:
        return parsed_origin is None or super().valid_origin(parsed_origin)
