"""``mlambda keys create|list|revoke|bootstrap`` and ``mlambda whoami``."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

from mlambda_local.client import CliError, read_state
from mlambda_local.cloud.template import DEFAULT_REGION
from mlambda_local.commands import api, print_json


def keys_create(args: argparse.Namespace) -> int:
    """Issue a key through the API (admin key needed); prints the secret once."""
    scopes = [s.strip() for s in args.scopes.split(",") if s.strip()]
    print_json(api(args).post("/keys", {"name": args.name, "scopes": scopes, "plan": args.plan}))
    print("Store the api_key now: it is not shown again.", file=sys.stderr)
    return 0


def keys_list(args: argparse.Namespace) -> int:
    """Every key, without secrets."""
    for key in api(args).get("/keys")["keys"]:
        state = "revoked" if key.get("revoked_at") else "active"
        print(
            f"{key['key_id']}  {state:8} {key.get('plan', ''):9} {key['name']:24} {','.join(key['scopes'])}"
        )
    return 0


def keys_plan(args: argparse.Namespace) -> int:
    """Give a key another usage plan (admin key needed)."""
    print_json(api(args).request("PUT", f"/keys/{args.key_id}/plan", body={"plan": args.plan}))
    return 0


def keys_revoke(args: argparse.Namespace) -> int:
    """Revoke a key by id."""
    print_json(api(args).delete(f"/keys/{args.key_id}"))
    return 0


def keys_bootstrap(args: argparse.Namespace) -> int:
    """Create a key directly in the keys table: the first admin key of a deployment (needs AWS credentials)."""
    from mlambda.schemas.keys import Scope
    from mlambda_local.bootstrap import key_service

    state = read_state(Path(args.data_dir))
    table = args.table or state.get("outputs", {}).get("ApiKeysTableName")
    if not table:
        raise CliError("name the API keys table with --table (the stack output ApiKeysTableName)")
    try:
        scopes = [Scope(s.strip()) for s in args.scopes.split(",") if s.strip()]
    except ValueError as exc:
        raise CliError(f"{exc}; scopes are {', '.join(s.value for s in Scope)}") from exc
    endpoint = args.endpoint_url or state.get("endpoint_url")
    created = key_service(
        table, endpoint, stack_region(args.region, endpoint), getattr(args, "stack", None)
    ).create(args.name, scopes, created_by="bootstrap", plan=getattr(args, "plan", "bulk"))
    print_json(created.model_dump(mode="json"))
    return 0


def stack_region(given: str | None, endpoint_url: str | None) -> str:
    """The keys table's region: --region, else the shell's AWS region; the local cloud's own otherwise."""
    if given:
        return given
    if endpoint_url:
        return DEFAULT_REGION
    import boto3

    region = os.environ.get("AWS_REGION") or boto3.session.Session().region_name
    if not region:
        raise CliError("name the stack's region with --region (or set AWS_REGION)")
    return str(region)


def whoami(args: argparse.Namespace) -> int:
    """The key the CLI uses: id, name and scopes."""
    print_json(api(args).get("/me"))
    return 0


def register(groups: Any) -> None:
    """Add ``mlambda keys ...`` and ``mlambda whoami``."""
    keys = groups.add_parser("keys", help="API keys").add_subparsers(dest="command", required=True)
    create = keys.add_parser("create", help="issue a key (printed once)")
    create.add_argument("--name", required=True)
    create.add_argument("--scopes", required=True, help="comma-separated: predict,ingest,registry:read,...")
    create.add_argument(
        "--plan", default="standard", help="usage plan: standard, bulk, trial (template.yaml)"
    )
    create.set_defaults(run=keys_create)
    plan = keys.add_parser("plan", help="give a key another usage plan")
    plan.add_argument("key_id")
    plan.add_argument("plan")
    plan.set_defaults(run=keys_plan)
    keys.add_parser("list", help="list keys").set_defaults(run=keys_list)
    revoke = keys.add_parser("revoke", help="revoke a key")
    revoke.add_argument("key_id")
    revoke.set_defaults(run=keys_revoke)
    boot = keys.add_parser("bootstrap", help="create the first admin key directly in DynamoDB")
    boot.add_argument("--name", default="admin")
    boot.add_argument("--scopes", default="admin")
    boot.add_argument("--table", help="API keys table name (default: the local cloud's)")
    boot.add_argument("--endpoint-url", help="AWS endpoint (default: the local cloud's; unset on AWS)")
    boot.add_argument("--region", help="the stack's region (default: AWS_REGION or the AWS profile's)")
    boot.add_argument("--plan", default="bulk", help="the key's usage plan")
    boot.add_argument(
        "--usage-plans",
        help="the stack output UsagePlanIds (JSON): puts the key in its API Gateway usage plan",
    )
    boot.set_defaults(run=keys_bootstrap)
    groups.add_parser("whoami", help="the key in use").set_defaults(run=whoami)
