"""Online inference as a client meets it: register and promote over the registry API, predict over HTTP."""

from __future__ import annotations

from collections import Counter
from functools import cache
from typing import Any

import numpy as np
import pytest
import requests
from skl2onnx import to_onnx
from sklearn.datasets import make_classification
from sklearn.ensemble import GradientBoostingClassifier

from mlambda_local.client import ApiClient, ApiError
from tests.e2e.conftest import Platform
from tests.e2e.test_ingest_e2e import ARCHIVE_WAIT_S, archived_ids
from tests.integration.local_cloud.support import wait_for

pytestmark = pytest.mark.e2e

MODEL = "e2e-churn"
FEATURES = [f"f{i}" for i in range(20)]


@cache
def trained(seed: int) -> tuple[bytes, Any, np.ndarray]:
    X, y = make_classification(n_samples=400, n_features=20, n_informative=8, random_state=seed)
    model = GradientBoostingClassifier(n_estimators=30, max_depth=3, random_state=seed).fit(X, y)
    onx = to_onnx(model, X[:1].astype(np.float32), options={id(model): {"zipmap": False}})
    return onx.SerializeToString(), model, X.astype(np.float32)


def rows(X: np.ndarray) -> list[dict[str, float]]:
    return [dict(zip(FEATURES, map(float, x), strict=True)) for x in X]


def register(admin: ApiClient, seed: int) -> int:
    data, _, X = trained(seed)
    ticket = admin.post(f"/models/{MODEL}/uploads", {"filename": "model.onnx"})
    requests.put(ticket["url"], data=data, timeout=30).raise_for_status()
    pending = admin.post(
        f"/models/{MODEL}/versions",
        {"upload_key": ticket["upload_key"], "feature_names": FEATURES, "smoke_inputs": rows(X[:5])},
    )
    return int(admin.wait_until_ready(MODEL, int(pending["version"]), timeout=120)["version"])


@pytest.fixture(scope="module")
def client(platform: Platform) -> ApiClient:
    """A predict-only key; v1 promoted to production, v2 a 50 % canary sticky on entity_id.

    The endpoint is set before the first prediction: the function caches configs for 10 s.
    """
    platform.admin.post("/models", {"name": MODEL})
    version = register(platform.admin, seed=0)
    platform.admin.request("PUT", f"/models/{MODEL}/aliases/production", body={"version": version})
    canary = register(platform.admin, seed=1)
    platform.admin.request(
        "PUT",
        f"/models/{MODEL}/endpoint",
        body={
            "variants": [
                {"name": "main", "target": "production", "weight": 50},
                {"name": "canary", "target": f"v{canary}", "weight": 50},
            ],
            "sticky_key": "entity_id",
        },
    )
    key = platform.admin.post("/keys", {"name": "predictor", "scopes": ["predict"]})
    return platform.client(key["api_key"])


def test_http_predictions_match_sklearn_predict_proba(client: ApiClient) -> None:
    # Given
    _, model, X = trained(0)
    # When
    body = client.post(
        f"/models/{MODEL}/predict", {"instances": rows(X[:50]), "request_id": "e2e-1", "variant": "main"}
    )
    # Then
    assert (body["model"], body["version"], body["request_id"], body["cached"]) == (MODEL, 1, "e2e-1", False)
    expected = model.predict_proba(X[:50].astype(np.float64))
    got = np.array([[p["probabilities"][str(c)] for c in model.classes_] for p in body["predictions"]])
    np.testing.assert_allclose(got, expected, atol=1e-5)
    assert [p["label"] for p in body["predictions"]] == model.predict(X[:50]).tolist()


def test_entity_request_without_stored_features_names_the_missing_ones(client: ApiClient) -> None:
    with pytest.raises(ApiError) as error:
        client.post(f"/models/{MODEL}/predict", {"entity_id": "nobody", "features": {"f0": 1.0}})
    assert (error.value.status, error.value.code) == (422, "invalid_features")
    assert "f1" in error.value.message


def test_bad_requests_over_http(client: ApiClient, platform: Platform) -> None:
    url = f"{platform.api_url}/models/{MODEL}/predict"
    headers = {"x-api-key": str(client.target.api_key), "Content-Type": "application/json"}
    malformed = requests.post(url, data=b'{"instances": [', headers=headers, timeout=10)
    unknown = requests.post(
        f"{platform.api_url}/models/ghost/predict",
        json={"instances": [{"f0": 1}]},
        headers=headers,
        timeout=10,
    )
    no_key = requests.post(url, json={"instances": [{"f0": 1}]}, timeout=10)
    assert (malformed.status_code, malformed.json()["code"]) == (400, "malformed_json")
    assert (unknown.status_code, unknown.json()["code"]) == (404, "no_production_alias")
    assert no_key.status_code == 401


def test_canary_split_is_sticky_per_entity(client: ApiClient) -> None:
    # Given v2 as a 50 % canary, sticky on the request's entity_id
    _, _, X = trained(0)
    instance = rows(X[:1])
    # When every entity asks twice
    seen: dict[str, set[str]] = {}
    for i in range(40):
        for _ in range(2):
            body = client.post(f"/models/{MODEL}/predict", {"entity_id": f"user-{i}", "instances": instance})
            seen.setdefault(f"user-{i}", set()).add(body["variant"])
    # Then each entity stayed on one variant and both variants served
    assert all(len(variants) == 1 for variants in seen.values())
    counts = Counter(next(iter(v)) for v in seen.values())
    assert set(counts) == {"main", "canary"}


