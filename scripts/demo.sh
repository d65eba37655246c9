#!/usr/bin/env bash
# Set up, then run the main job: the example notebook with parameters on the embedded default daemon
# (started in the background on first use), printing the live URL and the cells' output as they run.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
mkdir -p out
.venv/bin/runt run examples/params.ipynb out/params-demo.ipynb -p name Ada -p count 5 --log-output
echo
echo "Executed notebook: out/params-demo.ipynb"
echo "The daemon keeps running for live views: 'runt notebooks' lists runs, 'runt daemon stop' stops it."
