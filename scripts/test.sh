#!/usr/bin/env bash
# Install everything the tests need on a fresh Debian/Ubuntu machine, then run the whole test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v chromium >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ]; then
    (apt-get update -qq && apt-get install -y -qq --no-install-recommends chromium) >/dev/null
  else
    echo "note: chromium is missing and this is not root: the browser test will be skipped" >&2
  fi
fi
bash scripts/install.sh dev.txt         # the locked dependency set (requirements/dev.txt)
.venv/bin/ruff check .                      # lint (rules in pyproject.toml) before the tests
export OPENBLAS_NUM_THREADS=1
exec .venv/bin/python -m pytest -q "$@"
