"""``mlambda local up|status|trigger``: the local cloud."""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
import threading
from pathlib import Path
from typing import Any

from mlambda_local.output import Outcome


def local_up(args: argparse.Namespace) -> int:
    """Run the local cloud in the foreground until Ctrl-C / SIGTERM."""
    from mlambda_local.cloud import LocalCloud

    # What the cloud itself does (state restored and how long it took, schedules fired, batches
    # failed) is said on stderr; warnings alone would hide why a start took the time it did.
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    local_logger = logging.getLogger("mlambda.local")
    local_logger.addHandler(handler)
    local_logger.setLevel(logging.INFO)
    data_dir = Path(args.data_dir)
    cloud = LocalCloud(
        Path(args.template),
        data_dir,
        endpoint_url=args.endpoint_url,
        api_port=args.port,
        moto_port=args.moto_port,
        mode="in-process" if args.in_process else "process",
        from_build=args.from_build,
        python=args.python,
        max_instances=args.max_instances,
        echo_logs=not args.quiet,
        prewarm=not args.no_prewarm,
    )
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    cloud.start()
    try:
        # Imported once the cloud is up: the shared layer and boto3 are no part of its start.
        from mlambda_local.bootstrap import ensure_admin_key

        key = ensure_admin_key(data_dir, cloud.outputs["ApiKeysTableName"], cloud.endpoint_url)
        info = up_info(cloud, key, data_dir, args)
        if args.output == "json":
            print(json.dumps(info), flush=True)
        else:
            for line in up_lines(info):
                print(line)
            print("Ctrl-C stops it.", flush=True)
        while not stop.wait(0.5) and cloud.fault is None:
            continue
    finally:
        print("stopping...", flush=True)
        cloud.stop()
        print("stopped.")
    if cloud.fault is not None:
        print(f"error: {cloud.fault}", file=sys.stderr)
        return 1
    return 0


def up_info(cloud: Any, key: str, data_dir: Path, args: argparse.Namespace) -> dict[str, Any]:
    """What ``local up`` tells: where everything is, and the environment that points tools at it."""
    region = cloud.region
    environment = {
        "AWS_ENDPOINT_URL": cloud.endpoint_url,
        "AWS_REGION": region,
        "AWS_DEFAULT_REGION": region,
        "MLAMBDA_API_URL": cloud.api_url,
        "MLAMBDA_API_KEY": key,
    }
    if args.endpoint_url is None:  # the embedded moto takes any credentials; these are its dummies
        environment |= {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}
    source = f"built artifacts in {args.from_build}" if args.from_build else "the source tree"
    return {
        "data_dir": str(data_dir),
        "api_url": cloud.api_url,
        "console_url": f"{cloud.api_url}/console/",
        "endpoint_url": cloud.endpoint_url,
        "region": region,
        "admin_key": key,
        "functions": "in this process" if args.in_process else f"worker processes, from {source}",
        "logs": str(data_dir / "logs"),
        "buckets": {k: v for k, v in sorted(cloud.outputs.items()) if k.endswith("BucketName")},
        "environment": environment,
    }


def up_lines(info: dict[str, Any]) -> list[str]:
    """``local up``'s banner."""
    lines = [
        f"mlambda local cloud is up (data dir {info['data_dir']})",
        f"  functions:    {info['functions']}; logs in {info['logs']}/<function>/",
        f"  API URL:      {info['api_url']}",
        f"  console:      {info['console_url']} (sign in with a key)",
        f"  AWS endpoint: {info['endpoint_url']} (region {info['region']})",
        f"  admin key:    {info['admin_key']}",
        "  buckets:      "
        + ", ".join(f"{name} ({logical.removesuffix('Name')})" for logical, name in info["buckets"].items()),
        f"  try:          curl -H 'x-api-key: {info['admin_key']}' {info['api_url']}/me",
        "The AWS CLI, boto3 and the mlambda CLI in another shell, after:",
    ]
    lines.extend(f"  export {name}={value}" for name, value in info["environment"].items())
    bucket = info["buckets"].get("BatchBucketName")
    if bucket:
        lines.append(f"  aws s3 ls s3://{bucket}/")
    return lines


def local_status(args: argparse.Namespace) -> Outcome:
    """Resources, functions and triggers of the running local cloud."""
    from mlambda_local.cloud import ControlClient

    return Outcome(ControlClient.from_data_dir(Path(args.data_dir)).status())


def local_trigger(args: argparse.Namespace) -> Outcome:
    """Fire a schedule rule (or the schedule of a function) now."""
    from mlambda_local.cloud import ControlClient

    return Outcome(ControlClient.from_data_dir(Path(args.data_dir)).trigger(args.name))


def register(groups: Any) -> None:
    """Add ``mlambda local ...``."""
    local = groups.add_parser("local", help="the local cloud").add_subparsers(
        dest="command", required=True, metavar="COMMAND"
    )
    up = local.add_parser("up", help="run the local cloud in the foreground")
    up.add_argument(
        "--port", "--api-port", type=int, default=0, help="port of the API on 127.0.0.1 (default: a free one)"
    )
    up.add_argument(
        "--moto-port",
        type=int,
        default=0,
        help="port of the AWS endpoint (moto) on 127.0.0.1 (default: a free one)",
    )
    up.add_argument("--endpoint-url", help="use this AWS endpoint (LocalStack...) instead of starting moto")
    up.add_argument(
        "--from-build",
        nargs="?",
        const=".aws-sam/build",
        metavar="DIR",
        help="run `sam build`'s artifacts (DIR/template.yaml, default .aws-sam/build) with the template's "
        "Python runtime, instead of the source tree",
    )
    up.add_argument(
        "--python", help="interpreter of the workers run from the source tree (default: this one)"
    )
    up.add_argument(
        "--max-instances",
        type=int,
        default=4,
        help="workers per function without reserved or mapping concurrency (default 4)",
    )
    up.add_argument(
        "--in-process", action="store_true", help="run functions in threads of this process (fast tests only)"
    )
    up.add_argument("--no-prewarm", action="store_true", help="start no worker before its first request")
    up.add_argument("--quiet", action="store_true", help="do not print the functions' log lines here")
    up.set_defaults(run=local_up)
    local.add_parser("status", help="what the running local cloud holds").set_defaults(run=local_status)
    trigger = local.add_parser("trigger", help="fire a schedule now")
    trigger.add_argument("name", help="rule or function logical id")
    trigger.set_defaults(run=local_trigger)
