#!/usr/bin/env bash
# A local Prefect server and a process worker on 127.0.0.1, and the deployments of prefect.yaml.
#   bash scripts/prefect.sh up      # server + work pool + deployments + worker (background)
#   bash scripts/prefect.sh down    # stop the worker and the server
# Then: .venv/bin/prefect deployment run 'distill/species-demo' --watch
# State lives in .prefect/ (PREFECT_HOME); set PREFECT_API_DATABASE_CONNECTION_URL for PostgreSQL.
set -euo pipefail
cd "$(dirname "$0")/.."
export PREFECT_HOME=${PREFECT_HOME:-$PWD/.prefect}
PORT=${PREFECT_PORT:-4200}
export PREFECT_POOL=${PREFECT_POOL:-distill-pool}  # the one place the work pool is named (prefect.yaml reads it)
POOL=$PREFECT_POOL
export PREFECT_API_URL=http://127.0.0.1:$PORT/api
export PREFECT_SERVER_ANALYTICS_ENABLED=false PREFECT_LOGGING_SERVER_LEVEL=WARNING
export DISTILL_HOME=$PWD
mkdir -p "$PREFECT_HOME"
bin=.venv/bin

stop() {  # stop the process whose pid is in $1, if any
  [ -f "$1" ] || return 0
  pid=$(cat "$1"); rm -f "$1"
  kill "$pid" 2>/dev/null || return 0
  for _ in $(seq 30); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.5; done
  kill -9 "$pid" 2>/dev/null || true
}

case "${1:-}" in
  up)
    bash scripts/setup.sh
    if ! curl -fs "$PREFECT_API_URL/health" >/dev/null; then
      (echo $BASHPID > "$PREFECT_HOME/server.pid"; PREFECT_UI_API_URL=$PREFECT_API_URL exec $bin/prefect server start --host 127.0.0.1 --port "$PORT") \
        >"$PREFECT_HOME/server.log" 2>&1 &
      for _ in $(seq 60); do curl -fs "$PREFECT_API_URL/health" >/dev/null && break; sleep 1; done
      curl -fs "$PREFECT_API_URL/health" >/dev/null || { tail -20 "$PREFECT_HOME/server.log"; echo "Prefect server did not start" >&2; exit 1; }
    fi
    $bin/prefect work-pool inspect "$POOL" >/dev/null 2>&1 || $bin/prefect work-pool create "$POOL" --type process >/dev/null
    $bin/prefect --no-prompt deploy --all >"$PREFECT_HOME/deploy.log" 2>&1 || { tail -20 "$PREFECT_HOME/deploy.log"; exit 1; }
    if [ ! -f "$PREFECT_HOME/worker.pid" ] || ! kill -0 "$(cat "$PREFECT_HOME/worker.pid")" 2>/dev/null; then
      (echo $BASHPID > "$PREFECT_HOME/worker.pid"; exec $bin/prefect worker start --pool "$POOL") >"$PREFECT_HOME/worker.log" 2>&1 &
    fi
    echo "Prefect UI: http://127.0.0.1:$PORT  (export PREFECT_API_URL=$PREFECT_API_URL)"
    echo "deployments: $($bin/prefect deployment ls 2>/dev/null | grep -o "distill/[a-z-]*" | tr '\n' ' ')"
    ;;
  down)
    stop "$PREFECT_HOME/worker.pid"
    stop "$PREFECT_HOME/server.pid"
    echo "Prefect stopped"
    ;;
  *) echo "usage: $0 up|down" >&2; exit 2 ;;
esac
