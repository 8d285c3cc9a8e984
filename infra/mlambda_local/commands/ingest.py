"""``mlambda events send FILE.jsonl`` (streamed, with progress) and ``mlambda features get ENTITY``: the Event API from the CLI."""

from __future__ import annotations

import argparse
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from mlambda_local.client import EXIT_PARTIAL, CliError
from mlambda_local.commands import api
from mlambda_local.output import Outcome, progress

MAX_BATCH = 500


def read_jsonl(path: Path) -> Iterator[Any]:
    """The file's events, one JSON object per non-blank line; CliError naming the first bad line."""
    if not path.is_file():
        raise CliError(f"{path}: no such file")
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                yield json.loads(line)
            except json.JSONDecodeError as exc:
                raise CliError(f"{path}:{number}: not JSON: {exc.msg}") from exc


def events_send(args: argparse.Namespace) -> Outcome:
    """Send a JSON Lines file of events, streamed in batches; exit 1 when any was rejected."""
    if not 1 <= args.batch_size <= MAX_BATCH:
        raise CliError(f"--batch-size must be 1..{MAX_BATCH}")
    path = Path(args.file)
    client = api(args)
    bar = progress(None, f"events {path.name}", unit="event")
    try:
        totals = client.send_events(read_jsonl(path), batch_size=args.batch_size, on_progress=bar.update)
    finally:
        bar.close()
    if totals.requests == 0:
        raise CliError(f"{args.file}: no events")

    def lines() -> list[str]:
        out = []
        for rejection in totals.rejections:
            retry = " (retryable)" if rejection.get("retryable") else ""
            out.append(
                f"rejected line {rejection['index'] + 1} {rejection.get('event_id') or '-'}: "
                f"{rejection.get('code')}: {rejection.get('reason')}{retry}"
            )
        out.append(f"accepted {totals.accepted}, duplicates {totals.duplicates}, rejected {totals.rejected}")
        return out

    return Outcome(totals.as_json(), lines, EXIT_PARTIAL if totals.rejected else 0)


def features_get(args: argparse.Namespace) -> Outcome:
    """Print the entity's live feature groups and aggregates."""
    return Outcome(api(args).features(args.entity, groups=args.group))


def register(groups: Any) -> None:
    """Add ``mlambda events ...`` and ``mlambda features ...``."""
    events = groups.add_parser("events", help="send events to the Event API").add_subparsers(
        dest="command", required=True
    )
    send = events.add_parser("send", help="POST a JSON Lines file of events, in batches")
    send.add_argument("file", help="one event per line: {event_id, type, entity_id, timestamp, payload}")
    send.add_argument(
        "--batch-size", type=int, default=MAX_BATCH, help=f"events per request (max {MAX_BATCH})"
    )
    send.set_defaults(run=events_send)

    features = groups.add_parser("features", help="the online feature store").add_subparsers(
        dest="command", required=True
    )
    get = features.add_parser("get", help="an entity's live feature groups and aggregates")
    get.add_argument("entity")
    get.add_argument("--group", action="append", help="only this group (repeatable; a batched read)")
    get.set_defaults(run=features_get)
