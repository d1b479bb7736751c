"""``Authorization: Bearer <API token>`` for the OpenAI-compatible API: the same tokens as DRF's.

OpenAI's clients send the key as a bearer token; our REST API's clients send ``Token <key>``.
The /v1 views accept both (Bearer first, so a 401 asks for Bearer).
"""

from __future__ import annotations

from drf_spectacular.extensions import OpenApiAuthenticationExtension

from sessions_app.api.authentication import CheckedTokenAuthentication

__all__ = ["BearerTokenAuthentication"]


class BearerTokenAuthentication(CheckedTokenAuthentication):
    keyword = "Bearer"


class BearerTokenScheme(OpenApiAuthenticationExtension):
    """The schema names it ``bearerAuth`` (HTTP bearer), beside DRF's ``tokenAuth``."""

    target_class = BearerTokenAuthentication
    name = "bearerAuth"

    def get_security_definition(self, auto_schema):
        return {"type": "http", "scheme": "bearer", "description": "The user's API token (see /account/api-token/)."}
