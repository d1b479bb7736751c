"""The API token page in Chromium: create a token, use it, regenerate it, revoke it."""

from __future__ import annotations

import json
import urllib.error
import urllib.request

import openai
import pytest
from playwright.sync_api import expect
from rest_framework.authtoken.models import Token

from tests.browser.conftest import PASSWORD, sign_in
from tests.speech import dev_clip, word_error_rate

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def _models_status(site, key: str) -> int:
    request = urllib.request.Request(f"{site.url}/v1/models", headers={"Authorization": f"Bearer {key}"})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            assert json.load(response)["object"] == "list"
            return response.status
    except urllib.error.HTTPError as error:
        return error.code


def test_a_signed_out_visitor_is_sent_to_sign_in(site, browser):
    context = browser.new_context()
    try:
        page = context.new_page()
        page.goto(f"{site.url}/account/api-token/")
        assert page.url.startswith(f"{site.url}/accounts/login/?next=/account/api-token/")
    finally:
        context.close()


def test_a_user_creates_sees_regenerates_and_revokes_their_token(site, browser, make_user, screenshot):
    user = make_user("tokenuser", password=PASSWORD)
    context = browser.new_context(viewport={"width": 1100, "height": 900})
    try:
        page = context.new_page()
        sign_in(page, site, "tokenuser")
        page.get_by_role("navigation", name="Main").get_by_role("link", name="API token").click()
        page.wait_for_url(f"{site.url}/account/api-token/")
        expect(page.locator("#no-token")).to_be_visible()

        page.get_by_role("button", name="Create a token").click()
        field = page.get_by_role("textbox", name="Token")
        expect(field).to_have_value(Token.objects.get(user=user).key)
        first = field.input_value()
        assert len(first) == 40
        expect(page.locator("pre.snippet").first).to_contain_text(first)
        assert page.locator(".site-header").evaluate("h => getComputedStyle(h).display") == "flex"
        screenshot(page, "api-token-created")
        assert _models_status(site, first) == 200

        # The key the page shows works with OpenAI's SDK (through daphne and the worker), and the
        # file shows in the upload history.
        clip = dev_clip("ls_dev-clean_1988-24833-0000")
        sdk = openai.OpenAI(base_url=f"{site.url}/v1", api_key=first, max_retries=0, timeout=300)
        text = sdk.audio.transcriptions.create(
            model="whisper-1", file=(clip.path.name, clip.path.read_bytes(), "audio/wav"), response_format="text"
        )
        assert word_error_rate([clip.text], [text]) < 0.15, text
        page.get_by_role("navigation", name="Main").get_by_role("link", name="Upload").click()
        expect(page.locator(".recent-jobs")).to_contain_text(f"{clip.path.name} · Done")
        screenshot(page, "api-token-job-in-upload-history")
        page.get_by_role("navigation", name="Main").get_by_role("link", name="API token").click()

        page.get_by_role("button", name="Regenerate").click()
        expect(page.get_by_role("textbox", name="Token")).not_to_have_value(first)
        second = page.get_by_role("textbox", name="Token").input_value()
        assert Token.objects.get(user=user).key == second
        assert _models_status(site, first) == 401
        assert _models_status(site, second) == 200

        page.get_by_role("button", name="Revoke").click()
        expect(page.locator("#no-token")).to_be_visible()
        expect(page.get_by_role("status")).to_contain_text("revoked")
        assert not Token.objects.filter(user=user).exists()
        assert _models_status(site, second) == 401
        screenshot(page, "api-token-revoked")
    finally:
        context.close()
