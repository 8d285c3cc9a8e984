"""``mlambda models create|list|show|register|promote|rollback|history|split``: the model registry."""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import requests

from mlambda_local.client import ApiClient, ApiError, CliError
from mlambda_local.commands import api, print_json

UPLOAD_TIMEOUT_SECONDS = 300
READY_TIMEOUT_SECONDS = 900.0
POLL_SECONDS = 0.5


def _pairs(values: list[str] | None, flag: str) -> dict[str, str]:
    """``["k=v", ...]`` -> ``{k: v}``."""
    pairs: dict[str, str] = {}
    for value in values or []:
        key, sep, item = value.partition("=")
        if not sep or not key:
            raise CliError(f"{flag} takes key=value, got {value!r}")
        pairs[key] = item
    return pairs


def _json_file(path: str | None, flag: str) -> dict[str, Any]:
    if path is None:
        return {}
    try:
        value = json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise CliError(f"{flag} {path}: {exc}") from exc
    if not isinstance(value, dict):
        raise CliError(f"{flag} {path}: expected a JSON object")
    return value


def upload(client: ApiClient, model: str, path: Path, kind: str) -> str:
    """Ask for a presigned URL and PUT the file to it; the upload key to register it by."""
    if not path.is_file():
        raise CliError(f"no such file: {path}")
    ticket = client.post(f"/models/{model}/uploads", {"filename": path.name, "kind": kind})
    with path.open("rb") as body:
        response = requests.put(ticket["url"], data=body, timeout=UPLOAD_TIMEOUT_SECONDS)
    if response.status_code not in (200, 201, 204):
        raise CliError(f"upload of {path.name} failed: HTTP {response.status_code} {response.text[:200]}")
    return str(ticket["upload_key"])


def register_file(
    client: ApiClient,
    model: str,
    model_path: Path,
    *,
    reference: Path | None = None,
    wait: bool = True,
    timeout: float = READY_TIMEOUT_SECONDS,
    progress: Callable[[str], None] | None = None,
    **fields: Any,
) -> dict[str, Any]:
    """Upload ``model_path`` (and the reference sample), register them, and (``wait``) wait until the
    validator made the version READY; CliError naming the reason when it ends FAILED."""
    body: dict[str, Any] = {"upload_key": upload(client, model, model_path, "model")}
    if reference is not None:
        body["reference_key"] = upload(client, model, reference, "reference")
    body.update({k: v for k, v in fields.items() if v not in (None, {}, [])})
    pending = dict(client.post(f"/models/{model}/versions", body))
    if not wait:
        return pending
    return wait_until_ready(client, model, int(pending["version"]), timeout=timeout, progress=progress)


