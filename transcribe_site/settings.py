"""All settings, read from the environment in this one module.

With no environment at all the site runs in the embedded mode: SQLite, an in-memory
channel layer and a Celery broker kept in files (no server needed). Set ``DATABASE_URL``
and ``REDIS_URL`` for the scaled deployment. ``.env.example`` lists every variable.
"""

from __future__ import annotations

import os
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

from stt_engine.languages import normalize_language
from stt_engine.load import usable_cores
from transcribe_site.env import (
    env_bool,
    env_choice,
    env_float,
    env_int,
    env_list,
    env_proxy_ssl_header,
    env_str,
)
from transcribe_site.secret_key import load_or_create_secret_key

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(env_str("VAR_DIR", str(BASE_DIR / "var")))

# Three modes, chosen by DEBUG:
# - unset: the local run (`make run` on http://127.0.0.1:8000): DEBUG off, so errors get the site's
#   plain pages; a secret key generated once into VAR_DIR/secret_key; localhost; plain HTTP.
# - true: development: Django's debug pages, with the same generated key unless SECRET_KEY is set.
# - false: production: SECRET_KEY and ALLOWED_HOSTS must be given, and HTTPS is assumed.
DEBUG = env_bool("DEBUG", False)
PRODUCTION = "DEBUG" in os.environ and not DEBUG
SECRET_KEY = env_str("SECRET_KEY")
if not SECRET_KEY:
    if PRODUCTION:
        raise ImproperlyConfigured(
            "SECRET_KEY must be set when DEBUG is off (DEBUG=false). Leave DEBUG unset for the local run, "
            "which keeps a generated key in var/secret_key."
        )
    SECRET_KEY = load_or_create_secret_key(VAR_DIR / "secret_key")
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", [] if PRODUCTION else ["127.0.0.1", "localhost", "testserver"])
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", [])

# HTTPS. In production (DEBUG=false) the site is taken to be served over HTTPS only (by daphne itself
# or by a TLS proxy in front, which then needs SECURE_PROXY_SSL_HEADER): plain HTTP is redirected,
# HSTS is sent for a year and the cookies are secure-only. In the local run and with DEBUG=true
# (`make run` on http://127.0.0.1:8000) all of it is off. Each one can be set by itself.
_HTTPS_ONLY = PRODUCTION
SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", _HTTPS_ONLY)
# Only behind a proxy that always sets (or overwrites) this header: a client could send it itself.
SECURE_PROXY_SSL_HEADER = env_proxy_ssl_header("SECURE_PROXY_SSL_HEADER")
SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 365 * 24 * 3600 if _HTTPS_ONLY else 0, minimum=0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", _HTTPS_ONLY)
# Asking for the browsers' preload list cannot be taken back quickly, so it is opt-in; not asking
# is then a decision, and the deploy check's reminder of it (W021) is silenced.
SECURE_HSTS_PRELOAD = env_bool("SECURE_HSTS_PRELOAD", False)
SILENCED_SYSTEM_CHECKS = ["security.W021"] if SECURE_HSTS_SECONDS and not SECURE_HSTS_PRELOAD else []
SESSION_COOKIE_SECURE = env_bool("SESSION_COOKIE_SECURE", _HTTPS_ONLY)
CSRF_COOKIE_SECURE = env_bool("CSRF_COOKIE_SECURE", _HTTPS_ONLY)

# Content-Security-Policy of every HTML response (transcribe_site/security_headers.py), in debug
# mode too. The pages load scripts, styles and the audio worklet from the site only; the live pages
# open WebSockets to it and play recordings. Pages under /api/ (DRF's browsable API, Swagger UI)
# get the second policy: they have inline styles. Swagger UI's files are the site's own
# (drf-spectacular-sidecar), so /api/docs/ works with no internet. An empty value sends no header.
CONTENT_SECURITY_POLICY = env_str(
    "CONTENT_SECURITY_POLICY",
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "media-src 'self' blob:; connect-src 'self' ws: wss:; "
    "frame-ancestors 'none'; base-uri 'self'; form-action 'self'",
)
CONTENT_SECURITY_POLICY_API = env_str(
    "CONTENT_SECURITY_POLICY_API",
    "default-src 'self'; script-src 'self'; "
    "style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
    "connect-src 'self'; frame-ancestors 'none'; base-uri 'self'; form-action 'self'",
)

