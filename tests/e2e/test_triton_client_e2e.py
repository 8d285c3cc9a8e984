"""The Open Inference Protocol's reference client, ``tritonclient[http]``, against the local cloud.

tritonclient lives in its own virtualenv (never a project dependency): ``make test-triton``
creates ``.venv-test-triton`` and runs this module with ``MLAMBDA_TRITON_PYTHON`` pointing at it.
Without that variable the module is skipped (the request bodies tritonclient builds are also
kept in tests/events/open_inference_requests.json and, in binary mode, open_inference_binary_requests.json,
and served in the unit tests on every run).

Binary mode goes through the local gateway as through API Gateway: the bytes survive only as
the template's binary media type, so the client passes ``Content-Type`` and ``Accept:
application/octet-stream`` (tritonclient sends neither by itself; without them its binary
request is a 415 saying so).
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import boto3
import numpy as np
import pytest
from sklearn.datasets import make_classification

from mlambda_local.bootstrap import ensure_admin_key
from mlambda_local.client import ApiClient, Target
from mlambda_local.cloud import LocalCloud
from tests.batch_support import register_model
from tests.conftest import REPO_ROOT
from tests.unit.fakes_batch import classifier_model

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(
        not os.environ.get("MLAMBDA_TRITON_PYTHON"),
        reason="make test-triton runs it (tritonclient's virtualenv)",
    ),
]

CLIENT = r"""
import json, sys, numpy as np, tritonclient.http as http
url, key, rows = sys.argv[1], sys.argv[2], np.array(json.loads(sys.argv[3]), dtype=np.float32)
client = http.InferenceServerClient(url=url)
headers = {"x-api-key": key}
# What API Gateway needs to pass bytes both ways (template.yaml BinaryMediaTypes); tritonclient sends neither.
# Copies on each call: tritonclient adds Inference-Header-Content-Length to the dict it is given.
octets = {**headers, "Content-Type": "application/octet-stream", "Accept": "application/octet-stream"}
out = {"live": client.is_server_live(headers=headers), "ready": client.is_server_ready(headers=headers),
       "model_ready": client.is_model_ready("churn", headers=headers),
       "extensions": client.get_server_metadata(headers=headers)["extensions"]}
name = client.get_model_metadata("churn", headers=headers)["inputs"][0]["name"]
x = http.InferInput(name, list(rows.shape), "FP32")
x.set_data_from_numpy(rows, binary_data=False)
result = client.infer("churn", [x], headers=dict(headers), request_id="triton-live",
                      outputs=[http.InferRequestedOutput("label", binary_data=False),
                               http.InferRequestedOutput("probabilities", binary_data=False)])
out["id"] = result.get_response()["id"]
out["label"] = result.as_numpy("label").tolist()
out["probabilities"] = result.as_numpy("probabilities").tolist()
# Binary mode, tritonclient's default: binary inputs, every output binary (binary_data_output).
b = http.InferInput(name, list(rows.shape), "FP32")
b.set_data_from_numpy(rows)
result = client.infer("churn", [b], headers=dict(octets), request_id="triton-binary")
response = result.get_response()
out["binary_outputs"] = sorted(o["name"] for o in response["outputs"] if "binary_data_size" in o.get("parameters", {}))
out["binary_id"] = response["id"]
out["binary_label"] = result.as_numpy("label").tolist()
out["binary_probabilities"] = result.as_numpy("probabilities").tolist()
# Per-feature binary inputs, one output binary and one JSON.
features = []
for i in range(rows.shape[1]):
    f = http.InferInput(f"f{i}", [rows.shape[0]], "FP32")
    f.set_data_from_numpy(np.ascontiguousarray(rows[:, i]), binary_data=i % 2 == 0)
    features.append(f)
result = client.infer("churn", features, headers=dict(octets), model_version="1",
                      outputs=[http.InferRequestedOutput("label", binary_data=True),
                               http.InferRequestedOutput("probabilities", binary_data=False)])
out["mixed_binary_outputs"] = [o["name"] for o in result.get_response()["outputs"] if "binary_data_size" in o.get("parameters", {})]
out["mixed_label"] = result.as_numpy("label").tolist()
out["mixed_probabilities"] = result.as_numpy("probabilities").tolist()
try:  # binary data without the media type: API Gateway would pass it as text
    client.infer("churn", [b], headers=dict(headers))
except Exception as exc:
    out["untyped_error"] = str(exc)
wrong = http.InferInput("pixels", [1, 20], "FP32")
wrong.set_data_from_numpy(rows[:1], binary_data=False)
try:
    client.infer("churn", [wrong], headers=dict(headers))
except Exception as exc:
    out["error"] = str(exc)
print(json.dumps(out))
"""


def test_tritonclient_reads_health_metadata_and_infers_like_sklearn_in_json_and_binary(
    tmp_path: Path,
) -> None:
    # Given: a model behind production and a predict key on the local cloud
    with LocalCloud(REPO_ROOT / "template.yaml", tmp_path, mode="in-process") as cloud:
        s3 = boto3.client("s3", endpoint_url=cloud.endpoint_url, region_name="us-east-1")
        register_model(
            s3, cloud.outputs["RegistryTableName"], cloud.outputs["ArtifactsBucketName"], cloud.endpoint_url
        )
        admin_key = ensure_admin_key(tmp_path, cloud.outputs["ApiKeysTableName"], cloud.endpoint_url)
        admin = ApiClient(Target(api_url=str(cloud.api_url), api_key=admin_key))
        key = admin.post("/keys", {"name": "triton", "scopes": ["predict"]})["api_key"]
        X, _ = make_classification(n_samples=400, n_features=20, random_state=0)
        # When: tritonclient, unchanged, with the stage in its URL and the key in its headers
        done = subprocess.run(
            [
                os.environ["MLAMBDA_TRITON_PYTHON"],
                "-c",
                CLIENT,
                str(cloud.api_url).removeprefix("http://"),
                key,
                json.dumps(X[:3].tolist()),
            ],
            capture_output=True,
            text=True,
            timeout=120,
            check=True,
        )
    # Then
    answer = json.loads(done.stdout)
    _, model = classifier_model()
    expected, probabilities = model.predict(X[:3]).tolist(), model.predict_proba(X[:3])
    assert answer["live"] and answer["ready"] and answer["model_ready"]
    assert answer["extensions"] == ["binary_tensor_data"]
    assert answer["id"] == "triton-live"
    assert answer["label"] == expected
    np.testing.assert_allclose(answer["probabilities"], probabilities, atol=1e-5)
    # binary tensor data both ways, as tritonclient encodes and decodes it
    assert answer["binary_outputs"] == ["label", "probabilities"] and answer["binary_id"] == "triton-binary"
    assert answer["binary_label"] == expected
    np.testing.assert_allclose(answer["binary_probabilities"], probabilities, atol=1e-5)
    assert answer["mixed_binary_outputs"] == ["label"] and answer["mixed_label"] == expected
    np.testing.assert_allclose(answer["mixed_probabilities"], probabilities, atol=1e-5)
    assert "application/octet-stream" in answer["untyped_error"]
    assert "inputs[0].name" in answer["error"] and "pixels" in answer["error"]
