#!/usr/bin/env bash
# Install audiovis (from the lock in requirements/), build the demo workspace from samples/ (reused when already built), serve the page.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh run.txt         # the locked dependency set CI tested (requirements/)
export OPENBLAS_NUM_THREADS=1
exec .venv/bin/audiovis demo "$@"
