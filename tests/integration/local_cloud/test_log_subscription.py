"""Log subscriptions: a function's log lines, filtered, delivered to another function durably and in stable batches."""

from __future__ import annotations

import base64
import gzip
import json
from collections.abc import Callable
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import pytest

from mlambda_local.cloud.errors import FunctionInvocationError
from mlambda_local.cloud.functions import FunctionSpec
from mlambda_local.cloud.log_subscription import FilterPattern, SubscriptionDelivery, SubscriptionFilter
from mlambda_local.cloud.logs import LogGroup

RECORD = '{"mlambda_log": "prediction", "n": %d}'


class Destination:
    """A Function that records the events it is invoked with; ``behaviour`` may fail or crash."""

    def __init__(self, behaviour: Callable[[int], None] | None = None) -> None:
        self.events: list[dict[str, Any]] = []
        self.behaviour = behaviour
        self.spec = FunctionSpec(
            logical_id="ArchiverFunction",
            name="stack-Archiver",
            arn="arn:aws:lambda:us-east-1:123456789012:function:stack-Archiver",
            code_dir=Path(),
            handler="app.handler",
            environment={},
            timeout=5,
            memory_mb=128,
            reserved_concurrency=None,
        )
        self.group = LogGroup(Path("/tmp"), "unused")

    def invoke(self, event: Any) -> Any:
        self.events.append(event)
        if self.behaviour is not None:
            self.behaviour(len(self.events))
        return None

    def submit(self, event: Any) -> Future[Any]:
        raise NotImplementedError

    def status(self) -> dict[str, Any]:
        return {}

    def close(self) -> None:
        return None

    def messages(self) -> list[dict[str, Any]]:
        return [json.loads(gzip.decompress(base64.b64decode(e["awslogs"]["data"]))) for e in self.events]


class RunnerCrashedError(BaseException):
    """Stands for the runner dying mid-delivery (not an invocation error: nothing catches it)."""


def delivery(
    tmp_path: Path,
    destination: Destination,
    *,
    pattern: str = '{ $.mlambda_log = "prediction" }',
    sent: list[tuple[str, str]] | None = None,
) -> tuple[SubscriptionDelivery, LogGroup]:
    group = LogGroup(tmp_path, "stack-Predict")
    subscription = SubscriptionFilter(
        logical_id="PredictLogSubscription",
        name="prediction-log-to-archiver",
        group=group,
        pattern=FilterPattern.parse(pattern),
        destination=destination,
        on_failure_queue_url="https://queue/dlq" if sent is not None else None,
    )
    send = (lambda url, body: sent.append((url, body))) if sent is not None else None
    return (
        SubscriptionDelivery(
            subscription,
            tmp_path / "state",
            account_id="123456789012",
            send_to_queue=send,
            sleep=lambda _s: None,
        ),
        group,
    )


@pytest.mark.parametrize(
    ("pattern", "line", "matches"),
    [
        ('{ $.mlambda_log = "prediction" }', RECORD % 1, True),
        ('{ $.mlambda_log = "prediction" }', '{"mlambda_log": "other"}', False),
        ('{ $.mlambda_log = "prediction" }', "START RequestId: x Version: $LATEST", False),
        ("{ $.a.b = 2 && $.c EXISTS }", '{"a": {"b": 2}, "c": null}', True),
        ("{ $.a.b != 2 }", '{"a": {"b": 3}}', True),
        ('{ $.kind = "pred*" }', '{"kind": "prediction"}', True),
        ('ERROR "disk full"', "ERROR: the disk full of logs", True),
        ('ERROR "disk full"', "ERROR: nothing", False),
        ("", "anything", True),
    ],
)
def test_filter_patterns_match_as_cloudwatch_does(pattern: str, line: str, matches: bool) -> None:
    assert FilterPattern.parse(pattern).matches(line) is matches


@pytest.mark.parametrize("pattern", ["[ip, user]", "?ERROR ?WARN", "%regex%", "{ $.a > 1 }"])
def test_unsupported_patterns_are_refused(pattern: str) -> None:
    with pytest.raises(ValueError, match=r"not supported|unsupported"):
        FilterPattern.parse(pattern)


