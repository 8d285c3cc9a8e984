"""SQS event source pollers: batching within the window costs what SQS costs; failures are said once."""

from __future__ import annotations

import logging
import math
import os
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from mlambda_local.cloud.sqs import BATCHING_RECHECK_SECONDS, SqsEventSourcePoller, SqsMapping


class TricklingQueue:
    """An SQS client whose queue receives one message every ``interval`` seconds; receives are counted.

    A receive returns what has arrived (up to ten), long-polling until something arrives as SQS does.
    """

    def __init__(self, total: int, interval: float) -> None:
        self.total, self.interval = total, interval
        self.started = time.monotonic()
        self.taken = 0
        self.receives = 0
        self.deleted: list[str] = []
        self._lock = threading.Lock()

    def _arrived(self) -> int:
        return min(self.total, int((time.monotonic() - self.started) / self.interval) + 1)

    def receive_message(self, MaxNumberOfMessages: int, WaitTimeSeconds: int, **_: Any) -> dict[str, Any]:
        deadline = time.monotonic() + WaitTimeSeconds
        while True:
            with self._lock:
                available = self._arrived() - self.taken
                if available > 0 or time.monotonic() >= deadline:
                    self.receives += 1
                    count = min(available, MaxNumberOfMessages)
                    first, self.taken = self.taken, self.taken + count
                    return {"Messages": [message(n) for n in range(first, first + count)]}
            time.sleep(0.005)

    def delete_message_batch(self, Entries: list[dict[str, str]], **_: Any) -> dict[str, Any]:
        self.deleted.extend(entry["ReceiptHandle"] for entry in Entries)
        return {"Successful": [], "Failed": []}


def message(number: int) -> dict[str, Any]:
    return {
        "MessageId": f"id-{number}",
        "ReceiptHandle": f"rh-{number}",
        "Body": str(number),
        "Attributes": {},
    }


class RecordingFunction:
    def __init__(self) -> None:
        self.batches: list[list[str]] = []

    def invoke(self, event: dict[str, Any]) -> dict[str, Any]:
        self.batches.append([record["body"] for record in event["Records"]])
        return {"batchItemFailures": []}


def mapping(batch_size: int, window: float, threads: int = 1) -> SqsMapping:
    return SqsMapping(
        logical_id="Archive",
        function_logical_id="Archiver",
        queue_url="http://local/123456789012/archive",
        queue_arn="arn:aws:sqs:us-east-1:123456789012:archive",
        batch_size=batch_size,
        batching_window=window,
        report_batch_item_failures=True,
        maximum_concurrency=threads,
    )


def test_poller_gathers_a_trickle_into_one_batch_with_few_receives() -> None:
    # Given: 30 messages arriving one every 20 ms, a window (2 s) longer than the trickle (0.6 s)
    queue, function = TricklingQueue(total=30, interval=0.02), RecordingFunction()
    window = 2.0
    poller = SqsEventSourcePoller(mapping(batch_size=100, window=window), queue, function, "us-east-1")  # type: ignore[arg-type]
    # When
    poller.poll_once()
    # Then: one invocation with all 30, in order, all deleted...
    assert function.batches == [[str(n) for n in range(30)]]
    assert queue.deleted == [f"rh-{n}" for n in range(30)]
    # ...and receives bounded by the window's rechecks and full receives, not one per message
    assert queue.receives <= 2 + math.ceil(window / BATCHING_RECHECK_SECONDS) + math.ceil(30 / 10)


def test_poller_with_no_window_invokes_with_what_is_there() -> None:
    # Given: 25 messages already queued, no batching window
    queue, function = TricklingQueue(total=25, interval=1e-9), RecordingFunction()
    poller = SqsEventSourcePoller(mapping(batch_size=100, window=0), queue, function, "us-east-1")  # type: ignore[arg-type]
    # When
    poller.poll_once()
    # Then: received ten at a time until a receive came back short
    assert function.batches == [[str(n) for n in range(25)]]
    assert queue.receives == 3


