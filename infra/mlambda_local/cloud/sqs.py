"""Queue pollers: SQS event source mappings, and S3 notifications routed through internal queues.

SQS mappings behave as Lambda's poller does: receive up to ``BatchSize`` messages within
``MaximumBatchingWindowInSeconds``, invoke with real SQS records, and delete what succeeded
(only the successes when the function reports ``batchItemFailures``; nothing when it raises).
Within the window the poller receives again at once only while receives come back full (the
queue holds more); when the queue is drained it waits for messages to accumulate (rechecking
every ``BATCHING_RECHECK_SECONDS``) instead of receiving once per message that arrives, so a
batch costs about what it costs on SQS: one receive per ten messages.
What is not deleted reappears after the queue's visibility timeout, and moto moves it to the
DLQ on the receive after ``maxReceiveCount``. A batch is saved while it is delivered, so one that
a crash of the local cloud cut short is delivered again whole at the next start
(``redeliver_interrupted``) rather than re-composed with other messages.

S3 notifications are asynchronous invocations on AWS (two retries, then dropped): the internal
queue's message is deleted on success or after the third failed attempt.
"""

from __future__ import annotations

import base64
import json
import logging
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mlambda_local.cloud.errors import FunctionInvocationError
from mlambda_local.cloud.functions import Function
from mlambda_local.private_files import private_directory, write_private_json

logger = logging.getLogger("mlambda.local")

RECEIVE_WAIT_SECONDS = 1  # short, so that stop() returns quickly
BATCHING_RECHECK_SECONDS = 1.0
ASYNC_ATTEMPTS = 3  # Lambda's asynchronous invocation: 1 try + 2 retries
MAX_RECEIVE = 10  # SQS's limit per ReceiveMessage
FAILURE_BACKOFF_MAX_SECONDS = 8.0


@dataclass(frozen=True)
class SqsMapping:
    """An AWS::Lambda::EventSourceMapping from an SQS queue, resolved."""

    logical_id: str
    function_logical_id: str
    queue_url: str
    queue_arn: str
    batch_size: int = 10
    batching_window: float = 0.0
    report_batch_item_failures: bool = False
    maximum_concurrency: int = 2
    enabled: bool = True


def lambda_message_attributes(attributes: dict[str, Any]) -> dict[str, Any]:
    """SQS API message attributes -> the camelCase shape Lambda puts in SQS records."""
    converted: dict[str, Any] = {}
    for name, value in attributes.items():
        entry: dict[str, Any] = {
            "stringListValues": value.get("StringListValues", []),
            "binaryListValues": [
                base64.b64encode(item).decode() for item in value.get("BinaryListValues", [])
            ],
            "dataType": value.get("DataType", "String"),
        }
        if "StringValue" in value:
            entry["stringValue"] = value["StringValue"]
        if "BinaryValue" in value:
            entry["binaryValue"] = base64.b64encode(value["BinaryValue"]).decode()
        converted[name] = entry
    return converted


def sqs_record(message: dict[str, Any], queue_arn: str, region: str) -> dict[str, Any]:
    """One SQS record as Lambda delivers it."""
    record: dict[str, Any] = {
        "messageId": message["MessageId"],
        "receiptHandle": message["ReceiptHandle"],
        "body": message.get("Body", ""),
        "attributes": dict(message.get("Attributes", {})),
        "messageAttributes": lambda_message_attributes(message.get("MessageAttributes", {})),
        "md5OfBody": message.get("MD5OfBody", ""),
        "eventSource": "aws:sqs",
        "eventSourceARN": queue_arn,
        "awsRegion": region,
    }
    if "MD5OfMessageAttributes" in message:
        record["md5OfMessageAttributes"] = message["MD5OfMessageAttributes"]
    return record


def failed_message_ids(result: Any, message_ids: list[str]) -> set[str] | None:
    """The ids a ReportBatchItemFailures response names; ``None`` means the whole batch failed.

    As on Lambda: an empty or missing list is full success, and a malformed entry or an id that
    was not in the batch fails the whole batch.
    """
    if not isinstance(result, dict):
        return set()
    failures = result.get("batchItemFailures")
    if not failures:
        return set()
    if not isinstance(failures, list):
        return None
    failed: set[str] = set()
    for failure in failures:
        identifier = failure.get("itemIdentifier") if isinstance(failure, dict) else None
        if not identifier or identifier not in message_ids:
            return None
        failed.add(str(identifier))
    return failed


