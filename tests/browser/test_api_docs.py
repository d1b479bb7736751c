"""``/api/docs/`` renders Swagger UI with no internet: its files come from the site (drf-spectacular-sidecar)."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_swagger_ui_renders_every_operation_with_every_other_host_cut_off(site, browser, screenshot):
    context = browser.new_context(viewport={"width": 1280, "height": 1000})
    elsewhere: list[str] = []
    from_the_site: list[str] = []

    def only_the_site(route) -> None:
        url = route.request.url
        if url.startswith(site.url):
            from_the_site.append(url)
            route.continue_()
        else:
            elsewhere.append(url)
            route.abort()

    context.route("**/*", only_the_site)
    problems: list[str] = []
    try:
        page = context.new_page()
        page.on("pageerror", lambda error: problems.append(f"page error: {error}"))
        page.on("console", lambda m: "Content Security Policy" in m.text and problems.append(m.text))
        response = page.goto(f"{site.url}/api/docs/")
        assert response is not None and response.ok
        assert "cdn.jsdelivr.net" not in response.headers.get("content-security-policy", "")

        paths = page.locator(".opblock-summary-path")
        expect(paths.first).to_be_visible(timeout=30_000)
        # Swagger UI puts zero-width spaces into long paths (to break lines).
        shown = [text.replace("\u200b", "") for text in paths.all_inner_texts()]
        assert "/api/jobs/" in shown, shown
        assert "/v1/audio/transcriptions" in shown and "/v1/models" in shown, shown  # OpenAI's paths, no slash
        expect(page.locator(".opblock-tag", has_text="OpenAI-compatible")).to_be_visible()
        expect(page.get_by_role("button", name="Authorize")).to_be_visible()
        screenshot(page, "api-docs-offline")
    finally:
        context.close()

    assert elsewhere == [], elsewhere
    assert any("/static/drf_spectacular_sidecar/swagger-ui-dist/swagger-ui-bundle.js" in u for u in from_the_site)
    assert not problems, problems
