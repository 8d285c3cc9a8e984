"""Queue pollers: SQS event source mappings, and S3 notifications routed through internal queues.

SQS mappings behave as Lambda's poller does: receive up to ``BatchSize`` messages within
``MaximumBatchingWindowInSeconds``, invoke with real SQS records, and delete what succeeded
(only the successes when the function reports ``batchItemFailures``; nothing when it raises).
What is not deleted reappears after the queue's visibility timeout, and moto moves it to the
DLQ on the receive after ``maxReceiveCount``.

S3 notifications are asynchronous invocations on AWS (two retries, then dropped): the internal
queue's message is deleted on success or after the third failed attempt.
"""

from __future__ import annotations

import base64
import json
import logging
import threading
import time
from dataclasses import dataclass
from typing import Any

from mlambda_local.cloud.errors import FunctionInvocationError
from mlambda_local.cloud.functions import Function

logger = logging.getLogger("mlambda.local")

RECEIVE_WAIT_SECONDS = 1  # short, so that stop() returns quickly
ASYNC_ATTEMPTS = 3  # Lambda's asynchronous invocation: 1 try + 2 retries


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

    def _receive(self, count: int) -> list[dict[str, Any]]:
        response = self.sqs.receive_message(
            QueueUrl=self.queue_url,
            MaxNumberOfMessages=max(1, min(10, count)),
            WaitTimeSeconds=RECEIVE_WAIT_SECONDS,
            AttributeNames=["All"],
            MessageAttributeNames=["All"],
        )
        messages: list[dict[str, Any]] = response.get("Messages", [])
        return messages

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.poll_once()
            except Exception:
                # The endpoint may be briefly unavailable (e.g. while stopping): log, back off, go on.
                logger.exception("poller %s failed; retrying", self.name)
                self._stop.wait(1.0)

    def poll_once(self) -> None:
        raise NotImplementedError

    def _delete(self, messages: list[dict[str, Any]]) -> None:
        for start in range(0, len(messages), 10):
            chunk = messages[start : start + 10]
            response = self.sqs.delete_message_batch(
                QueueUrl=self.queue_url,
                Entries=[{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(chunk)],
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

    def __init__(self, mapping: SqsMapping, sqs: Any, function: Function, region: str) -> None:
        super().__init__(mapping.logical_id, sqs, mapping.queue_url, function, mapping.maximum_concurrency)
        self.mapping = mapping
        self.region = region

    def _collect(self) -> list[dict[str, Any]]:
        """Up to BatchSize messages, waiting at most the batching window once the first arrived."""
        batch: list[dict[str, Any]] = []
        deadline: float | None = None
        while not self._stop.is_set() and len(batch) < self.mapping.batch_size:
            batch.extend(self._receive(self.mapping.batch_size - len(batch)))
            if not batch:
                return batch
            if deadline is None:
                deadline = time.monotonic() + self.mapping.batching_window
            if time.monotonic() >= deadline:
                break
        return batch

    def poll_once(self) -> None:
        batch = self._collect()
        if not batch:
            return
        event = {"Records": [sqs_record(message, self.mapping.queue_arn, self.region) for message in batch]}
        with self._lock:
            self.batches += 1
        try:
            result = self.function.invoke(event)
        except FunctionInvocationError:
            with self._lock:
                self.failures += 1
            logger.info(
                "%s: batch of %d failed; messages return after the visibility timeout", self.name, len(batch)
            )
            return
        delete = batch
        if self.mapping.report_batch_item_failures:
            failed = failed_message_ids(result, [m["MessageId"] for m in batch])
            if failed is None:
                with self._lock:
                    self.failures += 1
                logger.warning(
                    "%s: malformed batchItemFailures %r; the whole batch is retried", self.name, result
                )
                return
            if failed:
                logger.info(
                    "%s: %d of %d messages failed and will be retried", self.name, len(failed), len(batch)
                )
            delete = [message for message in batch if message["MessageId"] not in failed]
        self._delete(delete)


class S3NotificationPoller(QueuePoller):
    """Delivers the S3 events moto put on an internal queue to the function, one event per invocation."""

    def poll_once(self) -> None:
        for message in self._receive(10):
            try:
                event = json.loads(message.get("Body", ""))
            except json.JSONDecodeError:
                logger.warning("%s: dropping a message that is not an S3 event", self.name)
                self._delete([message])
                continue
            if not isinstance(event, dict) or event.get("Event") == "s3:TestEvent" or "Records" not in event:
                self._delete([message])
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
            self._delete([message])
