"""DRF token authentication that refuses malformed keys before they reach the database.

PostgreSQL refuses text with NUL characters (a DataError, so an HTTP 500); a key is 40
hexadecimal characters (``rest_framework.authtoken``), so anything else is simply invalid.
"""

from __future__ import annotations

import re

from rest_framework.authentication import TokenAuthentication
from rest_framework.exceptions import AuthenticationFailed

_KEY = re.compile(r"[0-9A-Za-z]{1,64}")


def is_plausible_token_key(key: str) -> bool:
    return _KEY.fullmatch(key) is not None


class CheckedTokenAuthentication(TokenAuthentication):
    def authenticate_credentials(self, key: str):
        if not is_plausible_token_key(key):
            raise AuthenticationFailed("Invalid token.")
        return super().authenticate_credentials(key)
