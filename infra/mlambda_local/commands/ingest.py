"""``mlambda events send FILE.jsonl`` and ``mlambda features get ENTITY``: the Event API from the CLI."""

from __future__ import annotations

import argparse
import json
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from mlambda_local.client import ApiClient, CliError
from mlambda_local.commands import api, print_json

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


def send_events(client: ApiClient, events: Sequence[Any], batch_size: int = MAX_BATCH) -> dict[str, Any]:
    """POST the events in batches; totals and every rejection (``index`` counted over the whole file)."""
    totals: dict[str, Any] = {"accepted": 0, "duplicates": 0, "rejected": 0, "rejections": []}
    for start in range(0, len(events), batch_size):
        body = client.post("/events", {"events": list(events[start : start + batch_size])})
        for name in ("accepted", "duplicates", "rejected"):
            totals[name] += body[name]
        totals["rejections"].extend(
            {**result, "index": start + result["index"]}
            for result in body["results"]
            if result["status"] == "rejected"
        )
    return totals


def events_send(args: argparse.Namespace) -> int:
    """Send a JSON Lines file of events; exit 1 when any was rejected."""
    if not 1 <= args.batch_size <= MAX_BATCH:
        raise CliError(f"--batch-size must be 1..{MAX_BATCH}")
    events = list(read_jsonl(Path(args.file)))
    if not events:
        raise CliError(f"{args.file}: no events")
    totals = send_events(api(args), events, args.batch_size)
    for rejection in totals["rejections"]:
        retry = " (retryable)" if rejection.get("retryable") else ""
        print(
            f"rejected line {rejection['index'] + 1} {rejection.get('event_id') or '-'}: "
            f"{rejection.get('code')}: {rejection.get('reason')}{retry}"
        )
    print(f"accepted {totals['accepted']}, duplicates {totals['duplicates']}, rejected {totals['rejected']}")
    return 1 if totals["rejected"] else 0


def features_get(args: argparse.Namespace) -> int:
    """Print the entity's live feature groups and aggregates."""
    params = {"group": args.group} if args.group else None
    print_json(api(args).get(f"/entities/{args.entity}/features", params=params))
    return 0


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
