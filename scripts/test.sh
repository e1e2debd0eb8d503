#!/usr/bin/env bash
# Install everything the tests need (project venv, Label Studio in its own venv), then run them.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
bash scripts/install_label_studio.sh
# Best effort, for tests/annotators/test_browser_offsets.py (it skips without a browser): as root
# with apt-get, install Chromium and its driver when either is missing; a failure is one line.
# DISTILL_NO_BROWSER_INSTALL=1 leaves the system alone.
if [ -z "${DISTILL_NO_BROWSER_INSTALL:-}" ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null \
  && ! { command -v chromedriver && { command -v chromium || command -v chromium-browser || command -v google-chrome; }; } >/dev/null; then
  echo "== installing chromium and chromium-driver for the browser test (apt-get)"
  apt_log=${TMPDIR:-/tmp}/distill-apt-chromium.log
  apt_install() { DEBIAN_FRONTEND=noninteractive timeout 600 apt-get install -y -qq --no-install-recommends chromium chromium-driver; }
  if ! { apt_install || { timeout 180 apt-get update -qq && apt_install; }; } >"$apt_log" 2>&1; then
    echo "could not install chromium (see $apt_log); the browser test will skip"
  fi
fi
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
exec .venv/bin/python -m pytest "$@"
