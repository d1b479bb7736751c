"""A newcomer's first pages in Chromium: landing, account forms, the session list, error pages, the admin."""

from __future__ import annotations

from zoneinfo import ZoneInfo

import pytest
from django.core.files.base import ContentFile
from django.template.loader import render_to_string
from playwright.sync_api import expect

from sessions_app.models import AudioRecording, Utterance
from tests.browser.conftest import PASSWORD, SCREENSHOTS, sign_in

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

DESKTOP = {"width": 1280, "height": 900}
PHONE = {"width": 390, "height": 844}


def _scroll_width(page) -> int:
    return page.evaluate("document.scrollingElement.scrollWidth")


_TOO_WIDE = """() => [...document.querySelectorAll('body *')]
    .filter(e => e.getBoundingClientRect().right > document.documentElement.clientWidth + 1)
    .slice(0, 8).map(e => `${e.tagName}.${e.className}#${e.id} right=${Math.round(e.getBoundingClientRect().right)}`)"""


def _fits(page, width: int) -> None:
    """The page needs no horizontal scrolling; if it does, the message names what sticks out."""
    assert _scroll_width(page) <= width, (_scroll_width(page), page.evaluate(_TOO_WIDE))


def test_a_signed_out_visitor_sees_what_the_product_does_and_can_sign_up(site, browser, screenshot):
    for viewport, name in ((DESKTOP, "first-landing"), (PHONE, "first-landing-phone")):
        context = browser.new_context(viewport=viewport)
        try:
            page = context.new_page()
            page.goto(f"{site.url}/")
            expect(page.get_by_role("heading", name="Speech to text, live, in your browser")).to_be_visible()
            for feature in ("Live transcription", "Captions by share link", "Upload a recording"):
                expect(page.get_by_role("heading", name=feature)).to_be_visible()
            assert page.locator(".hero").evaluate("e => getComputedStyle(e).textAlign") == "center"
            assert _scroll_width(page) <= viewport["width"]
            icon = page.locator('link[rel="icon"]').get_attribute("href")
            response = page.request.get(f"{site.url}{icon}")
            assert response.status == 200 and response.headers["content-type"].startswith("image/svg+xml")
            screenshot(page, name)
        finally:
            context.close()
    context = browser.new_context(viewport=DESKTOP)
    try:
        page = context.new_page()
        page.goto(f"{site.url}/")
        page.get_by_role("link", name="Create a free account").click()
        page.wait_for_url(f"{site.url}/accounts/signup/")
        expect(page.get_by_role("heading", name="Create an account")).to_be_visible()
    finally:
        context.close()


def test_sign_up_shows_each_error_beside_its_field_then_signs_the_newcomer_in(site, browser, make_user, screenshot):
    make_user("taken", password=PASSWORD)
    context = browser.new_context(viewport=DESKTOP)
    try:
        page = context.new_page()
        page.goto(f"{site.url}/accounts/signup/")
        screenshot(page, "first-signup")
        page.get_by_label("Username").fill("taken")
        page.get_by_label("Password", exact=True).fill("a-Long-passphrase-9")
        page.get_by_label("Password confirmation").fill("a-different-one-9")
        page.get_by_role("button", name="Create account").click()
        expect(page.get_by_role("alert")).to_contain_text("Please correct the fields marked below")
        username = page.locator(".field", has=page.get_by_label("Username"))
        expect(username.locator(".field-errors")).to_contain_text("A user with that username already exists")
        confirmation = page.locator(".field", has=page.get_by_label("Password confirmation"))
        expect(confirmation.locator(".field-errors")).to_contain_text("didn\u2019t match")
        border = page.get_by_label("Username").evaluate("e => getComputedStyle(e).borderTopColor")
        assert border == "rgb(176, 0, 32)"  # var(--danger): the field is marked, not only the message
        assert page.get_by_label("Username").input_value() == "taken"  # what was typed stays
        expect(page.locator(".field", has=page.get_by_label("Password", exact=True)).locator(".help")).to_contain_text(
            "at least 8 characters"
        )
        assert _scroll_width(page) <= DESKTOP["width"]
        screenshot(page, "first-signup-errors")

        page.get_by_label("Username").fill("newcomer")
        page.get_by_label("Password", exact=True).fill("a-Long-passphrase-9")
        page.get_by_label("Password confirmation").fill("a-Long-passphrase-9")
        page.get_by_role("button", name="Create account").click()
        page.wait_for_url(f"{site.url}/")
        expect(page.get_by_text("Welcome, newcomer.")).to_be_visible()
    finally:
        context.close()


