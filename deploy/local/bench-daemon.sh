#!/usr/bin/env bash
# Daemon benchmark against a local moto: `cutover serve` with N concurrent
# cutovers (an ALB per 100: its listener and 99 rules): memory idle and busy
# (VmRSS/VmHWM), CPU, AWS calls a second by operation and throttles, the API
# budget's waits, polls (missed, delay from their tick), the CloudWatch cost per
# cutover-minute, single rollbacks timed while the others bake, and the goals of
# issue 12. See bench_daemon.py.
#
#   deploy/local/bench-daemon.sh --cutovers 500       # release build (about 5 minutes the first time)
#   deploy/local/bench-daemon.sh --debug              # debug build (a debug build's figures are larger)
#   deploy/local/bench-daemon.sh --debug --cutovers 20 --poll 5s --sample 10 --keep
#
# Other arguments go to bench_daemon.py (--cutovers, --poll, --period, --budget,
# --probes, --concurrency, --idle, --sample, --bake, --keep). Linux only (/proc).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$root"
deploy/local/install-moto.sh
profile=release
if [[ "${1:-}" == "--daemon" ]]; then shift; fi  # accepted for symmetry with bench.sh; this script is the daemon mode
if [[ "${1:-}" == "--debug" ]]; then profile=debug; shift; fi
if [[ $profile == release ]]; then cargo build --locked --release --bin cutover; else cargo build --locked --bin cutover; fi
export CUTOVER_MOTO_PIDFILE="${TMPDIR:-/tmp}/cutover-bench-daemon-moto.pid"
endpoint="$(deploy/local/moto.sh start)"
trap 'deploy/local/moto.sh stop >/dev/null 2>&1 || true' EXIT
"$root/.venv-moto/bin/python" deploy/local/bench_daemon.py --binary "target/$profile/cutover" --profile "$profile" \
  --endpoint "$endpoint" "$@"
