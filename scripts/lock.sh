#!/usr/bin/env bash
# Regenerate the dependency locks in requirements/ from pyproject.toml (uv pip compile, every platform, hashes).
#   bash scripts/lock.sh            keep the current pins, add or drop only what pyproject.toml changed
#   bash scripts/lock.sh --upgrade  move every package to the newest release pyproject.toml's bounds allow
# Then run `bash scripts/test.sh` in a fresh clone: the lock is what CI tested, commit it only when that passes.
set -euo pipefail
cd "$(dirname "$0")/.."
UV_VERSION=0.13.9
if ! command -v uv >/dev/null 2>&1 || [ "$(uv --version | cut -d' ' -f2)" != "$UV_VERSION" ]; then
  PY=${PYTHON:-python3.11}
  [ -x .venv-lock/bin/uv ] || { "$PY" -m venv .venv-lock && .venv-lock/bin/pip install -q "uv==$UV_VERSION"; }
  PATH="$PWD/.venv-lock/bin:$PATH"
fi
compile() { uv pip compile -q pyproject.toml requirements/build.in --universal --python-version 3.11 \
                --generate-hashes --custom-compile-command "bash scripts/lock.sh" "$@"; }
compile --extra dev -o requirements/dev.txt "${@}"           # tests: everything CI installs
compile -c requirements/dev.txt --extra crepe -o requirements/run.txt   # the demo: the same pins, without the dev tools (with CREPE for --model crepe)
echo "requirements/dev.txt: $(grep -c '^[a-zA-Z]' requirements/dev.txt) pins; requirements/run.txt: $(grep -c '^[a-zA-Z]' requirements/run.txt) pins"
