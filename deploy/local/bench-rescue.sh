#!/usr/bin/env bash
# The shared store's figures (issue 9): DynamoDB calls and cost per cutover-minute, and the
# time from an owner's SIGKILL to traffic back on the live colour through a daemon on the
# same store (see examples/rescue_bench.rs).
#
#   deploy/local/bench-rescue.sh               # release build, 5 trials
#   deploy/local/bench-rescue.sh --debug       # debug build
#   deploy/local/bench-rescue.sh --trials 10
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$root"
deploy/local/install-moto.sh
profile=release
if [[ "${1:-}" == "--debug" ]]; then profile=debug; shift; fi
if [[ $profile == release ]]; then
  cargo build --locked --release --bin cutover --example rescue_bench
  exec target/release/examples/rescue_bench --binary target/release/cutover "$@"
else
  cargo build --locked --bin cutover --example rescue_bench
  exec target/debug/examples/rescue_bench --binary target/debug/cutover "$@"
fi
