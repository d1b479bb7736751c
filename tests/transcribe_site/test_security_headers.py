"""The Content-Security-Policy header on the HTML pages, and templates that it does not break."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from django.urls import reverse

ROOT = Path(__file__).resolve().parents[2]
HEADER = "Content-Security-Policy"


def directives(policy: str) -> dict[str, list[str]]:
    parsed = {}
    for part in policy.split(";"):
        name, *values = part.split()
        parsed[name] = values
    return parsed


@pytest.fixture
def session(make_session, user):
    return make_session(user, "Planning")


@pytest.mark.parametrize(
    "page",
    ["session-list", "upload", "session-live", "session-transcript", "session-captions", "login", "signup"],
)
def test_the_pages_allow_scripts_and_styles_from_the_site_only(client, session, page):
    if page not in ("login", "signup"):
        client.force_login(session.owner)
    args = [session.pk] if page.startswith("session-") and page != "session-list" else []
    response = client.get(reverse(page, args=args))
    assert response.status_code == 200
    policy = directives(response[HEADER])
    assert policy["script-src"] == ["'self'"]
    assert policy["style-src"] == ["'self'"]
    assert policy["default-src"] == ["'self'"]
    assert policy["frame-ancestors"] == ["'none'"]
    assert policy["connect-src"][0] == "'self'"


def test_the_admin_gets_the_site_policy(admin_client):
    response = admin_client.get(reverse("admin:index"))
    assert directives(response[HEADER])["script-src"] == ["'self'"]


def test_api_pages_get_the_api_policy_and_json_none(signed_in_client):
    docs = signed_in_client.get(reverse("api-docs"))
    assert docs.status_code == 200
    policy = directives(docs[HEADER])
    assert "'unsafe-inline'" not in policy["script-src"]
    assert policy["script-src"] == ["'self'"]  # Swagger UI's files are the site's own (the sidecar)
    # Swagger UI's start-up script is a file of the site (the split view), not inline.
    assert re.search(r"<script>\s*\S", docs.content.decode()) is None
    script = signed_in_client.get(reverse("api-docs") + "?script")
    assert script.status_code == 200 and script["Content-Type"].startswith("application/javascript")
    schema = signed_in_client.get(reverse("api-schema") + "?format=json")
    assert schema.status_code == 200 and HEADER not in schema


def test_an_empty_policy_sends_no_header(client, settings, db):
    settings.CONTENT_SECURITY_POLICY = ""
    assert HEADER not in client.get(reverse("login"))


def test_a_production_error_page_has_the_header_and_a_debug_one_not(client, settings, db):
    assert HEADER in client.get("/no-such-page/")
    settings.DEBUG = True  # Django's technical 404 page styles itself inline
    assert HEADER not in client.get("/no-such-page/")


_INLINE = [
    (re.compile(r"<script\b(?![^>]*\bsrc=)[^>]*>", re.IGNORECASE), "inline <script>"),
    (re.compile(r"<style\b", re.IGNORECASE), "<style> element"),
    (re.compile(r"\sstyle\s*=", re.IGNORECASE), "style attribute"),
    (re.compile(r"\son[a-z]+\s*=", re.IGNORECASE), "event handler attribute"),
    (re.compile(r"javascript:", re.IGNORECASE), "javascript: URL"),
]


@pytest.mark.parametrize("template", sorted((ROOT / "templates").rglob("*.html")), ids=lambda p: p.name)
def test_templates_have_no_inline_scripts_or_styles(template):
    text = template.read_text()
    found = [f"{what}: {m.group(0)!r}" for pattern, what in _INLINE for m in pattern.finditer(text)]
    assert not found, f"{template.relative_to(ROOT)} has what the CSP blocks: {found}"


@pytest.mark.parametrize("script", sorted((ROOT / "static" / "js").glob("*.js")), ids=lambda p: p.name)
def test_scripts_write_no_style_attributes_or_inline_handlers(script):
    # The CSP blocks style="..." and on...= in HTML a script inserts, and setAttribute("style");
    # element.style.x = ... (CSSOM) is allowed.
    text = script.read_text()
    assert not re.search(r"""setAttribute\(\s*["'](style|on[a-z]+)["']""", text)
    assert not re.search(r"""(innerHTML|insertAdjacentHTML|outerHTML)[^;]*\b(style|on[a-z]+)\s*=\s*[\\"']""", text)
    assert not re.search(r"\beval\(|new Function\(", text)
