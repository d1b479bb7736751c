"""The HTML pages' permissions and contents, through Django's test client (no browser needed)."""

from __future__ import annotations

import pytest
from django.urls import reverse

from sessions_app.actions import do_add_member


@pytest.fixture
def session(make_session, user):
    return make_session(user, "Planning")


def test_the_live_page_is_for_members_only(client, session, make_user):
    outsider = make_user("outsider")
    client.force_login(outsider)
    assert client.get(reverse("session-live", args=[session.pk])).status_code == 404


def test_a_speaker_gets_the_microphone_and_a_viewer_reads_only(client, session, make_user):
    client.force_login(session.owner)
    page = client.get(reverse("session-live", args=[session.pk])).content.decode()
    assert 'id="mic-toggle"' in page and 'id="mic-hold"' in page and "js/live.js" in page
    viewer = make_user("vera")
    do_add_member(session, "vera", "viewer")
    client.force_login(viewer)
    page = client.get(reverse("session-live", args=[session.pk])).content.decode()
    assert 'id="mic-toggle"' not in page and "read-only" in page


def test_the_caption_page_opens_with_the_share_token_or_to_members(client, session):
    url = reverse("session-captions", args=[session.pk])
    assert client.get(f"{url}?token={session.share_token}").status_code == 200
    assert client.get(f"{url}?token=wrong").status_code == 404
    assert client.get(url).status_code == 404
    client.force_login(session.owner)
    assert client.get(url).status_code == 200


def test_the_transcript_page_is_for_members_only(client, session, make_user):
    url = reverse("session-transcript", args=[session.pk])
    client.force_login(make_user("outsider"))
    assert client.get(url).status_code == 404
    client.force_login(session.owner)
    page = client.get(url).content.decode()
    assert f"/api/sessions/{session.pk}/export?format=srt" in page


def test_the_upload_page_needs_an_account(client, user):
    assert client.get(reverse("upload")).status_code == 302
    client.force_login(user)
    assert 'id="upload-form"' in client.get(reverse("upload")).content.decode()


def test_only_the_owner_gets_the_absolute_caption_link(client, session, make_user):
    client.force_login(session.owner)
    page = client.get(reverse("session-list")).content.decode()
    assert f"http://testserver/captions/{session.pk}/?token={session.share_token}" in page
    member = make_user("sam")
    do_add_member(session, "sam", "speaker")
    client.force_login(member)
    page = client.get(reverse("session-list")).content.decode()
    assert session.share_token not in page and reverse("session-live", args=[session.pk]) in page
