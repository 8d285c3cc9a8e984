"""The registry as a user meets it: a real sklearn model registered and promoted over HTTP and the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mlambda_local.cli import main
from mlambda_local.client import ApiError
from tests.e2e.conftest import Platform
from tests.unit.fakes_registry import breast_cancer

pytestmark = pytest.mark.e2e


def cli(platform: Platform, *args: str) -> int:
    return main(["--api-url", platform.api_url, "--api-key", platform.admin_key, *args])


def test_cli_registers_promotes_splits_and_rolls_back_a_sklearn_model(
    platform: Platform, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given two exported sklearn models and a reference sample on disk
    files = {}
    for label, c in (("v1", 1.0), ("v2", 0.1)):
        trained = breast_cancer(c)
        (tmp_path / f"{label}.onnx").write_bytes(trained.onnx)
        files[label] = tmp_path / f"{label}.onnx"
    reference = tmp_path / "reference.parquet"
    features = breast_cancer(1.0).features
    breast_cancer(1.0).frame[features].head(100).to_parquet(reference, index=False)  # names come from it
    metrics = tmp_path / "metrics.json"
    metrics.write_text(json.dumps({"auc": 0.99}))
    # When
    assert cli(platform, "models", "create", "cancer-cli", "--owner", "ml", "--tag", "team=risk") == 0
    for label in ("v1", "v2"):
        code = cli(
            platform, "models", "register", "cancer-cli", str(files[label]),
            "--reference", str(reference), "--metrics", str(metrics),
        )  # fmt: skip
        assert code == 0
    assert cli(platform, "models", "promote", "cancer-cli", "v1") == 0
    assert cli(platform, "models", "promote", "cancer-cli", "2", "--alias", "staging") == 0
    assert cli(platform, "models", "split", "cancer-cli", "v1=90", "v2=10", "--shadow", "v2:5") == 0
    assert cli(platform, "models", "promote", "cancer-cli", "v2") == 0
    assert cli(platform, "models", "rollback", "cancer-cli", "--reason", "e2e") == 0
    capsys.readouterr()
    assert cli(platform, "models", "history", "cancer-cli") == 0
    history = capsys.readouterr().out
    assert cli(platform, "models", "show", "cancer-cli") == 0
    shown = json.loads(capsys.readouterr().out)
    # Then
    assert shown["aliases"] == {"production": 1, "staging": 2}
    assert [v["version"] for v in shown["versions"]] == [2, 1]
    assert shown["versions"][0]["metrics"] == {"auc": 0.99}
    assert [v["weight"] for v in shown["endpoint"]["variants"]] == [90, 10]
    assert shown["endpoint"]["shadow"] == {"target": "v2", "sample_percent": 5.0}
    lines = history.splitlines()
    assert "rollback" in lines[0]
    assert "production v2 -> v1" in lines[0]
    assert sum("version_registered" in line for line in lines) == 2


def test_http_api_registers_validates_and_gates(
    platform: Platform, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given
    admin = platform.admin
    admin.post("/models", {"name": "cancer-http"})
    trained = breast_cancer(1.0)
    # When: the two-step upload over the presigned URL, then register
    from mlambda_local.commands.models import upload

    path = Path(platform.data_dir) / "cancer.onnx"
    path.write_bytes(trained.onnx)
    key = upload(admin, "cancer-http", path, "model")
    version = admin.post(
        "/models/cancer-http/versions", {"upload_key": key, "feature_names": trained.features}
    )
    promoted = admin.request("PUT", "/models/cancer-http/aliases/production", body={"version": 1})
    corrupt = Path(platform.data_dir) / "corrupt.onnx"
    corrupt.write_bytes(b"definitely not onnx")
    bad_key = upload(admin, "cancer-http", corrupt, "model")
    with pytest.raises(ApiError) as rejected:
        admin.post("/models/cancer-http/versions", {"upload_key": bad_key, "feature_names": trained.features})
    reader = platform.client(admin.post("/keys", {"name": "reader", "scopes": ["registry:read"]})["api_key"])
    with pytest.raises(ApiError) as forbidden:
        reader.request("PUT", "/models/cancer-http/aliases/production", body={"version": 1})
    # Then
    assert version["version"] == 1
    assert version["artifact_key"] == "models/cancer-http/v1/model.onnx"
    assert promoted["gate"]["passed"] is True
    assert reader.get("/models/cancer-http/aliases/production")["version"] == 1
    assert (rejected.value.status, rejected.value.code) == (400, "invalid_model")
    assert (forbidden.value.status, forbidden.value.code) == (403, "forbidden")
    assert cli(platform, "models", "promote", "cancer-http", "v9") == 2
    assert "version_not_found" in capsys.readouterr().err
