"""Monitoring on the local cloud: archived logs in the data bucket, the schedule fired from the CLI,
the report over HTTP and written by ``mlambda monitor report``."""

from __future__ import annotations

import io
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import requests

from mlambda.adapters.dynamodb import DynamoTable
from mlambda.adapters.registry import DynamoRegistryStore
from mlambda.adapters.s3 import ObjectStore
from mlambda.config import FunctionSettings
from mlambda_local.cli import main
from tests.e2e.conftest import Platform
from tests.registry_support import publish
from tests.unit.fakes_monitoring import features, reference_profile_json, served, version

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def drifted(platform: Platform) -> str:
    """Model ``churn-e2e`` in production, and an hour of drifted prediction logs as the archiver writes them."""
    settings = FunctionSettings.model_validate(
        {"AWS_ENDPOINT_URL": platform.cloud.endpoint_url, "AWS_REGION": "us-east-1"}
    )
    outputs = platform.cloud.outputs
    name = "churn-e2e"
    rng = np.random.default_rng(3)
    model_version = version(name)
    publish(
        DynamoRegistryStore(DynamoTable(outputs["RegistryTableName"], settings)), model_version, actor="e2e"
    )
    assert model_version.reference_profile_key
    ObjectStore(outputs["ArtifactsBucketName"], settings).put(
        model_version.reference_profile_key, reference_profile_json(rng)
    )
    logged_at = datetime.now(UTC) - timedelta(minutes=5)
    rows = served(features(rng, 1500, shift=1.0), model=name).assign(timestamp=logged_at)
    sink = io.BytesIO()
    rows.to_parquet(sink, index=False)
    key = f"type=prediction/model={name}/date={logged_at:%Y-%m-%d}/hour={logged_at:%H}/part-e2e.parquet"
    ObjectStore(outputs["DataBucketName"], settings).put(key, sink.getvalue())
    return name


def test_cli_runs_the_schedule_and_the_report_is_served(
    platform: Platform, drifted: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    flags = [
        "--data-dir",
        str(platform.data_dir),
        "--api-url",
        platform.api_url,
        "--api-key",
        platform.admin_key,
    ]
    # When monitoring is run on demand through the local cloud's schedule trigger
    assert main([*flags, "monitor", "run"]) == 0
    # Then the drifting model is reported
    printed = capsys.readouterr().out
    line = next(row for row in printed.splitlines() if row.startswith(drifted))
    assert "drift" in line and "f0" in line
    # And the API serves the run
    view = platform.admin.get(f"/models/{drifted}/monitoring")
    assert view["latest"]["status"] == "drift" and len(view["history"]) == 1
    assert view["latest"]["rows"] == 1500
    # And the HTML report can be fetched and written by the CLI
    output = tmp_path / "report.html"
    assert main([*flags, "monitor", "report", drifted, "--output", str(output)]) == 0
    page = output.read_text()
    assert page.startswith("<!DOCTYPE html>") and "<svg" in page


def test_monitoring_api_needs_a_key_with_registry_read(platform: Platform, drifted: str) -> None:
    scoped = platform.admin.post("/keys", {"name": "app-only", "scopes": ["predict"]})
    response = requests.get(
        f"{platform.api_url}/models/{drifted}/monitoring",
        headers={"x-api-key": scoped["api_key"]},
        timeout=30,
    )
    assert response.status_code == 403
    unknown = platform.admin.request(
        "GET", "/models/nobody/monitoring", params={"format": "html"}, expect=(404,)
    )
    assert unknown["code"] == "no_report"


def test_running_one_named_model_invokes_the_function_directly(
    platform: Platform, drifted: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["--data-dir", str(platform.data_dir), "monitor", "run", drifted]) == 0
    assert pd.Series(capsys.readouterr().out.splitlines()).str.startswith(drifted).sum() == 1