def test_matching_lines_are_delivered_as_cloudwatch_logs_events(tmp_path: Path) -> None:
    # Given two streams with records among other lines, and a line still being written
    destination = Destination()
    subscription, group = delivery(tmp_path, destination)
    first, second = group.new_stream(), group.new_stream()
    first.write(f"START RequestId: a Version: $LATEST\n{RECORD % 1}\n{RECORD % 2}\nREPORT RequestId: a\n")
    second.write(f"{RECORD % 3}\n")
    second.write(RECORD % 4)  # no newline yet
    # When
    sent = subscription.run_once()
    # Then: one invocation per stream, the records only, in CloudWatch's shape
    assert sent == 3
    messages = destination.messages()
    assert {m["logStream"] for m in messages} == {first.name, second.name}
    assert all(m["messageType"] == "DATA_MESSAGE" and m["logGroup"] == group.name for m in messages)
    assert all(m["subscriptionFilters"] == ["prediction-log-to-archiver"] for m in messages)
    delivered = sorted(json.loads(e["message"])["n"] for m in messages for e in m["logEvents"])
    assert delivered == [1, 2, 3]
    assert all(len(e["id"]) == 56 for m in messages for e in m["logEvents"])
    # When the line is finished, it goes too, and nothing is sent twice
    second.write("\n")
    assert subscription.run_once() == 1
    assert subscription.run_once() == 0


def test_a_batch_interrupted_by_a_crash_is_delivered_again_identically(tmp_path: Path) -> None:
    # Given a delivery that dies after its destination ran and before it recorded the progress
    def crash(attempt: int) -> None:
        if attempt == 1:
            raise RunnerCrashedError

    destination = Destination(crash)
    subscription, group = delivery(tmp_path, destination)
    stream = group.new_stream()
    stream.write("".join(f"{RECORD % i}\n" for i in range(5)))
    with pytest.raises(RunnerCrashedError):
        subscription.run_once()
    stream.write(f"{RECORD % 5}\n")  # written while the runner was down
    # When the runner comes back on the same state
    restarted, _ = delivery(tmp_path, destination)
    restarted.run_once()
    # Then: the interrupted batch first, byte for byte the same events (ids included), then the rest
    first, again, rest = destination.messages()
    assert first["logEvents"] == again["logEvents"]
    assert [json.loads(e["message"])["n"] for e in rest["logEvents"]] == [5]
    assert restarted.run_once() == 0


def test_a_batch_failing_every_retry_goes_to_the_on_failure_queue_and_delivery_moves_on(
    tmp_path: Path,
) -> None:
    # Given a destination that fails its first three invocations
    def fail_three(attempt: int) -> None:
        if attempt <= 3:
            raise FunctionInvocationError(
                "ArchiverFunction", "boom", error_type="UpstreamError", error_message="boom"
            )

    destination, sent = Destination(fail_three), []
    subscription, group = delivery(tmp_path, destination, sent=sent)
    stream = group.new_stream()
    stream.write(f"{RECORD % 1}\n")
    # When
    subscription.run_once()
    stream.write(f"{RECORD % 2}\n")
    subscription.run_once()
    # Then: one try and two retries, then Lambda's destination record in the queue
    assert len(destination.events) == 4
    ((url, body),) = sent
    record = json.loads(body)
    assert url == "https://queue/dlq"
    assert record["requestContext"]["condition"] == "RetriesExhausted"
    assert record["requestContext"]["approximateInvokeCount"] == 3
    assert record["requestPayload"] == destination.events[0]
    assert record["responsePayload"]["errorType"] == "UpstreamError"
    assert subscription.status()["failed_batches"] == 1


def test_lines_written_during_a_delivery_wait_for_the_next_poll_and_go_as_one_batch(tmp_path: Path) -> None:
    # Given a producer that keeps writing while each delivery runs (as predict does under load)
    stream_holder: list[Any] = []

    def producer_keeps_writing(attempt: int) -> None:
        if attempt <= 3:
            stream_holder[0].write("".join(f"{RECORD % (attempt * 10 + i)}\n" for i in range(2)))

    destination = Destination(producer_keeps_writing)
    subscription, group = delivery(tmp_path, destination)
    stream = group.new_stream()
    stream_holder.append(stream)
    stream.write(f"{RECORD % 0}\n")
    # When the subscription polls once
    first = subscription.run_once()
    # Then: only what the stream held when the poll began; the lines of the delivery wait
    assert first == 1
    assert len(destination.events) == 1
    # When it polls again: what was written meanwhile is one invocation, not one per delivery
    assert subscription.run_once() == 2
    assert len(destination.events) == 2
    assert subscription.run_once() == 2
    assert subscription.run_once() == 2
    assert subscription.run_once() == 0
    delivered = [json.loads(e["message"])["n"] for m in destination.messages() for e in m["logEvents"]]
    assert delivered == [0, 10, 11, 20, 21, 30, 31]
