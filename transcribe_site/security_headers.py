"""The Content-Security-Policy header, which Django 5.2 does not send by itself.

Every HTML response gets ``settings.CONTENT_SECURITY_POLICY``, or
``settings.CONTENT_SECURITY_POLICY_API`` under ``/api/`` (DRF's browsable API and Swagger UI
need inline styles; Swagger UI's files come from the site itself, drf-spectacular-sidecar). A response that
already has the header keeps its own; an empty policy sends none. In debug mode Django's error
pages (technical 404 and 500, which style themselves inline) go without it.
"""

from __future__ import annotations

from django.conf import settings
from django.utils.deprecation import MiddlewareMixin

HEADER = "Content-Security-Policy"
API_PREFIX = "/api/"


class ContentSecurityPolicyMiddleware(MiddlewareMixin):
    """Sync and async capable (through the mixin), so daphne's requests stay on the event loop."""

    def process_response(self, request, response):
        if HEADER in response or not response.get("Content-Type", "").startswith("text/html"):
            return response
        if settings.DEBUG and response.status_code >= 400:
            return response
        api = request.path_info.startswith(API_PREFIX)
        policy = settings.CONTENT_SECURITY_POLICY_API if api else settings.CONTENT_SECURITY_POLICY
        if policy:
            response[HEADER] = policy
        return response
