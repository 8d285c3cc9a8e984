"""What one SQS call costs on the local cloud's moto, with 20 and with 10,000 messages queued.

On SQS a send, a receive and a delete cost the same whatever the queue holds. moto's did not
(a send counted the queue three times; a receive did that three times per message received; a
delete scanned every message's receipt handles), and the local pollers received once per
message: the prediction log's send waited behind them. This prints, for each depth, the mean
of each call over HTTP (boto3, as the functions make them), against the local cloud's moto with
a data directory (so the time to persist each change is included), beside stock moto's server
(``moto.server.ThreadedMotoServer``, in a process of its own, none of the local cloud's changes).

The queue is filled by appending to moto's model directly (filling 10,000 through the old send
was itself quadratic). Usage: make bench-queues, or PYTHONPATH=. .venv/bin/python
benchmarks/bench_local_queues.py [--depths 20 10000] [--calls 50]
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
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


def serve_stock_moto(port: int, depths: list[int]) -> None:
    """Stock moto's server with a queue per depth, filled; says ``ready`` and serves until killed."""
    from moto.server import ThreadedMotoServer
    from moto.sqs.models import sqs_backends

    for depth in depths:
        sqs_backends["123456789012"]["us-east-1"].create_queue(f"depth-{depth}", VisibilityTimeout="600")
        fill(f"depth-{depth}", depth)
    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # no line per request
    ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False).start()
    print("ready", flush=True)
    threading.Event().wait()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def costs(sqs: Any, queue: str, calls: int) -> tuple[float, float, float]:
    """Mean ms of a send, a receive of ten and a delete of ten; each round leaves the depth as it was."""
    send_ms = receive_ms = delete_ms = 0.0
    for _ in range(calls):
        send_ms += timed(10, lambda: sqs.send_message(QueueUrl=queue, MessageBody="y" * 200))
        started = time.perf_counter()
        messages = sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10)["Messages"]
        receive_ms += (time.perf_counter() - started) * 1000
        started = time.perf_counter()
        sqs.delete_message_batch(
            QueueUrl=queue,
            Entries=[{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(messages)],
        )
        delete_ms += (time.perf_counter() - started) * 1000
    return send_ms / calls, receive_ms / calls, delete_ms / calls


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
    parser.add_argument(
        "--stock-calls",
        type=int,
        default=1,
        help="rounds on stock moto (a receive there takes a minute at 10,000)",
    )
    parser.add_argument("--stock-moto", type=int, metavar="PORT", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.stock_moto:
        serve_stock_moto(args.stock_moto, args.depths)
        return 0

    import boto3
    from botocore.config import Config

    from mlambda_local.cloud.moto_server import MotoServer

    def client(url: str) -> Any:
        return boto3.client(
            "sqs",
            endpoint_url=url,
            region_name="us-east-1",
            aws_access_key_id="t",
            aws_secret_access_key="t",
            config=Config(read_timeout=900, retries={"max_attempts": 1}),  # stock moto takes long
        )

    scratch = Path(tempfile.mkdtemp(prefix="bench-queues-"))
    server = MotoServer(scratch)
    port = free_port()
    stock = subprocess.Popen(
        [sys.executable, __file__, "--stock-moto", str(port), "--depths", *map(str, args.depths)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        local = client(server.start())
        for depth in args.depths:
            name = f"depth-{depth}"
            local.create_queue(QueueName=name, Attributes={"VisibilityTimeout": "600"})
            fill(name, depth)
        assert stock.stdout is not None and stock.stdout.readline().strip() == "ready"
        stock_client = client(f"http://127.0.0.1:{port}")
        print(
            f"bench_local_queues: mean over {args.calls} rounds (stock moto: {args.stock_calls}) over HTTP; "
            f"{os.cpu_count()} CPUs"
        )
        print(f"  {'queued':>8}  {'server':<22}  {'send':>8}  {'receive 10':>11}  {'delete 10':>10}   (ms)")
        for depth in args.depths:
            for label, sqs, calls in (
                ("local cloud's moto", local, args.calls),
                ("stock moto", stock_client, args.stock_calls),
            ):
                queue = sqs.get_queue_url(QueueName=f"depth-{depth}")["QueueUrl"]
                send, receive, delete = costs(sqs, queue, calls)
                print(f"  {depth:>8,}  {label:<22}  {send:8.2f}  {receive:11.2f}  {delete:10.2f}")
    finally:
        stock.kill()
        stock.wait()
        server.stop()
        shutil.rmtree(scratch, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
