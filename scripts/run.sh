#!/usr/bin/env bash
# Runs the whole product on one machine: daphne on http://127.0.0.1:8000 and a Celery worker.
# With no environment set it uses the embedded defaults: SQLite, the in-memory channel layer
# and a file-based Celery broker (no servers needed).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
HOST=${HOST:-127.0.0.1}
PORT=${PORT:-8000}
.venv/bin/python manage.py collectstatic --noinput >/dev/null
.venv/bin/celery -A transcribe_site worker --loglevel=INFO --concurrency=1 &
WORKER_PID=$!
trap 'kill $WORKER_PID 2>/dev/null || true' EXIT INT TERM
echo "Serving on http://$HOST:$PORT/ (Ctrl-C stops the server and the worker)"
.venv/bin/daphne --application-close-timeout 60 -b "$HOST" -p "$PORT" transcribe_site.asgi:application
