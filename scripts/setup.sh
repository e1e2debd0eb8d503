#!/usr/bin/env bash
# Create the project's virtual environment (.venv) and install the project into it, with the
# pipeline and dev extras, as a strict editable install: a tree of links under build/ that
# editors and type checkers follow (the default editable install maps distill_ner.trainers to
# trainers/ with an import hook they do not run). Idempotent: a second run with an unchanged
# pyproject.toml and the same package files takes a second; a new or removed module reinstalls
# (the link tree lists files).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
stamp=.venv/.installed-$( (cat pyproject.toml; find data annotators trainers flows -type f ! -path '*/__pycache__/*' | LC_ALL=C sort) | sha1sum | cut -c1-12)
if [ -f "$stamp" ]; then exit 0; fi
echo "== installing the project into .venv (first time: a few minutes)"
.venv/bin/python -m pip --version >/dev/null 2>&1 || "$PYTHON" -m venv --clear .venv  # afresh where pip does not run (killed while made)
log=.venv/install.log
{
  .venv/bin/pip install --upgrade pip
  .venv/bin/pip install torch==2.13.0          # the CPU build; an unpinned torch pulls CUDA
  .venv/bin/pip install -e '.[pipeline,dev]' --config-settings editable_mode=strict
} >"$log" 2>&1 || { tail -30 "$log"; echo "install failed: see $log" >&2; exit 1; }
rm -f .venv/.installed-* && touch "$stamp"