class QueuePoller:
    """Threads polling one queue for one function; subclasses turn messages into invocations."""

    def __init__(self, name: str, sqs: Any, queue_url: str, function: Function, threads: int) -> None:
        self.name = name
        self.sqs = sqs
        self.queue_url = queue_url
        self.function = function
        self.threads = max(1, threads)
        self._stop = threading.Event()
        self._workers: list[threading.Thread] = []
        self.batches = 0
        self.failures = 0
        self._failed_polls = 0  # in a row, across the poller's threads
        self._lock = threading.Lock()

    def start(self) -> None:
        for number in range(self.threads):
            worker = threading.Thread(target=self._loop, name=f"poll-{self.name}-{number}", daemon=True)
            worker.start()
            self._workers.append(worker)

    def signal_stop(self) -> None:
        self._stop.set()

    def join(self) -> None:
        for worker in self._workers:
            worker.join()
        self._workers.clear()

    def _receive(self, count: int, wait: int = RECEIVE_WAIT_SECONDS) -> list[dict[str, Any]]:
        response = self.sqs.receive_message(
            QueueUrl=self.queue_url,
            MaxNumberOfMessages=max(1, min(MAX_RECEIVE, count)),
            WaitTimeSeconds=wait,
            AttributeNames=["All"],
            MessageAttributeNames=["All"],
        )
        messages: list[dict[str, Any]] = response.get("Messages", [])
        return messages

    def _loop(self) -> None:
        failures = 0  # this thread's, for its backoff
        while not self._stop.is_set():
            try:
                self.poll_once()
            except Exception as exc:
                # The endpoint may be unavailable for a while (restarting, stopping): the poller
                # says so once, then its threads back off and count, rather than logging a
                # traceback every second.
                failures += 1
                with self._lock:
                    self._failed_polls += 1
                    first = self._failed_polls == 1
                if first:
                    logger.warning(
                        "poller %s cannot poll %s: %s: %s; retrying with backoff",
                        self.name,
                        self.queue_url,
                        type(exc).__name__,
                        exc,
                        exc_info=logger.isEnabledFor(logging.DEBUG),
                    )
                self._stop.wait(min(FAILURE_BACKOFF_MAX_SECONDS, 0.25 * 2 ** min(failures, 5)))
                continue
            failures = 0
            with self._lock:
                recovered, self._failed_polls = self._failed_polls, 0
            if recovered:
                logger.warning("poller %s polls again after %d failed attempts", self.name, recovered)

    def poll_once(self) -> None:
        raise NotImplementedError

    def _delete(self, handles: list[str]) -> None:
        for start in range(0, len(handles), MAX_RECEIVE):
            chunk = handles[start : start + MAX_RECEIVE]
            response = self.sqs.delete_message_batch(
                QueueUrl=self.queue_url,
                Entries=[{"Id": str(i), "ReceiptHandle": handle} for i, handle in enumerate(chunk)],
            )
            for failure in response.get("Failed", []):
                logger.warning("poller %s could not delete a message: %s", self.name, failure)

    def status(self) -> dict[str, Any]:
        with self._lock:
            return {
                "queue_url": self.queue_url,
                "function": self.function.spec.logical_id,
                "threads": self.threads,
                "batches": self.batches,
                "failed_batches": self.failures,
            }


