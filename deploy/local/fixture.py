#!/usr/bin/env python3
"""Local AWS fixture for cutover's demo and integration tests (moto + boto3).

Two subcommands, both pointed at a running moto server with --endpoint:

  setup    Create a blue/green Application Load Balancer world in moto: a VPC,
           two subnets in different AZs, an ALB, two instance target groups
           NAME-blue and NAME-green (HTTP:80) with two running instances each,
           and an HTTP:80 listener whose default action forwards to blue
           (weight 1) and green (weight 0). With --rule the default action is
           a fixed 404 and a rule (priority 10, path /api/*) carries the
           forward action instead. Prints ONE JSON object on stdout:

             {"load_balancer_arn", "listener_arn", "rule_arn",
              "blue_target_group_arn", "green_target_group_arn",
              "blue_instances", "green_instances", "stopped_instance"}

  traffic  A traffic simulator. Once per wall-clock second it reads the
           current forward weights of the listener's default action (or of
           the rule), splits --rps requests between blue and green in
           proportion, and publishes per-second ALB-style metrics to
           CloudWatch (namespace --namespace, StorageResolution=1, dimensions
           LoadBalancer=app/NAME/ID and TargetGroup=targetgroup/NAME/ID):
           RequestCount, HTTPCode_Target_5XX_Count and TargetResponseTime.
           Like real ALB metrics, nothing is published for a colour that got
           no requests, and no 5XX datapoint when there were no errors.
           --profile-file names a JSON file re-read every second that may
           override rps, blue_error_rate, green_error_rate, blue_latency and
           green_latency. One status line per second goes to stderr; SIGTERM
           or SIGINT ends it cleanly.

  weights  Print the current forward weights of the listener's default action
           (or of the rule) as {"blue": N, "green": N} on stdout (null when
           there is no forward action).

Examples (run with the moto venv's python, deploy/local/install-moto.sh):

  .venv-moto/bin/python deploy/local/fixture.py setup --endpoint http://127.0.0.1:5000
  .venv-moto/bin/python deploy/local/fixture.py traffic --endpoint http://127.0.0.1:5000 \\
      --listener-arn ARN --blue-tg ARN --green-tg ARN --profile-file /tmp/profile.json

Credentials default to test/test and the region to us-east-1 when the
environment does not set them; moto accepts any.
"""

import argparse
import datetime
import json
import math
import os
import signal
import sys
import time

import boto3
from botocore.config import Config

DEFAULT_AMI = "ami-12c6146b"  # one of the AMIs moto ships in its catalogue


def log(msg):
    sys.stderr.write(msg + "\n")
    sys.stderr.flush()


def clients(endpoint, *services, retries=3):
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "test")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "test")
    region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"
    session = boto3.session.Session(region_name=region)
    # Short timeouts: a stuck emulator should cost the simulator a tick, not a minute.
    config = Config(connect_timeout=2, read_timeout=5, retries={"mode": "standard", "max_attempts": retries})
    return [session.client(s, endpoint_url=endpoint, config=config) for s in services]


# --------------------------------------------------------------------- setup


def forward_action(blue_arn, green_arn):
    return {
        "Type": "forward",
        "ForwardConfig": {
            "TargetGroups": [
                {"TargetGroupArn": blue_arn, "Weight": 1},
                {"TargetGroupArn": green_arn, "Weight": 0},
            ],
            "TargetGroupStickinessConfig": {"Enabled": False},
        },
    }


def run_instances(ec2, subnet_id, count):
    try:
        resp = ec2.run_instances(
            ImageId=DEFAULT_AMI, MinCount=count, MaxCount=count,
            InstanceType="t3.micro", SubnetId=subnet_id,
        )
    except ec2.exceptions.ClientError:
        # Fall back to whatever image this moto has (slow: ~2 s the first time).
        image = ec2.describe_images(Owners=["amazon"])["Images"][0]["ImageId"]
        resp = ec2.run_instances(
            ImageId=image, MinCount=count, MaxCount=count,
            InstanceType="t3.micro", SubnetId=subnet_id,
        )
    return [i["InstanceId"] for i in resp["Instances"]]


