from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django.urls import reverse

pytestmark = pytest.mark.django_db


def test_a_newcomer_can_sign_up_and_lands_on_their_sessions(client):
    response = client.post(
        reverse("signup"),
        {"username": "newcomer", "password1": "a-Long-passphrase-9", "password2": "a-Long-passphrase-9"},
    )
    assert response.status_code == 302 and response.url == reverse("session-list")
    assert get_user_model().objects.filter(username="newcomer").exists()
    assert client.get(reverse("session-list")).status_code == 200


def test_sign_up_with_mismatched_passwords_shows_the_error(client):
    response = client.post(
        reverse("signup"), {"username": "x", "password1": "a-Long-passphrase-9", "password2": "other-Pass-1"}
    )
    assert response.status_code == 200
    assert "password fields didn" in response.content.decode()


def test_sign_in_and_sign_out(client, user):
    response = client.post(reverse("login"), {"username": "alice", "password": "s3cret-Passw0rd"})
    assert response.status_code == 302
    assert client.get(reverse("session-list")).status_code == 200
    client.post(reverse("logout"))
    assert client.get(reverse("upload")).status_code == 302


@pytest.mark.parametrize("page", ["upload", "api-token"])
def test_pages_need_a_signed_in_user(client, page):
    response = client.get(reverse(page))
    assert response.status_code == 302 and reverse("login") in response.url


def test_a_signed_in_user_creates_a_session_and_invites_a_member(signed_in_client, other_user):
    signed_in_client.post(reverse("session-list"), {"title": "Standup", "language": "en"})
    page = signed_in_client.get(reverse("session-list")).content.decode()
    assert "Standup" in page
    from sessions_app.models import TranscriptionSession

    session = TranscriptionSession.objects.get(title="Standup")
    signed_in_client.post(reverse("session-add-member", args=[session.id]), {"username": "mallory", "role": "viewer"})
    assert session.memberships.filter(user=other_user, role="viewer").exists()


def test_only_the_owner_may_invite_or_close(client, user, other_user, make_session):
    session = make_session(user)
    client.force_login(other_user)
    assert client.post(reverse("session-close", args=[session.id])).status_code == 404
    session.refresh_from_db()
    assert session.is_active
