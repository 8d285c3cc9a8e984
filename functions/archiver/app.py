"""The archiver: ingest's events from the archive queue, predict's prediction log from its log subscription.

Two event shapes, one service:

- SQS (``Records``): each batch of envelopes becomes one Parquet object per ``type=/date=/hour=``
  partition (not one per message); powertools' BatchProcessor then reports, per record, the
  messages the service could not archive, so only those come back (ReportBatchItemFailures).
  A message that is a Lambda destination record of a failed log delivery (the archive DLQ,
  redriven) is archived as the log events it carries.
- CloudWatch Logs (``awslogs``: base64 gzip of predict's matching log events, one prediction
  record piece each): archived as one batch; if any event fails the invocation fails, and the
  asynchronous invocation is retried (then sent to the OnFailure destination). A retry holds the
  same events, and the archive's object names derive from the ids they hold, so it lands once.
"""

from __future__ import annotations

import json
from functools import lru_cache
from typing import Any

from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.batch.types import PartialItemFailureResponse
from aws_lambda_powertools.utilities.data_classes import CloudWatchLogsEvent
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.typing import LambdaContext

from mlambda.config import ArchiverSettings
from mlambda.errors import UpstreamError
from mlambda.observability import logger, metrics
from mlambda.services.ingestion.archiving import ArchiveMessage, ArchiveOutcome, ArchivingService


@lru_cache(maxsize=1)
def service() -> ArchivingService:
    """Built on first use, reused while the function is warm."""
    return ArchivingService.from_settings(ArchiverSettings.load())


@logger.inject_lambda_context
def handler(event: dict[str, Any], context: LambdaContext) -> PartialItemFailureResponse | dict[str, int]:
    """Archive the batch; fail exactly the SQS records the service names, or the whole log delivery."""
    try:
        if "awslogs" in event:
            return _archive_log_events(event)
        return _archive_queue_batch(event, context)
    finally:
        if metrics.metric_set:
            metrics.namespace = metrics.namespace or "mlambda"
            metrics.flush_metrics()


def log_messages(awslogs_event: dict[str, Any], owner: str | None = None) -> list[ArchiveMessage]:
    """The prediction-log events of a CloudWatch Logs subscription event (none for a control message)."""
    data = CloudWatchLogsEvent(awslogs_event).parse_logs_data()
    if data.message_type != "DATA_MESSAGE":
        return []
    return [
        ArchiveMessage(message_id=owner or e.get_id, body=e.message, kind="prediction_log")
        for e in data.log_events
    ]


def _log_outcome(what: str, count: int, outcome: ArchiveOutcome) -> None:
    logger.info(
        f"archived {what}",
        extra={
            "messages": count,
            "rows": outcome.rows,
            "objects": len(outcome.objects),
            "failed": len(outcome.failed),
            "purged": outcome.purged,
        },
    )


def _archive_log_events(event: dict[str, Any]) -> dict[str, int]:
    messages = log_messages(event)
    outcome = service().archive(messages)
    _log_outcome("log events", len(messages), outcome)
    if outcome.failed:
        raise UpstreamError(
            f"{len(outcome.failed)} of {len(messages)} log events not archived; the delivery is retried"
        )
    return {"events": len(messages), "rows": outcome.rows}


def _destination_record(body: str) -> dict[str, Any] | None:
    """The ``awslogs`` event of a Lambda destination record (a failed log delivery), if ``body`` is one."""
    if not body.startswith("{"):
        return None
    try:
        document = json.loads(body)
    except json.JSONDecodeError:
        return None
    payload = document.get("requestPayload") if isinstance(document, dict) else None
    return payload if isinstance(payload, dict) and "awslogs" in payload else None


def _archive_queue_batch(event: dict[str, Any], context: LambdaContext) -> PartialItemFailureResponse:
    records = event.get("Records") or []
    messages: list[ArchiveMessage] = []
    for record in records:
        body = record.get("body") or ""
        redriven = _destination_record(body)
        if redriven is None:
            messages.append(ArchiveMessage(message_id=record["messageId"], body=body))
        else:
            messages += log_messages(redriven, owner=record["messageId"])
    outcome = service().archive(messages)
    _log_outcome("batch", len(records), outcome)

    def record_handler(record: SQSRecord) -> None:
        if record.message_id in outcome.failed:
            raise UpstreamError(f"message {record.message_id} not archived; it will be retried")

    processor = BatchProcessor(event_type=EventType.SQS, raise_on_entire_batch_failure=False)
    return process_partial_response(
        event=event, record_handler=record_handler, processor=processor, context=context
    )
