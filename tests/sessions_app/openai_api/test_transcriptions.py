"""``POST /v1/audio/transcriptions`` through the official ``openai`` SDK, a live server and a real worker."""

from __future__ import annotations

import re

import openai
import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from rest_framework.test import APIClient

from sessions_app.exports import MAX_LINE_CHARS, MAX_LINES
from sessions_app.models import BatchJob
from tests.speech import Clip, dev_clip, word_error_rate

SRT_TIME = r"\d{2}:\d{2}:\d{2},\d{3}"
VTT_TIME = r"\d{2}:\d{2}:\d{2}\.\d{3}"
MAX_WER = 0.15


@pytest.fixture(scope="module")
def jfk() -> Clip:
    return dev_clip("jfk")


def _file(clip: Clip) -> tuple[str, bytes, str]:
    return (clip.path.name, clip.path.read_bytes(), "audio/wav")


def _seconds(stamp: str) -> float:
    hours, minutes, seconds = stamp.replace(",", ".").split(":")
    return int(hours) * 3600 + int(minutes) * 60 + float(seconds)


def _cue_texts_follow_the_line_rules(lines: list[str]) -> None:
    assert 1 <= len(lines) <= MAX_LINES
    assert all(0 < len(line) <= MAX_LINE_CHARS for line in lines)


def _check_srt(text: str, duration_s: float) -> str:
    """Numbered from 1, ``HH:MM:SS,mmm --> HH:MM:SS,mmm``, start <= end, in order, blank line between cues."""
    blocks = text.strip().split("\n\n")
    previous_start, words = 0.0, []
    for number, block in enumerate(blocks, start=1):
        lines = block.split("\n")
        assert lines[0] == str(number)
        match = re.fullmatch(rf"({SRT_TIME}) --> ({SRT_TIME})", lines[1])
        assert match, lines[1]
        start, end = _seconds(match.group(1)), _seconds(match.group(2))
        assert previous_start <= start < end <= duration_s + 0.5
        previous_start = start
        _cue_texts_follow_the_line_rules(lines[2:])
        words += lines[2:]
    return " ".join(words)


def _check_vtt(text: str, duration_s: float) -> str:
    """``WEBVTT`` then a blank line; cues ``HH:MM:SS.mmm --> HH:MM:SS.mmm``; no ``-->`` in cue text."""
    assert text.startswith("WEBVTT\n\n")
    previous_start, words = 0.0, []
    for block in text.strip().split("\n\n")[1:]:
        lines = block.split("\n")
        match = re.fullmatch(rf"({VTT_TIME}) --> ({VTT_TIME})", lines[0])
        assert match, lines[0]
        start, end = _seconds(match.group(1)), _seconds(match.group(2))
        assert previous_start <= start < end <= duration_s + 0.5
        previous_start = start
        assert all("-->" not in line for line in lines[1:])
        _cue_texts_follow_the_line_rules(lines[1:])
        words += lines[1:]
    return " ".join(words)


@pytest.mark.django_db(transaction=True)
def test_the_default_json_answer_has_the_text_and_the_file_is_a_job_in_the_upload_history(
    sdk, served_by_the_worker, api_token, jfk
):
    result = sdk.audio.transcriptions.create(model="whisper-1", file=_file(jfk))
    assert isinstance(result, openai.types.audio.Transcription)
    assert word_error_rate([jfk.text], [result.text]) < MAX_WER, result.text

    job = BatchJob.objects.get(owner=api_token.user)
    assert job.status == BatchJob.Status.DONE and job.original_filename == jfk.path.name
    history = APIClient().get("/api/jobs/", HTTP_AUTHORIZATION=f"Token {api_token.key}").json()
    assert [row["id"] for row in history["results"]] == [str(job.id)]


@pytest.mark.django_db(transaction=True)
def test_text_is_the_plain_transcript(sdk, served_by_the_worker, jfk):
    text = sdk.audio.transcriptions.create(model="whisper-1", file=_file(jfk), response_format="text")
    assert isinstance(text, str) and not text.lstrip().startswith("{")
    assert word_error_rate([jfk.text], [text]) < MAX_WER, text


