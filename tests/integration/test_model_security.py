"""A model can never make mlambda read a file: refused on register, and unloadable even if registered.

The wave-1 defect: a model whose ``sparse_initializer`` declared its data EXTERNAL at a relative
path was registered, passed the production gate, and every prediction returned the first bytes
of that file (relative paths resolve against the function's working directory).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import boto3
import numpy as np
import pytest
from moto import mock_aws

from mlambda.adapters import onnx as onnx_adapter
from mlambda.adapters.model_sessions import ModelSessions
from mlambda.adapters.onnx import OnnxModel
from mlambda.adapters.s3 import ObjectStore
from mlambda.config import PredictSettings
from mlambda.errors import MlambdaError
from mlambda.schemas.registry import FeatureSchema, FeatureSpec, ModelVersion, Signature, TensorSpec
from tests.onnx_exploits import LOADED_BY_RUNTIMES, PLACES, leaked, sparse_initializer_values

SECRET = b"mlk.admin.0123456789abcdef-do-not-leak"


@pytest.fixture
def secret_next_to_the_function(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A file in the working directory, as `.mlambda/admin_key` is next to the local functions."""
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "secret.txt"
    path.write_bytes(SECRET)
    return path


def locations(secret: Path) -> dict[str, str]:
    """Every way to name the file: relative to the working directory, absolute, and by climbing."""
    climb = "../" * len(Path.cwd().parts) + str(secret).lstrip("/")
    return {"relative": "secret.txt", "absolute": str(secret), "traversal": climb}


def version_of(data: bytes) -> ModelVersion:
    """A version as the registry would record it, written without the registry's checks."""
    return ModelVersion(
        model="leak",
        version=1,
        artifact_key="models/leak/v1/model.onnx",
        artifact_sha256=hashlib.sha256(data).hexdigest(),
        size_bytes=len(data),
        signature=Signature(
            inputs=[TensorSpec(name="x", dtype="float32", shape=[None, 4])],
            outputs=[TensorSpec(name="y", dtype="float32", shape=[None, 4])],
            task="regression",
            value_output="y",
        ),
        feature_schema=FeatureSchema(
            mode="tensor",
            features=[FeatureSpec(name=f"f{i}", dtype="float") for i in range(4)],
            tensor_input="x",
            tensor_dtype="float32",
        ),
        created_at="2026-01-01T00:00:00Z",  # type: ignore[arg-type]
        created_by="attacker",
    )


@pytest.fixture
def artifacts() -> Iterator[ObjectStore]:
    with mock_aws():
        boto3.client("s3", region_name="us-east-1").create_bucket(Bucket="artifacts")
        settings = PredictSettings.model_validate(
            {
                "REGISTRY_TABLE": "registry",
                "ARTIFACTS_BUCKET": "artifacts",
                "FEATURES_TABLE": "features",
                "TRACKING_TABLE": "tracking",
                "PREDICTION_CACHE_TABLE": "cache",
                "DATA_BUCKET": "data",
            }
        )
        yield ObjectStore("artifacts", settings)


@pytest.fixture(params=["checked", "check-disabled"])
def structure_check(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Run each session test twice: as shipped, and with the structure check switched off, so that
    the session's own confinement of external data is what is tested."""
    if request.param == "check-disabled":
        monkeypatch.setattr(onnx_adapter, "read_structure", lambda data: None)
    return str(request.param)


def test_predicts_session_cache_never_reads_the_file_a_sparse_initializer_names(
    secret_next_to_the_function: Path, artifacts: ObjectStore, structure_check: str
) -> None:
    # Given: the wave-1 exploit, registered behind the registry's back
    data = sparse_initializer_values("secret.txt")
    version = version_of(data)
    artifacts.put(version.artifact_key, data)
    sessions = ModelSessions(artifacts)
    # When
    try:
        output = sessions.get(version).run({"x": np.zeros((1, 4), np.float32)}, ["y"])["y"]
    except MlambdaError as exc:
        output, message = None, exc.message
    else:
        message = ""
    # Then: the load fails closed and nothing of the file shows, not even in the error
    assert output is None or not leaked(output, SECRET), f"served the file's bytes: {output!r}"
    assert output is None
    assert SECRET[:8].decode() not in message


@pytest.mark.parametrize("how", ["relative", "absolute", "traversal"])
@pytest.mark.parametrize("place", LOADED_BY_RUNTIMES)
def test_no_session_reads_a_file_wherever_the_external_tensor_hides(
    secret_next_to_the_function: Path, place: str, how: str, structure_check: str
) -> None:
    # Given: a model the registry's check never saw
    data = PLACES[place](locations(secret_next_to_the_function)[how])
    # When
    try:
        output = OnnxModel(data).run({"x": np.zeros((1, 4), np.float32)})["y"]
    except MlambdaError as exc:
        output, message = None, exc.message
    else:
        message = ""
    # Then
    assert output is None or not leaked(output, SECRET), f"{place} via {how} path leaked ({structure_check})"
    assert output is None, f"{place} via {how} path loaded ({structure_check})"
    assert "do-not-leak" not in message and "mlk.admin" not in message
