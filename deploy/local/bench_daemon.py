#!/usr/bin/env python3
"""`cutover serve` with N concurrent cutovers on moto: memory, CPU, AWS calls a second by
operation, polls (missed, delay), CloudWatch cost, and rollbacks while the others bake.

Run it through deploy/local/bench-daemon.sh, which installs moto, builds the
binary and starts moto. What it does:

  1. fixture.py setup, once per 100 cutovers (AWS's default quota is 100 rules per load
     balancer): an ALB, blue/green target groups, one listener. Its default action is one
     cutover's target, and 99 listener rules (path /svcK/*, forwarding blue 1 / green 0) are the
     others'. So both kinds of weight read (DescribeListeners, DescribeRules) are in the mix.
  2. N plans svcK.toml in a temp plans dir: one step, shift to 100 % with bake --bake,
     --period metrics polled every --poll in a namespace nobody publishes to. Every cutover
     therefore holds at 100 % baking with no data: the steady state of many concurrent
     cutovers polling CloudWatch and checking their weights for drift.
  3. `cutover serve --listen 127.0.0.1:0 --budget …` (token from CUTOVER_TOKEN, temp
     CUTOVER_STATE_DIR). Idle VmRSS after --idle seconds.
  4. POST N cutovers (each must be 201), timed; wait until every one reports step
     "shift 100%" with green 100 % and a verdict; let one more poll interval pass; then sample
     for --sample seconds: VmRSS (median, max), VmHWM, threads, CPU time, and from /metrics the
     AWS calls and throttles by operation, the polls (missed ones, their delay), the budget's
     waits and the CloudWatch metrics requested.
  5. --probes rollbacks, one at a time at random moments of the poll cycle, while the others
     bake: each timed from the request to the answer (sent once traffic is verified) and, from
     the journal, from the rollback's record to traffic verified.
  6. Roll every other cutover back through the API (each must say traffic_restored), wait for
     them to finish, SIGTERM the daemon, and print the report, with the goals of issue 12.

Everything is on 127.0.0.1, and every wait is bounded.

Measured (2 December 2026, release build, 2 CPUs shared with another engineer's builds; see
README, "Many cutovers on one daemon", for the table):

  deploy/local/bench-daemon.sh --cutovers 100 --http-timeout 180   (load 7.4)
    RSS 37.2 MiB, CPU 0.6 %, 0.08 GetMetricData/s, 0.22 Describe/s, 0 of 200 polls missed,
    single rollbacks median 20 ms / max 910 ms, $0.000179 per cutover-minute
  deploy/local/bench-daemon.sh --cutovers 500 --http-timeout 180   (load 7.7, then 7.0)
    RSS 108.7 / 105.8 MiB, CPU 7.4 / 4.6 %, 0.55 / 1.52 GetMetricData/s, 2.05 / 4.97 Describe/s,
    731 of 1737 / 1000 of 1006 polls missed, single rollbacks median 1.9 s / 0.3 s and max
    13.9 s / 21 s, $0.000228 / $0.000298 per cutover-minute
  the same, final code, load 1.2: RSS 136.1 MiB, CPU 2.6 %, 0.45 GetMetricData/s, 1.34
    Describe/s, 0 of 1500 polls missed, no AWS error, single rollbacks median 18 ms (4 of 5
    under 20 ms, one 13.2 s), $0.000239 per cutover-minute

At 500 the calls a second are met; the missed polls and slow rollbacks come with moto answering
after the SDK's 5 s attempt timeout on the loaded machine (none at 100), while the daemon used
under 8 % of a CPU and no urgent call waited for a budget token. --http-timeout 180: the starts
of 500 cutovers are paced by the Describe budget (10 a second), and a POST can take seconds.
"""

import argparse
import concurrent.futures
import json
import math
import os
import random
import re
import secrets
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

import boto3

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
CLK_TCK = os.sysconf("SC_CLK_TCK")


class BenchError(Exception):
    pass


def log(msg):
    sys.stderr.write(f"[bench-daemon {time.strftime('%H:%M:%S')}] {msg}\n")
    sys.stderr.flush()


# ------------------------------------------------------------------ the world


