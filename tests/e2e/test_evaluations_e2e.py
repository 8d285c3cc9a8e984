"""Human evaluation and explained batch jobs through the local cloud, driven by the CLI and HTTP as a
user would: an uploaded CSV evaluated by two evaluators with keys of their own, completed,
published to the version; a file scored with attribution columns."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import boto3
import numpy as np
import pyarrow.parquet as pq
import pytest

from mlambda_local.cli import main as cli
from mlambda_local.client import ApiClient, ApiError, Target
from tests.batch_support import register_model
from tests.e2e.conftest import Platform
from tests.unit.fakes_batch import FEATURES, make_frame
from tests.unit.fakes_registry import breast_cancer

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def cloud(platform: Platform) -> dict[str, Any]:
    """churn v1 (its explainer built) in production on the module's local cloud, two evaluators' keys."""
    outputs = platform.cloud.outputs
    s3 = boto3.session.Session(
        region_name="us-east-1", aws_access_key_id="testing", aws_secret_access_key="testing"
    ).client("s3", endpoint_url=platform.cloud.endpoint_url)
    register_model(
        s3,
        outputs["RegistryTableName"],
        outputs["ArtifactsBucketName"],
        platform.cloud.endpoint_url,
        explained=True,
    )
    keys = {
        name: platform.admin.post("/keys", {"name": name, "scopes": ["evaluate"]})["api_key"]
        for name in ("alice", "bob")
    }
    return {
        "admin": platform.admin,
        "keys": keys,
        "data_dir": platform.data_dir,
        "api_url": platform.api_url,
        "s3": s3,
    }


def run(cloud: dict[str, Any], capsys: pytest.CaptureFixture[str], *args: str, key: str | None = None) -> str:
    common = ["--data-dir", str(cloud["data_dir"])]
    if key:
        common += ["--api-key", key]
    assert cli([*common, *args]) == 0
    return capsys.readouterr().out


def test_an_evaluation_is_judged_published_to_the_version_and_required_by_the_gate(
    cloud: dict[str, Any], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given cancer requires an evaluation, and v1 registered through the CLI (validated: READY,
    # its explainer built from the held-out reference) has none: production refuses it
    admin = cloud["admin"]
    trained = breast_cancer()
    (tmp_path / "v1.onnx").write_bytes(trained.onnx)
    reference = tmp_path / "reference.parquet"
    reference.write_bytes(trained.parquet(150))
    run(cloud, capsys, "models", "create", "cancer")
    assert "requires a completed evaluation" in run(cloud, capsys, "evaluations", "require", "cancer", "on")
    registered = run(
        cloud, capsys, "models", "register", "cancer", str(tmp_path / "v1.onnx"),
        "--reference", str(reference), "--target", "target",
    )  # fmt: skip
    assert ": READY (classification, 30 features" in registered
    with pytest.raises(ApiError) as refused:
        admin.request("PUT", "/models/cancer/aliases/production", body={"version": 1})
    assert (refused.value.status, refused.value.code) == (409, "evaluation_required")
    assert "no completed evaluation" in run(cloud, capsys, "evaluations", "published", "cancer", "v1")
    # When the owner evaluates v1 on 8 rows of an uploaded CSV of 50 held-out patients (no label)
    source = tmp_path / "patients.csv"
    trained.sample(250).tail(50).drop(columns="target").assign(patient="p").to_csv(source, index=False)
    out = run(
        cloud,
        capsys,
        "evaluations",
        "create",
        "cancer",
        "--version",
        "v1",
        "--csv",
        str(source),
        "--rows",
        "8",
    )
    evaluation_id = re.search(r"evaluation ([0-9a-f]{20})", out).group(1)  # type: ignore[union-attr]
    assert "8 rows from the upload (50 usable, 0 skipped), explained: linear" in out
    # and alice judges every row (one wrong, with HTML in her comment), bob the first four
    alice, bob = cloud["keys"]["alice"], cloud["keys"]["bob"]
    for row in range(8):
        args = ["evaluations", "verdict", evaluation_id, str(row), "correct"]
        if row == 5:
            args = [
                "evaluations",
                "verdict",
                evaluation_id,
                "5",
                "incorrect",
                "--comment",
                "<img src=x onerror=alert(1)>",
            ]
        assert "by alice" in run(cloud, capsys, *args, key=alice)
    for row in range(4):
        run(cloud, capsys, "evaluations", "verdict", evaluation_id, str(row), "correct", key=bob)
    again = run(cloud, capsys, "evaluations", "verdict", evaluation_id, "0", "correct", key=bob)
    assert "(unchanged)" in again
    todo = run(cloud, capsys, "evaluations", "show", evaluation_id, "--rows", "--todo", key=bob)
    assert [int(n) for n in re.findall(r"row +(\d+): predicted", todo)] == [4, 5, 6, 7]
    # an evaluator cannot complete it
    with pytest.raises(ApiError) as forbidden:
        ApiClient(Target(api_url=cloud["api_url"], api_key=alice)).post(
            f"/evaluations/{evaluation_id}/complete", {}
        )
    assert forbidden.value.status == 403
    # Then completing it prints the summary and publishes it to cancer v1 with the evaluators' names
    done = run(cloud, capsys, "evaluations", "complete", evaluation_id)
    assert "coverage 100.0%, agreement with the model 91.7% (11/12 verdicts say correct)" in done
    assert "row 5 alice (incorrect): <img src=x onerror=alert(1)>" in done
    assert "published to cancer v1" in done
    published = admin.get("/models/cancer/versions/1/evaluations")["evaluations"]
    assert [(p["evaluation_id"], p["evaluators"]) for p in published] == [(evaluation_id, ["alice", "bob"])]
    shown = run(cloud, capsys, "evaluations", "published", "cancer", "v1")
    assert evaluation_id in shown and "12 verdicts by alice, bob: coverage 1.000, agreement 0.917" in shown
    listed = run(cloud, capsys, "evaluations", "list", "cancer", "--status", "completed")
    assert evaluation_id in listed and "8/8" in listed
    # and the gate now lets v1 into production, naming the evaluation
    moved = admin.request("PUT", "/models/cancer/aliases/production", body={"version": 1})
    check = next(c for c in moved["gate"]["checks"] if c["name"] == "evaluation_completed")
    assert evaluation_id in check["message"] and "alice, bob" in check["message"]


def test_the_cli_submits_an_explained_batch_job(
    cloud: dict[str, Any], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given
    source = tmp_path / "scores.csv"
    make_frame(400, seed=6).to_csv(source, index=False)
    # When
    out = run(
        cloud, capsys, "batch", "submit", str(source), "--model", "churn", "--explain", "--chunk-rows", "200"
    )
    job_id = out.split()[1]
    run(cloud, capsys, "batch", "fetch", job_id, str(tmp_path / "out.parquet"))
    # Then
    assert "explained with linear (log_odds scale)" in out
    table = pq.read_table(tmp_path / "out.parquet")
    assert table.num_rows == 400
    attributions = sum(table.column(f"explain_{name}").to_numpy() for name in FEATURES)
    np.testing.assert_allclose(
        attributions + table.column("explain_baseline").to_numpy(),
        table.column("explain_value").to_numpy(),
        atol=1e-9,
    )
