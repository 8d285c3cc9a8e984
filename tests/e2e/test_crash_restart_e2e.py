"""``kill -9`` of ``mlambda local up`` and a restart on the same data directory lose nothing.

Real processes, as a user runs them: the local cloud is killed once while a file is being
uploaded in parts, and once while the job that file started is being scored and events are
being archived and predictions served (their log on its way to the archiver through the log
subscription). After each restart the work goes on: the upload completes, the job finishes
with rows in = scored + rejected and every chunk counted once, and each archived event and
each served prediction row is in the lake exactly once.
"""

from __future__ import annotations

import io
import json
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import boto3
import pyarrow.parquet as pq
import pytest

from mlambda.schemas.batch import job_id_for
from mlambda.schemas.events import event_body as event
from mlambda_local.client import ApiClient, ApiError, Target
from tests.batch_support import register_model
from tests.local_cloud_process import LocalCloudProcess
from tests.unit.fakes_batch import make_frame

pytestmark = pytest.mark.e2e
ROWS = 30_000  # 5.4 MB of CSV: two parts (S3's parts but the last are 5 MB at least)
CHUNK_ROWS = 1_000  # 30 chunks: time to kill the cloud with some done and some not
PART = 5 * 1024 * 1024
T = TypeVar("T")


def wait_for(probe: Callable[[], T | None], timeout: float, what: str) -> T:
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not within {timeout} s (last: {value!r})")
        time.sleep(0.05)


class Cloud(LocalCloudProcess):
    """``mlambda local up`` in a process of its own, started, with clients of its API and S3."""

    def __init__(self, data_dir: Path) -> None:
        super().__init__(data_dir)
        self.start()
        self.api = ApiClient(Target(api_url=self.api_url, api_key=self.admin_key))
        session = boto3.session.Session(
            region_name="us-east-1", aws_access_key_id="testing", aws_secret_access_key="testing"
        )
        self.s3 = session.client("s3", endpoint_url=self.endpoint_url)


def send_events(cloud: Cloud, prefix: str, count: int) -> list[str]:
    now = datetime.now(UTC)
    lines = [
        event(f"{prefix}{i}", "interaction", f"user-{i % 7}", now, kind="click", item_id="i")
        for i in range(count)
    ]
    for start in range(0, count, 50):
        accepted = cloud.api.post("/events", {"events": lines[start : start + 50]})
        assert accepted["accepted"] == len(lines[start : start + 50]), accepted
    return [line["event_id"] for line in lines]


def predict(cloud: Cloud, prefix: str, count: int) -> list[str]:
    """``count`` requests of one to three rows; the ids their rows get in the prediction log."""
    ids: list[str] = []
    for i in range(count):
        request_id, rows = f"{prefix}{i}", 1 + i % 3
        instances = [{f"f{j}": float(i + j + row) for j in range(20)} for row in range(rows)]
        answer = cloud.api.post(
            "/models/churn/predict", {"instances": instances, "request_id": request_id, "entity_id": "u1"}
        )
        assert len(answer["predictions"]) == rows, answer
        ids.extend(f"{request_id}:{row}" for row in range(rows))
    return ids


def archived_ids(cloud: Cloud, kind: str = "interaction") -> list[str]:
    bucket = cloud.outputs["DataBucketName"]
    ids: list[str] = []
    for page in cloud.s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=f"type={kind}/"):
        for entry in page.get("Contents", []):
            body = cloud.s3.get_object(Bucket=bucket, Key=entry["Key"])["Body"].read()
            ids.extend(pq.read_table(io.BytesIO(body)).column("id").to_pylist())
    return ids


def job_of(cloud: Cloud, job_id: str) -> dict[str, Any] | None:
    try:
        job: dict[str, Any] = cloud.api.get(f"/jobs/{job_id}")["job"]
    except ApiError:  # not planned yet
        return None
    return job


