"""Fixtures of the OpenAI-compatible API tests: a live server, a real Celery worker, the official SDK.

pytest-django's ``live_server`` runs in this process (a thread), so ``settings`` changes reach it;
the worker is a real process on the same test database (tests/sessions_app/celery_worker.py).
"""

from __future__ import annotations

import openai
import pytest
from django.core.cache import cache
from rest_framework.authtoken.models import Token


@pytest.fixture
def served_by_the_worker(worker, settings):
    """The live server's jobs go to the real worker, whose MEDIA_ROOT is the server's."""
    running, media = worker
    settings.MEDIA_ROOT = media
    settings.BATCH_QUEUE = running.queue
    return running


@pytest.fixture(autouse=True)
def no_throttle_history():
    cache.clear()  # the upload throttle counts /v1 transcriptions too
    yield
    cache.clear()


@pytest.fixture
def api_token(transactional_db, make_user) -> Token:
    return Token.objects.create(user=make_user("sdk-user"))


@pytest.fixture
def client_for(live_server):
    def make(api_key: str) -> openai.OpenAI:
        # No retries: a retried transcription would be one more job.
        return openai.OpenAI(base_url=f"{live_server.url}/v1", api_key=api_key, max_retries=0, timeout=300)

    return make


@pytest.fixture
def sdk(client_for, api_token) -> openai.OpenAI:
    """The official ``openai`` client, pointed at this server with the user's API token."""
    return client_for(api_token.key)