def lb_name(value):
    """argparse type: a name that is valid for the ALB and for NAME-green."""
    ok = (1 <= len(value) <= 26 and value[0] != "-" and value[-1] != "-"
          and all(c.isascii() and (c.isalnum() or c == "-") for c in value))
    if not ok:
        raise argparse.ArgumentTypeError(
            f"{value!r}: 1-26 ASCII letters, digits or hyphens, not starting or ending with a hyphen "
            "(target groups are NAME-blue and NAME-green, at most 32 characters)")
    return value


def cmd_setup(args):
    ec2, elb = clients(args.endpoint, "ec2", "elbv2")
    name = args.name

    vpc_id = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
    azs = [z["ZoneName"] for z in ec2.describe_availability_zones()["AvailabilityZones"]][:2]
    subnets = [
        ec2.create_subnet(VpcId=vpc_id, CidrBlock=f"10.0.{i}.0/24", AvailabilityZone=az)["Subnet"]["SubnetId"]
        for i, az in enumerate(azs)
    ]
    sg_id = ec2.create_security_group(
        GroupName=f"{name}-alb", Description=f"{name} load balancer", VpcId=vpc_id
    )["GroupId"]

    lb = elb.create_load_balancer(
        Name=name, Subnets=subnets, SecurityGroups=[sg_id],
        Scheme="internal", Type="application", IpAddressType="ipv4",
    )["LoadBalancers"][0]
    lb_arn = lb["LoadBalancerArn"]

    def target_group(colour):
        return elb.create_target_group(
            Name=f"{name}-{colour}", Protocol="HTTP", Port=80, VpcId=vpc_id,
            TargetType="instance", HealthCheckProtocol="HTTP", HealthCheckPath="/health",
        )["TargetGroups"][0]["TargetGroupArn"]

    blue_arn = target_group("blue")
    green_arn = target_group("green")

    extra = 1 if args.stopped_instance else 0
    ids = run_instances(ec2, subnets[0], 4 + extra)
    blue_ids, green_ids = ids[0:2], ids[2:4]
    stopped = ids[4] if args.stopped_instance else None

    elb.register_targets(TargetGroupArn=blue_arn, Targets=[{"Id": i, "Port": 80} for i in blue_ids])
    green_targets = green_ids + ([stopped] if stopped else [])
    elb.register_targets(TargetGroupArn=green_arn, Targets=[{"Id": i, "Port": 80} for i in green_targets])
    if stopped:
        ec2.stop_instances(InstanceIds=[stopped])

    if args.rule:
        default = [{
            "Type": "fixed-response",
            "FixedResponseConfig": {"StatusCode": "404", "ContentType": "text/plain", "MessageBody": "not found"},
        }]
    elif args.shape == "plain":
        default = [{"Type": "forward", "TargetGroupArn": blue_arn}]
    else:
        default = [forward_action(blue_arn, green_arn)]

    listener_arn = elb.create_listener(
        LoadBalancerArn=lb_arn, Protocol="HTTP", Port=80, DefaultActions=default
    )["Listeners"][0]["ListenerArn"]

    rule_arn = None
    if args.rule:
        rule_arn = elb.create_rule(
            ListenerArn=listener_arn, Priority=10,
            Conditions=[{"Field": "path-pattern", "PathPatternConfig": {"Values": ["/api/*"]}}],
            Actions=[forward_action(blue_arn, green_arn)],
        )["Rules"][0]["RuleArn"]

    json.dump({
        "load_balancer_arn": lb_arn,
        "listener_arn": listener_arn,
        "rule_arn": rule_arn,
        "blue_target_group_arn": blue_arn,
        "green_target_group_arn": green_arn,
        "blue_instances": blue_ids,
        "green_instances": green_ids,
        "stopped_instance": stopped,
    }, sys.stdout)
    sys.stdout.write("\n")
    sys.stdout.flush()
    return 0


# ------------------------------------------------------------------- traffic


class Stop(BaseException):
    """Raised by the signal handler; a BaseException so that the
    `except Exception` around AWS calls cannot swallow it."""


def lb_dimension(arn):
    """'app/NAME/ID' from a load balancer, listener or rule ARN."""
    resource = arn.split(":", 5)[5]  # loadbalancer/app/N/ID, listener/app/N/ID/L, listener-rule/app/N/ID/L/R
    parts = resource.split("/")
    return "/".join(parts[1:4])


def tg_dimension(arn):
    """'targetgroup/NAME/ID' from a target group ARN."""
    return arn.rsplit(":", 1)[1]


