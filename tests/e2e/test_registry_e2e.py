"""The registry as a user meets it: real sklearn models registered, validated by the validator
function through its queue, promoted and split over HTTP and the CLI."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import boto3
import pytest

from mlambda.client import VersionFailedError
from mlambda_local.cli import main
from mlambda_local.client import ApiError
from tests.e2e.conftest import Platform
from tests.onnx_exploits import sparse_initializer_values
from tests.unit.fakes_registry import breast_cancer

pytestmark = pytest.mark.e2e


def cli(platform: Platform, *args: str) -> int:
    return main(["--api-url", platform.api_url, "--api-key", platform.admin_key, *args])


def test_cli_registers_promotes_splits_and_rolls_back_a_sklearn_model(
    platform: Platform, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given two exported sklearn models and a held-out sample that keeps its label and an id column
    files = {}
    for label, c in (("v1", 1.0), ("v2", 0.1)):
        trained = breast_cancer(c)
        (tmp_path / f"{label}.onnx").write_bytes(trained.onnx)
        files[label] = tmp_path / f"{label}.onnx"
    reference = tmp_path / "reference.parquet"
    breast_cancer(1.0).sample(100).assign(patient_id=range(100)).to_parquet(reference, index=False)
    metrics = tmp_path / "metrics.json"
    metrics.write_text(json.dumps({"auc": 0.99}))
    # When
    assert cli(platform, "models", "create", "cancer-cli", "--owner", "ml", "--tag", "team=risk") == 0
    capsys.readouterr()
    for label in ("v1", "v2"):
        code = cli(
            platform, "models", "register", "cancer-cli", str(files[label]),
            "--reference", str(reference), "--target", "target", "--exclude", "patient_id",
            "--metrics", str(metrics),
        )  # fmt: skip
        assert code == 0
    registered = capsys.readouterr().out
    assert cli(platform, "models", "promote", "cancer-cli", "v1") == 0
    assert cli(platform, "models", "promote", "cancer-cli", "2", "--alias", "staging") == 0
    platform.admin.request(
        "PATCH",
        "/models/cancer-cli/endpoint",
        body={
            "variants": [{"name": "production", "target": "production", "weight": 100}],
            "rules": {"fallback": {"response": {"label": 0}, "timeout_ms": 300}},
        },
    )
    assert cli(platform, "models", "split", "cancer-cli", "v1=90", "v2=10", "--shadow", "v2=5") == 0
    assert cli(platform, "models", "promote", "cancer-cli", "v2") == 0
    assert cli(platform, "models", "rollback", "cancer-cli", "--reason", "e2e") == 0
    capsys.readouterr()
    assert cli(platform, "models", "history", "cancer-cli") == 0
    history = capsys.readouterr().out
    assert cli(platform, "models", "show", "cancer-cli", "-o", "json") == 0
    shown = json.loads(capsys.readouterr().out)
    # Then
    assert registered.count(": READY (classification, 30 features") == 2
    assert "labelled rows): accuracy" in registered
    assert shown["aliases"] == {"production": 1, "staging": 2}
    assert [(v["version"], v["status"]) for v in shown["versions"]] == [(2, "READY"), (1, "READY")]
    assert shown["versions"][0]["metrics"] == {"auc": 0.99}
    assert 0.8 < shown["versions"][0]["reference"]["metrics"]["accuracy"]["value"] <= 1.0
    assert [v["weight"] for v in shown["endpoint"]["variants"]] == [90, 10]
    assert shown["endpoint"]["shadow"] == {"target": "v2", "sample_percent": 5.0}
    assert shown["endpoint"]["rules"]["fallback"] == {"response": {"label": 0}, "timeout_ms": 300}
    lines = history.splitlines()
    assert "rollback" in lines[0]
    assert "production v2 -> v1" in lines[0]
    assert sum("version_registered" in line for line in lines) == 2
    assert sum("version_ready" in line for line in lines) == 2


def test_http_api_registers_validates_and_gates(
    platform: Platform, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given
    admin = platform.admin
    admin.post("/models", {"name": "cancer-http"})
    trained = breast_cancer(1.0)
    # When: the two-step upload over the presigned URL, register (202), wait for the validator
    path = Path(platform.data_dir) / "cancer.onnx"
    path.write_bytes(trained.onnx)
    key = admin.upload("cancer-http", path, kind="model")
    pending = admin.post(
        "/models/cancer-http/versions", {"upload_key": key, "feature_names": trained.features}
    )
    version = admin.wait_until_ready("cancer-http", pending["version"], timeout=120)
    promoted = admin.request("PUT", "/models/cancer-http/aliases/production", body={"version": 1})
    corrupt = Path(platform.data_dir) / "corrupt.onnx"
    corrupt.write_bytes(b"definitely not onnx")
    bad_key = admin.upload("cancer-http", corrupt, kind="model")
    bad = admin.post(
        "/models/cancer-http/versions", {"upload_key": bad_key, "feature_names": trained.features}
    )
    with pytest.raises(VersionFailedError) as failed:
        admin.wait_until_ready("cancer-http", bad["version"], timeout=120)
    with pytest.raises(ApiError) as not_ready:
        admin.request("PUT", "/models/cancer-http/aliases/production", body={"version": bad["version"]})
    reader = platform.client(admin.post("/keys", {"name": "reader", "scopes": ["registry:read"]})["api_key"])
    with pytest.raises(ApiError) as forbidden:
        reader.request("PUT", "/models/cancer-http/aliases/production", body={"version": 1})
    # Then
    assert (pending["status"], pending["version"]) == ("PENDING_VALIDATION", 1)
    assert (version["status"], version["artifact_key"]) == ("READY", "models/cancer-http/v1/model.onnx")
    assert [w["code"] for w in version["warnings"]] == ["no_reference"]
    assert promoted["gate"]["passed"] is True
    assert reader.get("/models/cancer-http/aliases/production")["version"] == 1
    assert "FAILED validation: invalid_model" in str(failed.value)
    assert (not_ready.value.status, not_ready.value.code) == (409, "version_not_ready")
    assert (forbidden.value.status, forbidden.value.code) == (403, "forbidden")
    assert cli(platform, "models", "promote", "cancer-http", "v9") == 4
    assert "version_not_found" in capsys.readouterr().err


def test_a_model_reading_a_server_file_ends_failed_and_its_upload_is_deleted(platform: Platform) -> None:
    # Given the wave-1 exploit: sparse weights pointing at the admin key next to the functions
    admin = platform.admin
    admin.post("/models", {"name": "leak-e2e"})
    path = Path(platform.data_dir) / "leak.onnx"
    path.write_bytes(sparse_initializer_values(".mlambda/admin_key"))
    key = admin.upload("leak-e2e", path, kind="model")
    # When
    pending = admin.post(
        "/models/leak-e2e/versions", {"upload_key": key, "feature_names": ["a", "b", "c", "d"]}
    )
    with pytest.raises(VersionFailedError):
        admin.wait_until_ready("leak-e2e", pending["version"], timeout=120)
    version = admin.get(f"/models/leak-e2e/versions/{pending['version']}")
    s3 = boto3.client("s3", endpoint_url=platform.cloud.endpoint_url, region_name="us-east-1")
    bucket = platform.cloud.outputs["ArtifactsBucketName"]
    left = s3.list_object_versions(Bucket=bucket, Prefix="uploads/leak-e2e/")
    # Then
    assert (version["status"], version["failure"]["code"]) == ("FAILED", "external_data")
    assert not left.get("Versions") and not left.get("DeleteMarkers")


def test_the_local_cloud_expires_abandoned_uploads(platform: Platform) -> None:
    # Given an upload nobody registered
    admin = platform.admin
    admin.post("/models", {"name": "abandoned"})
    path = Path(platform.data_dir) / "abandoned.onnx"
    path.write_bytes(breast_cancer(1.0).onnx)
    key = admin.upload("abandoned", path, kind="model")
    sweeper = platform.cloud.lifecycle
    assert sweeper is not None
    # When the sweep runs as if two days had passed
    sweeper.sweep(datetime.now(UTC) + timedelta(days=2))
    # Then
    s3 = boto3.client("s3", endpoint_url=platform.cloud.endpoint_url, region_name="us-east-1")
    left = s3.list_object_versions(Bucket=platform.cloud.outputs["ArtifactsBucketName"], Prefix=key)
    assert not left.get("Versions") and not left.get("DeleteMarkers")
