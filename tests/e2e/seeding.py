"""A local cloud seeded for tests that send it anything: real things behind the ids, a key per scope.

The fuzzer (test_fuzz_api) and the adversarial corpus (test_adversarial_corpus) both start from it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import boto3

from tests.batch_support import register_model
from tests.e2e.conftest import Platform
from tests.unit.fakes_batch import FEATURES

SCOPES = ("predict", "ingest", "registry:read", "registry:write", "evaluate")
MODEL = "churn"
ENTITY = "user-1"
ITEM = "item-1"


@dataclass(frozen=True)
class Seeded:
    """The seeded ids (evaluation, job) and a key per scope (plus the admin key)."""

    keys: dict[str, str]
    evaluation_id: str
    job_id: str


def _wait_for_job(platform: Platform, key: str, timeout: float = 60) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for job in platform.admin.get("/jobs", params={"model": MODEL})["jobs"]:
            if job["input"]["key"] == key:
                return str(job["job_id"])
        time.sleep(0.5)
    raise AssertionError(f"no job for {key} after {timeout} s")


def seed(platform: Platform) -> Seeded:
    """churn v1 in production, an item, an entity's features, an evaluation, a batch job; a bulk-plan key per scope."""
    outputs = platform.cloud.outputs
    s3 = boto3.session.Session(
        region_name="us-east-1", aws_access_key_id="testing", aws_secret_access_key="testing"
    ).client("s3", endpoint_url=platform.cloud.endpoint_url)
    register_model(
        s3, outputs["RegistryTableName"], outputs["ArtifactsBucketName"], platform.cloud.endpoint_url, MODEL
    )
    admin = platform.admin
    admin.post(
        "/items",
        {"items": [{"item_id": ITEM, "attributes": {"genre": "jazz"}, "updated_at": "2026-01-01T00:00:00Z"}]},
    )
    admin.post(
        "/events",
        {
            "events": [
                {"type": "feature_update", "event_id": "seed-1", "entity_id": ENTITY, "values": {"f0": 1.0}}
            ]
        },
    )
    rows = [{name: float(i + j) for j, name in enumerate(FEATURES)} for i in range(3)]
    evaluation = admin.post(
        f"/models/{MODEL}/evaluations", {"version": 1, "source": {"type": "rows", "rows": rows}}
    )
    header = ",".join(FEATURES)
    lines = "\n".join(",".join(str(value) for value in row.values()) for row in rows)
    key = f"input/{MODEL}/fuzz.csv"
    s3.put_object(Bucket=outputs["BatchBucketName"], Key=key, Body=f"{header}\n{lines}\n".encode())
    keys = {
        scope: admin.post(
            "/keys", {"name": "fuzz-" + scope.replace(":", "-"), "scopes": [scope], "plan": "bulk"}
        )["api_key"]
        for scope in SCOPES
    }
    return Seeded(
        keys={**keys, "admin": platform.admin_key},
        evaluation_id=str(evaluation["evaluation_id"]),
        job_id=_wait_for_job(platform, key),
    )
