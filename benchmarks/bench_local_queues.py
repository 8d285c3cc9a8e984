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
from collections.abc import Callable
from pathlib import Path

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


def timed(calls: int, action: Callable[[], object]) -> float:
    started = time.perf_counter()
    for _ in range(calls):
        action()
    return (time.perf_counter() - started) / calls * 1000


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--depths", type=int, nargs="+", default=list(DEPTHS))
    parser.add_argument("--calls", type=int, default=50)
    args = parser.parse_args()

    import boto3
    from botocore.config import Config

    from mlambda_local.cloud.moto_server import MotoServer

    scratch = Path(tempfile.mkdtemp(prefix="bench-queues-"))
    server = MotoServer(scratch)
    try:
        url = server.start()
        sqs = boto3.client(
            "sqs",
            endpoint_url=url,
            region_name="us-east-1",
            aws_access_key_id="t",
            aws_secret_access_key="t",
            config=Config(read_timeout=900, retries={"max_attempts": 1}),  # the old moto took minutes
        )
        print(f"bench_local_queues: mean over {args.calls} rounds over HTTP; {os.cpu_count()} CPUs")
        print(f"  {'queued':>8}  {'send':>8}  {'receive 10':>11}  {'delete 10':>10}   (ms)")
        for depth in args.depths:
            name = f"depth-{depth}"
            queue = sqs.create_queue(QueueName=name, Attributes={"VisibilityTimeout": "600"})["QueueUrl"]
            fill(name, depth)
            # Each round sends ten, receives ten and deletes them: the queue stays at its depth.
            send_ms = receive_ms = delete_ms = 0.0
            for _ in range(args.calls):
                send_ms += timed(
                    10, lambda queue=queue: sqs.send_message(QueueUrl=queue, MessageBody="y" * 200)
                )
                started = time.perf_counter()
                messages = sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10)["Messages"]
                receive_ms += (time.perf_counter() - started) * 1000
                started = time.perf_counter()
                sqs.delete_message_batch(
                    QueueUrl=queue,
                    Entries=[
                        {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(messages)
                    ],
                )
                delete_ms += (time.perf_counter() - started) * 1000
            send, receive_ms, delete_ms = (
                send_ms / args.calls,
                receive_ms / args.calls,
                delete_ms / args.calls,
            )
            print(f"  {depth:>8,}  {send:8.2f}  {receive_ms:11.2f}  {delete_ms:10.2f}")
    finally:
        server.stop()
        shutil.rmtree(scratch, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
