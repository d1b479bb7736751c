from __future__ import annotations

import itertools

import pytest
from django.contrib.auth import get_user_model

_counter = itertools.count()


@pytest.fixture
def make_user(db):
    def make(username: str | None = None, password: str = "s3cret-Passw0rd", **extra):
        username = username or f"user{next(_counter)}"
        return get_user_model().objects.create_user(username=username, password=password, **extra)

    return make


@pytest.fixture
def user(make_user):
    return make_user("alice")


@pytest.fixture
def other_user(make_user):
    return make_user("mallory")


@pytest.fixture
def signed_in_client(client, user):
    client.force_login(user)
    return client


@pytest.fixture
def make_session(db):
    from sessions_app.actions import do_create_session

    def make(owner, title: str = "Weekly sync", language: str = "auto"):
        return do_create_session(owner, title, language)

    return make
