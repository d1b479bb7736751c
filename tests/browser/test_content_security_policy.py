"""Every page in Chromium under the site's Content-Security-Policy: nothing it loads or runs is refused.

The header is checked on each page (so that a missing policy cannot pass), then any console
message or page error that mentions the policy, and every ``securitypolicyviolation`` event,
fails the test. The live page starts the microphone (audio worklet, WebSocket), the transcript
page loads a recording into its player.
"""

from __future__ import annotations

import numpy as np
import pytest
import soundfile
from playwright.sync_api import expect

from sessions_app.models import AudioRecording, BatchJob
from tests.browser.conftest import PASSWORD, sign_in, wait_until

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

REPORT_VIOLATIONS = """
document.addEventListener('securitypolicyviolation', (e) => {
  const where = `${e.sourceFile}:${e.lineNumber}`;
  window.reportCspViolation(`${e.violatedDirective} refused ${e.blockedURI || 'inline'} at ${where}`);
});
"""


def test_the_pages_run_under_the_content_security_policy(site, browser, make_user, make_session, screenshot):
    owner = make_user("cora", password=PASSWORD, is_staff=True, is_superuser=True)
    session = make_session(owner, "Policy review", "en")
    wav = site.media / "recordings" / str(session.pk) / "cora.wav"
    wav.parent.mkdir(parents=True, exist_ok=True)
    soundfile.write(str(wav), np.zeros(16000, dtype=np.int16), 16000, subtype="PCM_16")
    AudioRecording.objects.create(
        session=session,
        speaker=owner,
        file=str(wav.relative_to(site.media)),
        duration_s=1.0,
        size_bytes=wav.stat().st_size,
    )

    context = browser.new_context(viewport={"width": 1100, "height": 900})
    problems: list[str] = []
    try:
        page = context.new_page()
        page.expose_function("reportCspViolation", lambda text: problems.append(f"{page.url}: {text}"))
        page.add_init_script(REPORT_VIOLATIONS)
        page.on("console", lambda m: _about_csp(m.text) and problems.append(f"{page.url}: console {m.type}: {m.text}"))
        page.on("pageerror", lambda e: problems.append(f"{page.url}: page error: {e}"))

        def visit(path: str):
            assert not problems, problems  # of the page before
            response = page.goto(f"{site.url}{path}")
            assert response is not None and response.ok, path
            policy = response.headers.get("content-security-policy", "")
            assert "script-src 'self';" in policy and "style-src 'self';" in policy, (path, policy)

        visit("/accounts/login/")
        sign_in(page, site, "cora")
        visit("/")
        visit("/upload/")
        visit("/account/api-token/")
        visit(f"/captions/{session.pk}/?token={session.share_token}")

        visit(f"/sessions/{session.pk}/live/")
        page.get_by_role("button", name="Start microphone").click()
        expect(page.locator("#stt-state")).to_have_text("Listening", timeout=60_000)
        wait_until(page, "document.getElementById('mic-level').value > 0", timeout=30_000)
        page.get_by_role("button", name="Stop microphone").click()
        assert not problems, problems

        visit(f"/sessions/{session.pk}/transcript/")
        wait_until(page, "document.querySelector('audio').readyState >= 1", timeout=30_000)
        # 1 s made here, plus what the microphone appended to this speaker's recording on the live page
        assert page.locator("audio").evaluate("a => a.duration") >= 1.0
        # The site's stylesheet applies (a style-src that refused it would leave the browser's defaults).
        assert page.locator(".site-header").evaluate("h => getComputedStyle(h).display") == "flex"
        screenshot(page, "csp-transcript")
        assert not problems, problems

        # A job's transcript page: the same page over an uploaded file.
        job = BatchJob.objects.create(
            owner=owner, upload=str(wav.relative_to(site.media)), original_filename="cora.wav", status="done",
            segments=[{"start": 0.0, "end": 1.0, "text": "Silence.", "words": []}],
        )  # fmt: skip
        visit(f"/jobs/{job.pk}/transcript/")
        wait_until(page, "document.querySelector('audio').readyState >= 1", timeout=30_000)
        expect(page.locator("#utterances .utt")).to_contain_text(["Silence."])
        assert not problems, problems

        visit("/admin/")
        visit("/admin/sessions_app/transcriptionsession/")
        visit(f"/admin/sessions_app/transcriptionsession/{session.pk}/change/")
        page.wait_for_load_state("networkidle")
        assert not problems, problems

        # DRF's browsable API has inline styles: it gets the API policy (CONTENT_SECURITY_POLICY_API).
        response = page.goto(f"{site.url}/api/sessions/")
        assert response is not None and response.ok
        assert "'unsafe-inline'" in response.headers["content-security-policy"]
        page.wait_for_load_state("networkidle")
        assert not problems, problems
    finally:
        context.close()


def _about_csp(text: str) -> bool:
    return "content security policy" in text.lower() or "content-security-policy" in text.lower()
