"""What a newcomer sees first: the landing page, the account forms, the session list, the error pages."""

from __future__ import annotations

import re

import pytest
from django.core.exceptions import PermissionDenied
from django.core.files.base import ContentFile
from django.test import RequestFactory
from django.urls import reverse
from django.views import defaults

from sessions_app.forms import LANGUAGE_CHOICES
from sessions_app.models import AudioRecording, Utterance

pytestmark = pytest.mark.django_db


def test_a_signed_out_visitor_gets_the_landing_page_and_a_signed_in_user_their_sessions(client, user):
    page = client.get("/")
    assert page.status_code == 200
    html = page.content.decode()
    assert "Speech to text, live" in html
    assert f'href="{reverse("signup")}"' in html and f'href="{reverse("login")}"' in html
    assert "New session" not in html
    client.force_login(user)
    html = client.get("/").content.decode()
    assert "New session" in html and "Speech to text, live" not in html


def test_a_signed_out_post_to_the_session_list_goes_to_sign_in_and_creates_nothing(client):
    response = client.post("/", {"title": "Sneaky", "language": "auto"})
    assert response.status_code == 302 and response.url.startswith(reverse("login"))
    assert "Sneaky" not in client.get("/").content.decode()


def test_sign_up_errors_stand_next_to_their_fields(client, user):
    response = client.post(
        reverse("signup"), {"username": "alice", "password1": "a-Long-passphrase-9", "password2": "other-Pass-1"}
    )
    html = response.content.decode()
    assert response.status_code == 200
    assert 'class="form-errors" role="alert"' in html
    for field in ("username", "password2"):
        block = re.search(rf'<div class="field has-errors">\s*<label for="id_{field}">.*?</div>\s*</div>', html, re.S)
        assert block, f"{field} is not marked as having errors"
        assert 'class="field-errors"' in block.group(0)
    assert "A user with that username already exists." in html
    assert "password fields didn" in html
    assert 'class="help" id="id_password1_helptext"' in html  # the password rules are shown as help


def test_a_wrong_password_says_so_above_the_form(client, user):
    response = client.post(reverse("login"), {"username": "alice", "password": "wrong"})
    assert response.status_code == 200
    html = response.content.decode()
    assert re.search(r'<div class="form-errors" role="alert">\s*<p>Please enter a correct username', html)


def _language_options(html: str) -> list[tuple[str, str]]:
    select = re.search(r'<select name="language"[^>]*>(.*?)</select>', html, re.S)
    assert select, "no language dropdown"
    return re.findall(r'<option value="([^"]*)"[^>]*>([^<]*)</option>', select.group(1))


def test_new_session_and_upload_offer_the_same_language_dropdown(signed_in_client):
    sessions = _language_options(signed_in_client.get(reverse("session-list")).content.decode())
    upload = _language_options(signed_in_client.get(reverse("upload")).content.decode())
    assert sessions == upload == [(code, name) for code, name in LANGUAGE_CHOICES]
    assert 'id="language"' in signed_in_client.get(reverse("upload")).content.decode()  # what upload.js reads


def test_a_language_outside_the_dropdown_is_refused_with_a_message(signed_in_client):
    response = signed_in_client.post(reverse("session-list"), {"title": "Standup", "language": "xx"})
    assert response.status_code == 200
    assert "Select a valid choice" in response.content.decode()


def test_the_session_list_shows_duration_speakers_and_word_count(
    signed_in_client, user, make_user, make_session, settings, tmp_path
):
    settings.MEDIA_ROOT = tmp_path
    session = make_session(user, "Planning")
    bob = make_user("bob")
    Utterance.objects.create(session=session, speaker=user, sequence=1, start_s=0, end_s=2, text="hello there all")
    Utterance.objects.create(
        session=session, speaker=bob, sequence=2, start_s=3, end_s=5, text="hi", corrected_text="hi everyone"
    )
    replaced = Utterance.objects.create(session=session, speaker=bob, sequence=3, start_s=6, end_s=8, text="old words")
    newer = Utterance.objects.create(session=session, speaker=bob, sequence=4, start_s=6, end_s=8, text="new")
    Utterance.objects.filter(pk=replaced.pk).update(superseded_by=newer)
    for speaker, seconds in ((user, 83.4), (bob, 40.0)):
        recording = AudioRecording(session=session, speaker=speaker, duration_s=seconds)
        recording.file.save(f"{speaker.username}.wav", ContentFile(b"RIFF"), save=True)
    empty = make_session(user, "Empty")
    html = signed_in_client.get(reverse("session-list")).content.decode()
    planning = _card(html, session)
    assert "1:23" in planning
    assert "2 speakers: alice, bob" in planning
    assert "6 words" in planning  # 3 + 2 (the correction) + 1 (the newer version only)
    assert "Nobody has spoken yet" in _card(html, empty) and "Nobody" not in planning


def _card(html: str, session) -> str:
    start = html.index(f'data-session-id="{session.pk}"')
    end = html.find('class="session-card"', start)
    return html[start : end if end != -1 else len(html)]


def test_the_404_page_is_the_sites_own_with_debug_off(client, settings):
    settings.DEBUG = False
    response = client.get("/no-such-page/")
    assert response.status_code == 404
    html = response.content.decode()
    assert "Page not found" in html and "css/site.css" in html
    assert "URLconf" not in html and "Using the URLconf" not in html


def test_the_403_and_500_pages_are_the_sites_own():
    request = RequestFactory().get("/somewhere/")
    from django.contrib.auth.models import AnonymousUser

    request.user = AnonymousUser()
    forbidden = defaults.permission_denied(request, PermissionDenied())
    assert forbidden.status_code == 403 and "You may not open this page" in forbidden.content.decode()
    error = defaults.server_error(request)
    assert error.status_code == 500
    assert "Something went wrong on our side" in error.content.decode()
    assert "css/site.css" in error.content.decode()


def test_the_pages_have_a_favicon(client):
    html = client.get(reverse("login")).content.decode()
    assert re.search(r'<link rel="icon" href="/static/img/favicon\.svg" type="image/svg\+xml">', html)
    response = client.get("/favicon.ico")
    assert response.status_code == 302 and response.url == "/static/img/favicon.svg"
