"""Queues (SQS), notifications (SNS) and domain events (EventBridge)."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from mlambda.adapters.aws import AwsResource, aws_errors
from mlambda.config import FunctionSettings
from mlambda.errors import UpstreamError

SQS_BATCH_LIMIT = 10
SQS_BATCH_BYTES = 1024 * 1024  # SendMessageBatch refuses more than 1 MiB of bodies in one call
EVENTS_BATCH_LIMIT = 10


class Queue(AwsResource):
    """One SQS queue, addressed by URL."""

    service = "sqs"

    def __init__(self, url: str, settings: FunctionSettings, sqs_client: Any = None) -> None:
        super().__init__(settings, sqs_client)
        self.url = url

    def send(self, body: str, *, attributes: Mapping[str, str] | None = None, delay_seconds: int = 0) -> str:
        """Send one message; returns its id."""
        kwargs: dict[str, Any] = {"QueueUrl": self.url, "MessageBody": body, "DelaySeconds": delay_seconds}
        if attributes:
            kwargs["MessageAttributes"] = {
                k: {"DataType": "String", "StringValue": v} for k, v in attributes.items()
            }
        with aws_errors(f"queue {self.url}"):
            return str(self.client.send_message(**kwargs)["MessageId"])

    def send_batch(self, bodies: Sequence[str]) -> None:
        """Send every body, at most 10 and 1 MiB a call; UpstreamError naming what SQS refused (nothing dropped)."""
        for chunk in _batches(bodies):
            entries = [{"Id": str(i), "MessageBody": body} for i, body in enumerate(chunk)]
            with aws_errors(f"queue {self.url}"):
                response = self.client.send_message_batch(QueueUrl=self.url, Entries=entries)
            failed = response.get("Failed") or []
            if failed:
                raise UpstreamError(
                    f"queue {self.url}: {len(failed)} of {len(entries)} messages refused",
                    details=[{"id": f.get("Id"), "code": f.get("Code")} for f in failed],
                )


def _batches(bodies: Sequence[str]) -> list[list[str]]:
    """``bodies`` in order, in calls SendMessageBatch accepts (a count and a byte cap)."""
    batches: list[list[str]] = []
    current: list[str] = []
    size = 0
    for body in bodies:
        length = len(body.encode())
        if current and (len(current) == SQS_BATCH_LIMIT or size + length > SQS_BATCH_BYTES):
            batches.append(current)
            current, size = [], 0
        current.append(body)
        size += length
    if current:
        batches.append(current)
    return batches


class Topic(AwsResource):
    """One SNS topic, addressed by ARN."""

    service = "sns"

    def __init__(self, arn: str, settings: FunctionSettings, sns_client: Any = None) -> None:
        super().__init__(settings, sns_client)
        self.arn = arn

    def publish(self, subject: str, message: Mapping[str, Any]) -> str:
        """Publish ``message`` as JSON; returns the message id."""
        with aws_errors(f"topic {self.arn}"):
            response = self.client.publish(
                TopicArn=self.arn, Subject=subject[:100], Message=json.dumps(message, default=str)
            )
        return str(response["MessageId"])


class EventBus(AwsResource):
    """Domain events on an EventBridge bus (the default bus unless named)."""

    service = "events"

    def __init__(
        self,
        settings: FunctionSettings,
        *,
        bus_name: str = "default",
        source: str = "mlambda",
        events_client: Any = None,
    ) -> None:
        super().__init__(settings, events_client)
        self.bus_name = bus_name
        self.source = source

    def emit(self, detail_type: str, details: Sequence[Mapping[str, Any]]) -> None:
        """Put one event per detail, 10 a call; raises UpstreamError when any entry is refused."""
        for start in range(0, len(details), EVENTS_BATCH_LIMIT):
            entries = [
                {
                    "Source": self.source,
                    "DetailType": detail_type,
                    "Detail": json.dumps(detail, default=str),
                    "EventBusName": self.bus_name,
                }
                for detail in details[start : start + EVENTS_BATCH_LIMIT]
            ]
            with aws_errors(f"event bus {self.bus_name}"):
                response = self.client.put_events(Entries=entries)
            if response.get("FailedEntryCount"):
                raise UpstreamError(
                    f"event bus {self.bus_name}: {response['FailedEntryCount']} events refused",
                    details=[e for e in response.get("Entries", []) if e.get("ErrorCode")],
                )