def fixture(endpoint, *args):
    out = subprocess.run([sys.executable, os.path.join(HERE, "fixture.py"), *args, "--endpoint", endpoint],
                         check=True, capture_output=True, text=True, timeout=120)
    return json.loads(out.stdout)


def forward(world):
    return [{
        "Type": "forward",
        "ForwardConfig": {
            "TargetGroups": [
                {"TargetGroupArn": world["blue_target_group_arn"], "Weight": 1},
                {"TargetGroupArn": world["green_target_group_arn"], "Weight": 0},
            ],
            "TargetGroupStickinessConfig": {"Enabled": False},
        },
    }]


def make_rules(elb, world, n):
    arns = []
    for k in range(1, n + 1):
        rule = elb.create_rule(
            ListenerArn=world["listener_arn"], Priority=k,
            Conditions=[{"Field": "path-pattern", "PathPatternConfig": {"Values": [f"/svc{k}/*"]}}],
            Actions=forward(world),
        )["Rules"][0]
        arns.append(rule["RuleArn"])
    return arns


def split_of(world, actions):
    blue, green = world["blue_target_group_arn"], world["green_target_group_arn"]
    w = {}
    for a in actions:
        for tg in a.get("ForwardConfig", {}).get("TargetGroups", []):
            w[tg["TargetGroupArn"]] = tg.get("Weight", 0)
    return (w.get(blue), w.get(green))


def target_weights(elb, targets):
    """[(blue, green)] of every (world, rule ARN or None for the listener) read back from moto."""
    out = {}
    rules = [(w, r) for w, r in targets if r]
    for i in range(0, len(rules), 20):
        batch = rules[i:i + 20]
        worlds = {r: w for w, r in batch}
        for r in elb.describe_rules(RuleArns=[r for _, r in batch])["Rules"]:
            out[r["RuleArn"]] = split_of(worlds[r["RuleArn"]], r["Actions"])
    listeners = [(w, w["listener_arn"]) for w, r in targets if not r]
    for i in range(0, len(listeners), 20):
        batch = listeners[i:i + 20]
        worlds = {arn: w for w, arn in batch}
        for l in elb.describe_listeners(ListenerArns=[arn for _, arn in batch])["Listeners"]:
            out[l["ListenerArn"]] = split_of(worlds[l["ListenerArn"]], l["DefaultActions"])
    return [out.get(r or w["listener_arn"]) for w, r in targets]


def plan_text(world, k, rule_arn, args):
    rule = f'rule_arn = "{rule_arn}"\n' if rule_arn else ""
    return f"""# generated by deploy/local/bench_daemon.py
[service]
name = "svc{k}"
[alb]
listener_arn = "{world['listener_arn']}"
{rule}blue_target_group_arn = "{world['blue_target_group_arn']}"
green_target_group_arn = "{world['green_target_group_arn']}"
[metrics]
namespace = "Cutover/Bench"
period = "{args.period}"
settle = "1s"
poll_interval = "{args.poll}"
latency_statistic = "Average"
[rollback]
max_error_rate = 0.05
min_requests = 20
[[steps]]
action = "shift"
weight = 100
bake = "{args.bake}"
"""


# ------------------------------------------------------------------ the daemon


def proc_status(pid):
    """VmRSS, VmHWM in KiB and Threads, from /proc/PID/status."""
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                out[key] = int(value.split()[0])
            elif key == "Threads":
                out[key] = int(value)
    return out


def cpu_seconds(pid):
    """utime + stime of the process, in seconds (fields 14 and 15 of /proc/PID/stat)."""
    with open(f"/proc/{pid}/stat") as f:
        stat = f.read()
    fields = stat[stat.rindex(")") + 2:].split()  # the fields after "(comm)", starting at field 3
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


class Api:
    def __init__(self, base, token, timeout=30):
        self.base = base
        self.token = token
        self.timeout = timeout

    def call(self, method, path, body=None, auth=True):
        """(status, parsed JSON or text, seconds)."""
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.base + path, data=data, method=method)
        if data is not None:
            req.add_header("Content-Type", "application/json")
        if auth:
            req.add_header("Authorization", f"Bearer {self.token}")
        t0 = time.monotonic()
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                status, raw = resp.status, resp.read()
        except urllib.error.HTTPError as e:
            status, raw = e.code, e.read()
        dt = time.monotonic() - t0
        text = raw.decode(errors="replace")
        try:
            return status, json.loads(text), dt
        except ValueError:
            return status, text, dt