@pytest.mark.django_db(transaction=True)
def test_srt_follows_the_subrip_rules(sdk, served_by_the_worker, jfk):
    srt = sdk.audio.transcriptions.create(model="whisper-1", file=_file(jfk), response_format="srt", language="en")
    assert word_error_rate([jfk.text], [_check_srt(srt, jfk.duration_s)]) < MAX_WER, srt


@pytest.mark.django_db(transaction=True)
def test_vtt_follows_the_webvtt_rules(sdk, served_by_the_worker, jfk):
    vtt = sdk.audio.transcriptions.create(model="whisper-1", file=_file(jfk), response_format="vtt")
    assert word_error_rate([jfk.text], [_check_vtt(vtt, jfk.duration_s)]) < MAX_WER, vtt


@pytest.mark.django_db(transaction=True)
def test_verbose_json_has_duration_language_segments_and_words(sdk, served_by_the_worker, jfk):
    result = sdk.audio.transcriptions.create(
        model="whisper-1",
        file=_file(jfk),
        response_format="verbose_json",
        timestamp_granularities=["word", "segment"],
        temperature=0.2,  # sampled (best of 5): the transcript stays within the bound
        prompt="A speech by President Kennedy.",
    )
    assert isinstance(result, openai.types.audio.TranscriptionVerbose)
    assert result.duration == pytest.approx(jfk.duration_s, abs=0.2)
    assert result.language == "en"
    assert word_error_rate([jfk.text], [result.text]) < MAX_WER, result.text
    assert result.segments and result.words
    assert [segment.id for segment in result.segments] == list(range(len(result.segments)))
    assert {segment.temperature for segment in result.segments} == {0.2}
    for segment in result.segments:
        assert 0 <= segment.start < segment.end <= result.duration + 0.1 and segment.text.strip()
    assert " ".join(s.text.strip() for s in result.segments) == result.text
    starts = [word.start for word in result.words]
    assert starts == sorted(starts)
    assert all(0 <= w.start <= w.end <= result.duration + 0.1 and w.word == w.word.strip() for w in result.words)
    assert word_error_rate([jfk.text], [" ".join(w.word for w in result.words)]) < MAX_WER
    assert result.usage is not None and result.usage.seconds >= jfk.duration_s - 1


# A name spelled the prompt's way, twice in a sentence: at the worker's greedy decode (beam 1) a bare
# "Glossary: Dashwud." did not outweigh the usual spelling; this does (base).
_DASHWUD_PROMPT = "Mr. John Dashwud and his wife Fanny Dashwud."


@pytest.mark.django_db(transaction=True)
def test_the_prompt_reaches_the_decoder(sdk, served_by_the_worker, api_token):
    clip = dev_clip("librivox_sense_and_sensibility_01_0870")  # "... mister john dashwood had then ..."
    text = sdk.audio.transcriptions.create(
        model="whisper-1", file=_file(clip), prompt=_DASHWUD_PROMPT, response_format="text", language="en"
    )
    assert "Dashwud" in text, text  # spelled as the prompt writes it (Whisper alone: Dashwood)
    assert BatchJob.objects.get(owner=api_token.user).prompt == _DASHWUD_PROMPT


@pytest.mark.django_db(transaction=True)
def test_verbose_json_leaves_segments_out_when_only_words_are_asked_for(sdk, served_by_the_worker):
    clip = dev_clip("ls_dev-clean_1988-24833-0000")
    result = sdk.audio.transcriptions.create(
        model="base", file=_file(clip), response_format="verbose_json", timestamp_granularities=["word"]
    )
    assert result.segments is None and result.words
    assert word_error_rate([clip.text], [result.text]) < MAX_WER, result.text


