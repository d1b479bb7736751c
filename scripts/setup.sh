#!/usr/bin/env bash
# Creates .venv (if needed), installs the pinned requirements and migrates the database.
# Safe to run again: pip skips what is installed, migrate skips what is applied.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
# The pip index on these machines prints a warning per package for its local mirrors; keep real errors.
.venv/bin/pip install --quiet --disable-pip-version-check -r requirements-dev.txt 2>&1 \
  | grep -v "is neither a file nor a directory" || true
.venv/bin/pip install --quiet --disable-pip-version-check --no-deps -r requirements-nodeps.txt 2>&1 \
  | grep -v "is neither a file nor a directory" || true
.venv/bin/python -c "import django, channels, faster_whisper, torch, silero_vad, webrtcvad" \
  || { echo "setup: the installation is incomplete (see pip's messages above)" >&2; exit 1; }
.venv/bin/python manage.py migrate --noinput >/dev/null
echo "setup: ready (.venv, database migrated)"
