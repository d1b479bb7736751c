"""The secret key of the local (embedded) run: generated once into ``var/secret_key`` and reused.

Several processes start at once (daphne, the Celery worker, test servers), so the file is made
atomically: the key is written to a private temporary file that is then hard-linked into place.
A process that loses the race reads the winner's complete file; no process sees a half-written key.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import tempfile
from pathlib import Path

from django.core.exceptions import ImproperlyConfigured

MIN_LENGTH = 50


def load_or_create_secret_key(path: Path) -> str:
    """The key stored at ``path``; a new random one written there (mode 0600) when there is none."""
    try:
        return _read(path)
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=".secret_key-")  # mode 0600
    try:
        with os.fdopen(descriptor, "w") as file:
            file.write(secrets.token_urlsafe(MIN_LENGTH) + "\n")
        with contextlib.suppress(FileExistsError):  # another process made it first: its key is the one
            os.link(temporary, path)
    finally:
        os.unlink(temporary)
    return _read(path)


def _read(path: Path) -> str:
    key = path.read_text().strip()
    if len(key) < MIN_LENGTH:
        raise ImproperlyConfigured(
            f"{path} holds no usable secret key (under {MIN_LENGTH} characters): delete it and a new one is made."
        )
    return key
