#!/usr/bin/env bash
# Install audiovis into .venv exactly as CI tested it: every package from a lock in requirements/ (hash-checked),
# then the musicnn wheel (its weights only, without its dependencies), then audiovis itself (editable, no dependency resolution), then a check that torch and torchaudio load together.
#   bash scripts/install.sh run.txt   # what the demo needs
#   bash scripts/install.sh dev.txt   # and the test tools
set -euo pipefail
cd "$(dirname "$0")/.."
LOCK=requirements/${1:?usage: install.sh run.txt|dev.txt}
PY=${PYTHON:-python3.11}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
PIP=(.venv/bin/python -m pip install -q --disable-pip-version-check)
"${PIP[@]}" --require-hashes --no-deps -r "$LOCK"
"${PIP[@]}" --require-hashes --no-deps -r requirements/musicnn.txt   # the pretrained taggers' weights (no deps)
"${PIP[@]}" --no-deps --no-build-isolation -e .
.venv/bin/audiovis check