def forward_weights(actions, blue_arn, green_arn):
    """(blue, green) weights of the forward action among `actions`, or None."""
    for action in actions:
        if action.get("Type") != "forward":
            continue
        groups = (action.get("ForwardConfig") or {}).get("TargetGroups")
        if groups:
            weights = {g["TargetGroupArn"]: g.get("Weight", 1) for g in groups}
            return weights.get(blue_arn, 0), weights.get(green_arn, 0)
        target = action.get("TargetGroupArn")
        if target:
            return (1 if target == blue_arn else 0), (1 if target == green_arn else 0)
    return None


def split(rps, blue_w, green_w):
    """Requests per colour in proportion to the weights, rounded half up."""
    total = blue_w + green_w
    if total <= 0 or rps <= 0:
        return 0, 0
    blue = int(math.floor(rps * blue_w / total + 0.5))
    return blue, rps - blue


def load_profile(args, last_override):
    """The flags, overridden by the profile file's keys. A missing file means
    the flags alone; an unreadable one (say, caught half-written) keeps the
    last good override. Returns (profile, override to pass next time)."""
    profile = {
        "rps": args.rps,
        "blue_error_rate": args.blue_error_rate,
        "green_error_rate": args.green_error_rate,
        "blue_latency": args.blue_latency,
        "green_latency": args.green_latency,
    }
    override = {}
    if args.profile_file:
        try:
            with open(args.profile_file) as f:
                override = json.load(f)
            if not isinstance(override, dict):
                raise ValueError("not a JSON object")
        except FileNotFoundError:
            override = {}
        except (OSError, ValueError) as e:
            log(f"traffic: profile {args.profile_file} unreadable ({e}); keeping the previous one")
            override = last_override
    for key in profile:
        if override.get(key) is None:
            continue
        try:
            profile[key] = int(override[key]) if key == "rps" else float(override[key])
        except (TypeError, ValueError):
            log(f"traffic: ignoring {key}={override[key]!r} in {args.profile_file}: not a number")
    return profile, override


def metric_data(lb_dim, tg_arn, ts, requests, error_rate, latency):
    """The datapoints of one colour for one second, and its error count."""
    if requests <= 0:
        return [], 0  # like ALB: no requests, no datapoints at all
    dims = [{"Name": "LoadBalancer", "Value": lb_dim}, {"Name": "TargetGroup", "Value": tg_dimension(tg_arn)}]
    errors = min(requests, int(math.floor(requests * float(error_rate) + 0.5)))
    latency = float(latency)
    data = [
        {"MetricName": "RequestCount", "Dimensions": dims, "Timestamp": ts,
         "Value": float(requests), "Unit": "Count", "StorageResolution": 1},
        {"MetricName": "TargetResponseTime", "Dimensions": dims, "Timestamp": ts, "Unit": "Seconds",
         "StorageResolution": 1,
         "StatisticValues": {"SampleCount": float(requests), "Sum": latency * requests,
                             "Minimum": latency, "Maximum": latency}},
    ]
    if errors > 0:
        data.append({"MetricName": "HTTPCode_Target_5XX_Count", "Dimensions": dims, "Timestamp": ts,
                     "Value": float(errors), "Unit": "Count", "StorageResolution": 1})
    return data, errors


