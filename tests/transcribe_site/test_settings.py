"""Settings in the embedded and the scaled mode, read in fresh interpreters with a given environment."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
_PRINT = (
    "import json, django; from django.conf import settings; "
    "print(json.dumps({'db': settings.DATABASES['default']['ENGINE'], "
    "'layer': settings.CHANNEL_LAYERS['default']['BACKEND'], 'broker': settings.CELERY_BROKER_URL, "
    "'silero': settings.STT_SILERO_SENSITIVITY, 'webrtc': settings.STT_WEBRTC_SENSITIVITY, "
    "'silence': settings.STT_POST_SPEECH_SILENCE_S, 'min_utt': settings.STT_MIN_UTTERANCE_S, "
    "'preroll': settings.STT_PRE_ROLL_S, 'debug': settings.DEBUG, 'hosts': settings.ALLOWED_HOSTS}))"
)
_MODE_VARIABLES = ("DATABASE_URL", "REDIS_URL", "DEBUG", "SECRET_KEY", "ALLOWED_HOSTS")


def read_settings(*, code: str = _PRINT, **env: str) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if k not in _MODE_VARIABLES and not k.startswith("STT_")}
    clean.update(env, DJANGO_SETTINGS_MODULE="transcribe_site.settings")
    return subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=clean, capture_output=True, text=True, timeout=60
    )


def test_no_environment_gives_the_embedded_mode_with_the_planned_engine_defaults():
    result = read_settings()
    assert result.returncode == 0, result.stderr
    values = json.loads(result.stdout)
    assert values["db"] == "django.db.backends.sqlite3"
    assert values["layer"] == "channels.layers.InMemoryChannelLayer"
    assert values["broker"] == "filesystem://"
    assert (values["silero"], values["webrtc"], values["silence"], values["min_utt"], values["preroll"]) == (
        0.4, 3, 0.6, 0.5, 1.0,
    )
    assert values["debug"] is True


def test_database_and_redis_urls_switch_to_the_scaled_mode():
    result = read_settings(
        DATABASE_URL="postgres://postgres@127.0.0.1:5432/test", REDIS_URL="redis://127.0.0.1:6379/0"
    )
    assert result.returncode == 0, result.stderr
    values = json.loads(result.stdout)
    assert values["db"] == "django.db.backends.postgresql"
    assert values["layer"] == "channels_redis.core.RedisChannelLayer"
    assert values["broker"] == "redis://127.0.0.1:6379/0"


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"STT_SILERO_SENSITIVITY": "loud"}, "STT_SILERO_SENSITIVITY='loud' is not a number"),
        ({"STT_WEBRTC_SENSITIVITY": "7"}, "STT_WEBRTC_SENSITIVITY=7 is above the maximum 3"),
        ({"DEBUG": "maybe"}, "DEBUG='maybe' is not a boolean"),
        ({"DEBUG": "0"}, "SECRET_KEY must be set when DEBUG is off"),
        ({"REDIS_URL": "localhost:6379"}, "REDIS_URL='localhost:6379' must start with redis://"),
        ({"STT_DEVICE": "tpu"}, "STT_DEVICE='tpu' must be one of"),
        ({"STT_DEFAULT_LANGUAGE": "eng"}, "STT_DEFAULT_LANGUAGE must be \"auto\" or one of Whisper's"),
    ],
)
def test_a_bad_value_stops_start_up_with_a_message_naming_the_variable(env, message):
    result = read_settings(**env)
    assert result.returncode != 0
    assert "ImproperlyConfigured" in result.stderr
    assert message in result.stderr


def test_production_mode_with_a_secret_key_starts():
    result = read_settings(DEBUG="false", SECRET_KEY="x" * 50, ALLOWED_HOSTS="example.org, api.example.org")
    assert result.returncode == 0, result.stderr
    values = json.loads(result.stdout)
    assert values["debug"] is False
    assert values["hosts"] == ["example.org", "api.example.org"]


@pytest.mark.parametrize(("cores", "expected"), [({0}, 2), (None, None)])
def test_the_server_admits_two_live_streams_per_core_it_may_use(cores, expected):
    pin = f"os.sched_setaffinity(0, {cores!r}); " if cores else ""
    code = (
        f"import os; {pin}import django; from django.conf import settings; "
        "print(settings.STT_MAX_STREAMS_PER_SERVER)"
    )
    result = read_settings(code=code)
    assert result.returncode == 0, result.stderr
    assert int(result.stdout) == (expected or 2 * len(os.sched_getaffinity(0)))
    assert read_settings(code=code, STT_MAX_STREAMS_PER_SERVER="9").stdout.strip() == "9"
