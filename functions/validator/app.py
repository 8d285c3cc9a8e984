"""Validation queue consumer: turn one PENDING_VALIDATION version READY or FAILED per message.

The heavy half of registration (loading the model, scoring the reference, the profile, smoke
cases) so that the registry API answers at once. Idempotent per version: a redelivered message
finds the version no longer pending and only tidies up. Fails per record (powertools
BatchProcessor + partial batch response) when S3 or DynamoDB fail, so SQS retries it; the
delivery after ``VALIDATION_MAX_ATTEMPTS`` (the queue's maxReceiveCount is one more) records the
version FAILED instead of trying again, so a model that crashes the validator every time (out of
memory, timeout) never stays pending.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.batch.types import PartialItemFailureResponse
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic import BaseModel, Field

from mlambda.config import ValidatorSettings
from mlambda.observability import logger
from mlambda.schemas.registry import ModelName
from mlambda.services.registry.validation import VersionValidator


class ValidationMessage(BaseModel):
    """What the registry API queues for each new version."""

    model: ModelName
    version: int = Field(ge=1)


@lru_cache(maxsize=1)
def settings() -> ValidatorSettings:
    """Read once per instance."""
    return ValidatorSettings.load()


@lru_cache(maxsize=1)
def validator() -> VersionValidator:
    """Built on first use, reused while the function is warm."""
    return VersionValidator.from_settings(settings())


def record_handler(record: SQSRecord) -> str:
    """Validate the version one message names; raises to fail (and retry) only this record."""
    message = ValidationMessage.model_validate_json(record.body)
    attempt = int(record.attributes.approximate_receive_count or 1)
    if attempt > settings().max_attempts:
        outcome = validator().give_up(message.model, message.version, attempts=attempt)
    else:
        outcome = validator().validate(message.model, message.version, attempt=attempt)
    status = outcome.status if outcome is not None else "GONE"
    logger.info(
        "version validated",
        extra={"model": message.model, "version": message.version, "status": status, "attempt": attempt},
    )
    return status


@logger.inject_lambda_context
def handler(event: dict[str, Any], context: LambdaContext) -> PartialItemFailureResponse:
    """One processor per invocation: invocations may run side by side in one process (locally)."""
    processor = BatchProcessor(event_type=EventType.SQS, raise_on_entire_batch_failure=False)
    return process_partial_response(
        event=event, record_handler=record_handler, processor=processor, context=context
    )
