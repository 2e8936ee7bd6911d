#!/usr/bin/env bash
# The Compose stack without Docker: tsdb (`python -m tsdb.cli serve`, with the environment of
# the tsdb service in docker-compose.yml) and the Debian `prometheus` binary, run with the SAME
# deploy/prometheus/prometheus.yml after mapping its Compose host names to loopback:
#   tsdb:8000 -> 127.0.0.1:<tsdb port>      localhost:9090 -> 127.0.0.1:<prometheus port>
# Both listen on 127.0.0.1 only, on free ports unless STACK_TSDB_PORT / STACK_PROM_PORT say
# otherwise. Prometheus scrapes tsdb and itself and remote-writes everything into tsdb, as in
# the Compose stack. Grafana is not started (there is no Debian package); send the dashboards'
# queries to tsdb's /api/v1/query_range instead (docs/compose.md).
#
# Usage: scripts/stack_local.sh [--duration SECONDS] [--keep]
#   --duration N   stop after N seconds (default: run until Ctrl-C / SIGTERM)
#   --keep         keep the work directory (configs, logs, data) instead of deleting it
# Environment: PYTHON (default python3), STACK_DIR (work directory, kept; default a new temp
#   directory, deleted on exit unless --keep), STACK_TSDB_PORT, STACK_PROM_PORT.
# Prints "tsdb <url>" and "prometheus <url>" once both are ready; stops both on exit.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PYTHON="${PYTHON:-python3}"
COMPOSE_FILE="$ROOT/docker-compose.yml"
PROM_CONFIG="$ROOT/deploy/prometheus/prometheus.yml"
STARTUP_TIMEOUT_S=30

duration=""
keep=0
while [ $# -gt 0 ]; do
    case "$1" in
        --duration) duration="${2:?--duration needs a number of seconds}"; shift 2 ;;
        --keep) keep=1; shift ;;
        -h|--help) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; exit 0 ;;
        *) echo "stack_local: unknown argument $1 (see --help)" >&2; exit 2 ;;
    esac
done

log() { echo "stack_local: $*" >&2; }

# --- prometheus and promtool (the Debian package ships both) -----------------------------------
if ! command -v prometheus >/dev/null 2>&1 || ! command -v promtool >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        log "installing the Debian prometheus package"
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq
        apt-get install -y -qq --no-install-recommends prometheus >/dev/null
    elif command -v sudo >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1; then
        log "installing the Debian prometheus package (sudo)"
        sudo apt-get update -qq
        sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus >/dev/null
    else
        log "prometheus/promtool not found and cannot be installed here (apt-get install prometheus)"
        exit 1
    fi
fi

# --- work directory, ports, configuration ------------------------------------------------------
if [ -n "${STACK_DIR:-}" ]; then
    WORK="$STACK_DIR"  # the caller's directory: never deleted by this script
    keep=1
    mkdir -p "$WORK"
else
    WORK="$(mktemp -d "${TMPDIR:-/tmp}/tsdb-stack.XXXXXX")"
fi
tsdb_pid=""
prom_pid=""
timer_pid=""

stop_pid() {  # stop_pid PID NAME: SIGTERM, wait up to 15 s, then SIGKILL
    local pid="$1" name="$2" i
    [ -n "$pid" ] || return 0
    kill -0 "$pid" 2>/dev/null || { wait "$pid" 2>/dev/null || true; return 0; }
    kill -TERM "$pid" 2>/dev/null || true
    for i in $(seq 1 150); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null; then
        log "$name did not stop within 15 s; killing it"
        kill -KILL "$pid" 2>/dev/null || true
    fi
    wait "$pid" 2>/dev/null || true
}

cleanup() {
    local status=$?
    trap - EXIT INT TERM
    [ -z "$timer_pid" ] || kill "$timer_pid" 2>/dev/null || true
    stop_pid "$prom_pid" prometheus  # first, so its last remote-write batches can still land
    stop_pid "$tsdb_pid" tsdb
    if [ "$keep" = 1 ]; then
        log "kept $WORK"
    else
        rm -rf "$WORK"
    fi
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

free_port() {
    "$PYTHON" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}
TSDB_PORT_LOCAL="${STACK_TSDB_PORT:-$(free_port)}"
PROM_PORT_LOCAL="${STACK_PROM_PORT:-$(free_port)}"
if [ "$TSDB_PORT_LOCAL" = "$PROM_PORT_LOCAL" ]; then
    PROM_PORT_LOCAL="$(free_port)"
fi

# The tsdb service's environment from docker-compose.yml (so the spec's CHUNK_SIZE,
# RETENTION_SECONDS, NUM_SHARDS and the rollups match the Compose stack), as export lines;
# DATA_DIR moves into the work directory.
tsdb_env="$("$PYTHON" - "$COMPOSE_FILE" <<'PY'
import shlex
import sys

import yaml

with open(sys.argv[1], encoding="utf-8") as f:
    env = yaml.safe_load(f)["services"]["tsdb"].get("environment") or {}
if isinstance(env, list):  # the "KEY=value" list form
    env = dict(item.split("=", 1) for item in env)
for key, value in env.items():
    if key != "DATA_DIR":
        print(f"export {key}={shlex.quote(str(value))}")
PY
)"

