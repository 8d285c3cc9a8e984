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
from mlambda.client import ApiError
from mlambda.config import FunctionSettings
from mlambda_local.cli import main
from tests.e2e.conftest import Platform
from tests.registry_support import publish
from tests.unit.fakes_monitoring import (
    features,
    labels_for,
    labels_from_model,
    reference_profile_json,
    served,
    version,
)

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


def _parquet(frame: pd.DataFrame) -> bytes:
    sink = io.BytesIO()
    frame.to_parquet(sink, index=False)
    return sink.getvalue()


@pytest.fixture(scope="module")
def calibrated(platform: Platform) -> dict[str, str]:
    """Three models whose reference profiles carry the target, each with an hour of logs and labels:
    unchanged traffic, one shifted feature, and labels that disagree with the model."""
    settings = FunctionSettings.model_validate(
        {"AWS_ENDPOINT_URL": platform.cloud.endpoint_url, "AWS_REGION": "us-east-1"}
    )
    outputs = platform.cloud.outputs
    registry = DynamoRegistryStore(DynamoTable(outputs["RegistryTableName"], settings))
    artifacts = ObjectStore(outputs["ArtifactsBucketName"], settings)
    data = ObjectStore(outputs["DataBucketName"], settings)
    logged_at = datetime.now(UTC) - timedelta(minutes=5)
    partition = f"date={logged_at:%Y-%m-%d}/hour={logged_at:%H}/"
    names = {"steady": "steady-e2e", "shifted": "shifted-e2e", "labels": "labels-e2e"}
    label_frames = []
    for kind, name in names.items():
        rng = np.random.default_rng(len(name) * 7 + len(kind))
        model_version = version(name)
        publish(registry, model_version, actor="e2e")
        assert model_version.reference_profile_key
        artifacts.put(model_version.reference_profile_key, reference_profile_json(rng, target=True))
        frame = features(rng, 2000)
        if kind == "shifted":
            frame["f2"] = frame["f2"] + 0.5  # one feature the model does not use moves by 0.5 sd
        rows = served(frame, model=name, prefix=f"{kind}-").assign(timestamp=logged_at)
        data.put(f"type=prediction/model={name}/{partition}part-e2e.parquet", _parquet(rows))
        truth = labels_for(rows, rng, accuracy=0.5) if kind == "labels" else labels_from_model(rows, rng)
        label_frames.append(truth.assign(id=[f"{kind}-{i}" for i in range(len(truth))], timestamp=logged_at))
    data.put(f"type=label/{partition}part-e2e.parquet", _parquet(pd.concat(label_frames, ignore_index=True)))
    return names


def test_unchanged_traffic_no_alert_a_shifted_feature_exactly_it_degraded_labels_a_quality_alert(
    platform: Platform, calibrated: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    # When the schedule runs for the three models
    for name in calibrated.values():
        assert main(["--data-dir", str(platform.data_dir), "monitor", "run", name]) == 0
    capsys.readouterr()
    latest = {
        kind: platform.admin.get(f"/models/{name}/monitoring")["latest"] for kind, name in calibrated.items()
    }
    # Then unchanged traffic raises nothing
    steady = latest["steady"]
    assert steady["status"] == "ok", steady["reason"]
    assert steady["alerts"] == []
    assert steady["budget"]["tests"] > 10 and steady["budget"]["alarms"] == 0
    # A shifted feature is reported, and nothing else
    shifted = latest["shifted"]
    assert shifted["feature_drift"]["drifted"] == ["f2"]
    assert {alert["feature"] for alert in shifted["alerts"]} == {"f2"}
    assert shifted["model_quality"]["degraded"] == []
    # And labels that disagree with the model are a model-quality alert against the reference baseline
    degraded = latest["labels"]
    assert degraded["model_quality"]["baseline"] == "reference"
    assert "accuracy" in degraded["model_quality"]["degraded"]
    assert any(alert["check"] == "model_quality" for alert in degraded["alerts"])
    assert degraded["feature_drift"]["drifted"] == []


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
    assert main([*flags, "monitor", "report", drifted, "--file", str(output)]) == 0
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
    with pytest.raises(ApiError) as unknown:
        platform.admin.request("GET", "/models/nobody/monitoring", params={"format": "html"})
    assert (unknown.value.status, unknown.value.code) == (404, "no_report")


def test_running_one_named_model_invokes_the_function_directly(
    platform: Platform, drifted: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["--data-dir", str(platform.data_dir), "monitor", "run", drifted]) == 0
    assert pd.Series(capsys.readouterr().out.splitlines()).str.startswith(drifted).sum() == 1