@pytest.mark.django_db(transaction=True)
def test_a_token_header_and_a_trailing_slash_work_too(served_by_the_worker, api_token):
    clip = dev_clip("ls_dev-clean_1988-24833-0000")
    response = APIClient().post(
        "/v1/audio/transcriptions/",
        {"model": "whisper-1", "file": SimpleUploadedFile(*_file(clip))},
        format="multipart",
        HTTP_AUTHORIZATION=f"Token {api_token.key}",
    )
    assert response.status_code == 200, response.content
    assert word_error_rate([clip.text], [response.json()["text"]]) < MAX_WER


@pytest.mark.django_db(transaction=True)
def test_a_job_the_worker_does_not_finish_in_time_is_named_in_the_error(sdk, settings, api_token, jfk):
    settings.BATCH_QUEUE = "a-queue-no-worker-serves"
    settings.OPENAI_API_WAIT_S = 1
    with pytest.raises(openai.InternalServerError) as caught:
        sdk.audio.transcriptions.create(model="whisper-1", file=_file(jfk))
    assert caught.value.status_code == 504
    assert caught.value.response.headers["x-should-retry"] == "false"
    error = caught.value.body
    assert error["code"] == "JOB_NOT_DONE" and error["type"] == "server_error"
    job = BatchJob.objects.get(owner=api_token.user)
    assert error["job_id"] == str(job.id) and f"/api/jobs/{job.id}/" in error["message"]
    polled = APIClient().get(error["job_url"], HTTP_AUTHORIZATION=f"Token {api_token.key}")
    assert polled.status_code == 200 and polled.json()["status"] == "queued"


@pytest.fixture
def not_audio_file() -> tuple[str, bytes, str]:
    return ("notes.wav", b"These are meeting notes, not a recording.\n" * 20, "audio/wav")


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(
    ("case", "error_class", "status", "code"),
    [
        ("empty file", openai.BadRequestError, 400, "EMPTY_FILE"),
        ("not audio", openai.BadRequestError, 400, "NOT_AUDIO"),
        ("too large", openai.APIStatusError, 413, "FILE_TOO_LARGE"),
        ("bad token", openai.AuthenticationError, 401, "NOT_AUTHENTICATED"),
        ("malformed token", openai.AuthenticationError, 401, "NOT_AUTHENTICATED"),
        ("unknown model", openai.BadRequestError, 400, "UNKNOWN_MODEL"),
        ("bad response_format", openai.BadRequestError, 400, "BAD_RESPONSE_FORMAT"),
        ("bad language", openai.BadRequestError, 400, "BAD_LANGUAGE"),
        ("bad temperature", openai.BadRequestError, 400, "BAD_TEMPERATURE"),
        ("words without verbose_json", openai.BadRequestError, 400, "BAD_TIMESTAMP_GRANULARITIES"),
    ],
)
def test_a_bad_request_gets_openais_error_object_with_our_code(
    case, error_class, status, code, sdk, client_for, api_token, settings, jfk, not_audio_file
):
    client, arguments = sdk, {"model": "whisper-1", "file": _file(jfk)}
    if case == "empty file":
        arguments["file"] = ("empty.wav", b"", "audio/wav")
    elif case == "not audio":
        arguments["file"] = not_audio_file
    elif case == "too large":
        settings.UPLOAD_MAX_BYTES = 1024
    elif case == "bad token":
        client = client_for("0" * 40)
    elif case == "malformed token":
        client = client_for("not-a-token;DROP")
    elif case == "unknown model":
        arguments["model"] = "gpt-9-imaginary"
    elif case == "bad response_format":
        arguments["response_format"] = "docx"
    elif case == "bad language":
        arguments["language"] = "klingon"
    elif case == "bad temperature":
        arguments["temperature"] = 3
    elif case == "words without verbose_json":
        arguments["timestamp_granularities"] = ["word"]

    with pytest.raises(error_class) as caught:
        client.audio.transcriptions.create(**arguments)

    assert caught.value.status_code == status
    error = caught.value.body
    assert error["code"] == code, error
    assert set(error) >= {"message", "type", "param", "code"} and error["message"]
    assert error["type"] == ("authentication_error" if status == 401 else "invalid_request_error")
    assert caught.value.response.headers["x-should-retry"] == "false"
    assert not BatchJob.objects.exists()  # refused before any job or queue
