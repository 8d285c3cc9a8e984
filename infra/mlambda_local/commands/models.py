"""``mlambda models create|list|show|register|promote|rollback|history|split``: the model registry."""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path
from typing import Any

from mlambda.client import NotFoundError
from mlambda_local.client import CliError
from mlambda_local.commands import api, columns, pairs
from mlambda_local.output import Outcome, progress, table

READY_TIMEOUT_SECONDS = 900.0


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


def parse_ref(value: str) -> int:
    """``v3`` or ``3`` -> 3."""
    match = re.fullmatch(r"v?(\d+)", value)
    if match is None:
        raise CliError(f"expected a version like v3 or 3, got {value!r}")
    return int(match.group(1))


def _tag(value: str | None) -> tuple[str, str] | None:
    if value is None:
        return None
    key, value_ = next(iter(pairs([value], "--tag").items()))
    return key, value_


def models_create(args: argparse.Namespace) -> Outcome:
    """Register a model name."""
    model = api(args).create_model(
        args.name, description=args.description, owner=args.owner, tags=pairs(args.tag, "--tag")
    )
    return Outcome(model, lambda: [f"created model {model['name']}"])


def models_list(args: argparse.Namespace) -> Outcome:
    """Every model (all pages), one line each."""
    found = list(api(args).models(owner=args.owner, tag=_tag(args.tag)))
    rows = [
        {
            "name": m["name"],
            "latest": f"v{m['latest_version']}" if m.get("latest_version") else "-",
            "aliases": ",".join(f"{a}=v{v}" for a, v in sorted(m["aliases"].items())) or "-",
            "owner": m.get("owner") or "-",
            "tags": ",".join(f"{k}={v}" for k, v in sorted((m.get("tags") or {}).items())) or "-",
        }
        for m in found
    ]
    return Outcome(found, lambda: table(rows) if rows else ["no models"])


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


def models_show(args: argparse.Namespace) -> Outcome:
    """A model, its versions (newest first) and its endpoint config."""
    client = api(args)
    model = client.model(args.name)
    versions = client.versions(args.name, limit=20)
    try:
        endpoint: dict[str, Any] | None = client.endpoint(args.name)
    except NotFoundError:
        endpoint = None
    data = {**model, "versions": versions, "endpoint": endpoint}

    def lines() -> list[str]:
        aliases = ", ".join(f"{a} -> v{v}" for a, v in sorted(model["aliases"].items())) or "none"
        out = [
            f"{model['name']}  owner {model.get('owner') or '-'}  aliases: {aliases}",
            *([f"  {model['description']}"] if model.get("description") else []),
            "",
            *table(
                [_version_line(v) for v in versions],
                ["version", "status", "created_at", "task", "features", "sha256", "warnings"],
            ),
        ]
        if endpoint is not None:
            split = ", ".join(f"{v['name']}={v['weight']}% ({v['target']})" for v in endpoint["variants"])
            out += ["", f"endpoint revision {endpoint['revision']}: {split}"]
        return out

    return Outcome(data, lines)


def models_register(args: argparse.Namespace) -> Outcome:
    """Upload an ONNX file (and a reference sample), register it and wait until it is READY;
    a model not created yet is created first."""
    client = api(args)
    files = [Path(args.model_file), *([Path(args.reference)] if args.reference else [])]
    for path in files:
        if not path.is_file():
            raise CliError(f"no such file: {path}")
    uploading = progress(sum(p.stat().st_size for p in files), "uploading", byte_units=True)
    waiting: Any = None

    def on_status(record: dict[str, Any]) -> None:
        nonlocal waiting
        uploading.close()
        if waiting is None:
            waiting = progress(None, f"{args.name} v{record['version']} validating", unit="poll")
        waiting.update(1)

    try:
        version = client.register(
            args.name,
            args.model_file,
            reference=args.reference,
            target=args.target,
            exclude=columns(args.exclude),
            features=columns(args.features),
            feature_types=columns(args.feature_types),
            metrics=_json_file(args.metrics, "--metrics"),
            params=_json_file(args.params, "--params"),
            description=args.description,
            owner=args.owner,
            tags=pairs(args.tag, "--tag"),
            training_data_uri=args.training_data_uri,
            training_data_version=args.training_data_version,
            source_code_version=args.source_code_version,
            create_model=not args.no_create,
            wait=not args.no_wait,
            timeout=args.timeout,
            on_status=on_status,
            on_upload=uploading.update,
        )
    finally:
        uploading.close()
        if waiting is not None:
            waiting.close()
    return Outcome(version, lambda: _registered(args.name, version))