def test_a_wrong_password_is_said_above_the_sign_in_form(site, browser, make_user, screenshot):
    make_user("signer", password=PASSWORD)
    context = browser.new_context(viewport=DESKTOP)
    try:
        page = context.new_page()
        page.goto(f"{site.url}/accounts/login/")
        page.get_by_label("Username").fill("signer")
        page.get_by_label("Password").fill("not-the-password")
        page.get_by_role("button", name="Sign in").click()
        expect(page.get_by_role("alert")).to_contain_text("Please enter a correct username and password")
        screenshot(page, "first-signin-error")
    finally:
        context.close()


def test_the_session_list_offers_the_upload_language_dropdown_and_shows_each_sessions_figures(
    site, browser, make_user, make_session, screenshot
):
    owner = make_user("lister", password=PASSWORD)
    guest = make_user("guest", password=PASSWORD)
    session = make_session(owner, "Design review", "en")
    Utterance.objects.create(session=session, speaker=owner, sequence=1, start_s=0, end_s=3, text="Shall we start")
    Utterance.objects.create(session=session, speaker=guest, sequence=2, start_s=4, end_s=6, text="Yes, go ahead")
    recording = AudioRecording(session=session, speaker=owner, duration_s=754.6)
    recording.file.save("lister.wav", ContentFile(b"RIFF"), save=True)
    context = browser.new_context(viewport=DESKTOP, timezone_id="America/New_York")
    try:
        page = context.new_page()
        sign_in(page, site, "lister")
        card = page.locator(f'[data-session-id="{session.pk}"]')
        # When it began, in the viewer's time zone (as on the live and transcript pages), not the server's.
        began = session.created_at.astimezone(ZoneInfo("America/New_York"))
        expect(card.locator("time")).to_contain_text(began.strftime("%H:%M"))
        expect(card.locator("time")).to_contain_text(began.tzname())
        expect(card.locator(".session-stats")).to_contain_text("12:35")
        expect(card.locator(".session-stats")).to_contain_text("2 speakers: guest, lister")
        expect(card.locator(".session-stats")).to_contain_text("6 words")

        sessions_dropdown = page.get_by_label("Language").locator("option").all_inner_texts()
        page.get_by_label("Title").fill("Standup")
        page.get_by_label("Language").select_option(label="German")
        page.get_by_role("button", name="Create").click()
        expect(page.get_by_text("Session “Standup” created.")).to_be_visible()
        expect(page.locator(".session-card", has_text="Standup")).to_contain_text("language de")
        expect(page.locator(".session-card", has_text="Standup")).to_contain_text("Nobody has spoken yet")
        assert _scroll_width(page) <= DESKTOP["width"]
        screenshot(page, "first-session-list")

        page.get_by_role("navigation", name="Main").get_by_role("link", name="Upload").click()
        page.wait_for_url(f"{site.url}/upload/")
        assert page.get_by_label("Language").locator("option").all_inner_texts() == sessions_dropdown
        assert sessions_dropdown[:2] == ["Detect", "English"]
        screenshot(page, "first-upload")
    finally:
        context.close()


