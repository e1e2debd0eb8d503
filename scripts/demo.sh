#!/usr/bin/env bash
# The main job on the embedded defaults: the mock LLM writes a few hundred species sentences,
# a local Label Studio server gets them, the simulated annotator reviews them, a MiniLM teacher
# and a 3-layer KD student are trained, and the student is exported as a spaCy pipeline.
# Extra arguments go to `distill run`, e.g.: bash scripts/demo.sh -s distill.kd=annealing
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
bash scripts/install_label_studio.sh
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
export PREFECT_HOME=${PREFECT_HOME:-$PWD/.prefect}
.venv/bin/distill label-studio up
exec .venv/bin/distill run --config demo "$@"
