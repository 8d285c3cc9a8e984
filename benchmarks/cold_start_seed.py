"""Put a platform's data where predict, batch_worker and monitor find work, and print their events.

Run by ``bench_cold_start.py`` once per tree it measures, with that tree's ``shared/``, ``infra/``
and root first on ``PYTHONPATH``: the data is written by the tree's own code and test helpers, so
each tree reads records in its own format. Reads ``{"environments", "runs", "rows"}`` as JSON on
stdin; prints ``{"PredictFunction": [event, ...], ...}``, one event per run, as its last line.

- predict: ``churn`` (the 20-feature classifier) behind ``production``; one instance to score.
- batch_worker: per run, its own job (``rows`` rows of CSV under ``input/churn/``) planned by the
  tree's fan-out; the event is the SQS delivery of the job's first chunk.
- monitor: ``drift`` in production with its reference profile and an hour of shifted predictions
  in the data bucket; the event is the schedule at the fakes' ``NOW``.
"""

from __future__ import annotations

import io
import json
import os
import sys
from datetime import timedelta
from typing import Any
from urllib.parse import quote_plus

import boto3
import numpy as np

from mlambda.adapters.dynamodb import DynamoTable
from mlambda.adapters.registry import DynamoRegistryStore
from mlambda.config import FunctionSettings
from mlambda_local.cloud.functions import LambdaContext
from mlambda_local.cloud.sqs import sqs_record
from tests.batch_support import register_model
from tests.conftest import load_event
from tests.registry_support import publish
from tests.unit.fakes_batch import FEATURES, csv_bytes
from tests.unit.fakes_monitoring import NOW, features, reference_profile_json, served, version


def predict_event() -> dict[str, Any]:
    event = load_event("predict_request", body=json.dumps({"instances": [dict.fromkeys(FEATURES, 0.25)]}))
    event["requestContext"]["authorizer"]["scopes"] = "predict"
    return event


def batch_worker_events(env: dict[str, dict[str, str]], runs: int, rows: int) -> list[dict[str, Any]]:
    """One planned job per run (the fan-out handler of this tree), and the delivery of its first chunk."""
    fanout_env = env["BatchFanoutFunction"]
    os.environ.update(fanout_env)
    from functions.batch_fanout.app import handler as fanout

    endpoint = fanout_env["AWS_ENDPOINT_URL"]
    s3 = boto3.client("s3", endpoint_url=endpoint)
    sqs = boto3.client("sqs", endpoint_url=endpoint)
    bucket, queue = fanout_env["BATCH_BUCKET"], fanout_env["CHUNK_QUEUE_URL"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    events = []
    for run in range(runs):
        key = f"input/churn/cold-start-{run}.csv"
        body = csv_bytes(rows, seed=run)
        s3.put_object(Bucket=bucket, Key=key, Body=body)
        etag = s3.head_object(Bucket=bucket, Key=key)["ETag"].strip('"')
        notification = load_event("batch_s3_object_created")
        record = notification["Records"][0]
        record["s3"]["bucket"]["name"] = bucket
        record["s3"]["object"].update(key=quote_plus(key, safe="/"), size=len(body), eTag=etag)
        fanout(
            notification, LambdaContext("cold-start-fanout", "arn:aws:lambda:::function:fanout", 1024, 120)
        )
        messages = sqs.receive_message(
            QueueUrl=queue, MaxNumberOfMessages=10, AttributeNames=["All"], MessageAttributeNames=["All"]
        ).get("Messages", [])
        if not messages:
            raise SystemExit(f"the fan-out planned no chunk for {key}")
        # in flight from here on, so the next job's receive gets the next job's chunk
        events.append({"Records": [sqs_record(messages[0], queue_arn, "us-east-1")]})
    return events


def monitor_event(env: dict[str, dict[str, str]], rows: int) -> dict[str, Any]:
    """``drift`` in production with its profile and an hour of shifted predictions."""
    monitor_env = env["MonitorFunction"]
    endpoint = monitor_env["AWS_ENDPOINT_URL"]
    settings = FunctionSettings.model_validate({"AWS_ENDPOINT_URL": endpoint, "AWS_REGION": "us-east-1"})
    registry = DynamoRegistryStore(DynamoTable(monitor_env["REGISTRY_TABLE"], settings))
    model_version = version("drift", metrics={"accuracy": 0.97})
    publish(registry, model_version)
    rng = np.random.default_rng(5)
    s3 = boto3.client("s3", endpoint_url=endpoint)
    assert model_version.reference_profile_key
    s3.put_object(
        Bucket=monitor_env["ARTIFACTS_BUCKET"],
        Key=model_version.reference_profile_key,
        Body=reference_profile_json(rng),
    )
    sink = io.BytesIO()
    served(features(rng, rows, shift=1.0), model="drift").to_parquet(sink, index=False)
    partition = (NOW - timedelta(hours=1)).strftime("date=%Y-%m-%d/hour=%H")
    s3.put_object(
        Bucket=monitor_env["DATA_BUCKET"],
        Key=f"type=prediction/model=drift/{partition}/part-0.parquet",
        Body=sink.getvalue(),
    )
    return load_event("monitor_schedule", time=NOW.strftime("%Y-%m-%dT%H:%M:%SZ"))


def main() -> int:
    request = json.load(sys.stdin)
    env: dict[str, dict[str, str]] = request["environments"]
    runs, rows = int(request["runs"]), int(request["rows"])
    predict_env = env["PredictFunction"]
    register_model(
        boto3.client("s3", endpoint_url=predict_env["AWS_ENDPOINT_URL"]),
        predict_env["REGISTRY_TABLE"],
        predict_env["ARTIFACTS_BUCKET"],
        predict_env["AWS_ENDPOINT_URL"],
    )
    events = {
        "PredictFunction": [predict_event()] * runs,
        "BatchWorkerFunction": batch_worker_events(env, runs, rows),
        "MonitorFunction": [monitor_event(env, rows)] * runs,
    }
    print(json.dumps(events, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
