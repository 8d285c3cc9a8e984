"""The platform in worker processes (``local up``'s mode): the prediction log reaches the lake exactly once,
across a worker crash and a restart of the cloud before its delivery; each function logs as itself."""

from __future__ import annotations

import io
import json
import os
import signal
from collections import Counter
from pathlib import Path
from typing import Any

import boto3
import pyarrow.parquet as pq
import requests

from mlambda_local.bootstrap import ensure_admin_key
from mlambda_local.cloud import LocalCloud
from tests.batch_support import register_model
from tests.conftest import REPO_ROOT
from tests.integration.local_cloud.support import wait_for

FEATURES = [f"f{i}" for i in range(20)]


def _s3(cloud: LocalCloud) -> Any:
    return boto3.session.Session(
        region_name="us-east-1", aws_access_key_id="testing", aws_secret_access_key="testing"
    ).client("s3", endpoint_url=cloud.endpoint_url)


def _archived_ids(cloud: LocalCloud) -> list[str]:
    s3 = _s3(cloud)
    bucket = cloud.outputs["DataBucketName"]
    keys = [
        item["Key"]
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix="type=prediction/")
        for item in page.get("Contents", [])
    ]
    return [
        str(i)
        for key in keys
        for i in pq.read_table(io.BytesIO(s3.get_object(Bucket=bucket, Key=key)["Body"].read()))
        .column("id")
        .to_pylist()
    ]


def _log_lines(cloud: LocalCloud, function: str) -> list[str]:
    group = cloud.functions[function].group
    return [line for path in group.stream_files() for line in path.read_text().splitlines()]


def test_served_predictions_reach_the_archive_exactly_once_across_a_worker_crash_and_a_restart(
    tmp_path: Path,
) -> None:
    data_dir = tmp_path / "cloud"
    template = REPO_ROOT / "template.yaml"
    # Given: the platform in worker processes, its log delivery held back (polled hourly)
    with LocalCloud(template, data_dir, log_poll_seconds=3600) as cloud:
        register_model(
            _s3(cloud),
            cloud.outputs["RegistryTableName"],
            cloud.outputs["ArtifactsBucketName"],
            cloud.endpoint_url,
        )
        key = ensure_admin_key(data_dir, cloud.outputs["ApiKeysTableName"], cloud.endpoint_url)
        url = f"{cloud.api_url}/models/churn/predict"
        rows = [{name: float(i + j) for j, name in enumerate(FEATURES)} for i in range(3)]
        answers = [
            requests.post(
                url,
                json={"instances": rows[: i + 1], "request_id": f"req-{i}", "entity_id": "u1"},
                headers={"x-api-key": key},
                timeout=60,
            )
            for i in range(3)
        ]
        assert [a.status_code for a in answers] == [200, 200, 200], answers[0].text
        # When: the predict worker dies right after answering, and the cloud stops before any delivery
        status = cloud.status()["functions"]["PredictFunction"]
        assert status["mode"] == "process"
        for worker in status["workers"]:
            os.kill(worker["pid"], signal.SIGKILL)
        predict_log = _log_lines(cloud, "PredictFunction")
    # Then: predict's log group says what Lambda's would: REPORTs with the cold start's init,
    # its own service and namespace on the metric lines, and the three records
    reports = [line for line in predict_log if line.startswith("REPORT RequestId:")]
    assert len(reports) == 3 and "Init Duration:" in reports[0]
    assert all("Memory Size: 1024 MB" in line for line in reports)
    metric_lines = [json.loads(line) for line in predict_log if line.startswith('{"_aws"')]
    assert {(m["service"], m["_aws"]["CloudWatchMetrics"][0]["Namespace"]) for m in metric_lines} == {
        ("predict", "mlambda")
    }
    assert sum(line.startswith('{"mlambda_log":"prediction"') for line in predict_log) == 3
    # When the cloud comes back on the same data directory
    with LocalCloud(template, data_dir) as cloud:
        expected = Counter(f"req-{i}:{row}" for i in range(3) for row in range(i + 1))
        wait_for(lambda: Counter(_archived_ids(cloud)) == expected or None, timeout=60)
        cloud.subscriptions.flush()  # a second pass delivers nothing again
        # Then: every served row exactly once, and what u1 was served, recorded by the archiver
        assert Counter(_archived_ids(cloud)) == expected
        tracking = (
            boto3.session.Session(
                region_name="us-east-1", aws_access_key_id="testing", aws_secret_access_key="testing"
            )
            .resource("dynamodb", endpoint_url=cloud.endpoint_url)
            .Table(cloud.outputs["TrackingTableName"])
        )
        items = tracking.query(
            KeyConditionExpression="pk = :pk", ExpressionAttributeValues={":pk": "entity#u1"}
        )["Items"]
        assert sorted((i["request_id"], int(i["rows"])) for i in items) == [
            ("req-0", 1),
            ("req-1", 2),
            ("req-2", 3),
        ]
        archiver_log = _log_lines(cloud, "ArchiverFunction")
    assert any('"service":"archiver"' in line for line in archiver_log)
    assert not any('"service":"predict"' in line for line in archiver_log)