def start_daemon(binary, plans, state, endpoint, token, workdir, budget):
    env = dict(os.environ)
    for k in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "CUTOVER_SERVER"):
        env.pop(k, None)
    env.update(AWS_ENDPOINT_URL=endpoint, AWS_ACCESS_KEY_ID="test", AWS_SECRET_ACCESS_KEY="test",
               AWS_REGION="us-east-1", AWS_EC2_METADATA_DISABLED="true",
               CUTOVER_TOKEN=token, CUTOVER_STATE_DIR=state)
    out_path = os.path.join(workdir, "daemon.stdout")
    err_path = os.path.join(workdir, "daemon.log")
    with open(out_path, "wb") as out, open(err_path, "wb") as err:
        proc = subprocess.Popen([binary, "serve", "--listen", "127.0.0.1:0", "--plans", plans, "--budget", budget],
                                env=env, stdout=out, stderr=err, stdin=subprocess.DEVNULL)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise BenchError(f"the daemon exited at start with {proc.returncode}; its log:\n"
                             + open(err_path, errors="replace").read()[-3000:])
        with open(out_path, errors="replace") as f:
            first = f.readline()
        m = re.match(r"listening on (https?://\S+)\n", first)
        if m:
            return proc, m.group(1), err_path
        time.sleep(0.05)
    proc.kill()
    raise BenchError("the daemon did not print 'listening on URL' within 20 s")


def stop_daemon(proc, bound=30):
    """SIGTERM; (exit code, seconds to exit); SIGKILL after `bound` seconds."""
    if proc.poll() is not None:
        return proc.returncode, 0.0
    t0 = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    try:
        code = proc.wait(timeout=bound)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=10)
        return f"SIGKILLed after {bound}s (SIGTERM ignored)", time.monotonic() - t0
    return code, time.monotonic() - t0


def wait_health(api, bound=10):
    deadline = time.monotonic() + bound
    while time.monotonic() < deadline:
        try:
            if api.call("GET", "/health", auth=False)[0] == 200:
                return
        except OSError:
            pass
        time.sleep(0.1)
    raise BenchError(f"GET /health did not answer 200 within {bound}s")


def scrape(api):
    """{(name, labels): value} from GET /metrics, and the seconds it took."""
    status, text, dt = api.call("GET", "/metrics", auth=False)
    if status != 200:
        raise BenchError(f"GET /metrics: {status}")
    out = {}
    for line in text.splitlines():
        m = re.match(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(\S+)$", line)
        if m:
            out[(m.group(1), m.group(2) or "")] = float(m.group(3))
    return out, dt


def by_label(metrics, name, key=None):
    """The series of `name`: with `key`, summed by the value of that label (over every other
    label, such as `service`); without, by its label values joined by "/"
    (`{class="store",lane="poll"}` → `store/poll`)."""
    out = {}
    for (n, labels), v in metrics.items():
        if n != name:
            continue
        pairs = re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', labels)
        if key is None:
            k = "/".join(value for _, value in pairs)
        else:
            k = dict(pairs).get(key, "")
        out[k] = out.get(k, 0) + v
    return out


def delta(m0, m1, name, key=None):
    """{labels: m1 - m0} of a counter, without the zero ones (by label `key`, see by_label)."""
    a, b = by_label(m0, name, key), by_label(m1, name, key)
    return {k: v - a.get(k, 0) for k, v in b.items() if v - a.get(k, 0)}


def journal_times(state, cutover_id):
    """(rollback requested, traffic restored) of a journal, as datetimes, or None."""
    import datetime
    requested = restored = None
    path = os.path.join(state, "cutovers", cutover_id, "journal.jsonl")
    with open(path) as f:
        for line in f:
            try:
                r = json.loads(line)
            except ValueError:
                continue
            at = datetime.datetime.fromisoformat(r["at"].replace("Z", "+00:00"))
            if r.get("event") == "rollback_requested" and requested is None:
                requested = at
            elif r.get("event") == "traffic_restored" and restored is None:
                restored = at
    return requested, restored


def fan_out(fn, items, workers):
    with concurrent.futures.ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(fn, items))


