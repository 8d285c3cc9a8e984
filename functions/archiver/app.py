"""Archive queue consumer: each batch of envelopes becomes one Parquet object per partition.

The whole batch is written at once (one object per ``type=/date=/hour=`` partition, not one per
message); powertools' BatchProcessor then reports, per record, the messages the service could
not archive, so only those come back (ReportBatchItemFailures).
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.batch.types import PartialItemFailureResponse
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.typing import LambdaContext

from mlambda.config import ArchiverSettings
from mlambda.errors import UpstreamError
from mlambda.observability import logger, metrics
from mlambda.services.ingestion.archiving import ArchiveMessage, ArchivingService


@lru_cache(maxsize=1)
def service() -> ArchivingService:
    """Built on first use, reused while the function is warm."""
    return ArchivingService.from_settings(ArchiverSettings.load())


@logger.inject_lambda_context
def handler(event: dict[str, Any], context: LambdaContext) -> PartialItemFailureResponse:
    """Archive the batch, then fail exactly the records the service names."""
    try:
        return _archive(event, context)
    finally:
        if metrics.metric_set:
            metrics.namespace = metrics.namespace or "mlambda"
            metrics.flush_metrics()


def _archive(event: dict[str, Any], context: LambdaContext) -> PartialItemFailureResponse:
    records = event.get("Records") or []
    outcome = service().archive(
        [ArchiveMessage(message_id=r["messageId"], body=r.get("body") or "") for r in records]
    )
    logger.info(
        "archived batch",
        extra={
            "messages": len(records),
            "rows": outcome.rows,
            "objects": len(outcome.objects),
            "failed": len(outcome.failed),
            "purged": outcome.purged,
        },
    )

    def record_handler(record: SQSRecord) -> None:
        if record.message_id in outcome.failed:
            raise UpstreamError(f"message {record.message_id} not archived; it will be retried")

    processor = BatchProcessor(event_type=EventType.SQS, raise_on_entire_batch_failure=False)
    return process_partial_response(
        event=event, record_handler=record_handler, processor=processor, context=context
    )
