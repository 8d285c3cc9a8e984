"""A worker the runtime tests drive: each event names an action (echo, sleep, allocate, raise, exit)."""

from __future__ import annotations

import os
import threading
import time
from typing import Any

STARTED = time.time()
THREADS_STARTED: list[str] = []  # every thread the runtime starts once this module is loaded
_start = threading.Thread.start


def _counted_start(self: threading.Thread) -> None:
    THREADS_STARTED.append(self.name)
    _start(self)


threading.Thread.start = _counted_start  # type: ignore[method-assign]


def handler(event: dict[str, Any], context: Any) -> Any:
    action = event.get("action", "echo")
    if action == "sleep":
        time.sleep(float(event["seconds"]))
    elif action == "allocate":
        hoard = b"x" * (int(event["mb"]) * 1024 * 1024)  # written, so resident: not just reserved
        del hoard
    elif action == "raise":
        raise ValueError(f"asked to fail: {event.get('why', 'no reason')}")
    elif action == "exit":
        os._exit(int(event.get("code", 3)))
    elif action == "print":
        print(event["text"])
    return {
        "pid": os.getpid(),
        "function_name": context.function_name,
        "memory_limit_in_mb": context.memory_limit_in_mb,
        "request_id": context.aws_request_id,
        "remaining_ms": context.get_remaining_time_in_millis(),
        "greeting": os.environ.get("GREETING"),
        "host_only": os.environ.get("MLAMBDA_TEST_HOST_ONLY"),
        "runtime_api": os.environ.get("AWS_LAMBDA_RUNTIME_API"),
        "log_stream": os.environ.get("AWS_LAMBDA_LOG_STREAM_NAME"),
        "started": STARTED,
        "threads_started": len(THREADS_STARTED),
        "execution_env": os.environ.get("AWS_EXECUTION_ENV"),
    }
