#!/usr/bin/env bash
# Install everything the tests need on a fresh Debian/Ubuntu machine, then run the whole test suite.
#   bash scripts/test.sh               # lint + every test (what CI runs); extra args go to pytest
#   bash scripts/test.sh --quick ...   # for development: leaves out the tests marked slow (-m "not slow")
set -euo pipefail
cd "$(dirname "$0")/.."
select=()
if [ "${1:-}" = "--quick" ]; then
  shift
  select=(-m "not slow")                   # end-to-end, browser, load, 10-minute-song tests (pyproject.toml)
elif ! command -v chromium >/dev/null 2>&1; then   # the browser tests are slow ones: only the full run needs it
  if [ "$(id -u)" = 0 ]; then
    (apt-get update -qq && apt-get install -y -qq --no-install-recommends chromium) >/dev/null
  else
    echo "note: chromium is missing and this is not root: the browser test will be skipped" >&2
  fi
fi
bash scripts/install.sh dev.txt         # the locked dependency set (requirements/dev.txt)
.venv/bin/ruff check .                      # lint (rules in pyproject.toml) before the tests
export OPENBLAS_NUM_THREADS=1
exec .venv/bin/python -m pytest -q ${select[@]+"${select[@]}"} "$@"
