"""Monitoring: drifted traffic through the predict API, the archive flushed, the schedule fired on
demand, the alert read off the SNS topic, and the HTML report written to a file."""

from __future__ import annotations

import io
import json
import time
from typing import Any

from mlambda_local.demo import DemoContext, DemoStep, say

DRIFTED_ROWS = 1200
BATCH = 50
SHIFTED_FEATURES = 5
SCALE = 1.8
FLUSH_TIMEOUT_S = 90.0


def _aws(ctx: DemoContext, service: str) -> Any:
    import boto3

    return boto3.client(
        service, endpoint_url=ctx.cloud.endpoint_url, region_name=getattr(ctx.cloud, "region", None)
    )


def _archived_rows(ctx: DemoContext, model: str) -> int:
    """Prediction rows of ``model`` in the data bucket, from the Parquet footers."""
    import pyarrow.parquet as pq

    s3 = _aws(ctx, "s3")
    bucket = ctx.cloud.outputs["DataBucketName"]
    rows = 0
    for page in s3.get_paginator("list_objects_v2").paginate(
        Bucket=bucket, Prefix=f"type=prediction/model={model}/"
    ):
        for entry in page.get("Contents", []):
            body = s3.get_object(Bucket=bucket, Key=entry["Key"])["Body"].read()
            rows += pq.ParquetFile(io.BytesIO(body)).metadata.num_rows
    return rows


def serve_drifted_traffic(ctx: DemoContext) -> None:
    """Send rows whose first features are scaled up: the kind of shift a broken upstream produces."""
    import numpy as np

    model = ctx.notes["model"]
    dataset = ctx.notes["dataset"]
    client = ctx.client(ctx.notes["app_key"])
    rng = np.random.default_rng(7)
    frame = dataset["X"].sample(DRIFTED_ROWS, replace=True, random_state=7).reset_index(drop=True)
    shifted = list(dataset["features"][:SHIFTED_FEATURES])
    frame[shifted] = frame[shifted] * SCALE * rng.uniform(0.95, 1.05, (len(frame), len(shifted)))
    before = _archived_rows(ctx, model)
    for start in range(0, DRIFTED_ROWS, BATCH):
        rows = frame.iloc[start : start + BATCH]
        instances = [dict(zip(dataset["features"], map(float, row), strict=True)) for row in rows.to_numpy()]
        client.post(f"/models/{model}/predict", {"entity_id": f"drift-{start}", "instances": instances})
    say(f"  {DRIFTED_ROWS} rows with {', '.join(shifted)} scaled x{SCALE} -> POST /models/{model}/predict")
    deadline = time.monotonic() + FLUSH_TIMEOUT_S
    archived = before
    while time.monotonic() < deadline:
        archived = _archived_rows(ctx, model)
        if archived >= before + DRIFTED_ROWS:
            break
        time.sleep(1.0)
    if archived < before + DRIFTED_ROWS:
        raise AssertionError(
            f"the archiver flushed {archived - before} of {DRIFTED_ROWS} prediction rows within {FLUSH_TIMEOUT_S:.0f} s"
        )
    say(f"  archiver flushed: {archived} prediction rows of {model} as Parquet in the data bucket")


def run_monitoring(ctx: DemoContext) -> None:
    """Fire the schedule now, then show the alert, the history and the report."""
    model = ctx.notes["model"]
    sqs = _aws(ctx, "sqs")
    inbox = sqs.create_queue(QueueName="demo-alerts-inbox")["QueueUrl"]
    inbox_arn = sqs.get_queue_attributes(QueueUrl=inbox, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    _aws(ctx, "sns").subscribe(
        TopicArn=ctx.cloud.outputs["AlertsTopicArn"], Protocol="sqs", Endpoint=inbox_arn
    )
    say("  (moto cannot e-mail: an SQS queue subscribed to the alerts topic stands in for the inbox)")

    started = time.perf_counter()
    results = ctx.cloud.trigger("MonitorFunction")
    say(f"  schedule MonitorFunction fired on demand ({time.perf_counter() - started:.1f} s)")
    summaries = [s for result in results for s in (result or {}).get("results", [])]
    for summary in summaries:
        say(f"  {summary['model']}: {summary['status']} - {summary['reason'][:160]}")
    mine = next(s for s in summaries if s["model"] == model)
    if mine["status"] != "drift":
        raise AssertionError(f"expected drift for {model}, got {mine['status']}: {mine['reason']}")

    messages = sqs.receive_message(QueueUrl=inbox, MaxNumberOfMessages=10, WaitTimeSeconds=2).get(
        "Messages", []
    )
    for message in messages:
        envelope = json.loads(message["Body"])
        alert = json.loads(envelope["Message"])
        say(f'  SNS alert "{envelope.get("Subject", "")}"')
        for item in alert["alerts"][:8]:
            say(f"    - {item['check']:18} {item['feature']:28} {item['message'][:80]}")
    if not messages:
        raise AssertionError("no alert reached the alerts topic")

    again = ctx.cloud.trigger("MonitorFunction")
    resent = sum(
        s.get("alerts_sent", 0) for r in again for s in (r or {}).get("results", []) if s["model"] == model
    )
    say(f"  fired again: still drifting, {resent} alerts sent (cooldown: one alert per check and feature)")

    view = ctx.admin.get(f"/models/{model}/monitoring", params={"limit": 5})
    say(f"  GET /models/{model}/monitoring -> {len(view['history'])} runs; latest:")
    latest = view["latest"]
    drift = latest.get("feature_drift") or {}
    say(
        f"    feature drift {drift.get('share', 0):.0%} of {len(drift.get('columns', []))} features "
        f"(dataset drift: {drift.get('dataset_drift')}), "
        f"prediction drift {bool((latest.get('prediction_drift') or {}).get('drifted'))}, "
        f"A/B: {(latest.get('ab') or {}).get('reason', 'n/a')}"
    )
    budget = latest.get("budget") or {}
    say(
        f"    alarm budget: {budget.get('tests', 0)} p-values in one Benjamini-Hochberg at q={budget.get('q')}, "
        f"{budget.get('alarms', 0)} alarms (significant and beyond their effect floor)"
    )
    import requests

    target = ctx.admin.target
    page = requests.get(
        f"{target.api_url}/models/{model}/monitoring",
        params={"format": "html"},
        headers={"x-api-key": target.api_key or ""},
        timeout=60,
    )
    page.raise_for_status()
    path = ctx.workdir / f"{model}-monitoring.html"
    path.write_text(page.text, encoding="utf-8")
    say(f"  HTML report ({len(page.text) // 1024} KB, inline SVG plots): {path}")
    say(f"  also: mlambda monitor report {model} --open")


STEPS = [
    DemoStep(500, "Monitor: drifted traffic served and archived", serve_drifted_traffic),
    DemoStep(510, "Monitor: drift, data quality, A/B readout, alert and report", run_monitoring),
]
