"""``mlambda local up|status|trigger``: the local cloud."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from pathlib import Path
from typing import Any

from mlambda_local.commands import print_json


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
        api_port=args.api_port,
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
        print(f"mlambda local cloud is up (data dir {data_dir})")
        source = f"built artifacts in {args.from_build}" if args.from_build else "the source tree"
        mode = "in this process" if args.in_process else f"worker processes, from {source}"
        print(f"  functions:    {mode}; logs in {data_dir / 'logs'}/<function>/")
        print(f"  API URL:      {cloud.api_url}")
        print(f"  console:      {cloud.api_url}/console/ (sign in with a key)")
        print(f"  AWS endpoint: {cloud.endpoint_url}")
        print(f"  admin key:    {key}")
        print(f"  try:          curl -H 'x-api-key: {key}' {cloud.api_url}/me")
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


def local_status(args: argparse.Namespace) -> int:
    """Resources, functions and triggers of the running local cloud."""
    from mlambda_local.cloud import ControlClient

    print_json(ControlClient.from_data_dir(Path(args.data_dir)).status())
    return 0


def local_trigger(args: argparse.Namespace) -> int:
    """Fire a schedule rule (or the schedule of a function) now."""
    from mlambda_local.cloud import ControlClient

    print_json(ControlClient.from_data_dir(Path(args.data_dir)).trigger(args.name))
    return 0


def register(groups: Any) -> None:
    """Add ``mlambda local ...``."""
    local = groups.add_parser("local", help="the local cloud").add_subparsers(dest="command", required=True)
    up = local.add_parser("up", help="run the local cloud in the foreground")
    up.add_argument("--api-port", type=int, default=0, help="HTTP port of the API (default: a free one)")
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
