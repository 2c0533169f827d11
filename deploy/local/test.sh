#!/usr/bin/env bash
# The whole test suite: unit tests (in-memory fakes, paused clock) and the
# integration tests against moto (each test starts its own moto server on
# 127.0.0.1). Installs moto into .venv-moto/ first, so it works on a fresh
# machine with only the Rust toolchain and python3; and headless Chromium from
# Debian's packages (deploy/local/install-chromium.sh), which the report tests
# open reports in.
#
#   deploy/local/test.sh                # everything, then the IAM policy check
#   deploy/local/test.sh e2e::          # extra arguments go to `cargo test`
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$root"
deploy/local/install-moto.sh
deploy/local/install-chromium.sh
# The integration tests mostly wait on moto and 1-second metrics, so they run
# more at once than there are cores.
export RUST_TEST_THREADS="${RUST_TEST_THREADS:-4}"
cargo test --locked --all-targets "$@"
# After a whole run (no arguments), the IAM policies must grant exactly the AWS operations the
# integration suite called (tests/iam_policy.rs reads what it logged).
if [[ $# -eq 0 ]]; then
  cargo test --locked --test iam_policy
fi