def test_kill_9_during_an_upload_and_during_a_job_loses_nothing_and_duplicates_nothing(
    tmp_path: Path,
) -> None:
    clouds: list[Cloud] = []
    try:
        # Given: a cloud with the model, events archived, and a CSV half uploaded in parts
        cloud = Cloud(tmp_path)
        clouds.append(cloud)
        register_model(
            cloud.s3,
            cloud.outputs["RegistryTableName"],
            cloud.outputs["ArtifactsBucketName"],
            cloud.endpoint_url,
        )
        sent = send_events(cloud, "before-", 100)
        wait_for(lambda: len(archived_ids(cloud)) >= len(sent), 60, "the first events archived")
        body = make_frame(ROWS, seed=3).to_csv(index=False).encode()
        bucket, key = cloud.outputs["BatchBucketName"], "input/churn/crash.csv"
        upload = cloud.s3.create_multipart_upload(
            Bucket=bucket, Key=key, Metadata={"chunk-rows": str(CHUNK_ROWS)}
        )
        pieces = [body[start : start + PART] for start in range(0, len(body), PART)]
        parts = [
            {
                "PartNumber": 1,
                "ETag": cloud.s3.upload_part(
                    Bucket=bucket, Key=key, UploadId=upload["UploadId"], PartNumber=1, Body=pieces[0]
                )["ETag"],
            }
        ]
        # When: killed in the middle of the upload
        cloud.kill()
        cloud = Cloud(tmp_path)
        clouds.append(cloud)
        # Then: the upload goes on with the same id, and its completion starts the job
        for number, piece in enumerate(pieces[1:], start=2):
            etag = cloud.s3.upload_part(
                Bucket=bucket, Key=key, UploadId=upload["UploadId"], PartNumber=number, Body=piece
            )["ETag"]
            parts.append({"PartNumber": number, "ETag": etag})
        completed = cloud.s3.complete_multipart_upload(
            Bucket=bucket, Key=key, UploadId=upload["UploadId"], MultipartUpload={"Parts": parts}
        )
        job_id = job_id_for(bucket, key, completed["ETag"].strip('"'), "production")
        # When: killed again while the job is scoring, and new events and predictions are on their
        # way to the archive
        during = send_events(cloud, "during-", 100)
        served = predict(cloud, "during-", 30)
        running = wait_for(
            lambda: (job := job_of(cloud, job_id)) and 0 < job["done_chunks"] < job["total_chunks"] and job,
            120,
            "the job half done",
        )
        cloud.kill()
        cloud = Cloud(tmp_path)
        clouds.append(cloud)
        # Then: the job completes, each chunk counted once, and every row accounted for
        job = wait_for(
            lambda: (j := job_of(cloud, job_id)) and j["status"] in ("completed", "failed") and j,
            180,
            "the job done",
        )
        assert job["status"] == "completed", job
        assert job["done_chunks"] == job["total_chunks"] == running["total_chunks"]
        assert (job["rows_in"], job["rows_scored"] + job["rows_rejected"]) == (ROWS, ROWS)
        manifest = json.loads(
            cloud.s3.get_object(Bucket=bucket, Key=f"output/{job['job_id']}/_manifest.json")["Body"].read()
        )
        assert sorted(part["chunk"] for part in manifest["parts"]) == list(range(job["total_chunks"]))
        assert sum(part["rows"] for part in manifest["parts"] + manifest["rejects"]) >= ROWS
        # and the lake holds every accepted event exactly once
        after = send_events(cloud, "after-", 50)
        wanted = sorted(sent + during + after)
        found = wait_for(
            lambda: (ids := archived_ids(cloud)) and len(ids) >= len(wanted) and ids,
            120,
            "all events archived",
        )
        # and every row served before the kill, and after, exactly once
        served += predict(cloud, "after-", 5)
        wait_for(
            lambda: len(archived_ids(cloud, "prediction")) >= len(served),
            120,
            "all predictions archived",
        )
        time.sleep(6)  # one more archive batching window: a late duplicate would land now
        assert sorted(archived_ids(cloud)) == wanted, f"{len(found)} rows for {len(wanted)} events"
        assert sorted(archived_ids(cloud, "prediction")) == sorted(served)
    finally:
        for cloud in clouds:
            if cloud.process.poll() is None:
                cloud.kill()
