#!/usr/bin/env bash
# Starts and stops a local moto server (the AWS emulator) on 127.0.0.1.
#
#   deploy/local/moto.sh start [PORT]   # prints http://127.0.0.1:PORT on stdout
#   deploy/local/moto.sh stop           # stops the server that `start` started
#
# `start` installs moto first (deploy/local/install-moto.sh, idempotent), picks a
# free port when none is given, waits up to ~15 s for the server to answer and
# records its pid and URL in ${TMPDIR:-/tmp}/cutover-moto.pid / .url (override
# with CUTOVER_MOTO_PIDFILE). The server's log goes to the same place, .log.
# Only one server per pid file: `start` refuses while the recorded one runs.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
venv="${CUTOVER_VENV:-$root/.venv-moto}"
pidfile="${CUTOVER_MOTO_PIDFILE:-${TMPDIR:-/tmp}/cutover-moto.pid}"
urlfile="${pidfile%.pid}.url"
logfile="${pidfile%.pid}.log"

running() {
  [[ -f "$pidfile" ]] && kill -0 "$(cat "$pidfile")" 2>/dev/null
}

answers() {  # URL: does it answer HTTP 2xx within a second?
  if command -v curl >/dev/null; then
    curl -fsS -o /dev/null --max-time 1 "$1" 2>/dev/null
  else
    python3 -c 'import sys, urllib.request; urllib.request.urlopen(sys.argv[1], timeout=1)' "$1" 2>/dev/null
  fi
}

start() {
  local port="${1:-}"
  if [[ -n "$port" && ! "$port" =~ ^[0-9]+$ ]]; then
    echo "moto.sh: PORT must be a number, not '$port'" >&2
    exit 2
  fi
  if running; then
    echo "moto.sh: a moto server is already running (pid $(cat "$pidfile"), $(cat "$urlfile" 2>/dev/null)); run '$0 stop' first" >&2
    exit 1
  fi
  "$here/install-moto.sh" >&2  # stdout is only for the URL
  # Bind-test the port (or pick a free one): a server already listening there
  # would otherwise answer the readiness poll in place of ours.
  if ! port="$(python3 -c 'import socket, sys
s = socket.socket()
try:
    s.bind(("127.0.0.1", int(sys.argv[1])))
except OSError as e:
    sys.exit(f"moto.sh: cannot use 127.0.0.1:{sys.argv[1]}: {e}")
print(s.getsockname()[1])' "${port:-0}")"; then
    exit 1
  fi
  local url="http://127.0.0.1:$port"
  # Detached from our stdout, so `url=$(moto.sh start)` returns at once.
  # Through moto_server.py, which makes each request atomic (as DynamoDB's conditional writes are).
  "$venv/bin/python" "$here/moto_server.py" -H 127.0.0.1 -p "$port" >"$logfile" 2>&1 < /dev/null &
  local pid=$!
  echo "$pid" > "$pidfile"
  echo "$url" > "$urlfile"
  local deadline=$((SECONDS + 15))
  while ((SECONDS < deadline)); do
    if ! kill -0 "$pid" 2>/dev/null; then
      echo "moto.sh: moto_server exited at start; its log ($logfile):" >&2
      tail -n 20 "$logfile" >&2 || true
      rm -f "$pidfile" "$urlfile"
      exit 1
    fi
    if answers "$url/moto-api/"; then
      echo "$url"
      return 0
    fi
    sleep 0.1
  done
  echo "moto.sh: moto_server did not answer on $url within 15 s; its log ($logfile):" >&2
  tail -n 20 "$logfile" >&2 || true
  kill -KILL "$pid" 2>/dev/null || true
  rm -f "$pidfile" "$urlfile"
  exit 1
}

stop() {
  if [[ ! -f "$pidfile" ]]; then
    echo "moto.sh: no moto server recorded in $pidfile" >&2
    return 0
  fi
  local pid
  pid="$(cat "$pidfile")"
  # Only if that pid is still a moto server (not a stranger that reused it).
  if kill -0 "$pid" 2>/dev/null && tr '\0' ' ' < "/proc/$pid/cmdline" 2>/dev/null | grep -q moto_server.py; then
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 1 50); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null; then
      kill -KILL "$pid" 2>/dev/null || true
    fi
  fi
  rm -f "$pidfile" "$urlfile"
}

case "${1:-}" in
  start) shift; start "$@" ;;
  stop) stop ;;
  *) echo "usage: $0 start [PORT] | stop" >&2; exit 2 ;;
esac
