#!/usr/bin/env bash
# Whole cutovers through the fault-injecting proxy (30 % throttling, 10 % 5xx, +500 ms,
# resets), and a rollback while DescribeListeners is throttled; prints the figures
# (see examples/fault_bench.rs).
#
#   deploy/local/bench-faults.sh                  # release build
#   deploy/local/bench-faults.sh --debug          # debug build
#   deploy/local/bench-faults.sh --cutovers 4     # 4 healthy and 4 failing (default 12 each)
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$root"
deploy/local/install-moto.sh
profile=release
if [[ "${1:-}" == "--debug" ]]; then profile=debug; shift; fi
if [[ $profile == release ]]; then
  cargo build --locked --release --bin cutover --example fault_bench
  exec target/release/examples/fault_bench --binary target/release/cutover "$@"
else
  cargo build --locked --bin cutover --example fault_bench
  exec target/debug/examples/fault_bench --binary target/debug/cutover "$@"
fi
