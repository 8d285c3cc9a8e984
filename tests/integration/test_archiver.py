"""The archiver on moto: events accepted by ingest (through the real queue) and predict's prediction
log (as its log subscription delivers it), into Parquet that monitoring and the point-in-time helper
read back."""

from __future__ import annotations

import io
import random
from collections import Counter
from collections.abc import Sequence
from datetime import timedelta
from typing import Any

import boto3
import orjson
import pyarrow.parquet as pq
import pytest
from pytest import MonkeyPatch

from functions.archiver import app as archiver_app
from mlambda.adapters.archive import ArchiveFrames, ParquetArchive
from mlambda.adapters.dynamodb import DynamoTable
from mlambda.adapters.monitoring_store import S3ArchiveReader
from mlambda.adapters.s3 import ObjectStore
from mlambda.adapters.tracking import DynamoPurgeLog
from mlambda.config import ArchiverSettings, function_environment
from mlambda.errors import UpstreamError
from mlambda.services.inference.prediction_log import LoggedRequest, PredictionLog, Scored
from mlambda.services.ingestion.archiving import ArchivingService
from mlambda.services.ingestion.point_in_time import training_frame_from_archive
from mlambda.services.monitoring.service import join_labels
from mlambda_local.cloud.functions import LambdaContext
from mlambda_local.cloud.log_subscription import awslogs_event
from mlambda_local.cloud.sqs import sqs_record
from tests.integration.conftest import Stack
from tests.integration.test_ingest_api import NOW, api, click, event


class FlakyBucket(ParquetArchive):
    """The data bucket, refusing a share of the puts (seeded)."""

    def __init__(self, bucket: ObjectStore, rng: random.Random, share: float) -> None:
        super().__init__(bucket)
        self.rng = rng
        self.share = share
        self.refused = 0

    def put_rows(self, key: str, rows: Sequence[Any]) -> None:
        if self.rng.random() < self.share:
            self.refused += 1
            raise UpstreamError(f"injected failure writing {key}")
        super().put_rows(key, rows)


@pytest.fixture
def settings(stack: Stack) -> ArchiverSettings:
    return ArchiverSettings.load(stack.env("ArchiverFunction"))


def receive_all(stack: Stack) -> list[dict[str, Any]]:
    """Every message waiting in the archive queue (received, so invisible for a while)."""
    sqs = boto3.client("sqs")
    messages: list[dict[str, Any]] = []
    while True:
        got = sqs.receive_message(
            QueueUrl=stack.outputs["ArchiveQueueUrl"], MaxNumberOfMessages=10, AttributeNames=["All"]
        ).get("Messages", [])
        if not got:
            return messages
        messages.extend(got)


def deliver(
    stack: Stack, messages: list[dict[str, Any]], service: ArchivingService | None = None
) -> set[str]:
    """Invoke the archiver as the SQS event source does (on ``service`` when given); the ids it failed."""
    arn = "arn:aws:sqs:us-east-1:123456789012:archive"
    event = {"Records": [sqs_record(m, arn, "us-east-1") for m in messages]}
    if service is None:
        result = stack.invoke("ArchiverFunction", event)
    else:
        with function_environment(stack.env("ArchiverFunction")), MonkeyPatch.context() as patch:
            patch.setattr(archiver_app, "service", lambda: service)
            result = archiver_app.handler(event, LambdaContext("archiver", "arn", 1024, 60))
    return {failure["itemIdentifier"] for failure in result["batchItemFailures"]}


def parquet_ids(settings: ArchiverSettings, prefix: str = "") -> list[str]:
    bucket = ObjectStore(settings.data_bucket, settings)
    return [
        str(i)
        for key in bucket.list_keys(prefix)
        for i in pq.read_table(io.BytesIO(bucket.get(key))).column("id").to_pylist()
    ]


def prediction_log_event(*requests: LoggedRequest) -> dict[str, Any]:
    """What the log subscription delivers for these requests: predict's records as CloudWatch Logs events."""
    lines: list[str] = []
    for request in requests:
        PredictionLog(lambda text: lines.extend(text.splitlines())).publish(request)
    return awslogs_event(
        owner="123456789012",
        log_group="/aws/lambda/predict",
        log_stream="2026/01/01/[$LATEST]abc",
        filter_name="prediction-log-to-archiver",
        events=[{"id": f"{i:056d}", "timestamp": 0, "message": line} for i, line in enumerate(lines)],
    )


def served(request_id: str, rows: int, entity_id: str | None = "u1") -> LoggedRequest:
    answers = [{"label": i % 2, "probabilities": {"0": 0.5, "1": 0.5}} for i in range(rows)]
    return LoggedRequest(
        request_id=request_id,
        model="churn",
        timestamp=NOW.isoformat(),
        entity_id=entity_id,
        positions=list(range(rows)),
        inputs=[{"f0": float(i)} for i in range(rows)],
        served=Scored(1, "v1", 1.0, answers),
    )


def test_labels_and_predictions_archived_are_what_monitoring_reads(
    stack: Stack, settings: ArchiverSettings
) -> None:
    # Given two served rows logged by predict, and a label for one of them sent as an event
    api(stack, "POST", "/events", {"events": [event("lab", "label", request_id="req-1", row=1, value=1)]})
    # When the archiver gets predict's log records and the queue's messages
    stack.invoke("ArchiverFunction", prediction_log_event(served("req-1", 2)))
    assert deliver(stack, receive_all(stack)) == set()
    # Then monitoring's reader finds both, and joins the label to row 1
    reader = S3ArchiveReader(ObjectStore(settings.data_bucket, settings))
    window = (NOW - timedelta(hours=1), NOW + timedelta(hours=1))
    predictions = reader.predictions("churn", *window).columns
    labels = reader.labels(*window).columns
    assert sorted(predictions["features.f0"]) == [0.0, 1.0]
    joined = join_labels(predictions, labels)
    assert joined.count == 1
    assert list(joined.truth[predictions["row"] == 1]) == [1]


