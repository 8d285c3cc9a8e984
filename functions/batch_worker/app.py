"""Chunk queue consumer: score one chunk per message, count it once, finish the job after the last.

Fails per record (powertools BatchProcessor + partial batch response): a failed chunk returns
after a short backoff, and after the queue's maxReceiveCount it lands in the DLQ, marked failed
on the job so that ``retry`` can resume it.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.batch.types import PartialItemFailureResponse
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.typing import LambdaContext

from mlambda.config import BatchWorkerSettings
from mlambda.observability import logger
from mlambda.schemas.batch import ChunkMessage
from mlambda.services.batch.jobs import ChunkWorker


@lru_cache(maxsize=1)
def worker() -> ChunkWorker:
    """Built on first use (and its model sessions cached) while the function is warm."""
    return ChunkWorker.from_settings(BatchWorkerSettings.load())


def record_handler(record: SQSRecord) -> str:
    """Score the chunk one message names; raises to fail only this record."""
    message = ChunkMessage.model_validate_json(record.body)
    attempt = int(record.attributes.approximate_receive_count or 1)
    return worker().process(message, attempt=attempt, receipt_handle=record.receipt_handle)


@logger.inject_lambda_context
def handler(event: dict[str, Any], context: LambdaContext) -> PartialItemFailureResponse:
    """One processor per invocation: invocations may run side by side in one process (locally)."""
    # A failed chunk is reported in batchItemFailures, not raised, even when it is the only record.
    processor = BatchProcessor(event_type=EventType.SQS, raise_on_entire_batch_failure=False)
    return process_partial_response(
        event=event, record_handler=record_handler, processor=processor, context=context
    )
