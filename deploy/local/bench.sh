#!/usr/bin/env bash
# Benchmarks against a local moto; prints their figures (see bench.py).
#
#   deploy/local/bench.sh            # release build (about 5 minutes the first time)
#   deploy/local/bench.sh --debug    # debug build
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$root"
deploy/local/install-moto.sh
profile=release
if [[ "${1:-}" == "--debug" ]]; then profile=debug; shift; fi
if [[ $profile == release ]]; then cargo build --locked --release --bin cutover; else cargo build --locked --bin cutover; fi
export CUTOVER_MOTO_PIDFILE="${TMPDIR:-/tmp}/cutover-bench-moto.pid"
endpoint="$(deploy/local/moto.sh start)"
trap 'deploy/local/moto.sh stop >/dev/null 2>&1 || true' EXIT
"$root/.venv-moto/bin/python" deploy/local/bench.py --binary "target/$profile/cutover" --endpoint "$endpoint" "$@"
