"""Event ingestion, measured on the local cloud: events/s through the HTTP API, archiver rows/s.

1. ``POST /events`` with batches of 100 from 8 concurrent clients (the archiver's SQS poller runs
   meanwhile, as it would); every AWS call the functions make is counted and timed in-process,
   so the figures show how much of a batch is the emulator (moto) and how much is mlambda.
2. The archiver's service on one SQS-sized batch (100 messages x 100 envelopes, the shape ingest
   sends): rows/s into Parquet, split into Parquet encoding and the S3 puts.
3. The baseline: single AWS calls against the same moto server (p50), the floor under both.

Prints a table; asserts nothing.

    make bench-ingest            # or: .venv/bin/python benchmarks/bench_ingest.py [--quick]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import botocore.client
import orjson

REPO = Path(__file__).resolve().parent.parent
os.environ.setdefault("POWERTOOLS_TRACE_DISABLED", "true")
os.environ.setdefault("POWERTOOLS_LOG_LEVEL", "WARNING")
os.environ.setdefault("POWERTOOLS_METRICS_DISABLED", "true")  # EMF lines would flood the table
BATCH = 100
CLIENTS = 8


class CallMeter:
    """Counts and times every botocore API call made in this process, by operation."""

    def __init__(self) -> None:
        self.calls: dict[str, list[float]] = defaultdict(list)
        self._lock = threading.Lock()
        self._original: Callable[..., Any] = botocore.client.BaseClient._make_api_call

    def install(self) -> None:
        original = self._original
        meter = self

        def timed_call(client: Any, operation: str, params: Any) -> Any:
            started = time.perf_counter()
            try:
                return original(client, operation, params)
            finally:
                elapsed = time.perf_counter() - started
                with meter._lock:
                    meter.calls[operation].append(elapsed)

        botocore.client.BaseClient._make_api_call = timed_call  # type: ignore[method-assign]

    def reset(self) -> None:
        with self._lock:
            self.calls.clear()

    def snapshot(self) -> dict[str, list[float]]:
        with self._lock:
            return {k: list(v) for k, v in self.calls.items()}


def row(name: str, value: str, note: str = "") -> None:
    print(f"  {name:56} {value:>20}  {note}", flush=True)


def make_events(client_id: int, batch: int, now: datetime) -> list[dict[str, Any]]:
    """A realistic mix: 60 % interactions, 30 % feature updates, 10 % labels, over 50 entities."""
    events = []
    for i in range(BATCH):
        entity = f"u{(client_id * 7 + i) % 50}"
        event_id = f"c{client_id}-b{batch}-{i}"
        when = (now - timedelta(seconds=i)).isoformat()
        if i % 10 < 6:
            payload: dict[str, Any] = {"kind": "view" if i % 3 else "click", "item_id": f"item-{i % 20}"}
            kind = "interaction"
        elif i % 10 < 9:
            payload = {
                "group": f"g{i % 3}",
                "values": {"a": float(i), "b": i % 7, "c": "x"},
                "add": {"spend": 1.5},
            }
            kind = "feature_update"
        else:
            payload = {"request_id": f"r-{event_id}", "value": i % 2}
            kind = "label"
        events.append(
            {"event_id": event_id, "type": kind, "entity_id": entity, "timestamp": when, "payload": payload}
        )
    return events


def bench_api(cloud: Any, api_key: str, meter: CallMeter, batches_per_client: int) -> None:
    import requests

    url = f"{cloud.api_url}/events"
    now = datetime.now(UTC)
    bodies = [
        [orjson.dumps({"events": make_events(c, b, now)}) for b in range(batches_per_client)]
        for c in range(CLIENTS)
    ]
    latencies: list[float] = []
    accepted = 0
    lock = threading.Lock()

    def client(c: int) -> None:
        nonlocal accepted
        session = requests.Session()
        session.headers.update({"x-api-key": api_key, "content-type": "application/json"})
        for body in bodies[c]:
            started = time.perf_counter()
            response = session.post(url, data=body, timeout=120)
            elapsed = time.perf_counter() - started
            result = response.json()
            with lock:
                latencies.append(elapsed)
                accepted += int(result.get("accepted", 0))

    # warm-up: cold start of the function and the clients
    requests.post(
        url,
        data=orjson.dumps({"events": make_events(99, 0, now)}),
        headers={"x-api-key": api_key},
        timeout=120,
    )
    meter.reset()
    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=CLIENTS) as pool:
        list(pool.map(client, range(CLIENTS)))
    wall = time.perf_counter() - started
    calls = meter.snapshot()
    total = CLIENTS * batches_per_client * BATCH
    print(
        f"\nPOST /events: {CLIENTS} clients x {batches_per_client} batches x {BATCH} events ({total:,} events)"
    )
    row("events/s accepted", f"{accepted / wall:,.0f}", f"{accepted:,} accepted in {wall:.1f} s")
    ordered = sorted(latencies)
    row(
        "HTTP round trip per batch",
        f"p50 {statistics.median(ordered) * 1000:.0f} ms",
        f"p99 {ordered[int(len(ordered) * 0.99) - 1] * 1000:.0f} ms",
    )
    ingest_ops = [
        op for op in calls if op not in ("ReceiveMessage", "DeleteMessageBatch", "PutObject", "GetItem")
    ]
    emulator = sum(sum(calls[op]) for op in ingest_ops)
    per_batch_calls = sum(len(calls[op]) for op in ingest_ops) / (CLIENTS * batches_per_client)
    row("AWS calls per batch of 100 (ingest)", f"{per_batch_calls:,.0f}")
    row(
        "time in emulator calls per batch (summed over threads)",
        f"{emulator / (CLIENTS * batches_per_client) * 1000:,.0f} ms",
        f"vs {sum(latencies) / len(latencies) * 1000:,.0f} ms per batch round trip",
    )
    for op in sorted(calls, key=lambda o: -sum(calls[o])):
        durations = calls[op]
        row(
            f"  {op}",
            f"{len(durations):6,} calls",
            f"mean {statistics.fmean(durations) * 1000:6.1f} ms, total {sum(durations):6.1f} s",
        )


def bench_archiver(cloud: Any, meter: CallMeter, messages: int) -> None:
    from mlambda.adapters.archive import ParquetArchive, parquet_bytes
    from mlambda.adapters.dynamodb import DynamoTable
    from mlambda.adapters.s3 import ObjectStore
    from mlambda.adapters.tracking import DynamoPurgeLog
    from mlambda.config import FunctionSettings
    from mlambda.schemas.events import validate_event
    from mlambda.services.ingestion.archiving import ArchiveMessage, ArchivingService, parse_message
    from mlambda.services.ingestion.service import envelope

    settings = FunctionSettings.load({"AWS_ENDPOINT_URL": cloud.endpoint_url, "AWS_REGION": cloud.region})
    now = datetime.now(UTC)
    batch = []
    for m in range(messages):
        events = [validate_event(e) for e in make_events(1000 + m, 0, now)]
        batch.append(
            ArchiveMessage(
                f"m{m}", orjson.dumps([envelope(e) for e in events if not isinstance(e, str)]).decode()
            )
        )
    rows = sum(len(parse_message(m.body)) for m in batch)
    service = ArchivingService(
        ParquetArchive(ObjectStore(cloud.outputs["DataBucketName"], settings)),
        DynamoPurgeLog(DynamoTable(cloud.outputs["TrackingTableName"], settings)),
    )
    service.archive(batch[:2])
    meter.reset()
    started = time.perf_counter()
    outcome = service.archive(batch)
    wall = time.perf_counter() - started
    calls = meter.snapshot()
    print(
        f"\narchiver: one batch of {messages} messages, {rows:,} rows -> {len(outcome.objects)} Parquet objects"
    )
    row(
        "rows/s into Parquet (parse, dedupe, purge check, write)",
        f"{outcome.rows / wall:,.0f}",
        f"{wall:.2f} s",
    )
    from mlambda.schemas.archive import ArchiveEnvelope, archive_row

    envelopes = [ArchiveEnvelope.model_validate(e) for m in batch for e in orjson.loads(m.body)]
    started = time.perf_counter()
    table_rows = [archive_row(e) for e in envelopes]
    flatten = time.perf_counter() - started
    started = time.perf_counter()
    parquet_bytes(table_rows)
    encode = time.perf_counter() - started
    row("  of which envelope validation + flattening", f"{flatten * 1000:,.0f} ms")
    row("  of which Parquet encoding (one file, all rows)", f"{encode * 1000:,.0f} ms")
    for op in sorted(calls):
        durations = calls[op]
        row(f"  {op}", f"{len(durations):6,} calls", f"mean {statistics.fmean(durations) * 1000:6.1f} ms")


def bench_baseline(cloud: Any) -> None:
    dynamodb = boto3.client("dynamodb", endpoint_url=cloud.endpoint_url, region_name=cloud.region)
    sqs = boto3.client("sqs", endpoint_url=cloud.endpoint_url, region_name=cloud.region)
    table = cloud.outputs["IdempotencyTableName"]
    queue = cloud.outputs["ArchiveDeadLetterQueueUrl"]

    def p50(call: Callable[[int], Any], n: int = 200) -> float:
        samples = []
        for i in range(n):
            started = time.perf_counter()
            call(i)
            samples.append(time.perf_counter() - started)
        return statistics.median(samples) * 1000

    print("\nbaseline: one emulator call at a time (p50)")
    put = p50(
        lambda i: dynamodb.put_item(
            TableName=table,
            Item={"id": {"S": f"bench-{i}"}, "status": {"S": "x"}},
            ConditionExpression="attribute_not_exists(id)",
        )
    )
    row("DynamoDB conditional PutItem", f"{put:.2f} ms", f"-> {1000 / put:,.0f} calls/s on one thread")
    items = [{"PutRequest": {"Item": {"id": {"S": f"bw-{i}"}}}} for i in range(25)]
    row(
        "DynamoDB BatchWriteItem (25 items)",
        f"{p50(lambda i: dynamodb.batch_write_item(RequestItems={table: items}), 50):.2f} ms",
    )
    entries = [{"Id": str(i), "MessageBody": "x" * 200} for i in range(10)]
    row(
        "SQS SendMessageBatch (10 messages)",
        f"{p50(lambda i: sqs.send_message_batch(QueueUrl=queue, Entries=entries), 50):.2f} ms",
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="fewer batches")
    args = parser.parse_args()
    from mlambda_local.bootstrap import ensure_admin_key
    from mlambda_local.cloud import LocalCloud

    meter = CallMeter()
    meter.install()
    with (
        tempfile.TemporaryDirectory() as data_dir,
        # In process: the meter counts the botocore calls made in this process, the functions' included.
        LocalCloud(REPO / "template.yaml", data_dir, mode="in-process") as cloud,
    ):
        key = ensure_admin_key(Path(data_dir), cloud.outputs["ApiKeysTableName"], cloud.endpoint_url)
        print(f"local cloud: moto at {cloud.endpoint_url}, API at {cloud.api_url}")
        bench_baseline(cloud)
        bench_api(cloud, key, meter, batches_per_client=3 if args.quick else 10)
        bench_archiver(cloud, meter, messages=20 if args.quick else 100)


if __name__ == "__main__":
    main()