class SqsEventSourcePoller(QueuePoller):
    """Emulates Lambda's SQS event source mapping for one mapping."""

    def __init__(
        self,
        mapping: SqsMapping,
        sqs: Any,
        function: Function,
        region: str,
        batches_dir: Path | None = None,
    ) -> None:
        super().__init__(mapping.logical_id, sqs, mapping.queue_url, function, mapping.maximum_concurrency)
        self.mapping = mapping
        self.region = region
        self.batches_dir = batches_dir  # where batches in delivery are saved (None: not saved)

    def _collect(self) -> list[dict[str, Any]]:
        """Up to BatchSize messages, waiting at most the batching window once the first arrived."""
        size = self.mapping.batch_size
        wanted = min(MAX_RECEIVE, size)
        batch = self._receive(wanted)
        if not batch:
            return batch
        deadline = time.monotonic() + self.mapping.batching_window
        drained = len(batch) < wanted
        while len(batch) < size and not self._stop.is_set():
            if drained:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._stop.wait(min(left, BATCHING_RECHECK_SECONDS))
            wanted = min(MAX_RECEIVE, size - len(batch))
            received = self._receive(wanted, wait=0)
            batch.extend(received)
            drained = len(received) < wanted
            if drained and time.monotonic() >= deadline:
                break
        return batch

    def poll_once(self) -> None:
        batch = self._collect()
        if batch:
            records = [sqs_record(message, self.mapping.queue_arn, self.region) for message in batch]
            self._deliver(records, self._save(records))

    def redeliver_interrupted(self) -> int:
        """Deliver again, as they were, the batches a crash of the local cloud interrupted; call before start().

        A batch is saved before its invocation and forgotten once its messages are deleted (or
        handed back to the queue by a failure). One still saved at start was cut short by a crash:
        delivered again whole, it lets the function's idempotence hold (the archiver, for one,
        rewrites the same objects for the same messages, where a re-composed batch would add copies).
        """
        if self.batches_dir is None or not self.batches_dir.is_dir():
            return 0
        saved = sorted(self.batches_dir.glob("*.json"), key=lambda path: path.stat().st_mtime)
        for path in saved:
            records = json.loads(path.read_text(encoding="utf-8"))
            logger.warning(
                "%s: delivering again a batch of %d interrupted by a crash", self.name, len(records)
            )
            self._deliver(records, path)
        return len(saved)

    def _save(self, records: list[dict[str, Any]]) -> Path | None:
        if self.batches_dir is None:
            return None
        private_directory(self.batches_dir)
        return write_private_json(self.batches_dir / f"{uuid.uuid4().hex}.json", records)

    def _deliver(self, records: list[dict[str, Any]], saved: Path | None) -> None:
        """Invoke with the batch, then delete what succeeded; the saved batch goes once that is settled."""
        with self._lock:
            self.batches += 1
        try:
            result = self.function.invoke({"Records": records})
        except FunctionInvocationError:
            with self._lock:
                self.failures += 1
            logger.info(
                "%s: batch of %d failed; messages return after the visibility timeout",
                self.name,
                len(records),
            )
            _forget(saved)
            return
        delete = records
        if self.mapping.report_batch_item_failures:
            failed = failed_message_ids(result, [record["messageId"] for record in records])
            if failed is None:
                with self._lock:
                    self.failures += 1
                logger.warning(
                    "%s: malformed batchItemFailures %r; the whole batch is retried", self.name, result
                )
                _forget(saved)
                return
            if failed:
                logger.info(
                    "%s: %d of %d messages failed and will be retried", self.name, len(failed), len(records)
                )
            delete = [record for record in records if record["messageId"] not in failed]
        self._settle([record["receiptHandle"] for record in delete])
        _forget(saved)

    def _settle(self, handles: list[str]) -> None:
        """Delete, retrying while the endpoint is away: a processed batch must not come back re-composed."""
        attempt = 0
        while True:
            try:
                self._delete(handles)
                return
            except Exception:
                attempt += 1
                if self._stop.is_set():
                    raise  # the saved batch stays: it is delivered again at the next start
                self._stop.wait(min(FAILURE_BACKOFF_MAX_SECONDS, 0.25 * 2**attempt))


def _forget(saved: Path | None) -> None:
    if saved is not None:
        saved.unlink(missing_ok=True)


class S3NotificationPoller(QueuePoller):
    """Delivers the S3 events moto put on an internal queue to the function, one event per invocation."""

    def poll_once(self) -> None:
        for message in self._receive(10):
            try:
                event = json.loads(message.get("Body", ""))
            except json.JSONDecodeError:
                logger.warning("%s: dropping a message that is not an S3 event", self.name)
                self._delete([message["ReceiptHandle"]])
                continue
            if not isinstance(event, dict) or event.get("Event") == "s3:TestEvent" or "Records" not in event:
                self._delete([message["ReceiptHandle"]])
                continue
            with self._lock:
                self.batches += 1
            try:
                self.function.invoke(event)
            except FunctionInvocationError:
                with self._lock:
                    self.failures += 1
                attempts = int(message.get("Attributes", {}).get("ApproximateReceiveCount", "1"))
                if attempts < ASYNC_ATTEMPTS:
                    continue
                logger.error("%s: S3 event dropped after %d failed attempts", self.name, attempts)
            self._delete([message["ReceiptHandle"]])
