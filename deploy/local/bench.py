#!/usr/bin/env python3
"""Benchmarks of cutover against a local moto, printing their figures.

Run it through deploy/local/bench.sh, which installs moto and builds the binary.
Two measurements, each repeated and reported as min / median / max:

  rollback   wall time of a whole `cutover rollback` process (start, plan load,
             AWS config, journal append + fsync, ModifyListener, read-back, and
             the undo chain of a cutover whose run was killed), from a 50/50
             split. Also `cutover rollback --to blue` with no journal.
  detection  seconds from the read-back of the 50 % shift to the read-back of
             traffic restored, when the new colour returns 30 % errors, with
             1-second metrics (period 1s, settle 1s, poll 1s, 2 failures),
             taken from the journal timestamps.

Numbers depend on the machine and its load: compare them side by side in one
run, not across machines.
"""

import argparse
import datetime
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time

import boto3

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))


def fixture(endpoint, *args):
    out = subprocess.run([sys.executable, os.path.join(HERE, "fixture.py"), *args, "--endpoint", endpoint],
                         check=True, capture_output=True, text=True)
    return json.loads(out.stdout)


def plan_text(world, bake):
    return f"""
[service]
name = "bench"
[alb]
listener_arn = "{world['listener_arn']}"
blue_target_group_arn = "{world['blue_target_group_arn']}"
green_target_group_arn = "{world['green_target_group_arn']}"
[metrics]
namespace = "Cutover/Bench"
period = "1s"
settle = "1s"
poll_interval = "1s"
latency_statistic = "Average"
[rollback]
max_error_rate = 0.05
min_requests = 20
failures_to_rollback = 2
[[steps]]
action = "shift"
weight = 50
bake = "{bake}"
[[steps]]
action = "shift"
weight = 100
bake = "{bake}"
"""


def env(endpoint, state):
    e = dict(os.environ)
    e.update(AWS_ENDPOINT_URL=endpoint, AWS_ACCESS_KEY_ID="test", AWS_SECRET_ACCESS_KEY="test",
             AWS_REGION="us-east-1", AWS_EC2_METADATA_DISABLED="true", CUTOVER_STATE_DIR=state)
    e.pop("AWS_PROFILE", None)
    return e


def set_split(elb, world, blue, green):
    elb.modify_listener(ListenerArn=world["listener_arn"], DefaultActions=[{
        "Type": "forward",
        "ForwardConfig": {"TargetGroups": [
            {"TargetGroupArn": world["blue_target_group_arn"], "Weight": blue},
            {"TargetGroupArn": world["green_target_group_arn"], "Weight": green}]}}])


def wait_for(path_glob_dir, needle, bound=30):
    start = time.time()
    while time.time() - start < bound:
        for d in os.listdir(os.path.join(path_glob_dir, "cutovers")) if os.path.isdir(os.path.join(path_glob_dir, "cutovers")) else []:
            p = os.path.join(path_glob_dir, "cutovers", d, "journal.jsonl")
            if os.path.exists(p) and needle in open(p).read():
                return p
        time.sleep(0.05)
    raise SystemExit(f"bench: {needle} not seen within {bound}s")


def fmt(xs, unit):
    return f"min {min(xs):.1f} {unit}, median {statistics.median(xs):.1f} {unit}, max {max(xs):.1f} {unit} (n={len(xs)})"


def parse_ts(s):
    return datetime.datetime.fromisoformat(s.replace("Z", "+00:00"))


def bench_rollback(binary, endpoint, elb, n):
    world = fixture(endpoint, "setup", "--name", "rb")
    work = tempfile.mkdtemp(prefix="cutover-bench.")
    plan = os.path.join(work, "plan.toml")
    open(plan, "w").write(plan_text(world, "10m"))
    full, bare = [], []
    for i in range(n):
        # A cutover at 50 % whose run was killed: the rollback restores and finishes it.
        state = os.path.join(work, f"state{i}")
        set_split(elb, world, 1, 0)
        run = subprocess.Popen([binary, "run", "--config", plan], env=env(endpoint, state),
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for(state, '"event":"weight_verified"')
        run.kill()
        run.wait()
        t = time.perf_counter()
        rc = subprocess.run([binary, "rollback", "--config", plan], env=env(endpoint, state),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode
        full.append((time.perf_counter() - t) * 1000)
        assert rc == 4, f"rollback exited {rc}"
        # No journal: --to blue from a 50/50 split.
        set_split(elb, world, 500, 500)
        t = time.perf_counter()
        rc = subprocess.run([binary, "rollback", "--config", plan, "--to", "blue"],
                            env=env(endpoint, os.path.join(work, "empty")),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode
        bare.append((time.perf_counter() - t) * 1000)
        assert rc == 4, f"rollback --to exited {rc}"
    print(f"rollback, whole process, journaled cutover whose run was killed: {fmt(full, 'ms')}")
    print(f"rollback --to blue, whole process, no journal:                 {fmt(bare, 'ms')}")


def bench_detection(binary, endpoint, n):
    times = []
    for i in range(n):
        world = fixture(endpoint, "setup", "--name", f"det{i}")
        work = tempfile.mkdtemp(prefix="cutover-bench.")
        plan = os.path.join(work, "plan.toml")
        open(plan, "w").write(plan_text(world, "10s"))
        profile = os.path.join(work, "profile.json")
        open(profile, "w").write(json.dumps({"rps": 200, "green_error_rate": 0.3}))
        sim = subprocess.Popen([sys.executable, os.path.join(HERE, "fixture.py"), "traffic", "--endpoint", endpoint,
                                "--listener-arn", world["listener_arn"], "--blue-tg", world["blue_target_group_arn"],
                                "--green-tg", world["green_target_group_arn"], "--namespace", "Cutover/Bench",
                                "--profile-file", profile], stderr=subprocess.DEVNULL)
        try:
            state = os.path.join(work, "state")
            rc = subprocess.run([binary, "run", "--config", plan], env=env(endpoint, state),
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode
            assert rc == 3, f"run exited {rc}, expected 3 (rolled back)"
        finally:
            sim.send_signal(signal.SIGTERM)
            sim.wait()
        journal = wait_for(state, '"event":"traffic_restored"')
        events = [json.loads(l) for l in open(journal)]
        shifted = next(parse_ts(e["at"]) for e in events if e["event"] == "weight_verified")
        restored = next(parse_ts(e["at"]) for e in events if e["event"] == "traffic_restored")
        times.append((restored - shifted).total_seconds())
    print(f"detection, 30 % errors, 1-second metrics, shift read-back → traffic restored: {fmt(times, 's')}")


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--binary", required=True)
    p.add_argument("--endpoint", required=True)
    p.add_argument("--rollbacks", type=int, default=15)
    p.add_argument("--detections", type=int, default=3)
    args = p.parse_args()
    elb = boto3.client("elbv2", endpoint_url=args.endpoint, region_name="us-east-1",
                       aws_access_key_id="test", aws_secret_access_key="test")
    print(f"cutover benchmarks: binary {args.binary}, moto {args.endpoint}, {os.cpu_count()} cores, "
          f"load average {os.getloadavg()[0]:.2f}")
    bench_rollback(args.binary, args.endpoint, elb, args.rollbacks)
    bench_detection(args.binary, args.endpoint, args.detections)


if __name__ == "__main__":
    main()