def test_the_local_run_answers_a_wrong_address_with_its_own_404_page(local_run_site, site, browser, screenshot):
    context = browser.new_context(viewport=DESKTOP)
    try:
        page = context.new_page()
        response = page.goto(f"{local_run_site.url}/sessions/not-a-page/")
        assert response.status == 404
        expect(page.get_by_role("heading", name="Page not found")).to_be_visible()
        expect(page.locator("body")).not_to_contain_text("URLconf")  # not Django's debug page
        # Styled with DEBUG off: daphne serves /static/ itself.
        header = page.locator(".site-header").evaluate("e => getComputedStyle(e).backgroundColor")
        assert header == "rgb(16, 24, 40)"
        screenshot(page, "first-404")
        page.get_by_role("link", name="Go to your sessions").click()
        expect(page.get_by_role("heading", name="Speech to text, live, in your browser")).to_be_visible()

        # A form sent without its CSRF cookie gets the site's 403 page, not Django's.
        page.goto(f"{local_run_site.url}/accounts/login/")
        context.clear_cookies()
        page.get_by_label("Username").fill("anyone")
        page.get_by_label("Password").fill("anything")
        page.get_by_role("button", name="Sign in").click()
        expect(page.get_by_role("heading", name="This form has expired")).to_be_visible()
        screenshot(page, "first-403-csrf")

        # The development server (DEBUG=true) keeps Django's debug 404 with the URL list.
        page.goto(f"{site.url}/sessions/not-a-page/")
        expect(page.locator("body")).to_contain_text("URLconf")
    finally:
        context.close()


def test_the_500_page_is_styled_by_the_site(site, browser, screenshot):
    """Django renders 500.html with no request context; shown here as the browser would get it."""
    html = render_to_string("500.html")
    context = browser.new_context(viewport=DESKTOP)
    try:
        page = context.new_page()
        page.route(f"{site.url}/broken/", lambda route: route.fulfill(status=500, body=html, content_type="text/html"))
        page.goto(f"{site.url}/broken/")
        expect(page.get_by_role("heading", name="Something went wrong on our side")).to_be_visible()
        assert page.locator(".site-header").evaluate("e => getComputedStyle(e).backgroundColor") == "rgb(16, 24, 40)"
        screenshot(page, "first-500")
    finally:
        context.close()


def test_the_admin_session_page_fits_a_1280_pixel_window(site, browser, make_user, make_session, screenshot):
    admin = make_user("reviewer", password=PASSWORD, is_staff=True, is_superuser=True)
    session = make_session(admin, "All hands")
    sentence = "and then we looked at the quarterly numbers again because the first count was clearly wrong"
    Utterance.objects.bulk_create(
        Utterance(session=session, speaker=admin, sequence=i + 1, start_s=7.0 * i + 0.123, end_s=7.0 * i + 6.789,
                  text=f"{sentence} ({i})")
        for i in range(70)
    )  # fmt: skip
    recording = AudioRecording(session=session, speaker=admin, duration_s=496.987654)
    recording.file.save("reviewer.wav", ContentFile(b"RIFF"), save=True)
    context = browser.new_context(viewport=DESKTOP)
    try:
        page = context.new_page()
        page.goto(f"{site.url}/admin/login/?next=/admin/")
        page.get_by_label("Username").fill("reviewer")
        page.get_by_label("Password").fill(PASSWORD)
        page.get_by_role("button", name="Log in").click()
        page.wait_for_url(f"{site.url}/admin/")
        page.goto(f"{site.url}/admin/sessions_app/transcriptionsession/{session.pk}/change/")
        expect(page.get_by_text("The first 50 of 70 utterances")).to_be_visible()
        _fits(page, DESKTOP["width"])
        assert page.locator("#utterances-group textarea").count() == 0
        expect(page.locator("#recordings-group")).to_contain_text("8:17")
        expect(page.locator("#utterances-group")).to_contain_text("0:07.1 to 0:13.8")
        screenshot(page, "first-admin-session")
        page.locator("#utterances-group").scroll_into_view_if_needed()
        page.screenshot(path=str(SCREENSHOTS / "first-admin-session-utterances.png"))
        page.locator("#utterances-group").get_by_role("link", name="Correct").first.click()
        expect(page.get_by_label("Corrected text")).to_be_visible()
        page.go_back()

        page.get_by_role("link", name="all utterances of this session").click()
        expect(page.locator("#result_list tbody tr")).to_have_count(70)
        _fits(page, DESKTOP["width"])
        screenshot(page, "first-admin-utterances")
        page.locator("#result_list tbody tr").first.get_by_role("link").first.click()
        expect(page.get_by_label("Corrected text")).to_be_visible()
        _fits(page, DESKTOP["width"])
        screenshot(page, "first-admin-utterance")
    finally:
        context.close()
