#!/usr/bin/env bash
# Create the project's virtual environment (.venv) and install the project into it. Idempotent:
# a second run with an unchanged pyproject.toml takes a second.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
stamp=.venv/.installed-$(sha1sum pyproject.toml | cut -c1-12)
if [ -f "$stamp" ]; then exit 0; fi
echo "== installing the project into .venv (first time: a few minutes)"
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
log=.venv/install.log
{
  .venv/bin/pip install --upgrade pip
  .venv/bin/pip install torch==2.13.0          # the CPU build; an unpinned torch pulls CUDA
  .venv/bin/pip install -e '.[dev]'
} >"$log" 2>&1 || { tail -30 "$log"; echo "install failed: see $log" >&2; exit 1; }
rm -f .venv/.installed-* && touch "$stamp"
