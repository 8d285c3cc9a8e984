"""The monitor function on moto: schedule event -> archive Parquet read, reports, summary, SNS alert; the API."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import boto3
import numpy as np
import pandas as pd
import pytest

from functions.monitor import app as monitor_app
from mlambda.adapters.dynamodb import DynamoTable
from mlambda.adapters.monitoring_store import DynamoMonitoringStore, S3ArchiveReader
from mlambda.adapters.registry import DynamoRegistryStore
from mlambda.adapters.s3 import ObjectStore
from mlambda.config import MonitorSettings
from tests.conftest import load_event
from tests.integration.conftest import Stack
from tests.registry_support import publish
from tests.unit.fakes_monitoring import NOW, features, labels_for, reference_profile_json, served, version

PARTITION = "date=2025-03-01/hour=11/"


def parquet(frame: pd.DataFrame) -> bytes:
    sink = io.BytesIO()
    frame.to_parquet(sink, index=False)
    return sink.getvalue()


@pytest.fixture
def world(stack: Stack) -> Iterator[dict[str, Any]]:
    """Model ``churn`` in production with its profile; a drifted hour of logs (one object corrupt) and labels."""
    monitor_app.service.cache_clear()
    settings = MonitorSettings.load(stack.env("MonitorFunction"))
    rng = np.random.default_rng(5)
    registry = DynamoRegistryStore(DynamoTable(settings.registry_table, settings))
    model_version = version("churn", metrics={"accuracy": 0.97})
    publish(registry, model_version)
    artifacts = ObjectStore(settings.artifacts_bucket, settings)
    assert model_version.reference_profile_key
    artifacts.put(model_version.reference_profile_key, reference_profile_json(rng))
    data = ObjectStore(settings.data_bucket, settings)
    rows = served(features(rng, 1500, shift=1.0))
    prefix = f"type=prediction/model=churn/{PARTITION}"
    data.put(f"{prefix}part-a.parquet", parquet(rows.iloc[:800]))
    data.put(f"{prefix}part-b.parquet", parquet(rows.iloc[800:]))
    data.put(f"{prefix}part-c.parquet", b"this is not parquet")
    data.put(f"type=label/{PARTITION}part-a.parquet", parquet(labels_for(rows, rng, accuracy=0.75)))
    sqs, sns = boto3.client("sqs"), boto3.client("sns")
    queue = sqs.create_queue(QueueName="alerts-inbox")["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    sns.subscribe(TopicArn=settings.alerts_topic_arn, Protocol="sqs", Endpoint=queue_arn)
    yield {"settings": settings, "artifacts": artifacts, "queue": queue, "data": data}
    monitor_app.service.cache_clear()


def schedule_event(**overrides: Any) -> dict[str, Any]:
    return load_event("monitor_schedule", **{"time": NOW.strftime("%Y-%m-%dT%H:%M:%SZ"), **overrides})


def alert_messages(queue: str) -> list[dict[str, Any]]:
    received = boto3.client("sqs").receive_message(QueueUrl=queue, MaxNumberOfMessages=10).get("Messages", [])
    return [json.loads(json.loads(m["Body"])["Message"]) for m in received]


def api_event(
    path: str, scopes: str = "registry:read", query: dict[str, str] | None = None
) -> dict[str, Any]:
    event = load_event("apigw_rest", path=path, resource="/models/{name}/monitoring", httpMethod="GET")
    event["pathParameters"] = {"name": path.split("/")[2]}
    event["queryStringParameters"] = query
    event["multiValueQueryStringParameters"] = {k: [v] for k, v in (query or {}).items()} or None
    event["requestContext"]["authorizer"].update({"scopes": scopes})
    return event


def test_scheduled_run_reads_the_archive_reports_and_alerts_once(stack: Stack, world: dict[str, Any]) -> None:
    # When the schedule fires
    result = stack.invoke("MonitorFunction", schedule_event())
    # Then churn is reported as drifting, with the corrupt object named and both reports written
    [summary] = result["results"]
    assert result["monitored"] == 1
    assert summary["status"] == "drift" and summary["rows"] == 1500
    report = json.loads(world["artifacts"].get(summary["report_key"]))
    assert report["corrupt_objects"] == [f"type=prediction/model=churn/{PARTITION}part-c.parquet"]
    assert {"f0", "f1"} <= set(report["feature_drift"]["drifted"])
    assert report["model_quality"]["labelled"] == 1500
    assert report["model_quality"]["degraded"] == ["accuracy"]
    assert world["artifacts"].get(summary["html_key"]).startswith(b"<!DOCTYPE html>")
    # And one alert reached the topic's subscribers
    [message] = alert_messages(world["queue"])
    assert message["model"] == "churn"
    assert ("drift", "f0") in {(a["check"], a["feature"]) for a in message["alerts"]}
    # When the schedule fires again an hour later, the same crossings stay silent
    later = schedule_event(time=(NOW + timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ"))
    assert stack.invoke("MonitorFunction", later)["results"][0]["alerts_sent"] == 0
    assert alert_messages(world["queue"]) == []


def test_the_api_serves_latest_and_history_and_the_html(stack: Stack, world: dict[str, Any]) -> None:
    stack.invoke("MonitorFunction", schedule_event())
    stack.invoke("MonitorFunction", schedule_event(model="churn", time="2025-03-01T13:00:00Z"))
    response = stack.invoke("MonitorFunction", api_event("/models/churn/monitoring", query={"limit": "5"}))
    assert response["statusCode"] == 200
    body = json.loads(response["body"])
    assert [h["at"] for h in body["history"]] == ["2025-03-01T13:00:00Z", "2025-03-01T12:00:00Z"]
    assert body["latest"]["status"] == "drift"
    page = stack.invoke("MonitorFunction", api_event("/models/churn/monitoring", query={"format": "html"}))
    assert page["statusCode"] == 200
    assert page["multiValueHeaders"]["Content-Type"][0].startswith("text/html")
    assert "<svg" in page["body"]


def test_the_api_needs_registry_read_and_404s_without_reports(stack: Stack, world: dict[str, Any]) -> None:
    forbidden = stack.invoke("MonitorFunction", api_event("/models/churn/monitoring", scopes="predict"))
    assert forbidden["statusCode"] == 403
    missing = stack.invoke("MonitorFunction", api_event("/models/churn/monitoring", query={"format": "html"}))
    assert missing["statusCode"] == 404 and json.loads(missing["body"])["code"] == "no_report"
    empty = json.loads(stack.invoke("MonitorFunction", api_event("/models/churn/monitoring"))["body"])
    assert empty == {"model": "churn", "latest": None, "history": []}


def test_reader_keeps_only_the_window_and_drops_duplicate_envelopes(
    stack: Stack, world: dict[str, Any]
) -> None:
    # Given the same envelope archived twice and one row outside the window
    rows = served(features(np.random.default_rng(1), 3), model="other")
    rows.loc[2, "timestamp"] = NOW - timedelta(days=3)
    prefix = f"type=prediction/model=other/{PARTITION}"
    world["data"].put(f"{prefix}part-1.parquet", parquet(rows))
    world["data"].put(f"{prefix}part-2.parquet", parquet(rows.iloc[:1]))
    # When the window is read
    window = S3ArchiveReader(world["data"]).predictions("other", NOW - timedelta(hours=24), NOW)
    # Then one row per envelope, inside the window
    assert window.objects == 2 and window.corrupt == []
    assert sorted(window.columns["id"]) == ["r0:0", "r1:0"]


def test_alert_claims_respect_the_cooldown_in_dynamodb(stack: Stack, world: dict[str, Any]) -> None:
    settings = world["settings"]
    store = DynamoMonitoringStore(DynamoTable(settings.registry_table, settings))
    day = timedelta(hours=24)
    assert store.claim_alert("churn", "drift", "f0", NOW, day)
    assert not store.claim_alert("churn", "drift", "f0", NOW + timedelta(hours=2), day)
    assert store.claim_alert("churn", "drift", "f1", NOW + timedelta(hours=2), day)
    store.release_alert("churn", "drift", "f0", NOW)
    assert store.claim_alert("churn", "drift", "f0", NOW + timedelta(hours=3), day)
    assert store.claim_alert("churn", "drift", "f0", NOW + timedelta(hours=28), day)