def test_a_log_delivery_lands_once_however_often_it_is_retried_and_records_what_was_served(
    stack: Stack, settings: ArchiverSettings
) -> None:
    # Given one delivery of three requests (one without an entity)
    delivery = prediction_log_event(served("a", 2), served("b", 1, entity_id="u2"), served("c", 3, None))
    # When it is invoked three times (the first try, Lambda's two retries)
    results = [stack.invoke("ArchiverFunction", delivery) for _ in range(3)]
    # Then
    assert results[0] == {"events": 3, "rows": 6}
    assert sorted(parquet_ids(settings, "type=prediction/")) == ["a:0", "a:1", "b:0", "c:0", "c:1", "c:2"]
    tracking = DynamoTable(settings.tracking_table, settings)
    items = list(tracking.query_all("pk = :pk", {":pk": "entity#u1"}))
    assert [(i["kind"], i["request_id"], i["rows"]) for i in items] == [("prediction", "a", 2)]
    assert [p["label"] for p in items[0]["predictions"]] == [0, 1]


def test_a_failed_log_delivery_redriven_from_the_dead_letter_queue_is_archived(
    stack: Stack, settings: ArchiverSettings
) -> None:
    # Given Lambda's destination record of a delivery that failed three times, now in the archive queue
    record = {
        "version": "1.0",
        "requestContext": {"condition": "RetriesExhausted", "approximateInvokeCount": 3},
        "requestPayload": prediction_log_event(served("late", 2)),
        "responsePayload": {"errorType": "UpstreamError", "errorMessage": "bucket unavailable"},
    }
    boto3.client("sqs").send_message(
        QueueUrl=stack.outputs["ArchiveQueueUrl"], MessageBody=orjson.dumps(record).decode()
    )
    # When
    assert deliver(stack, receive_all(stack)) == set()
    # Then
    assert sorted(parquet_ids(settings, "type=prediction/")) == ["late:0", "late:1"]


def test_every_accepted_event_is_in_exactly_one_row_despite_archiver_failures(
    stack: Stack, settings: ArchiverSettings
) -> None:
    # Given 300 accepted events in 15 requests, of three types over two hours
    rng = random.Random(3)
    accepted: list[str] = []
    for batch in range(15):
        events = []
        for i in range(20):
            when = NOW - timedelta(minutes=rng.choice([0, 90]))
            kind = rng.choice(["click", "feature", "label"])
            event_id = f"b{batch}-{i}"
            if kind == "click":
                events.append(click(event_id, entity=f"u{i % 4}", at=when))
            elif kind == "feature":
                events.append(
                    event(event_id, "feature_update", f"u{i % 4}", when, group="g", values={"x": i})
                )
            else:
                events.append(event(event_id, "label", f"u{i % 4}", when, request_id=f"r{i}", value=1))
        body = api(stack, "POST", "/events", {"events": events})[1]
        accepted += [r["event_id"] for r in body["results"] if r["status"] == "accepted"]
    flaky = FlakyBucket(ObjectStore(settings.data_bucket, settings), rng, share=0.3)
    service = ArchivingService(flaky, DynamoPurgeLog(DynamoTable(settings.tracking_table, settings)))
    pending = receive_all(stack)
    rounds = 0
    # When the archiver gets batches of 4 messages, failed ones redelivered (reshuffled) until none fails
    while pending and rounds < 200:
        rounds += 1
        rng.shuffle(pending)
        batch, pending = pending[:4], pending[4:]
        failed = deliver(stack, batch, service)
        pending += [m for m in batch if m["MessageId"] in failed]
    # Then
    ids = parquet_ids(settings)
    assert len(accepted) == 300
    assert flaky.refused > 0
    assert not pending
    assert Counter(ids) == Counter(accepted)


def test_rows_of_a_purged_entity_still_queued_are_not_archived(
    stack: Stack, settings: ArchiverSettings
) -> None:
    # Given events of two entities accepted, then u1 purged before the archiver ran
    api(
        stack, "POST", "/events", {"events": [click("a", "u1", NOW - timedelta(minutes=1)), click("b", "u2")]}
    )
    api(stack, "DELETE", "/entities/u1", scopes="admin")
    # When
    assert deliver(stack, receive_all(stack)) == set()
    # Then
    assert parquet_ids(settings) == ["b"]


def test_a_training_frame_from_the_archive_has_no_leakage(stack: Stack, settings: ArchiverSettings) -> None:
    # Given a feature that changes after the label
    api(
        stack,
        "POST",
        "/events",
        {
            "events": [
                event(
                    "v1",
                    "feature_update",
                    at=NOW - timedelta(minutes=30),
                    group="risk",
                    values={"score": 1.0},
                ),
                event("lab", "label", at=NOW - timedelta(minutes=20), request_id="r", value=1),
                event(
                    "v2",
                    "feature_update",
                    at=NOW - timedelta(minutes=10),
                    group="risk",
                    values={"score": 5.0},
                ),
            ]
        },
    )
    assert deliver(stack, receive_all(stack)) == set()
    # When
    frames = ArchiveFrames(ObjectStore(settings.data_bucket, settings))
    frame = training_frame_from_archive(frames, NOW - timedelta(hours=1), NOW + timedelta(minutes=1))
    # Then
    assert frame[["request_id", "label", "risk.score"]].to_dict("records") == [
        {"request_id": "r", "label": 1, "risk.score": 1.0}
    ]
