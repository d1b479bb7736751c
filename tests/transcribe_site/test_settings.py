"""Settings in the embedded and the scaled mode, read in fresh interpreters with a given environment."""

from __future__ import annotations

import json
import os
import secrets
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
    "'preroll': settings.STT_PRE_ROLL_S, 'debug': settings.DEBUG, 'hosts': settings.ALLOWED_HOSTS, "
    "'key': settings.SECRET_KEY, 'redirect': settings.SECURE_SSL_REDIRECT}))"
)
_MODE_VARIABLES = ("DATABASE_URL", "REDIS_URL", "DEBUG", "SECRET_KEY", "ALLOWED_HOSTS", "VAR_DIR")
_SECURITY_PREFIXES = ("SECURE_", "SESSION_COOKIE_", "CSRF_COOKIE_", "CONTENT_SECURITY_POLICY")


def _clean_environment(env: dict[str, str]) -> dict[str, str]:
    clean = {
        k: v
        for k, v in os.environ.items()
        if k not in _MODE_VARIABLES and not k.startswith(("STT_", *_SECURITY_PREFIXES))
    }
    clean.update(env, DJANGO_SETTINGS_MODULE="transcribe_site.settings")
    return clean


def read_settings(*, code: str = _PRINT, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env=_clean_environment(env),
        capture_output=True,
        text=True,
        timeout=60,
    )


def production_env(**extra: str) -> dict[str, str]:
    return {"DEBUG": "false", "SECRET_KEY": secrets.token_urlsafe(50), "ALLOWED_HOSTS": "example.com", **extra}


def deploy_check(**env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=ROOT,
        env=_clean_environment(env),
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_no_environment_gives_the_embedded_mode_with_the_planned_engine_defaults():
    result = read_settings()
    assert result.returncode == 0, result.stderr
    values = json.loads(result.stdout)
    assert values["db"] == "django.db.backends.sqlite3"
    assert values["layer"] == "channels.layers.InMemoryChannelLayer"
    assert values["broker"] == "filesystem://"
    assert (values["silero"], values["webrtc"], values["silence"], values["min_utt"], values["preroll"]) == (
        0.4,
        3,
        0.6,
        0.5,
        1.0,
    )
    assert values["debug"] is False  # the local run shows the site's error pages, not Django's debug pages


def test_the_three_debug_modes(tmp_path):
    """Unset: the local run (debug off, a generated key kept in VAR_DIR, localhost, plain HTTP); true:
    development with Django's debug pages; false: production, which needs its own key and hosts."""
    local = read_settings(VAR_DIR=str(tmp_path))
    assert local.returncode == 0, local.stderr
    values = json.loads(local.stdout)
    assert values["debug"] is False and values["redirect"] is False
    assert "127.0.0.1" in values["hosts"] and "localhost" in values["hosts"]
    assert values["key"] == (tmp_path / "secret_key").read_text().strip()

    development = read_settings(VAR_DIR=str(tmp_path), DEBUG="true")
    assert development.returncode == 0, development.stderr
    values_dev = json.loads(development.stdout)
    assert values_dev["debug"] is True and values_dev["redirect"] is False
    assert values_dev["key"] == values["key"]  # the same generated key, made once

    production = read_settings(VAR_DIR=str(tmp_path), DEBUG="false", ALLOWED_HOSTS="example.com")
    assert production.returncode != 0
    assert "SECRET_KEY must be set when DEBUG is off" in production.stderr
    given = read_settings(VAR_DIR=str(tmp_path), **production_env())
    values_prod = json.loads(given.stdout)
    assert values_prod["debug"] is False and values_prod["redirect"] is True
    assert values_prod["key"] != values["key"] and values_prod["hosts"] == ["example.com"]


def test_a_given_secret_key_is_used_and_no_key_file_is_made(tmp_path):
    result = read_settings(VAR_DIR=str(tmp_path), DEBUG="true", SECRET_KEY="k" * 50)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["key"] == "k" * 50
    assert not (tmp_path / "secret_key").exists()


def test_database_and_redis_urls_switch_to_the_scaled_mode():
    result = read_settings(DATABASE_URL="postgres://postgres@127.0.0.1:5432/test", REDIS_URL="redis://127.0.0.1:6379/0")
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
        ({"STT_DEFAULT_LANGUAGE": "eng"}, 'STT_DEFAULT_LANGUAGE must be "auto" or one of Whisper\'s'),
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
        f"import os; {pin}import django; from django.conf import settings; print(settings.STT_MAX_STREAMS_PER_SERVER)"
    )
    result = read_settings(code=code)
    assert result.returncode == 0, result.stderr
    assert int(result.stdout) == (expected or 2 * len(os.sched_getaffinity(0)))
    assert read_settings(code=code, STT_MAX_STREAMS_PER_SERVER="9").stdout.strip() == "9"