def pct(xs, q):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(q * (len(xs) - 1))))]


def ms(xs):
    return (f"min {min(xs) * 1000:.0f} / median {statistics.median(xs) * 1000:.0f} / "
            f"p95 {pct(xs, 0.95) * 1000:.0f} / max {max(xs) * 1000:.0f} ms")


def mib(kib):
    return f"{kib / 1024:.1f} MiB"


# ------------------------------------------------------------------ the bench


def run(args):
    n = args.cutovers
    elb = boto3.session.Session(aws_access_key_id="test", aws_secret_access_key="test",
                                region_name="us-east-1").client("elbv2", endpoint_url=args.endpoint)
    report = {}
    work = tempfile.mkdtemp(prefix="cutover-bench-daemon-")
    plans, state = os.path.join(work, "plans"), os.path.join(work, "state")
    os.makedirs(plans)
    os.makedirs(state)
    proc = None
    try:
        # ---- the world: one ALB per 100 cutovers; its listener and 99 rules are targets
        t0 = time.monotonic()
        targets = []
        for j in range(math.ceil(n / 100)):
            world = fixture(args.endpoint, "setup", "--name", f"bench{j}")
            count = min(100, n - 100 * j)
            targets.append((world, None))
            targets += [(world, arn) for arn in make_rules(elb, world, count - 1)]
        listeners = sum(1 for _, r in targets if not r)
        log(f"{len(targets)} targets ({listeners} listeners, {len(targets) - listeners} rules) "
            f"created in {time.monotonic() - t0:.1f}s")
        for k, (world, arn) in enumerate(targets, start=1):
            with open(os.path.join(plans, f"svc{k}.toml"), "w") as f:
                f.write(plan_text(world, k, arn, args))
        check = subprocess.run([args.binary, "validate", "--config", os.path.join(plans, "svc1.toml")],
                               capture_output=True, text=True, timeout=30)
        if check.returncode != 0:
            raise BenchError(f"cutover validate svc1.toml: exit {check.returncode}\n{check.stderr}")

        token = secrets.token_hex(16)
        proc, base, daemon_log = start_daemon(args.binary, plans, state, args.endpoint, token, work, args.budget)
        pid = proc.pid
        api = Api(base, token, timeout=args.http_timeout)
        wait_health(api)
        log(f"daemon pid {pid} on {base}; idle for {args.idle}s")
        time.sleep(args.idle)
        report["idle"] = proc_status(pid)

        # ---- start N cutovers
        collisions = []

        def start(k):
            # A 500 "File exists" is two starts in the same second drawing the same id: the start
            # did nothing, so it is retried, and counted.
            for _ in range(3):
                status, body, dt = api.call("POST", "/v1/cutovers", {"plan": f"svc{k}", "vars": {"VERSION": "bench"}})
                if not (status == 500 and "File exists" in str(body)):
                    break
                collisions.append((k, body))
            return k, status, body, dt

        log(f"starting {n} cutovers ({args.concurrency} at a time)")
        t0 = time.monotonic()
        started = fan_out(start, range(1, n + 1), args.concurrency)
        start_wall = time.monotonic() - t0
        bad = [(k, s, b) for k, s, b, _ in started if s != 201]
        if bad:
            raise BenchError(f"{len(bad)} of {n} starts were not 201, e.g. {bad[:3]}")
        ids = [b["id"] for _, _, b, _ in started]
        report["start_latency"] = [dt for _, _, _, dt in started]
        report["start_wall"] = start_wall
        report["collisions"] = collisions

        # ---- wait until every cutover bakes at 100 % and has judged
        def state_of(i):
            return api.call("GET", f"/v1/cutovers/{i}")

        t0 = time.monotonic()
        deadline = t0 + args.ready_timeout
        pending = set(ids)
        get_latency = []
        while pending and time.monotonic() < deadline:
            for i, (status, body, dt) in zip(sorted(pending), fan_out(state_of, sorted(pending), 10)):
                get_latency.append(dt)
                if status != 200:
                    raise BenchError(f"GET /v1/cutovers/{i}: {status} {body}")
                if body.get("phase") in ("rolling_back", "finished"):
                    raise BenchError(f"cutover {i} ended early: phase {body.get('phase')}, "
                                     f"outcome {body.get('outcome')}, reason {body.get('reason')}")
                w = body.get("weights") or {}
                if body.get("step") == "shift 100%" and w.get("green") == 100 and body.get("last_verdict"):
                    pending.discard(i)
            if pending:
                time.sleep(1.0)
        if pending:
            raise BenchError(f"{len(pending)} of {n} cutovers not at 'shift 100%' with green 100 and a verdict "
                             f"after {args.ready_timeout}s")
        report["ready_after"] = time.monotonic() - t0 + start_wall
        report["get_latency"] = get_latency
        poll = humantime_secs(args.poll)
        log(f"all {n} cutovers bake at 100 %; one more poll interval ({poll:.0f}s), then sampling for {args.sample}s")
        time.sleep(poll)

        # ---- sample
        rss, threads, lags = [], [], []
        m0, _ = scrape(api)
        cpu0, w0 = cpu_seconds(pid), time.monotonic()
        end = w0 + args.sample
        next_scrape = w0 + 5
        while time.monotonic() < end:
            s = proc_status(pid)
            rss.append(s["VmRSS"])
            threads.append(s["Threads"])
            if time.monotonic() >= next_scrape:
                lags += [v for (name, _), v in scrape(api)[0].items() if name == "cutover_poll_lag_seconds"]
                next_scrape += 5
            time.sleep(0.5)
        window = time.monotonic() - w0
        cpu = cpu_seconds(pid) - cpu0
        m1, _ = scrape(api)
        report["aws_calls"] = delta(m0, m1, "cutover_aws_calls_total")
        report["aws_errors"] = delta(m0, m1, "cutover_aws_errors_total")
        report["throttles"] = delta(m0, m1, "cutover_aws_throttles_total")
        report["polls"] = m1.get(("cutover_polls_total", ""), 0) - m0.get(("cutover_polls_total", ""), 0)
        report["missed"] = m1.get(("cutover_polls_missed_total", ""), 0) - m0.get(("cutover_polls_missed_total", ""), 0)
        delay = delta(m0, m1, "cutover_poll_delay_seconds_bucket")
        report["delay_buckets"] = delay
        report["delay_sum"] = (m1.get(("cutover_poll_delay_seconds_sum", ""), 0)
                               - m0.get(("cutover_poll_delay_seconds_sum", ""), 0))
        report["budget_waits"] = delta(m0, m1, "cutover_budget_wait_seconds_total")
        report["budget_delayed"] = delta(m0, m1, "cutover_budget_delayed_total")
        report["budget_rates"] = by_label(m1, "cutover_budget_rate_per_second")
        report["metrics_requested"] = (m1.get(("cutover_cloudwatch_metrics_requested_total", ""), 0)
                                       - m0.get(("cutover_cloudwatch_metrics_requested_total", ""), 0))
        lags += [v for (name, _), v in m1.items() if name == "cutover_poll_lag_seconds"]
        report["poll_lag"] = lags
        report["active"] = sum(v for (n, _), v in m1.items() if n == "cutover_active_cutovers")
        report["verdicts"] = delta(m0, m1, "cutover_verdicts_total", "result")
        report.update(rss=rss, threads=threads, cpu=cpu, window=window, busy=proc_status(pid))

        # ---- the read endpoints with N cutovers
        status, body, dt = api.call("GET", "/v1/cutovers")
        if status != 200 or len(body.get("cutovers", [])) != n:
            raise BenchError(f"GET /v1/cutovers: {status}, {len(body.get('cutovers', [])) if isinstance(body, dict) else body}")
        report["list_latency"] = dt
        metrics, report["metrics_latency"] = scrape(api)
        report["metrics_lines"] = len(metrics)
        report["moto_green"] = sum(1 for w in target_weights(elb, targets) if w == (0, 999))

        # ---- single rollbacks while the others bake, at random moments of the poll cycle
        rng = random.Random(args.seed)
        probes = []
        for i in ids[:args.probes]:
            time.sleep(rng.uniform(0, poll))
            status, body, dt = api.call("POST", f"/v1/cutovers/{i}/rollback", {"reason": "bench probe", "by": "bench"})
            if status != 200 or not (isinstance(body, dict) and body.get("traffic_restored")):
                raise BenchError(f"probe rollback of {i}: {status} {body}")
            requested, restored = journal_times(state, i)
            journaled = (restored - requested).total_seconds() if requested and restored else float("nan")
            probes.append((dt, journaled))
        report["probes"] = probes
        m2, _ = scrape(api)
        report["probe_urgent_delayed"] = {k: v for k, v in delta(m1, m2, "cutover_budget_delayed_total").items()
                                          if k.endswith("/urgent")}

        # ---- roll every other one back
        def rollback(i):
            return i, *api.call("POST", f"/v1/cutovers/{i}/rollback", {"reason": "bench over", "by": "bench"})

        rest = ids[args.probes:]
        log(f"rolling back {len(rest)} cutovers")
        t0 = time.monotonic()
        rolled = fan_out(rollback, rest, args.concurrency)
        report["rollback_wall"] = time.monotonic() - t0
        report["rollback_latency"] = [dt for *_, dt in rolled] or [0.0]
        bad = [(i, s, b) for i, s, b, _ in rolled if s != 200 or not (isinstance(b, dict) and b.get("traffic_restored"))]
        if bad:
            raise BenchError(f"{len(bad)} of {len(rest)} rollbacks failed, e.g. {bad[:3]}")
        deadline = time.monotonic() + args.ready_timeout
        pending = set(ids)
        outcomes = {}
        while pending and time.monotonic() < deadline:
            for i, (status, body, _) in zip(sorted(pending), fan_out(state_of, sorted(pending), 10)):
                if status == 200 and body.get("phase") == "finished":
                    outcomes[body.get("outcome")] = outcomes.get(body.get("outcome"), 0) + 1
                    pending.discard(i)
            if pending:
                time.sleep(0.5)
        report["finished"] = outcomes
        report["unfinished"] = len(pending)
        report["moto_blue"] = sum(1 for w in target_weights(elb, targets) if w and w[0] and not w[1])
        time.sleep(2)
        report["after_rollback"] = proc_status(pid)
        report["metrics_after"] = scrape(api)[0]
        report["aws_errors_after"] = {op: v for op, v in by_label(report["metrics_after"], "cutover_aws_errors_total", "operation").items() if v}

        code, took = stop_daemon(proc)
        report["exit"] = (code, took)
        proc = None
        with open(daemon_log, errors="replace") as f:
            lines = f.read().splitlines()
        report["log_lines"] = len(lines)
        report["log_problems"] = [l for l in lines if re.search(r"\b(WARN|ERROR)\b", l)
                                  and "rolling back" not in l and "rolled_back" not in l
                                  and "bench over" not in l and "bench probe" not in l]
        print_report(args, n, listeners, report)
        return 0
    finally:
        if proc is not None:
            stop_daemon(proc)
        if args.keep:
            log(f"kept {work} (plans, state, daemon.log)")
        else:
            shutil.rmtree(work, ignore_errors=True)