def _registered(name: str, version: dict[str, Any]) -> list[str]:
    if version["status"] != "READY":
        return [f"registered {name} v{version['version']}: {version['status']} (not waiting)"]
    reference = version.get("reference") or {}
    baseline = ", ".join(f"{n} {m['value']:.4f}" for n, m in (reference.get("metrics") or {}).items())
    lines = [
        f"registered {name} v{version['version']}: READY ({version['signature']['task']}, "
        f"{len(version['feature_schema']['features'])} features, sha256 {version['artifact_sha256'][:12]}, "
        f"{len(version['smoke_cases'])} smoke cases)"
    ]
    if baseline:
        lines.append(f"  on the reference ({reference.get('labelled_rows')} labelled rows): {baseline}")
    lines.extend(f"  warning {w['code']}: {w['message']}" for w in version.get("warnings", []))
    return lines


def models_promote(args: argparse.Namespace) -> Outcome:
    """Move an alias (default production) to a version; production runs the gate."""
    moved = api(args).promote(
        args.name, parse_ref(args.version), alias=args.alias, force=args.force, reason=args.reason
    )

    def lines() -> list[str]:
        before = f"v{moved['previous_version']}" if moved.get("previous_version") else "nothing"
        out = [f"{args.name} {moved['alias']}: {before} -> v{moved['version']}"]
        for check in (moved.get("gate") or {}).get("checks", []):
            out.append(
                f"  gate {check['name']:22} {'ok  ' if check['passed'] else 'FAIL'} {check['message']}"
            )
        return out

    return Outcome(moved, lines)


def models_rollback(args: argparse.Namespace) -> Outcome:
    """Move an alias (default production) back to its previous version."""
    moved = api(args).rollback(args.name, alias=args.alias, reason=args.reason)
    return Outcome(
        moved, lambda: [f"{args.name} {moved['alias']}: v{moved['previous_version']} -> v{moved['version']}"]
    )


def models_history(args: argparse.Namespace) -> Outcome:
    """The change log, or where an alias pointed at a time (--at, alias default production)."""
    client = api(args)
    if args.at:
        answer = client.alias_at(args.name, args.at, alias=args.alias or "production")
        return Outcome(answer, lambda: [_alias_at_line(args.name, answer)])
    entries = client.history(args.name, alias=args.alias, limit=args.limit)

    def lines() -> list[str]:
        out = []
        for entry in entries:
            change = ""
            if entry.get("to_version") or entry.get("from_version"):
                before = f"v{entry['from_version']}" if entry.get("from_version") else "-"
                after = f"v{entry['to_version']}" if entry.get("to_version") else "-"
                change = f"{entry.get('alias') or ''} {before} -> {after}".strip()
            reason = f"  ({entry['reason']})" if entry.get("reason") else ""
            out.append(f"{entry['at']}  {entry['actor']:16} {entry['action']:20} {change}{reason}")
        return out or [f"{args.name}: no history"]

    return Outcome(entries, lines)


def _alias_at_line(name: str, answer: dict[str, Any]) -> str:
    """``churn production at T: v3 (since S)``, or that it pointed nowhere yet."""
    if answer.get("version") is None:
        return f"{name} {answer['alias']} at {answer['at']}: pointed at no version yet"
    since = f" (since {answer['since']})" if answer.get("since") else ""
    return f"{name} {answer['alias']} at {answer['at']}: v{answer['version']}{since}"