INSTALLED_APPS = [
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "channels",
    "rest_framework",
    "rest_framework.authtoken",
    "drf_spectacular",
    "drf_spectacular_sidecar",  # Swagger UI's and ReDoc's files, served by the site (no CDN)
    "sessions_app",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "transcribe_site.security_headers.ContentSecurityPolicyMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "transcribe_site.urls"
ASGI_APPLICATION = "transcribe_site.asgi.application"
WSGI_APPLICATION = "transcribe_site.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# Database: SQLite file by default, anything dj-database-url understands otherwise.
DATABASE_URL = env_str("DATABASE_URL")
if not DATABASE_URL:
    VAR_DIR.mkdir(parents=True, exist_ok=True)  # the embedded SQLite file lives here
    DATABASE_URL = f"sqlite:///{VAR_DIR / 'db.sqlite3'}"
try:
    DATABASES = {"default": dj_database_url.parse(DATABASE_URL, conn_max_age=env_int("DB_CONN_MAX_AGE", 0))}
except (ValueError, KeyError) as exc:
    raise ImproperlyConfigured(f"DATABASE_URL={DATABASE_URL!r} is not a database URL: {exc}") from None
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # Several processes (daphne, the Celery worker) write to one file: wait rather than fail.
    DATABASES["default"].setdefault("OPTIONS", {})["timeout"] = 20
    # Tests that use a real Celery worker need a test database another process can open:
    # a file (per test process, so parallel runs do not collide), not SQLite's in-memory one.
    DATABASES["default"]["TEST"] = {"NAME": str(VAR_DIR / f"test-db-{os.getpid()}.sqlite3")}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# Redis: one URL switches the channel layer and the Celery broker to the scaled mode.
REDIS_URL = env_str("REDIS_URL")
if REDIS_URL and not REDIS_URL.startswith(("redis://", "rediss://", "unix://")):
    raise ImproperlyConfigured(f"REDIS_URL={REDIS_URL!r} must start with redis://, rediss:// or unix://.")
if REDIS_URL:
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            # redis-py 8 reads with a 5 s socket timeout by default, shorter than the blocking
            # BZPOPMIN with which channels_redis waits for messages: every idle consumer would be
            # torn down (1011) every 5 s (django/channels_redis#422). No read timeout here.
            "CONFIG": {
                "hosts": [{"address": REDIS_URL, "socket_timeout": None}],
                "capacity": 1500,
                "expiry": 30,
            },
        }
    }
else:
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}

# Celery (read by transcribe_site/celery.py with namespace "CELERY").
CELERY_BROKER_URL = REDIS_URL or "filesystem://"
CELERY_BROKER_TRANSPORT_OPTIONS = (
    {}
    if REDIS_URL
    else {
        "data_folder_in": str(VAR_DIR / "celery-broker"),
        "data_folder_out": str(VAR_DIR / "celery-broker"),
        "control_folder": str(VAR_DIR / "celery-control"),
        "store_processed": False,
    }
)
CELERY_TASK_ALWAYS_EAGER = env_bool("CELERY_TASK_ALWAYS_EAGER", False)
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_TIME_LIMIT = env_int("CELERY_TASK_TIME_LIMIT", 3 * 3600, minimum=10)
CELERY_TASK_SOFT_TIME_LIMIT = max(CELERY_TASK_TIME_LIMIT - 60, 5)
if REDIS_URL:
    # With late acks Redis redelivers a task not acked within the visibility timeout (1 h by
    # default): keep it above the time limit so a long job is never run twice at once.
    CELERY_BROKER_TRANSPORT_OPTIONS["visibility_timeout"] = CELERY_TASK_TIME_LIMIT + 600

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "session-list"
LOGOUT_REDIRECT_URL = "login"

LANGUAGE_CODE = "en-us"
TIME_ZONE = env_str("TIME_ZONE", "UTC")
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = Path(env_str("STATIC_ROOT", str(VAR_DIR / "static")))
# daphne serves /static/ itself (transcribe_site/asgi.py, Django's ASGIStaticFilesHandler, in every
# mode, from the source folders): the pages are styled with DEBUG off too. Set false where a proxy
# serves STATIC_ROOT (after collectstatic).
SERVE_STATIC = env_bool("SERVE_STATIC", True)
MEDIA_URL = "media/"
MEDIA_ROOT = Path(env_str("MEDIA_ROOT", str(VAR_DIR / "media")))

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "sessions_app.api.authentication.CheckedTokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_PAGINATION_CLASS": "rest_framework.pagination.PageNumberPagination",
    "PAGE_SIZE": 50,
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "sessions_app.api.errors.api_exception_handler",
    "DEFAULT_THROTTLE_RATES": {"uploads": env_str("UPLOAD_THROTTLE_RATE", "30/hour")},
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Transcription API",
    "DESCRIPTION": "Batch transcription jobs, live session transcripts and exports.",
    "VERSION": "1.0.0",
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    # Jobs and sessions both have a "status" with choices of their own: each gets its name.
    "ENUM_NAME_OVERRIDES": {
        "JobStatusEnum": "sessions_app.models.BatchJob.Status",
        "SessionStatusEnum": "sessions_app.models.TranscriptionSession.Status",
    },
}