def cmd_traffic(args):
    # No retries: the next tick is the retry.
    elb, cw = clients(args.endpoint, "elbv2", "cloudwatch", retries=1)
    source_arn = args.listener_arn or args.rule_arn
    lb_dim = lb_dimension(source_arn)

    def on_signal(signum, frame):
        raise Stop()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    deadline = time.time() + args.duration if args.duration else None
    next_second = math.floor(time.time()) + 1
    last_override = {}
    try:
        while True:
            # Wake at the next whole wall-clock second S. The requests of second
            # S are routed by the weights in force at its start and published
            # at once, stamped S (the whole second, UTC). Each second is
            # published at most once; seconds missed because a tick overran
            # (a slow emulator) are skipped, and said so.
            delay = next_second - time.time()
            if delay > 0:
                time.sleep(delay)
            now = time.time()
            if now < next_second:  # woke a hair early: the clocks differ
                continue
            second = int(math.floor(now))
            if second > next_second:
                log(f"traffic: {second - next_second} second(s) skipped: a tick took longer than a second")
            next_second = second + 1
            if deadline is not None and second > deadline:
                break
            ts = datetime.datetime.fromtimestamp(second, tz=datetime.timezone.utc)
            try:
                actions = read_actions(elb, args.listener_arn, args.rule_arn)
            except Exception as e:  # keep going through transient emulator errors
                log(f"traffic {ts:%H:%M:%S} describe failed: {e}")
                continue
            blue_w, green_w = forward_weights(actions, args.blue_tg, args.green_tg) or (0, 0)
            profile, last_override = load_profile(args, last_override)
            blue_n, green_n = split(profile["rps"], blue_w, green_w)
            data, errors = [], {}
            for colour, tg, n in (("blue", args.blue_tg, blue_n), ("green", args.green_tg, green_n)):
                points, errors[colour] = metric_data(
                    lb_dim, tg, ts, n, profile[f"{colour}_error_rate"], profile[f"{colour}_latency"])
                data.extend(points)
            try:
                if data:
                    cw.put_metric_data(Namespace=args.namespace, MetricData=data)
            except Exception as e:
                log(f"traffic {ts:%H:%M:%S} put_metric_data failed: {e}")
                continue
            log(f"traffic {ts:%H:%M:%S} weights blue={blue_w} green={green_w} "
                f"requests blue={blue_n} green={green_n} errors blue={errors['blue']} green={errors['green']}")
    except (Stop, KeyboardInterrupt):
        pass
    log("traffic: stopped")
    return 0


def read_actions(elb, listener_arn, rule_arn):
    if listener_arn:
        return elb.describe_listeners(ListenerArns=[listener_arn])["Listeners"][0]["DefaultActions"]
    return elb.describe_rules(RuleArns=[rule_arn])["Rules"][0]["Actions"]


def cmd_weights(args):
    (elb,) = clients(args.endpoint, "elbv2")
    weights = forward_weights(read_actions(elb, args.listener_arn, args.rule_arn), args.blue_tg, args.green_tg)
    blue, green = weights or (None, None)
    json.dump({"blue": blue, "green": green}, sys.stdout)
    sys.stdout.write("\n")
    return 0


# ---------------------------------------------------------------------- main


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("setup", help="create the ALB, target groups, instances and listener in moto")
    p.add_argument("--endpoint", required=True, help="moto endpoint, e.g. http://127.0.0.1:5000")
    p.add_argument("--name", default="demo", type=lb_name, help="load balancer name (unique per moto server: target group names must be); "
                        "target groups are NAME-blue, NAME-green")
    p.add_argument("--rule", action="store_true",
                   help="put the forward action on a rule (priority 10, /api/*); default action is a 404")
    p.add_argument("--shape", choices=["forward", "plain"], default="forward",
                   help="forward: ForwardConfig blue 1 / green 0; plain: TargetGroupArn=blue only")
    p.add_argument("--stopped-instance", action="store_true",
                   help="also register a stopped instance in green")
    p.set_defaults(func=cmd_setup)

    p = sub.add_parser("traffic", help="simulate traffic and publish 1-second ALB metrics")
    p.add_argument("--endpoint", required=True)
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--listener-arn")
    src.add_argument("--rule-arn")
    p.add_argument("--blue-tg", required=True, help="blue target group ARN")
    p.add_argument("--green-tg", required=True, help="green target group ARN")
    p.add_argument("--namespace", default="Cutover/Demo")
    p.add_argument("--rps", type=int, default=200)
    p.add_argument("--blue-error-rate", type=float, default=0.0)
    p.add_argument("--green-error-rate", type=float, default=0.0)
    p.add_argument("--blue-latency", type=float, default=0.05, help="seconds")
    p.add_argument("--green-latency", type=float, default=0.05, help="seconds")
    p.add_argument("--profile-file", help="JSON file re-read every second overriding the rates above")
    p.add_argument("--duration", type=float, default=None, help="seconds to run (default: forever)")
    p.set_defaults(func=cmd_traffic)

    p = sub.add_parser("weights", help='print the forward weights as {"blue": N, "green": N}')
    p.add_argument("--endpoint", required=True)
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--listener-arn")
    src.add_argument("--rule-arn")
    p.add_argument("--blue-tg", required=True, help="blue target group ARN")
    p.add_argument("--green-tg", required=True, help="green target group ARN")
    p.set_defaults(func=cmd_weights)

    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
