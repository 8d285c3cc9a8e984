"""The SDK against the local cloud, as application code uses it: register, promote, predict in
each shape, events in chunks, a batch job from upload to fetched file, monitoring, errors."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from mlambda.client import Client, ConflictError, InvalidRequestError, NotFoundError, VersionFailedError
from tests.e2e.conftest import Platform
from tests.unit.fakes_registry import TrainedModel, breast_cancer

pytestmark = pytest.mark.e2e

MODEL = "sdk-cancer"


@pytest.fixture(scope="module")
def client(platform: Platform) -> Client:
    return Client(platform.api_url, platform.admin_key)


@pytest.fixture(scope="module")
def trained(client: Client, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TrainedModel]:
    """Registered through the SDK on a name nobody created, with a labelled held-out reference; promoted."""
    model = breast_cancer(1.0)
    folder = tmp_path_factory.mktemp("sdk")
    (folder / "model.onnx").write_bytes(model.onnx)
    model.frame.drop(index=model.trained_on).to_parquet(folder / "reference.parquet", index=False)
    statuses: list[str] = []
    version = client.register(
        MODEL,
        folder / "model.onnx",
        reference=folder / "reference.parquet",
        target="target",
        owner="sdk",
        tags={"team": "apps"},
        on_status=lambda record: statuses.append(record["status"]),
    )
    assert version["status"] == "READY" and statuses[-1] == "READY"
    client.promote(MODEL, version["version"])
    yield model


def test_register_created_the_model_and_predictions_match_sklearn_in_every_shape(
    client: Client, trained: TrainedModel
) -> None:
    # Given 300 rows
    frame = trained.frame[trained.features].iloc[:300]
    expected = trained.estimator.predict_proba(frame.to_numpy(np.float32))[:, 1]
    # When sent as rows, as columns and as a DataFrame
    as_rows = client.predict(MODEL, frame.to_dict(orient="records"))
    as_columns = client.predict_columns(MODEL, {name: frame[name].to_numpy() for name in trained.features})
    as_frame = client.predict_frame(MODEL, frame).to_frame(index=frame.index)
    # Then
    assert client.model(MODEL)["owner"] == "sdk"
    for answer in (as_rows, as_columns):
        assert answer.version == 1 and answer.classes == ["0", "1"]
        assert np.max(np.abs(np.array(answer.probabilities)[:, 1] - expected)) < 1e-5
    assert list(as_frame.index) == list(frame.index)
    assert np.max(np.abs(as_frame["proba_1"].to_numpy() - expected)) < 1e-5


def test_api_errors_arrive_as_typed_exceptions_with_the_apis_code(
    client: Client, trained: TrainedModel
) -> None:
    with pytest.raises(NotFoundError) as missing:
        client.predict("no-such-model", [{"a": 1.0}])
    with pytest.raises(InvalidRequestError) as invalid:
        client.predict(MODEL, [{trained.features[0]: 1.0}])
    with pytest.raises(ConflictError) as exists:
        client.create_model(MODEL)
    assert missing.value.status == 404
    assert invalid.value.status == 422 and invalid.value.details
    assert exists.value.code == "model_exists"


def test_a_version_the_validator_refuses_raises_with_its_reason(client: Client, tmp_path: Path) -> None:
    corrupt = tmp_path / "corrupt.onnx"
    corrupt.write_bytes(b"definitely not onnx")
    with pytest.raises(VersionFailedError) as failed:
        client.register(MODEL, corrupt, features=["a"], timeout=120)
    assert failed.value.code == "invalid_model"


def test_send_events_chunks_and_a_resend_is_all_duplicates(client: Client) -> None:
    # Given 620 events (two requests of 500 at most), one malformed
    now = datetime.now(UTC).isoformat()
    events = [
        {"event_id": f"sdk-{i}", "type": "interaction", "entity_id": f"u{i % 7}", "timestamp": now,
         "payload": {"kind": "view", "item_id": "sku-1"}}
        for i in range(620)
    ]  # fmt: skip
    events[555]["payload"] = {"kind": "teleport"}
    # When
    first = client.send_events(events)
    again = client.send_events(events)
    # Then
    assert (first.requests, first.accepted, first.rejected) == (2, 619, 1)
    assert first.rejections[0]["index"] == 555
    assert (again.duplicates, again.accepted) == (619, 0)


def test_a_batch_job_from_a_presigned_upload_to_a_fetched_file(
    client: Client, trained: TrainedModel, tmp_path: Path
) -> None:
    # Given a Parquet file with an id column
    frame = trained.frame[trained.features].iloc[:400].assign(patient_id=[f"p{i}" for i in range(400)])
    source = tmp_path / "scores.parquet"
    frame.to_parquet(source, index=False, row_group_size=100)
    uploaded: list[int] = []
    # When
    job = client.submit_batch(MODEL, source, on_progress=uploaded.append)
    done = client.wait_for_job(job["job"]["job_id"], timeout=180)
    fetched = client.fetch_job(
        done["job"]["job_id"], tmp_path / "out.parquet", rejects=tmp_path / "rejects.csv"
    )
    # Then
    assert sum(uploaded) == source.stat().st_size
    assert done["job"]["status"] == "completed" and fetched.rows == 400 and fetched.rows_rejected == 0
    out = pq.read_table(tmp_path / "out.parquet").to_pandas()
    assert out["patient_id"].tolist() == frame["patient_id"].tolist()
    expected = trained.estimator.predict_proba(frame[trained.features].to_numpy(np.float32))[:, 1]
    assert np.max(np.abs(out["proba_1"].to_numpy() - expected)) < 1e-5
    assert pd.read_csv(tmp_path / "rejects.csv").empty


def test_monitoring_of_a_model_never_monitored_is_a_not_found(client: Client, trained: TrainedModel) -> None:
    with pytest.raises(NotFoundError):
        client.monitoring_report(MODEL)