# Speech engine (turned into stt_engine.EngineConfig by sessions_app.engine_config).
STT_PARTIAL_MODEL = env_str("STT_PARTIAL_MODEL", "tiny.en")
STT_FINAL_MODEL = env_str("STT_FINAL_MODEL", "base")
STT_DEVICE = env_choice("STT_DEVICE", "cpu", ("cpu", "cuda", "auto"))
STT_COMPUTE_TYPE = env_choice(
    "STT_COMPUTE_TYPE", "int8", ("int8", "int8_float16", "int8_float32", "float16", "float32", "default")
)
STT_CPU_THREADS = env_int("STT_CPU_THREADS", 0, minimum=0, maximum=64)  # 0: measured at engine start
STT_SILERO_SENSITIVITY = env_float("STT_SILERO_SENSITIVITY", 0.4, minimum=0.0, maximum=1.0)
STT_WEBRTC_SENSITIVITY = env_int("STT_WEBRTC_SENSITIVITY", 3, minimum=0, maximum=3)
STT_POST_SPEECH_SILENCE_S = env_float("STT_POST_SPEECH_SILENCE_S", 0.6, minimum=0.1, maximum=10.0)
STT_MIN_UTTERANCE_S = env_float("STT_MIN_UTTERANCE_S", 0.5, minimum=0.0, maximum=10.0)
STT_PRE_ROLL_S = env_float("STT_PRE_ROLL_S", 1.0, minimum=0.0, maximum=5.0)
STT_MAX_UTTERANCE_S = env_float("STT_MAX_UTTERANCE_S", 15.0, minimum=5.0, maximum=30.0)
STT_BEAM_SIZE = env_int("STT_BEAM_SIZE", 5, minimum=1, maximum=10)
# A final that starts this soon after the previous one continues it (its audio and words as
# context). Off (0) by default: on the dev set it made finals slower and no more accurate.
STT_CONTEXT_AFTER_PAUSE_S = env_float("STT_CONTEXT_AFTER_PAUSE_S", 0.0, minimum=0.0, maximum=60.0)
# Each speaker's turn is decoded again as one window once it ends (stt_revised).
STT_REFINE_TURNS = env_bool("STT_REFINE_TURNS", True)
STT_TURN_PAUSE_S = env_float("STT_TURN_PAUSE_S", 1.2, minimum=0.3, maximum=30.0)
STT_REFINE_YIELD_S = env_float("STT_REFINE_YIELD_S", 2.0, minimum=0.0, maximum=30.0)
STT_DEFAULT_LANGUAGE = normalize_language(env_str("STT_DEFAULT_LANGUAGE", "auto"))
if STT_DEFAULT_LANGUAGE is None:
    raise ImproperlyConfigured('STT_DEFAULT_LANGUAGE must be "auto" or one of Whisper\'s language codes.')
STT_WARM_ENGINES = env_int("STT_WARM_ENGINES", 1, minimum=0, maximum=32)
# An engine whose stream ended is reset and serves the next one; it is replaced after this many
# streams or seconds (or when it crashed, or did not answer its reset).
STT_ENGINE_MAX_STREAMS = env_int("STT_ENGINE_MAX_STREAMS", 500, minimum=1)
STT_ENGINE_MAX_AGE_S = env_int("STT_ENGINE_MAX_AGE_S", 24 * 3600, minimum=60)
STT_ENGINE_WAIT_S = env_int("STT_ENGINE_WAIT_S", 120, minimum=5)  # a stream's audio is held this long at most

