#!/usr/bin/env bash
# The cutover demo, entirely on this machine: two blue/green cutovers against a
# local AWS emulator (moto), with simulated traffic and 1-second metrics.
#
#   deploy/local/demo.sh
#
# Needs only the Rust toolchain and python3: it installs moto into .venv-moto/
# (deploy/local/install-moto.sh), builds target/debug/cutover, starts moto on a
# free 127.0.0.1 port, creates a load balancer whose listener forwards to
# demo-blue (weight 1) and demo-green (weight 0), and starts a traffic simulator
# that publishes per-second RequestCount / HTTPCode_Target_5XX_Count /
# TargetResponseTime for each colour according to the live weights.
#
#   1st cutover: blue is live, green is new and healthy    -> promoted    (exit 0)
#   2nd cutover: green is live, blue is new and returns 30 % errors
#                                                          -> rolled back (exit 3)
#
# After each cutover it writes that cutover's report (`cutover report`, built from
# the journal alone) as HTML, Markdown and JSON into target/demo-reports/ (or
# $CUTOVER_DEMO_REPORTS), and says where: open cutover-2-rolled-back.html to see
# what the rollback saw.
#
# Exits 0 only when both outcomes are the expected ones. Everything else it
# creates lives in a temporary directory (kept, and named, when the demo fails,
# or with CUTOVER_DEMO_KEEP=1); moto and the simulator are stopped on exit.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$root"
local_dir="$root/deploy/local"
venv="${CUTOVER_VENV:-$root/.venv-moto}"
py="$venv/bin/python"

work="$(mktemp -d "${TMPDIR:-/tmp}/cutover-demo.XXXXXX")"
export CUTOVER_MOTO_PIDFILE="$work/moto.pid"  # our own moto, not anyone else's
traffic_pid=""
cutover_pid=""
status=1

say() { printf '\n==> %s\n' "$*" >&2; }

# shellcheck disable=SC2317  # only reached from the EXIT trap
stop_pid() {  # PID SECONDS: TERM, wait up to SECONDS, then KILL
  local pid="$1" i
  kill -0 "$pid" 2>/dev/null || return 0
  kill -TERM "$pid" 2>/dev/null || true
  for ((i = 0; i < $2 * 10; i++)); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
}

# shellcheck disable=SC2317  # the EXIT trap
cleanup() {
  # An interrupted cutover first: SIGTERM asks it to put traffic back (exit 4),
  # which needs moto still up.
  if [[ -n "$cutover_pid" ]]; then
    echo "stopping cutover (pid $cutover_pid)" >&2
    stop_pid "$cutover_pid" 60
  fi
  if [[ -n "$traffic_pid" ]]; then
    stop_pid "$traffic_pid" 5
  fi
  "$local_dir/moto.sh" stop 2>/dev/null || true
  if [[ "$status" -eq 0 && "${CUTOVER_DEMO_KEEP:-0}" != 1 ]]; then
    rm -rf "$work"
  else
    echo "demo files (plan, state, logs) kept in $work" >&2
  fi
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

say "installing moto (deploy/local/install-moto.sh)"
"$local_dir/install-moto.sh"

say "building cutover (cargo build)"
cargo build --bin cutover
cutover="$root/target/debug/cutover"

say "starting moto"
endpoint="$("$local_dir/moto.sh" start)"
echo "moto is listening on $endpoint" >&2

# Everything below talks to moto with dummy credentials; nothing reaches AWS.
unset AWS_PROFILE AWS_DEFAULT_PROFILE AWS_SESSION_TOKEN
export AWS_ENDPOINT_URL="$endpoint"
export AWS_REGION=us-east-1
export AWS_DEFAULT_REGION=us-east-1
export AWS_ACCESS_KEY_ID=test
export AWS_SECRET_ACCESS_KEY=test

say "creating the load balancer, target groups and listener in moto"
"$py" "$local_dir/fixture.py" setup --endpoint "$endpoint" --name demo > "$work/fixture.json"
field() { python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])' "$work/fixture.json" "$1"; }
listener_arn="$(field listener_arn)"
blue_tg="$(field blue_target_group_arn)"
green_tg="$(field green_target_group_arn)"
echo "listener: $listener_arn" >&2
echo "blue:     $blue_tg" >&2
echo "green:    $green_tg" >&2

profile="$work/profile.json"
write_profile() {  # atomically: the simulator re-reads it every second
  printf '%s\n' "$1" > "$profile.tmp"
  mv -f "$profile.tmp" "$profile"
}
write_profile '{"rps": 200, "blue_error_rate": 0.0, "green_error_rate": 0.0, "blue_latency": 0.05, "green_latency": 0.05}'

say "starting the traffic simulator (200 requests/s; log: $work/traffic.log)"
"$py" -u "$local_dir/fixture.py" traffic --endpoint "$endpoint" \
  --listener-arn "$listener_arn" --blue-tg "$blue_tg" --green-tg "$green_tg" \
  --namespace Cutover/Demo --profile-file "$profile" \
  > /dev/null 2> "$work/traffic.log" &
traffic_pid=$!
for _ in $(seq 1 100); do  # until its first second is published (<= 10 s)
  grep -q weights "$work/traffic.log" 2>/dev/null && break
  kill -0 "$traffic_pid" 2>/dev/null || { cat "$work/traffic.log" >&2; echo "the traffic simulator died" >&2; exit 1; }
  sleep 0.1
done
tail -n 1 "$work/traffic.log" >&2

cat > "$work/plan.toml" <<EOF
[service]
name = "demo"

[alb]
listener_arn = "$listener_arn"
blue_target_group_arn = "$blue_tg"
green_target_group_arn = "$green_tg"
min_healthy_targets = 1

