"""HTTP and WebSocket entry point, wired as Channels recommends.

``get_asgi_application()`` runs first so that apps are loaded before the consumers import models.
"""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "transcribe_site.settings")
django_asgi_app = get_asgi_application()

from channels.auth import AuthMiddlewareStack  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from django.conf import settings  # noqa: E402
from django.contrib.staticfiles.handlers import ASGIStaticFilesHandler  # noqa: E402

from sessions_app.engine_hosting import start_warming  # noqa: E402
from sessions_app.routing import websocket_urlpatterns  # noqa: E402
from sessions_app.ws_auth import NonBrowserFriendlyOriginValidator, TokenAuthMiddleware  # noqa: E402
from transcribe_site.websocket_server import close_oversized_messages_with_1009  # noqa: E402

close_oversized_messages_with_1009()

# /static/ is answered here, before Django's middleware, in every mode (settings.SERVE_STATIC): the
# local run has DEBUG off and no other web server in front of it.
http_app = ASGIStaticFilesHandler(django_asgi_app) if settings.SERVE_STATIC else django_asgi_app

application = ProtocolTypeRouter(
    {
        "http": http_app,
        "websocket": NonBrowserFriendlyOriginValidator(
            AuthMiddlewareStack(TokenAuthMiddleware(URLRouter(websocket_urlpatterns)))
        ),
    }
)

if settings.STT_WARM_ON_START:
    start_warming()
