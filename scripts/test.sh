#!/usr/bin/env bash
# Set up and run the whole test suite (what CI runs): lint, then pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# The web tests drive Debian's Chromium; install it when missing and we are allowed to.
if [ ! -x /usr/bin/chromium ] && command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
  echo "installing chromium for the browser tests..."
  apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
fi
# The PostgreSQL tests (@pytest.mark.postgres) start a throwaway cluster with Debian's PostgreSQL 15.
if [ ! -x /usr/lib/postgresql/15/bin/initdb ] && command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
  echo "installing postgresql-15 for the PostgreSQL store tests..."
  apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql-15 >/dev/null
fi
.venv/bin/ruff check runtimed tests bench
.venv/bin/mypy  # configured in pyproject.toml: strict for schema/, store/, client/; the rest at default strictness
.venv/bin/python -m pytest -q "$@"