[metrics]
namespace = "Cutover/Demo"
period = "1s"
settle = "1s"
poll_interval = "1s"
latency_statistic = "Average"

[rollback]
max_error_rate = 0.05
max_latency = "250ms"
min_requests = 20
failures_to_rollback = 2
on_no_data = "hold"

[[steps]]
action = "verify"
checks = [{ command = ["true"] }]

[[steps]]
action = "deploy"
run = ["sh", "-c", "echo deploying \$CUTOVER_NEW_COLOR"]
undo = ["sh", "-c", "echo undeploying \$CUTOVER_NEW_COLOR"]
timeout = "30s"

[[steps]]
action = "shift"
weight = 50
bake = "5s"

[[steps]]
action = "shift"
weight = 100
bake = "5s"

[[steps]]
action = "observe"
duration = "5s"
EOF
echo "plan: $work/plan.toml" >&2

# Prints one human line for a finished run, from its JSON summary on stdout.
summarize() {  # LABEL EXIT_CODE SUMMARY_FILE
  python3 - "$@" <<'PY' >&2
import json, sys
label, rc, path = sys.argv[1:4]
try:
    with open(path) as f:
        s = json.load(f)
except (OSError, ValueError) as e:
    print(f"{label}: exit {rc}, no JSON summary ({e})")
    sys.exit(0)
w = s.get("final_weights") or {}
print(f"{label}: exit {rc}, outcome {s.get('outcome')} "
      f"(live {s.get('live_color')}, new {s.get('new_color')}); "
      f"final weights blue {w.get('blue')}% / green {w.get('green')}%")
if s.get("reason"):
    print(f"  reason: {s['reason']}")
PY
}
outcome_of() {  # SUMMARY_FILE -> the summary's outcome, or nothing
  python3 -c 'import json, sys; print(json.load(open(sys.argv[1])).get("outcome", ""))' "$1" 2>/dev/null || true
}
listener_weights() {  # what moto says now: "blue=N green=N"
  "$py" "$local_dir/fixture.py" weights --endpoint "$endpoint" --listener-arn "$listener_arn" \
    --blue-tg "$blue_tg" --green-tg "$green_tg" \
    | python3 -c 'import json, sys; w = json.load(sys.stdin); print("blue=%s green=%s" % (w["blue"], w["green"]))'
}

# run_cutover SUMMARY_FILE: runs `cutover run` and sets rc to its exit code.
# In the background plus `wait`, so that a signal to this script is handled at
# once (the trap then stops cutover) rather than after cutover has finished.
run_cutover() {
  rc=0
  "$cutover" run --config "$work/plan.toml" --state-dir "$work/state" --output json > "$1" &
  cutover_pid=$!
  wait "$cutover_pid" || rc=$?
  cutover_pid=""
}

reports="${CUTOVER_DEMO_REPORTS:-$root/target/demo-reports}"
mkdir -p "$reports"
# write_reports NAME: the report of the plan's latest cutover, in the three formats.
write_reports() {
  local format ext
  for format in html markdown json; do
    case "$format" in markdown) ext=md ;; *) ext="$format" ;; esac
    if ! "$cutover" report --config "$work/plan.toml" --state-dir "$work/state" \
      --format "$format" --output "$reports/$1.$ext" 2>> "$work/report.log"; then
      echo "  UNEXPECTED: cutover report --format $format failed (log: $work/report.log)" >&2
      failed=1
      return
    fi
  done
  echo "  report: $reports/$1.html (and .md, .json)" >&2
}

failed=0
# check LABEL EXIT_CODE WANT_CODE SUMMARY_FILE WANT_OUTCOME
check() {
  local outcome weights
  outcome="$(outcome_of "$4")"
  weights="$(listener_weights)" || weights="unknown (could not read the listener)"
  echo "  listener weights in moto now: $weights" >&2
  if [[ "$2" != "$3" || "$outcome" != "$5" ]]; then
    echo "  UNEXPECTED: wanted exit $3 and outcome $5, got exit $2 and outcome '${outcome}'" >&2
    failed=1
  elif [[ "$weights" != "blue=0 green="* || "$weights" == "blue=0 green=0" ]]; then
    echo "  UNEXPECTED: green should hold all traffic, moto says $weights" >&2
    failed=1
  else
    echo "  as expected" >&2
  fi
}

say "cutover 1: blue is live, green is new and healthy -> expect promoted (exit 0)"
run_cutover "$work/run1.json"
rc1=$rc
summarize "cutover 1" "$rc1" "$work/run1.json"
check "cutover 1" "$rc1" 0 "$work/run1.json" promoted
write_reports cutover-1-promoted

say "blue (now the new colour) starts returning 30% errors"
write_profile '{"rps": 200, "blue_error_rate": 0.3, "green_error_rate": 0.0, "blue_latency": 0.05, "green_latency": 0.05}'
sleep 1.5  # the simulator re-reads the profile every second

say "cutover 2: green is live, blue is new and failing -> expect rolled back (exit 3)"
run_cutover "$work/run2.json"
rc2=$rc
summarize "cutover 2" "$rc2" "$work/run2.json"
check "cutover 2" "$rc2" 3 "$work/run2.json" rolled_back
write_reports cutover-2-rolled-back

echo >&2
if [[ "$failed" -eq 0 ]]; then
  echo "demo OK: the healthy colour was promoted, the failing one rolled back by itself" >&2
  echo "their reports: $reports/cutover-1-promoted.html, $reports/cutover-2-rolled-back.html" >&2
  status=0
else
  echo "demo FAILED: see above (traffic log: $work/traffic.log)" >&2
  status=1
fi
exit "$status"
