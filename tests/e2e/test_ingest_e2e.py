"""Event ingestion on the local cloud: the CLI over HTTP, the feature store, and the archiver
reached through the real SQS event source mapping (batching window, partial failures)."""

from __future__ import annotations

import io
import json
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import boto3
import pyarrow.parquet as pq
import pytest

from mlambda.schemas.events import event_body as event
from mlambda_local.cli import main
from mlambda_local.client import ApiError
from tests.e2e.conftest import Platform

pytestmark = pytest.mark.e2e
ARCHIVE_WAIT_S = 60.0


def archived_ids(platform: Platform, prefix: str) -> list[str]:
    s3 = boto3.client("s3", endpoint_url=platform.cloud.endpoint_url, region_name="us-east-1")
    bucket = platform.cloud.outputs["DataBucketName"]
    ids: list[str] = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for entry in page.get("Contents", []):
            body = s3.get_object(Bucket=bucket, Key=entry["Key"])["Body"].read()
            ids.extend(pq.read_table(io.BytesIO(body)).column("id").to_pylist())
    return ids


def test_events_sent_by_the_cli_land_online_and_in_the_archive_exactly_once(
    platform: Platform, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given a JSON Lines file of 120 events for one entity, one of them bad, in batches of 50
    now = datetime.now(UTC)
    lines = [
        event(f"e2e-c{i}", "interaction", "e2e-user", now, kind="click", item_id=f"i{i % 3}")
        for i in range(100)
    ]
    lines += [
        event(f"e2e-l{i}", "label", "e2e-user", now, request_id=f"e2e-r{i}", value=i % 2) for i in range(19)
    ]
    lines.append(event("e2e-bad", "interaction", "e2e-user", now, kind="click"))
    lines.append(event("e2e-f", "feature_update", "e2e-user", now, group="profile", values={"age": 33}))
    path = tmp_path / "events.jsonl"
    path.write_text("\n".join(json.dumps(line) for line in lines) + "\n")
    flags = [
        "--data-dir",
        str(platform.data_dir),
        "--api-url",
        platform.api_url,
        "--api-key",
        platform.admin_key,
    ]
    # When it is sent twice
    first = main([*flags, "events", "send", str(path), "--batch-size", "50"])
    printed = capsys.readouterr().out
    second = main([*flags, "events", "send", str(path), "--batch-size", "50"])
    again = capsys.readouterr().out
    # Then the bad line is named, and the resend applies nothing
    assert first == second == 1
    assert "rejected line 120 e2e-bad: invalid_event" in printed
    assert printed.strip().endswith("accepted 120, duplicates 0, rejected 1")
    assert again.strip().endswith("accepted 0, duplicates 120, rejected 1")
    assert main([*flags, "features", "get", "e2e-user", "--output", "json"]) == 0
    features = json.loads(capsys.readouterr().out)
    assert features["groups"][0]["values"] == {"age": 33}
    assert features["aggregates"]["count_click"] == 100
    # And the archiver, fed by the local SQS poller, writes each accepted event once
    wanted = sorted(line["event_id"] for line in lines if line["event_id"] != "e2e-bad")
    deadline = time.monotonic() + ARCHIVE_WAIT_S
    found: list[str] = []
    while time.monotonic() < deadline:
        found = sorted(
            i
            for p in ("type=interaction/", "type=label/", "type=feature_update/")
            for i in archived_ids(platform, p)
            if i.startswith("e2e-")
        )
        if len(found) >= len(wanted):
            break
        time.sleep(0.5)
    assert found == wanted


def test_ingest_needs_the_ingest_scope_and_purge_needs_admin(platform: Platform) -> None:
    # Given a predict-only key and an ingest-only key
    predict_only = platform.client(
        platform.admin.post("/keys", {"name": "p-only", "scopes": ["predict"]})["api_key"]
    )
    ingest_only = platform.client(
        platform.admin.post("/keys", {"name": "i-only", "scopes": ["ingest"]})["api_key"]
    )
    batch = {
        "events": [
            event(
                "scope-1", "interaction", "s-user", datetime.now(UTC) - timedelta(seconds=1), kind="opt_out"
            )
        ]
    }
    # When / Then
    with pytest.raises(ApiError, match="HTTP 403 forbidden"):
        predict_only.post("/events", batch)
    assert ingest_only.post("/events", batch)["accepted"] == 1
    with pytest.raises(ApiError, match="HTTP 403 forbidden"):
        ingest_only.delete("/entities/s-user")
    assert platform.admin.delete("/entities/s-user")["entity_id"] == "s-user"
