#!/usr/bin/env bash
# Sets everything up and runs the whole test suite. Extra arguments go to pytest.
# Without DATABASE_URL/REDIS_URL the tests use SQLite and in-memory layers; .ci/run sets both
# so that CI exercises PostgreSQL and Redis for real.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
if ! command -v chromium >/dev/null 2>&1 || ! command -v chromedriver >/dev/null 2>&1; then
  echo "test: installing Debian's chromium and chromium-driver for the browser tests"
  if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi
  $SUDO apt-get update -qq >/dev/null && $SUDO apt-get install -y -qq chromium chromium-driver >/dev/null
fi
set +e
.venv/bin/python -m pytest "$@"
status=$?
set -e
if [ "$status" -eq 5 ]; then
  echo "test: pytest collected no tests: that is a failure" >&2
  exit 1
fi
exit "$status"