def wait_until_ready(
    client: ApiClient,
    model: str,
    version: int,
    *,
    timeout: float = READY_TIMEOUT_SECONDS,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Poll the version until it leaves PENDING_VALIDATION; the READY version, or CliError if FAILED."""
    started = time.monotonic()
    while True:
        record = dict(client.get(f"/models/{model}/versions/{version}"))
        elapsed = time.monotonic() - started
        if record["status"] == "READY":
            return record
        if record["status"] == "FAILED":
            failure = record.get("failure") or {}
            raise CliError(
                f"{model} v{version} FAILED validation: {failure.get('code')}: {failure.get('message')}"
            )
        if elapsed > timeout:
            raise CliError(f"{model} v{version} still {record['status']} after {timeout:.0f} s")
        if progress is not None:
            progress(f"{model} v{version}: {record['status']} ({elapsed:.1f} s)")
        time.sleep(POLL_SECONDS)


def _progress_line(message: str) -> None:
    """One status line on stderr, rewritten in place on a terminal."""
    if sys.stderr.isatty():
        print(f"\r{message}", end="", file=sys.stderr, flush=True)
    else:
        print(message, file=sys.stderr)


def parse_ref(value: str) -> int:
    """``v3`` or ``3`` -> 3."""
    match = re.fullmatch(r"v?(\d+)", value)
    if match is None:
        raise CliError(f"expected a version like v3 or 3, got {value!r}")
    return int(match.group(1))


def models_create(args: argparse.Namespace) -> int:
    """Register a model name."""
    body = {
        "name": args.name,
        "description": args.description,
        "owner": args.owner,
        "tags": _pairs(args.tag, "--tag"),
    }
    print_json(api(args).post("/models", body))
    return 0


def models_list(args: argparse.Namespace) -> int:
    """Every model (all pages), one line each."""
    client = api(args)
    params: dict[str, Any] = {"limit": 100}
    if args.owner:
        params["owner"] = args.owner
    if args.tag:
        params["tag"] = args.tag
    while True:
        page = client.get("/models", params=params)
        for model in page["models"]:
            aliases = ",".join(f"{a}=v{v}" for a, v in sorted(model["aliases"].items())) or "-"
            print(f"{model['name']:32} latest=v{model['latest_version']:<4} {aliases:32} {model['owner']}")
        if not page.get("next_token"):
            return 0
        params["next_token"] = page["next_token"]


def _version_line(version: dict[str, Any]) -> dict[str, Any]:
    """What ``show`` prints of a version, whatever its status."""
    line: dict[str, Any] = {
        "version": version["version"],
        "status": version["status"],
        "created_at": version["created_at"],
        "created_by": version["created_by"],
    }
    if version["status"] == "READY":
        line.update(
            task=version["signature"]["task"],
            features=len(version["feature_schema"]["features"]),
            sha256=version["artifact_sha256"][:12],
            metrics=version["metrics"],
            reference_metrics={
                name: metric["value"]
                for name, metric in ((version.get("reference") or {}).get("metrics") or {}).items()
            },
            warnings=[w["code"] for w in version.get("warnings", [])],
        )
    elif version["status"] == "FAILED":
        line["failure"] = version.get("failure")
    return line


def models_show(args: argparse.Namespace) -> int:
    """A model, its versions (newest first) and its endpoint config."""
    client = api(args)
    model = client.get(f"/models/{args.name}")
    versions = client.get(f"/models/{args.name}/versions", params={"limit": 20})["versions"]
    model["versions"] = [_version_line(v) for v in versions]
    try:
        model["endpoint"] = client.get(f"/models/{args.name}/endpoint")
    except CliError:
        model["endpoint"] = None
    print_json(model)
    return 0


def _columns(value: str | None) -> list[str] | None:
    return [c.strip() for c in value.split(",") if c.strip()] if value else None


def models_register(args: argparse.Namespace) -> int:
    """Upload an ONNX file (and a reference sample), register it and wait until it is READY."""
    version = register_file(
        api(args),
        args.name,
        Path(args.model_file),
        reference=Path(args.reference) if args.reference else None,
        wait=not args.no_wait,
        timeout=args.timeout,
        progress=_progress_line,
        feature_names=_columns(args.features),
        feature_types=_columns(args.feature_types),
        target=args.target,
        exclude=_columns(args.exclude),
        metrics=_json_file(args.metrics, "--metrics"),
        params=_json_file(args.params, "--params"),
        description=args.description,
        owner=args.owner,
        tags=_pairs(args.tag, "--tag"),
        training_data_uri=args.training_data_uri,
        training_data_version=args.training_data_version,
        source_code_version=args.source_code_version,
    )
    if sys.stderr.isatty():
        print(file=sys.stderr)
    if version["status"] != "READY":
        print(f"registered {args.name} v{version['version']}: {version['status']} (not waiting)")
        return 0
    reference = version.get("reference") or {}
    baseline = ", ".join(f"{name} {m['value']:.4f}" for name, m in (reference.get("metrics") or {}).items())
    print(
        f"registered {args.name} v{version['version']}: READY ({version['signature']['task']}, "
        f"{len(version['feature_schema']['features'])} features, sha256 {version['artifact_sha256'][:12]}, "
        f"{len(version['smoke_cases'])} smoke cases)"
    )
    if baseline:
        print(f"  on the reference ({reference.get('labelled_rows')} labelled rows): {baseline}")
    for warning in version.get("warnings", []):
        print(f"  warning {warning['code']}: {warning['message']}")
    return 0


def models_promote(args: argparse.Namespace) -> int:
    """Move an alias (default production) to a version; production runs the gate."""
    body: dict[str, Any] = {"version": parse_ref(args.version), "force": args.force}
    if args.reason:
        body["reason"] = args.reason
    moved = api(args).request("PUT", f"/models/{args.name}/aliases/{args.alias}", body=body)
    print_json(moved)
    return 0


def models_rollback(args: argparse.Namespace) -> int:
    """Move an alias (default production) back to its previous version."""
    body: dict[str, Any] = {"alias": args.alias}
    if args.reason:
        body["reason"] = args.reason
    moved = api(args).post(f"/models/{args.name}/rollback", body)
    print(f"{args.name} {moved['alias']}: v{moved['previous_version']} -> v{moved['version']}")
    return 0


def models_history(args: argparse.Namespace) -> int:
    """The change log, or where an alias pointed at a time (--alias with --at)."""
    client = api(args)
    if args.at:
        answer = client.get(
            f"/models/{args.name}/history", params={"alias": args.alias or "production", "at": args.at}
        )
        where = f"v{answer['version']}" if answer["version"] is not None else "nothing"
        print(f"{args.name} {answer['alias']} at {answer['at']}: {where} (since {answer['since']})")
        return 0
    params: dict[str, Any] = {"limit": args.limit}
    if args.alias:
        params["alias"] = args.alias
    for entry in client.get(f"/models/{args.name}/history", params=params)["entries"]:
        change = ""
        if entry.get("to_version") or entry.get("from_version"):
            before = f"v{entry['from_version']}" if entry.get("from_version") else "-"
            after = f"v{entry['to_version']}" if entry.get("to_version") else "-"
            change = f"{entry.get('alias') or ''} {before} -> {after}".strip()
        reason = f"  ({entry['reason']})" if entry.get("reason") else ""
        print(f"{entry['at']}  {entry['actor']:16} {entry['action']:20} {change}{reason}")
    return 0


def models_split(args: argparse.Namespace) -> int:
    """Change the endpoint's traffic split (``v3=90 v4=10``; versions or aliases), keeping its serving
    rules and cache: a PATCH of what changes, conditional on the revision read (409 if it moved)."""
    variants = []
    for spec in args.variants:
        target, sep, weight = spec.partition("=")
        if not sep or not weight.isdigit():
            raise CliError(f"variants read target=weight (v3=90, production=100), got {spec!r}")
        variants.append({"name": target, "target": target, "weight": int(weight)})
    patch: dict[str, Any] = {"variants": variants}
    if args.shadow and args.no_shadow:
        raise CliError("--shadow and --no-shadow contradict each other")
    if args.shadow:
        target, sep, percent = args.shadow.partition(":")
        try:
            patch["shadow"] = {"target": target, "sample_percent": float(percent)}
        except ValueError as exc:
            raise CliError(f"--shadow reads target:percent (v5:10), got {args.shadow!r}") from exc
        if not sep:
            raise CliError(f"--shadow reads target:percent (v5:10), got {args.shadow!r}")
    if args.no_shadow:
        patch["shadow"] = None
    if args.sticky:
        patch["sticky_key"] = args.sticky
    client = api(args)
    headers = {}
    try:
        current = client.get(f"/models/{args.name}/endpoint")
        headers["If-Match"] = f'"{current["revision"]}"'
    except ApiError as exc:
        if exc.code != "no_endpoint_config":
            raise
    print_json(client.request("PATCH", f"/models/{args.name}/endpoint", body=patch, headers=headers))
    return 0


def register(groups: Any) -> None:
    """Add ``mlambda models ...``."""
    models = groups.add_parser("models", help="the model registry").add_subparsers(
        dest="command", required=True
    )

    create = models.add_parser("create", help="register a model name")
    create.add_argument("name")
    create.add_argument("--description", default="")
    create.add_argument("--owner", default="")
    create.add_argument("--tag", action="append", help="key=value (repeatable)")
    create.set_defaults(run=models_create)

    listing = models.add_parser("list", help="list models")
    listing.add_argument("--owner")
    listing.add_argument("--tag", help="key:value")
    listing.set_defaults(run=models_list)

    show = models.add_parser("show", help="a model, its versions and endpoint")
    show.add_argument("name")
    show.set_defaults(run=models_show)

    reg = models.add_parser("register", help="upload an ONNX file and register it as the next version")
    reg.add_argument("name")
    reg.add_argument("model_file", help="the .onnx file")
    reg.add_argument(
        "--reference",
        help="held-out sample (.parquet or .csv, rows the model never trained on): profile, baseline, smoke cases",
    )
    reg.add_argument("--target", help="the reference's label (true value) column: the quality baseline")
    reg.add_argument("--exclude", help="comma-separated reference columns that are not features (ids...)")
    reg.add_argument("--features", help="comma-separated feature names (single-tensor models)")
    reg.add_argument("--feature-types", help="comma-separated types: float,int,string,bool")
    reg.add_argument("--metrics", help="JSON file of metrics")
    reg.add_argument("--params", help="JSON file of hyper-parameters")
    reg.add_argument("--description", default="")
    reg.add_argument("--owner")
    reg.add_argument("--tag", action="append", help="key=value (repeatable)")
    reg.add_argument("--training-data-uri")
    reg.add_argument("--training-data-version")
    reg.add_argument("--source-code-version")
    reg.add_argument("--no-wait", action="store_true", help="return once registered (PENDING_VALIDATION)")
    reg.add_argument("--timeout", type=float, default=READY_TIMEOUT_SECONDS, help="seconds to wait for READY")
    reg.set_defaults(run=models_register)

    promote = models.add_parser("promote", help="move an alias to a version (production runs the gate)")
    promote.add_argument("name")
    promote.add_argument("version", help="v3 or 3")
    promote.add_argument("--alias", default="production")
    promote.add_argument("--force", action="store_true", help="override a failing gate (needs --reason)")
    promote.add_argument("--reason")
    promote.set_defaults(run=models_promote)

    rollback = models.add_parser("rollback", help="move an alias back to its previous version")
    rollback.add_argument("name")
    rollback.add_argument("--alias", default="production")
    rollback.add_argument("--reason")
    rollback.set_defaults(run=models_rollback)

    history = models.add_parser("history", help="the change log; --alias X --at T: where X pointed at T")
    history.add_argument("name")
    history.add_argument("--alias", default=None)
    history.add_argument(
        "--at", help="ISO time, e.g. 2026-03-03T12:00:00Z (needs --alias, default production)"
    )
    history.add_argument("--limit", type=int, default=50)
    history.set_defaults(run=models_history)

    split = models.add_parser(
        "split", help="traffic split across versions/aliases: v3=90 v4=10 (rules and cache are kept)"
    )
    split.add_argument("name")
    split.add_argument("variants", nargs="+", help="target=weight; weights sum to 100")
    split.add_argument("--shadow", help="target:percent scored on a sample, never returned")
    split.add_argument("--no-shadow", action="store_true", help="stop shadowing")
    split.add_argument("--sticky", help="request field that pins a caller to a variant (e.g. entity_id)")
    split.set_defaults(run=models_split)