_PRINT_HTTPS = (
    "import json, django; from django.conf import settings as s; "
    "print(json.dumps({'redirect': s.SECURE_SSL_REDIRECT, 'proxy': s.SECURE_PROXY_SSL_HEADER, "
    "'hsts': s.SECURE_HSTS_SECONDS, 'subdomains': s.SECURE_HSTS_INCLUDE_SUBDOMAINS, "
    "'preload': s.SECURE_HSTS_PRELOAD, 'session_cookie': s.SESSION_COOKIE_SECURE, "
    "'csrf_cookie': s.CSRF_COOKIE_SECURE}))"
)


def test_production_assumes_https_and_the_embedded_mode_plain_http():
    embedded = read_settings(code=_PRINT_HTTPS)
    assert embedded.returncode == 0, embedded.stderr
    assert json.loads(embedded.stdout) == {
        "redirect": False,
        "proxy": None,
        "hsts": 0,
        "subdomains": False,
        "preload": False,
        "session_cookie": False,
        "csrf_cookie": False,
    }
    production = read_settings(code=_PRINT_HTTPS, **production_env())
    assert production.returncode == 0, production.stderr
    assert json.loads(production.stdout) == {
        "redirect": True,
        "proxy": None,
        "hsts": 365 * 24 * 3600,
        "subdomains": True,
        "preload": False,
        "session_cookie": True,
        "csrf_cookie": True,
    }


def test_each_https_setting_can_be_set_from_the_environment():
    result = read_settings(
        code=_PRINT_HTTPS,
        **production_env(
            SECURE_SSL_REDIRECT="false",
            SECURE_PROXY_SSL_HEADER="HTTP_X_FORWARDED_PROTO",
            SECURE_HSTS_SECONDS="600",
            SECURE_HSTS_INCLUDE_SUBDOMAINS="no",
            SECURE_HSTS_PRELOAD="yes",
            SESSION_COOKIE_SECURE="0",
            CSRF_COOKIE_SECURE="off",
        ),
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {
        "redirect": False,
        "proxy": ["HTTP_X_FORWARDED_PROTO", "https"],
        "hsts": 600,
        "subdomains": False,
        "preload": True,
        "session_cookie": False,
        "csrf_cookie": False,
    }
    dev = read_settings(code=_PRINT_HTTPS, SECURE_SSL_REDIRECT="1", SESSION_COOKIE_SECURE="1")
    values = json.loads(dev.stdout)
    assert values["redirect"] is True and values["session_cookie"] is True and values["hsts"] == 0


@pytest.mark.parametrize(
    ("raw", "expected"),
    [("X-Forwarded-Proto", ["HTTP_X_FORWARDED_PROTO", "https"]), ("HTTP_X_SCHEME, on", ["HTTP_X_SCHEME", "on"])],
)
def test_the_proxy_header_is_read_as_a_header_name_and_its_https_value(raw, expected):
    code = "import json, django; from django.conf import settings; print(json.dumps(settings.SECURE_PROXY_SSL_HEADER))"
    result = read_settings(code=code, SECURE_PROXY_SSL_HEADER=raw)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == expected


def test_a_bad_proxy_header_stops_start_up():
    result = read_settings(SECURE_PROXY_SSL_HEADER="X Forwarded Proto")
    assert result.returncode != 0
    assert "SECURE_PROXY_SSL_HEADER='X Forwarded Proto' is not a header name" in result.stderr


def test_the_deploy_check_is_clean_in_production():
    result = deploy_check(**production_env())
    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues" in result.stdout
    assert "WARNING" not in result.stdout + result.stderr


def test_the_deploy_check_fails_when_the_production_defaults_are_turned_off():
    off = {
        "SECURE_SSL_REDIRECT": "false",
        "SECURE_HSTS_INCLUDE_SUBDOMAINS": "false",
        "SESSION_COOKIE_SECURE": "false",
        "CSRF_COOKIE_SECURE": "false",
    }
    result = deploy_check(**production_env(**off))
    assert result.returncode != 0
    for check_id in ("security.W008", "security.W005", "security.W012", "security.W016"):
        assert check_id in result.stderr
    no_hsts = deploy_check(**production_env(SECURE_HSTS_SECONDS="0"))
    assert no_hsts.returncode != 0 and "security.W004" in no_hsts.stderr
