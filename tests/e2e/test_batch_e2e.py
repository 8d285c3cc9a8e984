"""Batch prediction through the local cloud: S3 upload -> fanout -> SQS -> workers -> scored Parquet.

The model is put in the registry through its store (the registry's own e2e covers its API);
everything else goes the way a user's would: S3 uploads, the HTTP API, the CLI.
"""

from __future__ import annotations

import io
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pyarrow.parquet as pq
import pytest

from mlambda_local.bootstrap import ensure_admin_key
from mlambda_local.cli import main as cli
from mlambda_local.client import ApiClient, Target
from tests.batch_support import register_model
from tests.conftest import REPO_ROOT
from tests.unit.fakes_batch import make_frame

pytestmark = pytest.mark.e2e
ROWS = 50_000
BAD_ROWS = {17: "oops", 12_345: "", 49_999: "n/a"}


@pytest.fixture(scope="module")
def cloud(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """One local cloud for the module, with the churn model in production."""
    from mlambda_local.cloud import LocalCloud

    data_dir = tmp_path_factory.mktemp("batch-cloud")
    with LocalCloud(REPO_ROOT / "template.yaml", data_dir, mode="in-process") as running:
        session = boto3.session.Session(
            region_name="us-east-1", aws_access_key_id="testing", aws_secret_access_key="testing"
        )
        s3 = session.client("s3", endpoint_url=running.endpoint_url)
        outputs = running.outputs
        register_model(s3, outputs["RegistryTableName"], outputs["ArtifactsBucketName"], running.endpoint_url)
        key = ensure_admin_key(data_dir, outputs["ApiKeysTableName"], running.endpoint_url)
        yield {
            "cloud": running,
            "s3": s3,
            "sqs": session.client("sqs", endpoint_url=running.endpoint_url),
            "bucket": outputs["BatchBucketName"],
            "api": ApiClient(Target(api_url=str(running.api_url), api_key=key)),
            "data_dir": data_dir,
        }


def wait_done(api: ApiClient, job_id: str, timeout: float = 120.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        view: dict[str, Any] = api.get(f"/jobs/{job_id}")
        if view["job"]["status"] in ("completed", "failed"):
            return view
        time.sleep(0.3)
    raise AssertionError(f"job {job_id} not done in {timeout} s")


def job_for(api: ApiClient, model: str, key: str, timeout: float = 30.0) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for job in api.get("/jobs", params={"model": model})["jobs"]:
            if job["input"]["key"] == key:
                return str(job["job_id"])
        time.sleep(0.2)
    raise AssertionError(f"no job for {key}")


def test_an_uploaded_file_is_scored_with_rows_in_equal_scored_plus_rejected(cloud: dict[str, Any]) -> None:
    # Given 50,000 rows with 3 bad ones, uploaded under input/churn/ in chunks of 10,000 rows
    frame = make_frame(ROWS, seed=7)
    frame["f9"] = frame["f9"].astype(object)
    for row, value in BAD_ROWS.items():
        frame.loc[row, "f9"] = value
    key = "input/churn/e2e scores.csv"
    cloud["s3"].put_object(
        Bucket=cloud["bucket"],
        Key=key,
        Body=frame.to_csv(index=False).encode(),
        Metadata={"chunk-rows": "10000"},
    )
    # When the S3 event has gone through the fanout and the workers
    view = wait_done(cloud["api"], job_for(cloud["api"], "churn", key))
    # Then
    job = view["job"]
    assert job["status"] == "completed", job.get("reason")
    chunks = job["total_chunks"]
    assert 5 <= chunks <= 6  # "about 10,000 rows" each: bytes per row are estimated from the head
    assert (job["rows_in"], job["rows_scored"], job["rows_rejected"]) == (ROWS, ROWS - 3, 3)
    prefix = f"output/{job['job_id']}/"
    listing = cloud["s3"].list_objects_v2(Bucket=cloud["bucket"], Prefix=prefix)
    keys = sorted(entry["Key"] for entry in listing["Contents"])
    assert keys == [f"{prefix}_SUCCESS", f"{prefix}_manifest.json"] + [
        f"{prefix}part-{n:05d}.parquet" for n in range(chunks)
    ]
    ids: list[str] = []
    for part in keys[2:]:
        body = cloud["s3"].get_object(Bucket=cloud["bucket"], Key=part)["Body"].read()
        ids.extend(pq.read_table(io.BytesIO(body)).column("id").to_pylist())
    assert ids == [f"row-{i}" for i in range(ROWS) if i not in BAD_ROWS]
    throttle = cloud["cloud"].status()["functions"]["BatchWorkerFunction"]["concurrency"]
    assert throttle == 2


def test_the_cli_submits_follows_and_fetches_a_parquet_job(
    cloud: dict[str, Any], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given a Parquet file with several row groups
    import pyarrow as pa

    source = tmp_path / "scores.parquet"
    pq.write_table(pa.Table.from_pandas(make_frame(6000), preserve_index=False), source, row_group_size=1000)
    common = ["--data-dir", str(cloud["data_dir"])]
    # When
    submitted = cli([*common, "batch", "submit", str(source), "--model", "churn", "--chunk-rows", "2000"])
    out = capsys.readouterr().out
    job_id = out.split()[1]
    fetched = cli([*common, "batch", "fetch", job_id, str(tmp_path / "out.parquet")])
    # Then
    assert (submitted, fetched) == (0, 0)
    assert "6,000 rows in, 6,000 scored, 0 rejected" in out
    table = pq.read_table(tmp_path / "out.parquet")
    assert table.num_rows == 6000
    assert table.column_names == ["id", "label", "proba_0", "proba_1"]
    assert table.column("id").to_pylist() == [f"row-{i}" for i in range(6000)]


def test_a_redelivered_upload_event_does_not_start_a_second_job(cloud: dict[str, Any]) -> None:
    # Given a completed job
    key = "input/churn/twice.csv"
    cloud["s3"].put_object(Bucket=cloud["bucket"], Key=key, Body=make_frame(100).to_csv(index=False).encode())
    job_id = job_for(cloud["api"], "churn", key)
    wait_done(cloud["api"], job_id)
    head = cloud["s3"].head_object(Bucket=cloud["bucket"], Key=key)
    event = {
        "Records": [
            {
                "eventName": "ObjectCreated:Put",
                "s3": {
                    "bucket": {"name": cloud["bucket"]},
                    "object": {"key": "input/churn/twice.csv", "eTag": head["ETag"].strip('"'), "size": 1},
                },
            }
        ]
    }
    # When S3 delivers its event again
    result = cloud["cloud"].invoke("BatchFanoutFunction", event)
    # Then
    assert result["jobs"][0]["job_id"] == job_id
    jobs = [
        j for j in cloud["api"].get("/jobs", params={"model": "churn"})["jobs"] if j["input"]["key"] == key
    ]
    assert len(jobs) == 1


def test_a_bad_upload_fails_its_job_with_a_reason(cloud: dict[str, Any]) -> None:
    key = "input/churn/wrong.csv"
    cloud["s3"].put_object(Bucket=cloud["bucket"], Key=key, Body=b"id,a,b\n1,2,3\n")
    view = wait_done(cloud["api"], job_for(cloud["api"], "churn", key))
    assert (view["job"]["status"], view["job"]["error_code"]) == ("failed", "missing_columns")
    assert "f0" in view["job"]["reason"]
