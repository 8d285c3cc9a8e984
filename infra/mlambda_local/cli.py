"""The ``mlambda`` command: run the local cloud, manage keys, and drive the platform's API.

Each command group lives in its own function; later features add theirs to ``COMMANDS``.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from mlambda_local.client import DEFAULT_DATA_DIR, ApiClient, CliError, Target

Handler = Callable[[argparse.Namespace], int]


def print_json(value: Any) -> None:
    """Pretty-print ``value`` as JSON."""
    print(json.dumps(value, indent=2, sort_keys=True, default=str))


def api(args: argparse.Namespace) -> ApiClient:
    """The API client the command line points at."""
    return ApiClient(Target.resolve(Path(args.data_dir), args.api_url, args.api_key))


# ---------------------------------------------------------------- local cloud


def local_up(args: argparse.Namespace) -> int:
    """Run the local cloud in the foreground until Ctrl-C / SIGTERM."""
    from mlambda_local.bootstrap import ensure_admin_key
    from mlambda_local.cloud import LocalCloud

    data_dir = Path(args.data_dir)
    cloud = LocalCloud(
        Path(args.template),
        data_dir,
        endpoint_url=args.endpoint_url,
        api_port=args.api_port,
    )
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    cloud.start()
    try:
        key = ensure_admin_key(data_dir, cloud.outputs["ApiKeysTableName"], cloud.endpoint_url)
        print(f"mlambda local cloud is up (data dir {data_dir})")
        print(f"  API URL:      {cloud.api_url}")
        print(f"  AWS endpoint: {cloud.endpoint_url}")
        print(f"  admin key:    {key}")
        print("  try:         curl -H 'x-api-key: <admin key>' " + cloud.api_url + "/me")
        print("Ctrl-C stops it.", flush=True)
        stop.wait()
    finally:
        print("stopping...", flush=True)
        cloud.stop()
        print("stopped.")
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


# ---------------------------------------------------------------- keys


def keys_create(args: argparse.Namespace) -> int:
    """Issue a key through the API (admin key needed); prints the secret once."""
    scopes = [s.strip() for s in args.scopes.split(",") if s.strip()]
    created = api(args).post("/keys", {"name": args.name, "scopes": scopes})
    print_json(created)
    print("Store the api_key now: it is not shown again.", file=sys.stderr)
    return 0


def keys_list(args: argparse.Namespace) -> int:
    """Every key, without secrets."""
    for key in api(args).get("/keys")["keys"]:
        state = "revoked" if key.get("revoked_at") else "active"
        print(f"{key['key_id']}  {state:8} {key['name']:24} {','.join(key['scopes'])}")
    return 0


def keys_revoke(args: argparse.Namespace) -> int:
    """Revoke a key by id."""
    print_json(api(args).delete(f"/keys/{args.key_id}"))
    return 0


def keys_bootstrap(args: argparse.Namespace) -> int:
    """Create an admin key directly in the keys table (first key of a deployment; needs AWS credentials)."""
    from mlambda_local.bootstrap import key_service
    from mlambda_local.client import read_state

    state = read_state(Path(args.data_dir))
    table = args.table or state.get("outputs", {}).get("ApiKeysTableName")
    if not table:
        raise CliError("name the API keys table with --table (the stack output ApiKeysTableName)")
    endpoint = args.endpoint_url or state.get("endpoint_url")
    created = key_service(table, endpoint).create(args.name, args.scopes.split(","), created_by="bootstrap")
    print_json(created.model_dump(mode="json"))
    return 0


def whoami(args: argparse.Namespace) -> int:
    """The key the CLI uses: id, name and scopes."""
    print_json(api(args).get("/me"))
    return 0


def demo(args: argparse.Namespace) -> int:
    """Start a local cloud, run the platform end to end, print what happened, stop."""
    from mlambda_local.demo import run_demo

    return run_demo(Path(args.template), Path(args.data_dir) / "demo")


# ---------------------------------------------------------------- parser


def build_parser() -> argparse.ArgumentParser:
    """The full command line."""
    parser = argparse.ArgumentParser(prog="mlambda", description=__doc__)
    parser.add_argument("--data-dir", default=str(DEFAULT_DATA_DIR), help="local cloud state (default .mlambda)")
    parser.add_argument("--api-url", help="API base URL (default: MLAMBDA_API_URL or the local cloud)")
    parser.add_argument("--api-key", help="API key (default: MLAMBDA_API_KEY or the local admin key)")
    parser.add_argument("--template", default="template.yaml", help="SAM template (default template.yaml)")
    groups = parser.add_subparsers(dest="group", required=True)

    local = groups.add_parser("local", help="the local cloud").add_subparsers(dest="command", required=True)
    up = local.add_parser("up", help="run the local cloud in the foreground")
    up.add_argument("--api-port", type=int, default=0, help="HTTP port of the API (default: a free one)")
    up.add_argument("--endpoint-url", help="use this AWS endpoint (LocalStack...) instead of starting moto")
    up.set_defaults(run=local_up)
    local.add_parser("status", help="what the running local cloud holds").set_defaults(run=local_status)
    trigger = local.add_parser("trigger", help="fire a schedule now")
    trigger.add_argument("name", help="rule or function logical id")
    trigger.set_defaults(run=local_trigger)

    keys = groups.add_parser("keys", help="API keys").add_subparsers(dest="command", required=True)
    create = keys.add_parser("create", help="issue a key (printed once)")
    create.add_argument("--name", required=True)
    create.add_argument("--scopes", required=True, help="comma-separated: predict,ingest,registry:read,...")
    create.set_defaults(run=keys_create)
    keys.add_parser("list", help="list keys").set_defaults(run=keys_list)
    revoke = keys.add_parser("revoke", help="revoke a key")
    revoke.add_argument("key_id")
    revoke.set_defaults(run=keys_revoke)
    boot = keys.add_parser("bootstrap", help="create the first admin key directly in DynamoDB")
    boot.add_argument("--name", default="admin")
    boot.add_argument("--scopes", default="admin")
    boot.add_argument("--table", help="API keys table name (default: the local cloud's)")
    boot.add_argument("--endpoint-url", help="AWS endpoint (default: the local cloud's; unset on AWS)")
    boot.set_defaults(run=keys_bootstrap)

    groups.add_parser("whoami", help="the key in use").set_defaults(run=whoami)
    groups.add_parser("demo", help="run the end-to-end demo on a fresh local cloud").set_defaults(run=demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``mlambda`` console script."""
    args = build_parser().parse_args(argv)
    run: Handler = args.run
    try:
        return run(args)
    except CliError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
