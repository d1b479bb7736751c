from __future__ import annotations

from html.parser import HTMLParser
from urllib.parse import urlencode

import pytest
from django.core.files.base import ContentFile
from django.urls import reverse

from sessions_app.admin import CappedInlineFormSet, clock
from sessions_app.models import AudioRecording, BatchJob, Utterance

pytestmark = pytest.mark.django_db


@pytest.fixture
def admin_client_with_data(client, make_user, make_session, settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path
    admin = make_user("root", is_staff=True, is_superuser=True)
    session = make_session(admin, title="Board meeting")
    Utterance.objects.create(
        session=session,
        speaker=admin,
        sequence=1,
        start_s=0.5,
        end_s=2.0,
        text="the budget is approved",
        words=[{"word": "the", "start": 0.5, "end": 0.7, "probability": 0.9}],
    )
    recording = AudioRecording(session=session, speaker=admin, duration_s=2.0)
    recording.file.save("a.wav", ContentFile(b"RIFF"), save=True)
    job = BatchJob(owner=admin, original_filename="talk.wav", segments=[{"start": 0, "end": 1, "text": "hi"}])
    job.upload.save("talk.wav", ContentFile(b"RIFF"), save=True)
    client.force_login(admin)
    return client, {
        "transcriptionsession": session,
        "utterance": Utterance.objects.get(),
        "audiorecording": recording,
        "batchjob": job,
    }


@pytest.mark.parametrize("model", ["transcriptionsession", "utterance", "audiorecording", "batchjob"])
def test_admin_list_search_and_change_pages_render(admin_client_with_data, model):
    client, rows = admin_client_with_data
    changelist = reverse(f"admin:sessions_app_{model}_changelist")
    assert client.get(changelist).status_code == 200
    assert client.get(changelist, {"q": "budget"}).status_code == 200
    response = client.get(reverse(f"admin:sessions_app_{model}_change", args=[rows[model].pk]))
    assert response.status_code == 200


def test_the_session_page_lists_its_utterances_inline_with_an_audio_player(admin_client_with_data):
    client, rows = admin_client_with_data
    page = client.get(reverse("admin:sessions_app_transcriptionsession_change", args=[rows["transcriptionsession"].pk]))
    html = page.content.decode()
    assert "the budget is approved" in html
    assert "<audio controls" in html


def test_searching_sessions_finds_them_by_spoken_words(admin_client_with_data):
    client, _ = admin_client_with_data
    page = client.get(reverse("admin:sessions_app_transcriptionsession_changelist"), {"q": "budget"})
    assert "Board meeting" in page.content.decode()
    page = client.get(reverse("admin:sessions_app_transcriptionsession_changelist"), {"q": "weather"})
    assert "Board meeting" not in page.content.decode()


def test_a_correction_in_admin_keeps_the_original_and_records_the_reviewer(admin_client_with_data):
    client, rows = admin_client_with_data
    utterance = rows["utterance"]
    url = reverse("admin:sessions_app_utterance_change", args=[utterance.pk])
    response = client.post(url, {"corrected_text": "the budget was approved"})
    assert response.status_code == 302
    utterance.refresh_from_db()
    assert utterance.text == "the budget is approved"
    assert utterance.corrected_text == "the budget was approved"
    assert utterance.corrected_by.username == "root"


def test_recording_audio_supports_range_requests_for_seeking(admin_client_with_data):
    client, rows = admin_client_with_data
    url = reverse("recording-audio", args=[rows["audiorecording"].pk])
    response = client.get(url, HTTP_RANGE="bytes=1-2")
    assert response.status_code == 206
    assert b"".join(response.streaming_content) == b"IF"
    assert response["Content-Range"] == "bytes 1-2/4"


def test_a_stranger_cannot_fetch_a_recording(admin_client_with_data, make_user, client):
    _, rows = admin_client_with_data
    client.force_login(make_user("stranger"))
    assert client.get(reverse("recording-audio", args=[rows["audiorecording"].pk])).status_code == 404


class _FormFields(HTMLParser):
    """The name/value pairs a browser would send for the page's first POST form (inputs, selects, textareas)."""

    def __init__(self) -> None:
        super().__init__()
        self.data: list[tuple[str, str]] = []
        self._select: str | None = None
        self._textarea: str | None = None

    def handle_starttag(self, tag, attrs) -> None:
        attrs = dict(attrs)
        name = attrs.get("name")
        if tag == "input" and name and attrs.get("type") not in ("submit", "button", "file", "checkbox"):
            self.data.append((name, attrs.get("value") or ""))
        elif tag == "input" and name and attrs.get("type") == "checkbox" and "checked" in attrs:
            self.data.append((name, attrs.get("value") or "on"))
        elif tag == "select":
            self._select = name
        elif tag == "option" and self._select and "selected" in attrs:
            self.data.append((self._select, attrs.get("value") or ""))
        elif tag == "textarea":
            self._textarea = name
            self.data.append((name, ""))

    def handle_endtag(self, tag) -> None:
        if tag == "select":
            self._select = None
        elif tag == "textarea":
            self._textarea = None

    def handle_data(self, data) -> None:
        if self._textarea:
            name, value = self.data.pop()
            self.data.append((name, value + data.lstrip("\n")))


def _many_utterances(session, speaker, count: int) -> None:
    Utterance.objects.bulk_create(
        Utterance(session=session, speaker=speaker, sequence=10 + i, start_s=3.0 + i, end_s=3.5 + i,
                  text=f"line number {i}")
        for i in range(count)
    )  # fmt: skip


def test_the_session_page_shows_its_utterances_read_only_and_capped_with_a_link_to_all(
    admin_client_with_data, make_session
):
    client, rows = admin_client_with_data
    session = rows["transcriptionsession"]
    _many_utterances(session, session.owner, 80)
    html = client.get(reverse("admin:sessions_app_transcriptionsession_change", args=[session.pk])).content.decode()
    assert "<textarea" not in html  # no editable utterance text on the session page
    assert html.count('class="utterance-edit"') == CappedInlineFormSet.cap
    assert f"The first {CappedInlineFormSet.cap} of 81 utterances" in html
    link = reverse("admin:sessions_app_utterance_changelist") + f"?session={session.pk}"
    assert f'href="{link}"' in html
    elsewhere = make_session(session.owner, title="Another")
    Utterance.objects.create(session=elsewhere, speaker=session.owner, sequence=1, start_s=0, end_s=1, text="not here")
    listed = client.get(link).content.decode()
    assert "81 utterances" in listed and "not here" not in listed


def test_the_session_page_still_saves_with_its_capped_inline(admin_client_with_data):
    client, rows = admin_client_with_data
    session = rows["transcriptionsession"]
    _many_utterances(session, session.owner, 60)
    url = reverse("admin:sessions_app_transcriptionsession_change", args=[session.pk])
    parser = _FormFields()
    parser.feed(client.get(url).content.decode())
    data = [(name, "Board meeting, renamed" if name == "title" else value) for name, value in parser.data]
    data.append(("_save", "Save"))
    response = client.post(url, urlencode(data), content_type="application/x-www-form-urlencoded")
    assert response.status_code == 302, response.content.decode()[:2000]
    session.refresh_from_db()
    assert session.title == "Board meeting, renamed"
    assert Utterance.objects.filter(session=session).count() == 61


def test_durations_and_times_are_rounded(admin_client_with_data):
    client, rows = admin_client_with_data
    AudioRecording.objects.filter(pk=rows["audiorecording"].pk).update(duration_s=83.456789)
    Utterance.objects.filter(pk=rows["utterance"].pk).update(start_s=61.04999, end_s=62.3333333)
    session_page = client.get(
        reverse("admin:sessions_app_transcriptionsession_change", args=[rows["transcriptionsession"].pk])
    ).content.decode()
    assert "1:23" in session_page and "83.45" not in session_page
    assert "1:01.0 to 1:02.3" in session_page and "62.333" not in session_page
    recordings = client.get(reverse("admin:sessions_app_audiorecording_changelist")).content.decode()
    assert "1:23" in recordings and "83.45" not in recordings


@pytest.mark.parametrize(
    ("seconds", "tenths", "shown"),
    [(None, False, "-"), (0.4, False, "0:00"), (59.6, False, "1:00"), (3723.2, False, "1:02:03"),
     (61.04999, True, "1:01.0"), (59.96, True, "1:00.0"), (-1.0, True, "0:00.0")],
)  # fmt: skip
def test_clock_rounds_seconds_for_reading(seconds, tenths, shown):
    assert clock(seconds, tenths=tenths) == shown
