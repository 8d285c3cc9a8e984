"""What one SQS call costs on the local cloud's moto, with 20 and with 10,000 messages queued.

On SQS a send, a receive and a delete cost the same whatever the queue holds. moto's did not
(a send counted the queue three times; a receive did that three times per message received; a
delete scanned every message's receipt handles), and the local pollers received once per
message: the prediction log's send waited behind them. This prints, for each depth, the mean
of each call over HTTP (boto3, as the functions make them), against a local moto with a data
directory (so the time to persist each change is included).

The queue is filled by appending to moto's model directly (filling 10,000 through the old send
was itself quadratic). Usage: make bench-queues, or PYTHONPATH=. .venv/bin/python
benchmarks/bench_local_queues.py [--depths 20 10000] [--calls 50]
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

DEPTHS = (20, 10_000)


def fill(queue_name: str, count: int) -> None:
    """Put ``count`` messages straight into moto's queue (and nowhere else: they are not persisted)."""
    from moto.core.utils import unix_time_millis
    from moto.sqs.models import Message, sqs_backends

    queue = sqs_backends["123456789012"]["us-east-1"].queues[queue_name]
    now = int(unix_time_millis())
    for number in range(count):
        message = Message(f"filler-{number}", "x" * 200)
        message.sent_timestamp = now  # type: ignore[assignment]
        queue._messages.append(message)


def timed(calls: int, action: Any) -> float:
    started = time.perf_counter()
    for _ in range(calls):
        action()
    return (time.perf_counter() - started) / calls * 1000


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--depths", type=int, nargs="+", default=list(DEPTHS))
    parser.add_argument("--calls", type=int, default=50)
    args = parser.parse_args()

    import boto3

    from mlambda_local.cloud.moto_server import MotoServer

    scratch = Path(tempfile.mkdtemp(prefix="bench-queues-"))
    server = MotoServer(scratch)
    try:
        url = server.start()
        sqs = boto3.client(
            "sqs", endpoint_url=url, region_name="us-east-1", aws_access_key_id="t", aws_secret_access_key="t"
        )
        print(f"bench_local_queues: mean of {args.calls} calls over HTTP each; {os.cpu_count()} CPUs")
        print(f"  {'queued':>8}  {'send':>8}  {'receive 10':>11}  {'delete 10':>10}   (ms)")
        for depth in args.depths:
            name = f"depth-{depth}"
            queue = sqs.create_queue(QueueName=name, Attributes={"VisibilityTimeout": "600"})["QueueUrl"]
            fill(name, depth)
            send = timed(args.calls, lambda queue=queue: sqs.send_message(QueueUrl=queue, MessageBody="y" * 200))
            handles: list[list[str]] = []

            def receive(queue: str = queue) -> None:
                messages = sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10)["Messages"]
                handles.append([m["ReceiptHandle"] for m in messages])

            receive_ms = timed(args.calls, receive)
            batches = iter(handles)

            def delete(queue: str = queue) -> None:
                sqs.delete_message_batch(
                    QueueUrl=queue,
                    Entries=[{"Id": str(i), "ReceiptHandle": h} for i, h in enumerate(next(batches))],
                )

            delete_ms = timed(args.calls, delete)
            print(f"  {depth:>8,}  {send:8.2f}  {receive_ms:11.2f}  {delete_ms:10.2f}")
    finally:
        server.stop()
        shutil.rmtree(scratch, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
