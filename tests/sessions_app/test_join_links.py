"""Join links: the owner creates and revokes a session's speaker link; whoever opens it signed in (or
after signing in or up) becomes a speaker and lands on the live page; a revoked link says so (410)."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django.test import Client
from rest_framework.test import APIClient

from sessions_app.actions import do_add_member
from sessions_app.join_links import active_join_link, do_create_join_link, do_revoke_join_links
from sessions_app.meeting_record.post_session import end_session
from sessions_app.models import JoinLink, SessionMember

PASSWORD = "s3cret-Passw0rd"


@pytest.fixture
def session(user, make_session):
    return make_session(user, "Planning", "en")


def _signed_in(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def _role(session, user) -> str | None:
    return SessionMember.objects.filter(session=session, user=user).values_list("role", flat=True).first()


def test_the_owner_creates_a_link_on_the_session_page_and_a_signed_in_user_joins_through_it(session, user, make_user):
    owner = _signed_in(user)
    response = owner.post(f"/sessions/{session.pk}/join-link/", follow=True)
    link = active_join_link(session)
    assert link is not None and link.role == "speaker"
    page = response.content.decode()
    assert f"/join/{link.token}/" in page and "Copy join link" in page and "Revoke join link" in page

    carol = make_user("carol")
    response = _signed_in(carol).get(f"/join/{link.token}/")
    assert response.status_code == 302 and response["Location"] == f"/sessions/{session.pk}/live/"
    assert _role(session, carol) == "speaker"
    assert JoinLink.objects.get(pk=link.pk).uses == 1
    # Opening it again changes nothing; the live page lets carol stream.
    again = _signed_in(carol).get(f"/join/{link.token}/", follow=True)
    assert again.status_code == 200 and again.context["can_stream"] is True
    assert JoinLink.objects.get(pk=link.pk).uses == 1

    # A viewer who opens it becomes a speaker; the owner stays the owner.
    dave = make_user("dave")
    do_add_member(session, "dave", "viewer")
    _signed_in(dave).get(f"/join/{link.token}/")
    assert _role(session, dave) == "speaker"
    assert owner.get(f"/join/{link.token}/").status_code == 302 and _role(session, user) == "speaker"


def test_a_revoked_link_says_so_with_410_and_an_unknown_one_404(session, user, make_user):
    owner = _signed_in(user)
    first = do_create_join_link(session, user)
    second = do_create_join_link(session, user)  # (a new link replaces the old one)
    erin = make_user("erin")
    response = _signed_in(erin).get(f"/join/{first.token}/")
    assert response.status_code == 410 and "revoked" in response.content.decode()
    assert owner.post(f"/sessions/{session.pk}/join-link/revoke/").status_code == 302
    assert active_join_link(session) is None
    for client in (_signed_in(erin), Client()):  # (signed out too: no sign-in for a dead link)
        response = client.get(f"/join/{second.token}/")
        assert response.status_code == 410
        assert "This join link was revoked by the session" in response.content.decode()
    response = _signed_in(erin).get("/join/not-a-real-token/")
    assert response.status_code == 404 and "This join link does not exist" in response.content.decode()
    assert _role(session, erin) is None

    # A link of an ended session no longer lets anyone in.
    third = do_create_join_link(session, user)
    end_session(session, user)
    response = _signed_in(erin).get(f"/join/{third.token}/")
    assert response.status_code == 410 and "This session has ended" in response.content.decode()
    assert _role(session, erin) is None


def test_a_signed_out_visitor_signs_in_or_up_and_comes_back_to_join(session, user, make_user):
    link = do_create_join_link(session, user)
    join = f"/join/{link.token}/"

    visitor = Client()
    response = visitor.get(join)
    assert response.status_code == 302 and response["Location"] == f"/accounts/login/?next={join}"
    login_page = visitor.get(response["Location"]).content.decode()
    assert f'href="/accounts/signup/?next={join}"' in login_page  # (no account yet: sign up)
    make_user("frank", password=PASSWORD)
    response = visitor.post("/accounts/login/", {"username": "frank", "password": PASSWORD, "next": join})
    assert response.status_code == 302 and response["Location"] == join
    response = visitor.get(join)
    assert response["Location"] == f"/sessions/{session.pk}/live/"
    assert _role(session, get_user_model().objects.get(username="frank")) == "speaker"

    newcomer = Client()
    signup = newcomer.get(f"/accounts/signup/?next={join}")
    assert f'name="next" value="{join}"' in signup.content.decode()
    response = newcomer.post(
        f"/accounts/signup/?next={join}",
        {"username": "grace", "password1": "A-long-passw0rd!", "password2": "A-long-passw0rd!", "next": join},
    )
    assert response.status_code == 302 and response["Location"] == join, response.content.decode()[:2000]
    assert newcomer.get(join)["Location"] == f"/sessions/{session.pk}/live/"
    assert SessionMember.objects.filter(session=session, user__username="grace", role="speaker").exists()

    # A next that leaves the site is not followed.
    stranger = Client()
    response = stranger.post(
        "/accounts/signup/?next=https://evil.example/",
        {"username": "heidi", "password1": "A-long-passw0rd!", "password2": "A-long-passw0rd!"},
    )
    assert response.status_code == 302 and response["Location"] == "/"


def test_only_the_owner_manages_the_link_and_invite_by_username_still_works(session, user, make_user):
    bob = make_user("bob")
    do_add_member(session, "bob", "speaker")
    assert _signed_in(bob).post(f"/sessions/{session.pk}/join-link/").status_code == 404
    assert active_join_link(session) is None
    do_create_join_link(session, user)
    assert _signed_in(bob).post(f"/sessions/{session.pk}/join-link/revoke/").status_code == 404
    assert active_join_link(session) is not None

    # The API: owner only (others: 404, as for the share token), coded errors.
    api, other = APIClient(), APIClient()
    api.force_authenticate(user)
    other.force_authenticate(bob)
    created = api.post(f"/api/sessions/{session.pk}/join-link/")
    assert created.status_code == 201 and created.json()["url"].endswith(f"/join/{created.json()['token']}/")
    assert api.get(f"/api/sessions/{session.pk}/join-link/").json()["token"] == created.json()["token"]
    assert other.get(f"/api/sessions/{session.pk}/join-link/").json()["code"] == "NOT_FOUND"
    assert other.delete(f"/api/sessions/{session.pk}/join-link/").status_code == 404
    assert api.delete(f"/api/sessions/{session.pk}/join-link/").status_code == 204
    missing = api.delete(f"/api/sessions/{session.pk}/join-link/")
    assert missing.status_code == 404 and missing.json()["code"] == "NOT_FOUND"
    assert do_revoke_join_links(session) == 0

    # Inviting by username works beside the links.
    make_user("ivan")
    response = _signed_in(user).post(f"/sessions/{session.pk}/members/", {"username": "ivan", "role": "viewer"})
    assert response.status_code == 302
    assert SessionMember.objects.filter(session=session, user__username="ivan", role="viewer").exists()