def humantime_secs(text):
    """Seconds of "15s", "1m", "500ms"."""
    m = re.fullmatch(r"(\d+(?:\.\d+)?)(ms|s|m)", text.strip())
    if not m:
        raise BenchError(f"{text!r}: use a number with ms, s or m")
    v = float(m.group(1))
    return v / 1000 if m.group(2) == "ms" else v * 60 if m.group(2) == "m" else v


# Prices (us-east-1, as CloudWatch publishes them): GetMetricData is billed per metric requested.
GET_METRIC_DATA_USD_PER_1000_METRICS = 0.01


def print_report(args, n, listeners, r):
    load = open("/proc/loadavg").read().split()[:3]
    idle, busy = r["idle"], r["busy"]
    med, peak = statistics.median(r["rss"]), max(r["rss"])
    window = r["window"]
    per_s = {op: v / window for op, v in r["aws_calls"].items()}
    gmd = per_s.get("GetMetricData", 0.0)
    describe = sum(v for op, v in per_s.items() if op.startswith("Describe") and op != "DescribeAlarms")
    print()
    print(f"cutover serve: {n} concurrent cutovers on moto")
    print(f"  machine      {os.cpu_count()} CPUs (nproc {len(os.sched_getaffinity(0))}), load average {' '.join(load)} (at the end)")
    print(f"  binary       {args.binary} ({args.profile} build); serve --budget {args.budget}")
    print(f"  plans        {listeners} on listeners, {n - listeners} on rules; shift 100 % bake {args.bake}, "
          f"{args.period} metrics polled every {args.poll}, no traffic published")
    print(f"  idle         VmRSS {mib(idle['VmRSS'])}, VmHWM {mib(idle['VmHWM'])}, {idle['Threads']} threads "
          f"(after {args.idle}s)")
    print(f"  {n} cutovers VmRSS median {mib(med)}, max {mib(peak)} over {window:.0f}s "
          f"({len(r['rss'])} samples); VmHWM {mib(busy['VmHWM'])}; threads {max(r['threads'])}")
    print(f"  increment    {(med - idle['VmRSS']) / n:.0f} KiB per cutover (median RSS - idle RSS) / {n}")
    print(f"  CPU          {r['cpu']:.2f}s user+system over {window:.1f}s "
          f"= {100 * r['cpu'] / window:.1f} % of one CPU")
    total = sum(per_s.values())
    print(f"  AWS calls    {total:.2f}/s over the window: "
          + ", ".join(f"{op} {v:.2f}/s" for op, v in sorted(per_s.items())))
    print(f"  AWS errors   {r['aws_errors'] or 'none'} in the window; throttled attempts {r['throttles'] or 'none'}")
    print(f"  budget       rates now {', '.join(f'{k} {v:g}/s' for k, v in sorted(r['budget_rates'].items()))}")
    print(f"               waited in the window: "
          + (", ".join(f"{k} {v:.2f}s" for k, v in sorted(r["budget_waits"].items())) or "nothing")
          + "; calls that waited: "
          + (", ".join(f"{k} {v:.0f}" for k, v in sorted(r["budget_delayed"].items())) or "none"))
    polls = r["polls"]
    buckets = sorted(((float(k) if '+Inf' not in k else float("inf")), v)
                     for k, v in r["delay_buckets"].items())
    # Cumulative counts: the worst delay is at most the smallest bound that holds every poll.
    worst = next((le for le, c in buckets if c >= polls), float("inf")) if polls else float("nan")
    mean = r["delay_sum"] / polls if polls else float("nan")
    print(f"  polls        {polls:.0f} in the window ({polls / window:.1f}/s), missed {r['missed']:.0f}; delay from tick "
          f"to judged: mean {mean * 1000:.0f} ms, all within {worst:g} s; "
          f"poll lag (now - newest judged period) max {max(r['poll_lag'], default=float('nan')):.0f}s")
    print(f"  judging      {r['active']:.0f} active; verdicts in the window {r['verdicts']}")
    cutover_minutes = n * window / 60
    metrics = r["metrics_requested"]
    cost = metrics / 1000 * GET_METRIC_DATA_USD_PER_1000_METRICS / cutover_minutes if cutover_minutes else float("nan")
    print(f"  CloudWatch   {metrics:.0f} metrics requested in {r['aws_calls'].get('GetMetricData', 0):.0f} GetMetricData calls "
          f"= ${cost:.6f} per cutover-minute (${GET_METRIC_DATA_USD_PER_1000_METRICS} per 1,000 metrics)")
    print(f"  starts       {n} POST /v1/cutovers in {r['start_wall']:.2f}s ({args.concurrency} concurrent); "
          f"each {ms(r['start_latency'])}")
    if r["collisions"]:
        print(f"  id clashes   {len(r['collisions'])} start(s) got 500 'File exists' and were retried")
    print(f"  ready        all {n} baking at green 100 % with a verdict {r['ready_after']:.1f}s after the first POST; "
          f"{r['moto_green']}/{n} targets read 0/999 on moto")
    print(f"  reads        GET /v1/cutovers/ID {ms(r['get_latency'])}; GET /v1/cutovers ({n}) "
          f"{r['list_latency'] * 1000:.0f} ms; GET /metrics {r['metrics_latency'] * 1000:.0f} ms "
          f"({r['metrics_lines']} samples)")
    http = [h for h, _ in r["probes"]]
    journaled = [j for _, j in r["probes"]]
    print(f"  rollback     {len(http)} single rollbacks while {n - 1} others bake, at random moments of the poll cycle:")
    print(f"               request → answer (traffic verified) {ms(http)}")
    print(f"               journal: rollback_requested → traffic_restored {ms(journaled)}")
    print(f"               urgent calls that waited for a token: {r['probe_urgent_delayed'] or 'none'}")
    print(f"  rollbacks    {len(r['rollback_latency'])} more POST rollback in {r['rollback_wall']:.2f}s; "
          f"each {ms(r['rollback_latency'])}; finished {r['finished']}, unfinished {r['unfinished']}; "
          f"{r['moto_blue']}/{n} targets back on blue")
    totals = by_label(r["metrics_after"], "cutover_aws_calls_total")
    print(f"  AWS totals   whole run: " + ", ".join(f"{op} {v:.0f}" for op, v in sorted(totals.items())))
    print(f"  after        VmRSS {mib(r['after_rollback']['VmRSS'])}, {r['after_rollback']['Threads']} threads "
          f"(all finished, 2s later)")
    code, took = r["exit"]
    print(f"  SIGTERM      exit {code} after {took:.2f}s")
    print(f"  daemon log   {r['log_lines']} lines, {len(r['log_problems'])} WARN/ERROR lines "
          f"(not counting the rollbacks)")
    for line in r["log_problems"][:10]:
        print(f"    {line[:300]}")
    worst_probe = max(journaled, default=float("nan"))
    print("  goals (issue 12)")
    for ok, text in [
        (peak / 1024 <= 64, f"RSS at most 64 MB: max {mib(peak)}"),
        (gmd <= 5, f"at most 5 GetMetricData a second: {gmd:.2f}/s"),
        (describe <= 10, f"at most 10 ELBv2 Describe calls a second: {describe:.2f}/s"),
        (r["missed"] == 0, f"no missed polls: {r['missed']:.0f} missed of {polls:.0f}"),
        (worst_probe <= 0.1, f"a rollback verified within 100 ms of its request: worst {worst_probe * 1000:.0f} ms "
                             f"(journal), {max(http, default=float('nan')) * 1000:.0f} ms (HTTP round trip)"),
    ]:
        print(f"    {'met   ' if ok else 'MISSED'} {text}")


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--binary", required=True)
    p.add_argument("--profile", default="release", help="shown in the report")
    p.add_argument("--endpoint", required=True, help="the moto server's URL (loopback)")
    p.add_argument("--cutovers", type=int, default=100)
    p.add_argument("--concurrency", type=int, default=10, help="concurrent POSTs when starting and rolling back")
    p.add_argument("--idle", type=float, default=3.0, help="seconds before the idle measurement")
    p.add_argument("--sample", type=float, default=60.0, help="seconds of sampling with every cutover baking")
    p.add_argument("--bake", default="1h")
    p.add_argument("--poll", default="15s", help="the plans' metrics.poll_interval")
    p.add_argument("--period", default="1s", help="the plans' metrics.period (1s: every poll reads CloudWatch)")
    p.add_argument("--budget", default="elbv2-modify=20/40",
                   help="serve --budget; the default only speeds up the ramp of N shifts (moto has no Modify quota)")
    p.add_argument("--probes", type=int, default=5, help="single rollbacks timed while the others bake")
    p.add_argument("--seed", type=int, default=12)
    p.add_argument("--ready-timeout", type=float, default=900.0)
    p.add_argument("--http-timeout", type=float, default=30.0)
    p.add_argument("--keep", action="store_true", help="keep the temp dir (plans, journals, daemon.log)")
    args = p.parse_args()
    if not re.match(r"https?://(127\.0\.0\.1|localhost)(:\d+)?/?$", args.endpoint):
        p.error("--endpoint must be on loopback")
    try:
        return run(args)
    except (BenchError, subprocess.SubprocessError, OSError) as e:
        log(f"FAILED: {e}")
        return 1


if __name__ == "__main__":
    sys.exit(main())