# Limits of live streams. Each live speaker costs about half a core on the default models, so
# a server admits two streams per core it may use; more would make every speaker's finals late.
STT_MAX_STREAMS_PER_SERVER = env_int("STT_MAX_STREAMS_PER_SERVER", 2 * usable_cores(), minimum=1)
STT_MAX_STREAMS_PER_USER = env_int("STT_MAX_STREAMS_PER_USER", 2, minimum=1)
# A connection that finds the limits full waits this long for a slot before TOO_MANY_STREAMS (or
# ALREADY_STREAMING): a reconnect may arrive before the server has seen the old connection close.
STT_ADMISSION_WAIT_S = env_float("STT_ADMISSION_WAIT_S", 3.0, minimum=0.0, maximum=60.0)
STT_MAX_SESSION_S = env_int("STT_MAX_SESSION_S", 4 * 3600, minimum=10)
# A stream whose connection was lost without stt_stop is held this long for the speaker to resume
# it (its engine, open utterance, recording and slot kept); then it ends as a disconnect ends it.
STT_RESUME_GRACE_S = env_float("STT_RESUME_GRACE_S", 60.0, minimum=0.0, maximum=3600.0)
# A crashed engine's successor hears again the audio since the last final, at most this much.
STT_REPLAY_MAX_S = env_float("STT_REPLAY_MAX_S", 30.0, minimum=1.0, maximum=300.0)
STT_IDLE_TIMEOUT_S = env_int("STT_IDLE_TIMEOUT_S", 120, minimum=5)
STT_MAX_FRAME_BYTES = env_int("STT_MAX_FRAME_BYTES", 64 * 1024, minimum=320)
STT_MAX_AUDIO_SPEED = env_float("STT_MAX_AUDIO_SPEED", 2.0, minimum=1.0)  # x real time, after the burst
STT_AUDIO_BURST_S = env_float("STT_AUDIO_BURST_S", 5.0, minimum=0.0)  # audio a client may send ahead
STT_WARM_ON_START = env_bool("STT_WARM_ON_START", True)  # load engines when the ASGI app starts

# Limits of batch uploads.
UPLOAD_MAX_BYTES = env_int("UPLOAD_MAX_BYTES", 500 * 1024 * 1024, minimum=1024)
UPLOAD_MAX_SECONDS = env_int("UPLOAD_MAX_SECONDS", 4 * 3600, minimum=1)
# Batch jobs: the Celery queue they go to, the batch decoder's options, the heartbeat, and how
# often a worker looks for work whose worker was lost (sessions_app/lost_work.py; API reads look
# at running jobs whose heartbeat is older than BATCH_STALE_AFTER_S).
BATCH_QUEUE = env_str("BATCH_QUEUE", "celery")
STT_BATCH_BEAM_SIZE = env_int("STT_BATCH_BEAM_SIZE", 1, minimum=1, maximum=10)
STT_BATCH_CPU_THREADS = env_int("STT_BATCH_CPU_THREADS", 0, minimum=0, maximum=64)
BATCH_HEARTBEAT_S = env_int("BATCH_HEARTBEAT_S", 30, minimum=1)
BATCH_STALE_AFTER_S = env_int("BATCH_STALE_AFTER_S", 300, minimum=10)
BATCH_RECOVERY_S = env_int("BATCH_RECOVERY_S", 60, minimum=1)
# The post-session pass (sessions_app/meeting_record/post_session.py): each speaker's recording is
# transcribed again as a whole (beam 5 by default, whatever batch jobs use) once the session ends.
# It waits up to STT_END_WAIT_S for the live streams to finish their last finals first. A session
# ends by itself STT_SESSION_AUTO_END_S after its last stream stopped (0: never).
STT_ARCHIVE_BEAM_SIZE = env_int("STT_ARCHIVE_BEAM_SIZE", 5, minimum=1, maximum=10)
STT_END_WAIT_S = env_int("STT_END_WAIT_S", 90, minimum=0, maximum=3600)
STT_SESSION_AUTO_END_S = env_int("STT_SESSION_AUTO_END_S", 600, minimum=0, maximum=7 * 24 * 3600)
# POST /v1/audio/transcriptions waits this long for its job's worker, then answers 504 with the job's id.
OPENAI_API_WAIT_S = env_int("OPENAI_API_WAIT_S", 300, minimum=1, maximum=3600)
DATA_UPLOAD_MAX_MEMORY_SIZE = 10 * 1024 * 1024
FILE_UPLOAD_MAX_MEMORY_SIZE = 10 * 1024 * 1024

LOG_LEVEL = env_choice("LOG_LEVEL", "INFO", ("DEBUG", "INFO", "WARNING", "ERROR"))
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    "loggers": {"django.channels.server": {"level": "WARNING"}},
}