# The same Prometheus configuration with the Compose host names mapped to loopback.
"$PYTHON" - "$PROM_CONFIG" "$WORK/prometheus.yml" "$TSDB_PORT_LOCAL" "$PROM_PORT_LOCAL" <<'PY'
import sys

src, dst, tsdb_port, prom_port = sys.argv[1:]
lines = open(src, encoding="utf-8").read().splitlines(keepends=True)
for host, port in (("tsdb:8000", tsdb_port), ("localhost:9090", prom_port)):
    hits = [i for i, line in enumerate(lines) if host in line and not line.lstrip().startswith("#")]
    if not hits:
        sys.exit(f"stack_local: {src} no longer mentions {host}; update scripts/stack_local.sh")
    for i in hits:  # configuration lines only; comments keep the Compose names
        lines[i] = lines[i].replace(host, f"127.0.0.1:{port}")
with open(dst, "w", encoding="utf-8") as f:
    f.write(f"# Generated by scripts/stack_local.sh from {src}\n" + "".join(lines))
PY
promtool check config "$WORK/prometheus.yml" >"$WORK/promtool.log" 2>&1 || {
    cat "$WORK/promtool.log" >&2
    exit 1
}

wait_ready() {  # wait_ready URL NAME PID LOGFILE
    local url="$1" name="$2" pid="$3" logfile="$4" deadline=$((SECONDS + STARTUP_TIMEOUT_S))
    while [ "$SECONDS" -lt "$deadline" ]; do
        if ! kill -0 "$pid" 2>/dev/null; then
            log "$name exited during start-up; its log ($logfile):"
            tail -n 40 "$logfile" >&2 || true
            return 1
        fi
        if "$PYTHON" -c 'import sys, urllib.request; urllib.request.urlopen(sys.argv[1], timeout=1)' "$url" 2>/dev/null; then
            return 0
        fi
        sleep 0.2
    done
    log "$name not ready after ${STARTUP_TIMEOUT_S} s; its log ($logfile):"
    tail -n 40 "$logfile" >&2 || true
    return 1
}

# --- start tsdb, then Prometheus (the Compose depends_on order) -------------------------------
(
    cd "$WORK"
    eval "$tsdb_env"
    export DATA_DIR="$WORK/tsdb-data"
    export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
    exec "$PYTHON" -m tsdb.cli serve --host 127.0.0.1 --port "$TSDB_PORT_LOCAL"
) >"$WORK/tsdb.log" 2>&1 &
tsdb_pid=$!
wait_ready "http://127.0.0.1:$TSDB_PORT_LOCAL/-/ready" tsdb "$tsdb_pid" "$WORK/tsdb.log"

prometheus \
    --config.file="$WORK/prometheus.yml" \
    --storage.tsdb.path="$WORK/prometheus-data" \
    --web.listen-address="127.0.0.1:$PROM_PORT_LOCAL" \
    --web.enable-lifecycle \
    >"$WORK/prometheus.log" 2>&1 &
prom_pid=$!
wait_ready "http://127.0.0.1:$PROM_PORT_LOCAL/-/ready" prometheus "$prom_pid" "$WORK/prometheus.log"

echo "tsdb        http://127.0.0.1:$TSDB_PORT_LOCAL   (log $WORK/tsdb.log)"
echo "prometheus  http://127.0.0.1:$PROM_PORT_LOCAL   (log $WORK/prometheus.log)"
echo "workdir     $WORK"
if [ -n "$duration" ]; then
    echo "stack ready; stopping in $duration s (Ctrl-C stops it sooner)"
    sleep "$duration" &
    timer_pid=$!
else
    echo "stack ready; Ctrl-C stops both"
fi

# Until a signal, the timer, or either server exiting (which is a failure).
status=0
wait -n || status=$?
if ! kill -0 "$tsdb_pid" 2>/dev/null; then
    log "tsdb exited unexpectedly; its log:"; tail -n 40 "$WORK/tsdb.log" >&2 || true; exit 1
fi
if ! kill -0 "$prom_pid" 2>/dev/null; then
    log "prometheus exited unexpectedly; its log:"; tail -n 40 "$WORK/prometheus.log" >&2 || true; exit 1
fi
exit "$status"
