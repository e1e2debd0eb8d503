#!/usr/bin/env bash
# Install Label Studio into its own virtual environment (it pins many packages that clash with the
# project's). Idempotent: a second run takes a second. Location: $DISTILL_LS_VENV, default
# <repo>/.venv-ls. The project talks to it only through label-studio-sdk, and finds it the same
# way (annotators/ls_server.py, find_ls_venv): $DISTILL_LS_VENV if set, else .venv-ls in the
# current directory, else <repo>/.venv-ls; after a non-editable install, set DISTILL_LS_VENV
# (or work from the folder that holds .venv-ls).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
VERSION=1.23.2
venv=${DISTILL_LS_VENV:-$PWD/.venv-ls}
stamp="$venv/.installed-label-studio-$VERSION"
if [ -f "$stamp" ] && [ -x "$venv/bin/label-studio" ]; then exit 0; fi
if [ -x "$venv/bin/label-studio" ] && [[ "$("$venv/bin/pip" show label-studio 2>/dev/null)" == *"Version: $VERSION"* ]]; then
  touch "$stamp"; exit 0
fi
echo "== installing label-studio==$VERSION into $venv (first time: about 2 minutes, 1 GB)"
"$venv/bin/python" -m pip --version >/dev/null 2>&1 || "$PYTHON" -m venv --clear "$venv"  # afresh where pip does not run (killed while made)
log="$venv/install.log"
{
  "$venv/bin/pip" install --upgrade pip
  "$venv/bin/pip" install "label-studio==$VERSION"
} >"$log" 2>&1 || { tail -30 "$log"; echo "Label Studio install failed: see $log" >&2; exit 1; }
rm -f "$venv"/.installed-label-studio-* && touch "$stamp"
