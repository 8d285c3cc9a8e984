"""``mlambda predict NAME --json '{...}'`` or ``--csv rows.csv``: online predictions from the CLI.

``--csv`` streams: it reads ``--batch-size`` rows at a time, sends their feature columns
columnar (``dataframe_split``) and writes each row back with its predictions, so a file of any
size runs in constant memory and ``| head`` stops it early. Columns that are not features (ids)
are passed through, as ``batch submit`` does.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from collections.abc import Iterator
from itertools import islice
from pathlib import Path
from typing import IO, Any

from mlambda.client import Client, Predictions
from mlambda_local.client import EXIT_INVALID, CliError
from mlambda_local.commands import api
from mlambda_local.output import Outcome, progress, table

MAX_BATCH = 1000


def _number(text: str) -> Any:
    """CSV cells as JSON values: integers, floats, true/false, None for an empty cell, else the text."""
    stripped = text.strip()
    if not stripped:
        return None
    lowered = stripped.lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    for kind in (int, float):
        try:
            return kind(stripped)
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
    if {
        "instances",
        "entity_id",
        "features",
        "dataframe_split",
        "dataframe_records",
        "inputs",
    } & value.keys():
        return value
    return {"instances": [value]}


def _batches(reader: Iterator[dict[str, str]], size: int) -> Iterator[list[dict[str, str]]]:
    while batch := list(islice(reader, size)):
        yield batch


def _open(source: str) -> IO[str]:
    if source == "-":
        return sys.stdin
    path = Path(source)
    if not path.is_file():
        raise CliError(f"{source}: no such file")
    return path.open(newline="", encoding="utf-8")


def predict_csv(client: Client, args: argparse.Namespace) -> int:
    """Stream the CSV through the endpoint: every input column, then the predictions, per row."""
    features = client.feature_names(args.name, variant=args.variant)
    handle = _open(args.csv)
    try:
        reader = csv.DictReader(handle)
        header = list(reader.fieldnames or [])
        missing = [f for f in features if f not in header]
        if missing:
            raise CliError(f"{args.csv} lacks the model's features {', '.join(missing)}", EXIT_INVALID)
        writer: csv.DictWriter[str] | None = None
        bar = progress(None, f"predict {args.name}", unit="row")
        rows = 0
        try:
            for batch in _batches(reader, args.batch_size):
                data = [[_number(row[f] or "") for f in features] for row in batch]
                answer = client.predict_split(
                    args.name, features, data, variant=args.variant, entity_id=args.entity_id
                )
                writer = _write(batch, answer, header, writer, args.output)
                rows += len(batch)
                bar.update(len(batch))
        finally:
            bar.close()
    finally:
        if handle is not sys.stdin:
            handle.close()
    if rows == 0:
        raise CliError(f"{args.csv}: no rows")
    return 0


def _write(
    batch: list[dict[str, str]],
    answer: Predictions,
    header: list[str],
    writer: csv.DictWriter[str] | None,
    output: str,
) -> csv.DictWriter[str] | None:
    """One batch's rows to stdout: CSV for the table output, JSON Lines for json."""
    predicted = answer.columns()
    extra = {"variant": answer.variant, "version": answer.version}
    for index, row in enumerate(batch):
        line = {**row, **{name: values[index] for name, values in predicted.items()}, **extra}
        if output == "json":
            print(json.dumps(line, separators=(",", ":"), default=str))
            continue
        if writer is None:
            names = [*header, *(k for k in line if k not in header)]
            writer = csv.DictWriter(sys.stdout, fieldnames=names, extrasaction="ignore")
            writer.writeheader()
        writer.writerow(line)
    sys.stdout.flush()
    return writer


def predict(args: argparse.Namespace) -> Outcome | int:
    """Send the rows, print the predictions (JSON for --json, CSV for --csv)."""
    if not 1 <= args.batch_size <= MAX_BATCH:
        raise CliError(f"--batch-size must be 1..{MAX_BATCH}")
    client = api(args)
    if args.csv is not None:
        return predict_csv(client, args)
    body = {**request_body(args.json)}
    body.update({k: v for k, v in (("variant", args.variant), ("entity_id", args.entity_id)) if v})
    answer = client.predict_body(args.name, body)
    result = Predictions.from_response(answer)

    def lines() -> list[str]:
        head = f"{result.model} v{result.version} (variant {result.variant}), request {result.request_id}"
        return [head, *table(result.rows())]

    return Outcome(answer, lines)


def register(groups: Any) -> None:
    """Add ``mlambda predict``."""
    parser = groups.add_parser("predict", help="online predictions from a model's endpoint")
    parser.add_argument("name", help="model name")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--json", help="a request body, a list of instances, or one instance")
    source.add_argument(
        "--csv",
        help="a CSV file of rows ('-': stdin), streamed; columns that are not features are passed through",
    )
    parser.add_argument("--variant", help="serve this variant instead of the traffic split")
    parser.add_argument("--entity-id", help="the entity whose online features fill the gaps")
    parser.add_argument(
        "--batch-size", type=int, default=500, help=f"rows per request with --csv (1..{MAX_BATCH})"
    )
    parser.set_defaults(run=predict)
