#!/usr/bin/env bash
# Install audiovis, build the demo workspace from samples/ (reused when already built), serve the page.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3.11}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/pip install -q --disable-pip-version-check -e .
export OPENBLAS_NUM_THREADS=1
exec .venv/bin/audiovis demo "$@"
