"""``mlambda predict NAME --json '{...}'`` or ``--csv rows.csv``: online predictions from the CLI."""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path
from typing import Any

from mlambda_local.client import CliError
from mlambda_local.commands import api, print_json


def _number(text: str) -> Any:
    """CSV cells as JSON values: integers, floats, true/false, else the text itself."""
    lowered = text.strip().lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            continue
    return text


def request_body(raw: str) -> dict[str, Any]:
    """``--json`` as a request: a full body, a list of instances, or one instance."""
    try:
        value = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise CliError(f"--json is not valid JSON: {exc.msg} (column {exc.colno})") from exc
    if isinstance(value, list):
        return {"instances": value}
    if not isinstance(value, dict):
        raise CliError("--json must be an object (a request or one instance) or a list of instances")
    if {"instances", "entity_id", "features"} & value.keys():
        return value
    return {"instances": [value]}


def read_rows(path: Path) -> tuple[list[str], list[dict[str, Any]]]:
    """The CSV's header and rows, cells typed as JSON values."""
    if not path.exists():
        raise CliError(f"{path}: no such file")
    with path.open(newline="") as handle:
        reader = csv.DictReader(handle)
        rows = [{k: _number(v) for k, v in row.items()} for row in reader]
        return list(reader.fieldnames or []), rows


def flatten(prediction: dict[str, Any]) -> dict[str, Any]:
    """One prediction as CSV columns: label, proba_<class>..., value, decision."""
    columns = {k: v for k, v in prediction.items() if k != "probabilities"}
    for label, p in (prediction.get("probabilities") or {}).items():
        columns[f"proba_{label}"] = p
    return columns


def predict(args: argparse.Namespace) -> int:
    """Send the rows, print the predictions (JSON for --json, CSV for --csv)."""
    client = api(args)
    path = f"/models/{args.name}/predict"
    extra = {k: v for k, v in (("variant", args.variant), ("entity_id", args.entity_id)) if v}
    if args.json is not None:
        print_json(client.post(path, {**request_body(args.json), **extra}))
        return 0
    header, rows = read_rows(Path(args.csv))
    if not rows:
        raise CliError(f"{args.csv}: no rows")
    out: csv.DictWriter[str] | None = None
    for start in range(0, len(rows), args.batch_size):
        response = client.post(path, {"instances": rows[start : start + args.batch_size], **extra})
        for row, prediction in zip(rows[start:], response["predictions"], strict=False):
            line = {
                **row,
                **flatten(prediction),
                "variant": response["variant"],
                "version": response["version"],
            }
            if out is None:
                out = csv.DictWriter(sys.stdout, fieldnames=[*header, *(k for k in line if k not in header)])
                out.writeheader()
            out.writerow(line)
    return 0


def register(groups: Any) -> None:
    """Add ``mlambda predict``."""
    parser = groups.add_parser("predict", help="online predictions from a model's endpoint")
    parser.add_argument("name", help="model name")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--json", help="a request body, a list of instances, or one instance")
    source.add_argument("--csv", help="a CSV file of instances (header = feature names)")
    parser.add_argument("--variant", help="serve this variant instead of the traffic split")
    parser.add_argument("--entity-id", help="the entity whose online features fill the gaps")
    parser.add_argument("--batch-size", type=int, default=500, help="rows per request with --csv")
    parser.set_defaults(run=predict)