def test_unknown_variant_is_400(client: ApiClient) -> None:
    _, _, X = trained(0)
    with pytest.raises(ApiError) as error:
        client.post(f"/models/{MODEL}/predict", {"instances": rows(X[:1]), "variant": "ghost"})
    assert (error.value.status, error.value.code) == (400, "unknown_variant")


def test_explanations_over_http_add_up_and_match_shap(platform: Platform) -> None:
    # Given: a GBM registered with its training set as the reference sample
    import shap

    name = "e2e-explained"
    data, model, X = trained(0)
    admin = platform.admin
    admin.post("/models", {"name": name})
    ticket = admin.post(f"/models/{name}/uploads", {"filename": "model.onnx"})
    requests.put(ticket["url"], data=data, timeout=30).raise_for_status()
    reference = admin.post(f"/models/{name}/uploads", {"filename": "reference.csv", "kind": "reference"})
    csv = ",".join(FEATURES) + "\n" + "\n".join(",".join(repr(float(v)) for v in x) for x in X) + "\n"
    requests.put(reference["url"], data=csv.encode(), timeout=30).raise_for_status()
    version = admin.post(
        f"/models/{name}/versions",
        {
            "upload_key": ticket["upload_key"],
            "reference_key": reference["upload_key"],
            "feature_names": FEATURES,
        },
    )
    admin.wait_until_ready(name, int(version["version"]), timeout=120)
    admin.request("PUT", f"/models/{name}/aliases/production", body={"version": version["version"]})
    key = admin.post("/keys", {"name": "explainer", "scopes": ["predict"]})
    client = platform.client(key["api_key"])
    # When
    body = client.post(f"/models/{name}/predict", {"instances": rows(X[:3]), "explain": {"class": "1"}})
    # Then
    expected = shap.TreeExplainer(model).shap_values(X[:3])
    for prediction, want, margin in zip(
        body["predictions"], expected, model.decision_function(X[:3]), strict=True
    ):
        explanation = prediction["explanation"]
        assert (explanation["method"], explanation["output"], explanation["class"]) == (
            "tree_shap_path_dependent",
            "log_odds",
            "1",
        )
        got = [explanation["attributions"][f] for f in FEATURES]
        np.testing.assert_allclose(got, want, atol=1e-5)
        assert explanation["value"] == pytest.approx(margin, abs=1e-4)
        assert explanation["baseline"] + sum(got) == pytest.approx(explanation["value"], abs=1e-9)


def test_mlflow_formats_over_http_match_sklearn_and_reach_the_archive_once(
    client: ApiClient, platform: Platform
) -> None:
    # Given: MLflow's documented bodies for 200 rows, the columnar one with a request id
    _, model, X = trained(0)
    data = X[:200].astype(np.float64)
    expected = model.predict(data).tolist()
    # When
    split = client.post(
        f"/models/{MODEL}/predict",
        {
            "dataframe_split": {"columns": FEATURES, "data": data.tolist()},
            "variant": "main",
            "request_id": "split-e2e",
        },
    )
    records = client.post(f"/models/{MODEL}/predict", {"dataframe_records": rows(X[:3]), "variant": "main"})
    tensor = client.post(f"/models/{MODEL}/predict", {"inputs": data[:3].tolist(), "variant": "main"})
    # Then
    assert split["predictions"] == expected
    np.testing.assert_allclose(split["probabilities"], model.predict_proba(data), atol=1e-5)
    assert records["predictions"] == tensor["predictions"] == expected[:3]
    wanted = {f"split-e2e:{i}" for i in range(200)}
    ids = wait_for(
        lambda: (
            (found := [i for i in archived_ids(platform, "type=prediction/") if i in wanted])
            and len(found) >= 200
            and found
        ),
        timeout=ARCHIVE_WAIT_S,
    )
    assert Counter(ids) == Counter(wanted)


def test_open_inference_protocol_over_http(client: ApiClient) -> None:
    # Given: the model's metadata, as a KServe / Triton client reads it first
    _, model, X = trained(0)
    assert client.get("/v2/health/ready") == {"ready": True}
    metadata = client.get(f"/v2/models/{MODEL}/versions/1")
    (tensor,) = metadata["inputs"]
    assert tensor["shape"] == [-1, 20] and metadata["versions"] == ["1"]
    assert client.get(f"/v2/models/{MODEL}/versions/1/ready") == {"name": MODEL, "ready": True}
    # When
    answer = client.post(
        f"/v2/models/{MODEL}/versions/1/infer",
        {
            "id": "v2-e2e",
            "inputs": [
                {
                    "name": tensor["name"],
                    "shape": [10, 20],
                    "datatype": "FP32",
                    "data": X[:10].ravel().tolist(),
                }
            ],
        },
    )
    # Then
    outputs = {o["name"]: o for o in answer["outputs"]}
    assert answer["id"] == "v2-e2e" and answer["model_version"] == "1"
    assert outputs["label"]["data"] == model.predict(X[:10].astype(np.float64)).tolist()
    np.testing.assert_allclose(
        np.reshape(outputs["probabilities"]["data"], (10, 2)),
        model.predict_proba(X[:10].astype(np.float64)),
        atol=1e-5,
    )
    with pytest.raises(ApiError) as error:
        client.post(
            f"/v2/models/{MODEL}/infer",
            {"inputs": [{"name": tensor["name"], "shape": [1, 20], "datatype": "INT64", "data": [0.5] * 20}]},
        )
    assert error.value.status == 422 and "inputs[0].data" in str(error.value)
