"""Revoking access in Chromium: the owner renews the caption link and its open caption page is closed."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from sessions_app.actions import do_add_member
from tests.browser.conftest import PASSWORD, sign_in

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_a_renewed_link_closes_the_old_caption_page_and_a_member_is_removed(
    site, browser, make_user, make_session, screenshot
):
    owner = make_user("olga", password=PASSWORD)
    make_user("max", password=PASSWORD)
    session = make_session(owner, "Board meeting", "en")
    do_add_member(session, "max", "viewer")
    owner_context, viewer_context = browser.new_context(), browser.new_context()
    try:
        viewer = viewer_context.new_page()
        viewer.goto(f"{site.url}/captions/{session.pk}/?token={session.share_token}")
        expect(viewer.locator("body")).not_to_contain_text("closed", timeout=5_000)

        page = owner_context.new_page()
        sign_in(page, site, "olga")
        card = page.locator(f'[data-session-id="{session.pk}"]')
        card.get_by_text("Members (1)").click()
        screenshot(page, "session-list-members")
        card.get_by_role("button", name="New caption link").click()
        expect(page.get_by_text("has a new caption link")).to_be_visible()
        expect(viewer.get_by_text("Your access was withdrawn")).to_be_visible(timeout=10_000)
        expect(viewer.get_by_text("Access refused")).to_have_count(0)
        screenshot(viewer, "captions-link-revoked")

        card = page.locator(f'[data-session-id="{session.pk}"]')
        card.get_by_text("Members (1)").click()
        card.get_by_role("button", name="Remove max from Board meeting").click()
        expect(page.get_by_text("max was removed")).to_be_visible()
        expect(page.locator(f'[data-session-id="{session.pk}"]').get_by_text("Members (")).to_have_count(0)
    finally:
        owner_context.close()
        viewer_context.close()
