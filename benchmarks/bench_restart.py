"""Restart after ``kill -9``: the time ``mlambda local up`` takes to serve again, by what it stores.

The local cloud (``mlambda local up`` in a process of its own, as a user runs it) is filled
with N S3 objects (1 KB each), N DynamoDB items and N queued SQS messages, in a bucket, table
and queue of the benchmark's own (nothing polls them), killed with ``kill -9`` and started
again on the same data directory. For each N this prints the time to serving again (the state
file names the new process and the API answers), the part of it spent restoring moto's state
(from ``local-up.log``), the state on disk, and checks that every object, item and message
came back. Wall-clock figures on a shared machine measure the other programs too, so each
restart also prints its start-up timeline (``status()['startup']``: each phase's wall and CPU
seconds, from the process's start) and the runner's CPU to serving.

Before wave 2 the local cloud replayed a JSON journal of every request (bodies included) at
start: 67-79 s after a few batch jobs (issue 13). The target: under 5 s whatever was uploaded.

Usage: make bench-restart, or PYTHONPATH=. .venv/bin/python benchmarks/bench_restart.py [--counts 0 1000 10000]
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

COUNTS = (0, 1_000, 10_000)
NAME = "bench-restart"
RESTORED = re.compile(r"state restored from \S+ in ([0-9.]+) s")


def clients(endpoint_url: str) -> tuple[Any, Any, Any]:
    import boto3
    from botocore.config import Config

    session = boto3.session.Session(
        region_name="us-east-1", aws_access_key_id="testing", aws_secret_access_key="testing"
    )
    config = Config(max_pool_connections=8, retries={"max_attempts": 2})
    return (
        session.client("s3", endpoint_url=endpoint_url, config=config),
        session.client("dynamodb", endpoint_url=endpoint_url, config=config),
        session.client("sqs", endpoint_url=endpoint_url, config=config),
    )


def create(s3: Any, dynamodb: Any, sqs: Any) -> None:
    s3.create_bucket(Bucket=NAME)
    dynamodb.create_table(
        TableName=NAME,
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    sqs.create_queue(QueueName=NAME, Attributes={"VisibilityTimeout": "600"})


def fill(s3: Any, dynamodb: Any, sqs: Any, start: int, stop: int) -> None:
    """Objects, items and messages numbered ``start`` to ``stop`` (four client threads for the objects)."""
    body = b"x" * 1024
    with ThreadPoolExecutor(4) as pool:
        list(
            pool.map(
                lambda n: s3.put_object(Bucket=NAME, Key=f"objects/{n:07d}", Body=body), range(start, stop)
            )
        )
    for first in range(start, stop, 25):
        requests = [
            {
                "PutRequest": {
                    "Item": {"pk": {"S": f"item-{n}"}, "value": {"N": str(n)}, "tag": {"S": "y" * 100}}
                }
            }
            for n in range(first, min(first + 25, stop))
        ]
        dynamodb.batch_write_item(RequestItems={NAME: requests})
    queue = sqs.get_queue_url(QueueName=NAME)["QueueUrl"]
    for first in range(start, stop, 10):
        entries = [
            {"Id": str(n), "MessageBody": f"message-{n}-" + "z" * 200}
            for n in range(first, min(first + 10, stop))
        ]
        sqs.send_message_batch(QueueUrl=queue, Entries=entries)


def stored(s3: Any, dynamodb: Any, sqs: Any) -> tuple[int, int, int]:
    objects = sum(
        page.get("KeyCount", 0) for page in s3.get_paginator("list_objects_v2").paginate(Bucket=NAME)
    )
    items = sum(
        page["Count"] for page in dynamodb.get_paginator("scan").paginate(TableName=NAME, Select="COUNT")
    )
    queue = sqs.get_queue_url(QueueName=NAME)["QueueUrl"]
    attributes = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["ApproximateNumberOfMessages"])
    return objects, items, int(attributes["Attributes"]["ApproximateNumberOfMessages"])


def timeline(cloud: Any) -> str:
    """The running cloud's start-up phases, ``phase wall/cpu``, and its CPU to up."""
    from mlambda_local.cloud import ControlClient

    startup = ControlClient.from_data_dir(cloud.data_dir).status()["startup"]
    up = next((e["at_s"] for e in startup["events"] if e["event"] == "up"), float("nan"))
    cpu = sum(p["cpu_s"] for p in startup["phases"])
    parts = ", ".join(f"{p['phase']} {p['seconds']:.2f}/{p['cpu_s']:.2f}" for p in startup["phases"])
    return f"up at {up:.2f} s, runner CPU {cpu:.2f} s (wall/cpu s: {parts})"


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--counts", type=int, nargs="+", default=list(COUNTS))
    parser.add_argument("--keep", action="store_true", help="keep the scratch directory")
    args = parser.parse_args()

    from tests.local_cloud_process import LocalCloudProcess

    scratch = Path(tempfile.mkdtemp(prefix="bench-restart-"))
    cloud = LocalCloudProcess(scratch / "cloud")
    print(
        f"bench_restart: kill -9 of mlambda local up, then local up on the same data dir; {os.cpu_count()} CPUs"
    )
    print(f"  {'objects/items/messages':>22}  {'to serving':>10}  {'restoring':>9}  {'state on disk':>13}")
    try:
        first = cloud.start()
        print(f"  {'(first start)':>22}  {first:9.1f}s")
        s3, dynamodb, sqs = clients(cloud.endpoint_url)
        create(s3, dynamodb, sqs)
        filled = 0
        for count in sorted(args.counts):
            fill(s3, dynamodb, sqs, filled, count)
            filled = max(filled, count)
            cloud.kill()
            logged = cloud.log.read_text(errors="replace")
            on_disk = sum(f.stat().st_size for f in (cloud.data_dir / "state").rglob("*") if f.is_file())
            started = time.perf_counter()
            cloud.start()
            serving = time.perf_counter() - started
            restoring = RESTORED.findall(cloud.log.read_text(errors="replace")[len(logged) :])
            s3, dynamodb, sqs = clients(cloud.endpoint_url)
            back = stored(s3, dynamodb, sqs)
            if back != (filled, filled, filled):
                raise SystemExit(f"after the restart {back} objects/items/messages, not {filled} of each")
            print(
                f"  {filled:>22,}  {serving:9.1f}s  {float(restoring[-1]) if restoring else float('nan'):8.2f}s"
                f"  {on_disk / 1e6:10.1f} MB"
            )
            print(f"  {'':>22}  {timeline(cloud)}")
    finally:
        cloud.stop()
        if args.keep:
            print(f"scratch kept in {scratch}")
        else:
            shutil.rmtree(scratch, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
