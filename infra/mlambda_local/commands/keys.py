"""``mlambda keys create|list|revoke|bootstrap`` and ``mlambda whoami``."""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

from mlambda_local.client import CliError, read_state
from mlambda_local.commands import api, columns
from mlambda_local.output import Outcome, status, table


def keys_create(args: argparse.Namespace) -> Outcome:
    """Issue a key through the API (admin key needed); prints the secret once."""
    created = api(args).create_key(args.name, columns(args.scopes) or [], plan=args.plan)
    status("Store the api_key now: it is not shown again.")
    return Outcome(created)


def keys_list(args: argparse.Namespace) -> Outcome:
    """Every key, without secrets."""
    keys = api(args).keys()
    rows = [
        {
            "key_id": k["key_id"],
            "state": "revoked" if k.get("revoked_at") else "active",
            "plan": k.get("plan", ""),
            "name": k["name"],
            "scopes": ",".join(k["scopes"]),
        }
        for k in keys
    ]
    return Outcome(keys, lambda: table(rows))


def keys_plan(args: argparse.Namespace) -> Outcome:
    """Give a key another usage plan (admin key needed)."""
    return Outcome(api(args).set_key_plan(args.key_id, args.plan))


def keys_revoke(args: argparse.Namespace) -> Outcome:
    """Revoke a key by id."""
    return Outcome(api(args).revoke_key(args.key_id))


def keys_bootstrap(args: argparse.Namespace) -> Outcome:
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
    if endpoint is None and not args.stack:
        # On AWS the key's usage plan is what lets API Gateway take it (ApiKeySourceType AUTHORIZER).
        status(
            "warning: no --stack, so the key joins no usage plan and API Gateway will refuse it (403) "
            "until it has one: pass --stack <stack name> (the key then joins <stack>-<plan>)"
        )
    created = key_service(table, endpoint, stack_region(args.region, endpoint), args.stack).create(
        args.name, scopes, created_by="bootstrap", plan=args.plan
    )
    status("Store the api_key now: it is not shown again.")
    return Outcome(created.model_dump(mode="json"))


def stack_region(given: str | None, endpoint_url: str | None) -> str:
    """The keys table's region: --region, else the shell's AWS region; the local cloud's own otherwise."""
    if given:
        return given
    if endpoint_url:
        from mlambda_local.cloud.template import DEFAULT_REGION

        return DEFAULT_REGION
    import boto3

    region = os.environ.get("AWS_REGION") or boto3.session.Session().region_name
    if not region:
        raise CliError("name the stack's region with --region (or set AWS_REGION)")
    return str(region)


def whoami(args: argparse.Namespace) -> Outcome:
    """The key the CLI uses: id, name and scopes."""
    return Outcome(api(args).whoami())


def register(groups: Any) -> None:
    """Add ``mlambda keys ...`` and ``mlambda whoami``."""
    keys = groups.add_parser("keys", help="API keys").add_subparsers(
        dest="command", required=True, metavar="COMMAND"
    )
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
        "--stack", help="the stack's name: puts the key in its API Gateway usage plan (<stack>-<plan>)"
    )
    boot.set_defaults(run=keys_bootstrap)
    groups.add_parser("whoami", help="the key in use").set_defaults(run=whoami)