def models_split(args: argparse.Namespace) -> Outcome:
    """Change the endpoint's traffic split (``v3=90 v4=10``; versions or aliases), keeping its serving
    rules and cache: a PATCH of what changes, conditional on the revision read (409 if it moved)."""
    weights: dict[str, int] = {}
    for spec in args.variants:
        name, sep, weight = spec.partition("=")
        if not sep or not (weight.isascii() and weight.isdigit()):
            raise CliError(f"variants read target=weight (v3=90, production=100), got {spec!r}")
        weights[name] = int(weight)
    if args.shadow and args.no_shadow:
        raise CliError("--shadow and --no-shadow contradict each other")
    shadow: tuple[str, float] | None = None
    if args.shadow:
        name, sep, percent = args.shadow.partition("=")
        try:
            shadow = (name, float(percent))
        except ValueError as exc:
            raise CliError(f"--shadow reads target=percent (v5=10), got {args.shadow!r}") from exc
        if not sep:
            raise CliError(f"--shadow reads target=percent (v5=10), got {args.shadow!r}")
    config = api(args).split(
        args.name, weights, shadow=shadow, no_shadow=args.no_shadow, sticky_key=args.sticky
    )

    def lines() -> list[str]:
        split = ", ".join(f"{v['name']}={v['weight']}%" for v in config["variants"])
        out = [f"{args.name} endpoint revision {config['revision']}: {split}"]
        if config.get("shadow"):
            out.append(
                f"  shadow {config['shadow']['target']} on {config['shadow']['sample_percent']}% of requests"
            )
        return out

    return Outcome(config, lines)


def register(groups: Any) -> None:
    """Add ``mlambda models ...``."""
    models = groups.add_parser("models", help="the model registry").add_subparsers(
        dest="command", required=True, metavar="COMMAND"
    )

    create = models.add_parser("create", help="register a model name")
    create.add_argument("name")
    create.add_argument("--description", default="")
    create.add_argument("--owner", default="")
    create.add_argument("--tag", action="append", help="key=value (repeatable)")
    create.set_defaults(run=models_create)

    listing = models.add_parser("list", help="list models")
    listing.add_argument("--owner")
    listing.add_argument("--tag", help="key=value: only models with this tag")
    listing.set_defaults(run=models_list)

    show = models.add_parser("show", help="a model, its versions and endpoint")
    show.add_argument("name")
    show.set_defaults(run=models_show)

    reg = models.add_parser(
        "register", help="upload an ONNX file and register it as the next version (creating the model)"
    )
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
    reg.add_argument("--description")
    reg.add_argument("--owner")
    reg.add_argument("--tag", action="append", help="key=value (repeatable)")
    reg.add_argument("--training-data-uri")
    reg.add_argument("--training-data-version")
    reg.add_argument("--source-code-version")
    reg.add_argument("--no-create", action="store_true", help="fail (exit 4) if the model does not exist yet")
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

    history = models.add_parser("history", help="the change log; --at T: where an alias pointed at T")
    history.add_argument("name")
    history.add_argument("--alias", default=None, help="one alias's changes (with --at: default production)")
    history.add_argument("--at", help="ISO time, e.g. 2026-03-03T12:00:00Z")
    history.add_argument("--limit", type=int, default=50)
    history.set_defaults(run=models_history)

    split = models.add_parser(
        "split", help="traffic split across versions/aliases: v3=90 v4=10 (rules and cache are kept)"
    )
    split.add_argument("name")
    split.add_argument("variants", nargs="+", help="target=weight; weights sum to 100")
    split.add_argument("--shadow", help="target=percent scored on a sample, never returned (v5=10)")
    split.add_argument("--no-shadow", action="store_true", help="stop shadowing")
    split.add_argument("--sticky", help="request field that pins a caller to a variant (e.g. entity_id)")
    split.set_defaults(run=models_split)