def test_poller_says_once_that_it_cannot_poll_then_that_it_polls_again(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Given: an endpoint that fails three times, then answers
    class Flaky(TricklingQueue):
        failures = 3

        def receive_message(self, **kwargs: Any) -> dict[str, Any]:
            if self.failures:
                self.failures -= 1
                raise ConnectionError("connection refused")
            return {"Messages": []}

    poller = SqsEventSourcePoller(mapping(10, 0), Flaky(0, 1.0), RecordingFunction(), "us-east-1")  # type: ignore[arg-type]
    # When
    with caplog.at_level(logging.INFO, logger="mlambda.local"):
        poller.start()
        deadline = time.monotonic() + 30
        while "polls again" not in caplog.text and time.monotonic() < deadline:
            time.sleep(0.05)
        poller.signal_stop()
        poller.join()
    # Then: two lines, no traceback
    lines = [record.getMessage() for record in caplog.records]
    assert len(lines) == 2, lines
    assert "cannot poll" in lines[0] and "connection refused" in lines[0]
    assert "polls again after 3 failed attempts" in lines[1]
    assert not any(record.exc_info for record in caplog.records)


def test_a_batch_cut_short_by_a_crash_is_delivered_again_whole_at_the_next_start(tmp_path: Path) -> None:
    # Given: a poller that dies in the middle of invoking its function with twelve messages
    queue = TricklingQueue(total=12, interval=1e-9)

    class Dying(RecordingFunction):
        def invoke(self, event: dict[str, Any]) -> dict[str, Any]:
            super().invoke(event)
            raise SystemExit("killed")

    dying = SqsEventSourcePoller(mapping(100, 0), queue, Dying(), "us-east-1", batches_dir=tmp_path)  # type: ignore[arg-type]
    with pytest.raises(SystemExit):
        dying.poll_once()
    # When: the next start's poller looks for interrupted batches
    function = RecordingFunction()
    again = SqsEventSourcePoller(mapping(100, 0), queue, function, "us-east-1", batches_dir=tmp_path)  # type: ignore[arg-type]
    redelivered = again.redeliver_interrupted()
    # Then: the same twelve, as one batch, deleted with the handles they had, and nothing left saved
    assert redelivered == 1
    assert function.batches == [[str(n) for n in range(12)]]
    assert queue.deleted == [f"rh-{n}" for n in range(12)]
    assert list(tmp_path.iterdir()) == []


def test_a_delivered_batch_leaves_nothing_saved(tmp_path: Path) -> None:
    queue, function = TricklingQueue(total=3, interval=1e-9), RecordingFunction()
    poller = SqsEventSourcePoller(mapping(10, 0), queue, function, "us-east-1", batches_dir=tmp_path)  # type: ignore[arg-type]
    poller.poll_once()
    assert function.batches == [["0", "1", "2"]]
    assert list(tmp_path.iterdir()) == []


def test_a_crash_while_a_batch_is_being_saved_leaves_no_half_written_batch(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given: a poller killed while writing its batch to disk (before any invocation)
    queue, function = TricklingQueue(total=12, interval=1e-9), RecordingFunction()

    real_fdopen = os.fdopen

    class HalfWriter:
        def __init__(self, stream: Any) -> None:
            self.stream = stream

        def __enter__(self) -> HalfWriter:
            return self

        def __exit__(self, *_: Any) -> None:
            self.stream.close()

        def write(self, data: bytes) -> None:
            self.stream.write(data[:40])
            raise SystemExit("killed")

    monkeypatch.setattr(
        "mlambda_local.private_files.os.fdopen", lambda fd, *a, **k: HalfWriter(real_fdopen(fd, *a, **k))
    )
    dying = SqsEventSourcePoller(mapping(100, 0), queue, function, "us-east-1", batches_dir=tmp_path)  # type: ignore[arg-type]
    with pytest.raises(SystemExit):
        dying.poll_once()
    monkeypatch.undo()
    # When: the next start looks for interrupted batches
    again = SqsEventSourcePoller(mapping(100, 0), queue, function, "us-east-1", batches_dir=tmp_path)  # type: ignore[arg-type]
    redelivered = again.redeliver_interrupted()
    # Then: no batch was ever handed to the function, so none is delivered (the queue has them back)
    assert (redelivered, function.batches) == (0, [])
