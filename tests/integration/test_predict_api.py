"""The predict function on moto: real adapters, API Gateway events, the registry table as the registry writes it."""

from __future__ import annotations

import base64
import hashlib
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import boto3
import numpy as np
import pytest
from moto import mock_aws

import mlambda
from functions.predict import app as predict_app
from mlambda.adapters.dynamodb import DynamoTable
from mlambda.adapters.model_sessions import ModelSessions
from mlambda.adapters.prediction_cache import PredictionCacheTable
from mlambda.adapters.registry import DynamoRegistryStore
from mlambda.adapters.s3 import ObjectStore
from mlambda.config import PredictSettings, function_environment
from mlambda.http import BINARY_MEDIA_TYPES
from mlambda.schemas.prediction_log import PredictionLogRecord, expand
from mlambda.schemas.registry import (
    CachePolicy,
    EndpointConfig,
    HistoryEntry,
    ModelVersion,
    Variant,
)
from mlambda.services.inference.service import InferenceService
from mlambda_local.cloud.functions import LambdaContext
from tests.conftest import REPO_ROOT, load_event
from tests.explain_support import with_explainer
from tests.registry_support import publish
from tests.triton_support import Tensor, binary_answer, binary_request, infer_event, recorded_requests
from tests.unit.fakes_predict import classifier, row, version_of
from tests.unit.test_predict_service import harness

NOW = datetime(2026, 1, 1, tzinfo=UTC)
CONTEXT = LambdaContext(
    function_name="predict",
    invoked_function_arn="arn:aws:lambda:us-east-1:123456789012:function:predict",
    memory_limit_in_mb=1024,
    timeout_seconds=10,
)
ENV = {
    "AWS_REGION": "us-east-1",
    "REGISTRY_TABLE": "registry",
    "ARTIFACTS_BUCKET": "artifacts",
    "FEATURES_TABLE": "features",
    "TRACKING_TABLE": "tracking",
    "PREDICTION_CACHE_TABLE": "prediction-cache",
    "DATA_BUCKET": "data",
    "MAX_INSTANCES": "50",
    "MAX_BODY_BYTES": "65536",
}


@dataclass
class World:
    settings: PredictSettings
    registry: DynamoRegistryStore
    artifacts: ObjectStore

    def seed(self, version: ModelVersion, data: bytes, *aliases: str) -> None:
        self.artifacts.put(version.artifact_key, data)
        publish(self.registry, version, aliases)

    def service(self) -> InferenceService:
        return InferenceService.from_settings(self.settings)


def create_tables(dynamodb: Any) -> None:
    keys = [{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}]
    attributes = [{"AttributeName": n, "AttributeType": "S"} for n in ("pk", "sk", "gsi1pk", "gsi1sk")]
    gsi = [
        {
            "IndexName": "gsi1",
            "KeySchema": [
                {"AttributeName": "gsi1pk", "KeyType": "HASH"},
                {"AttributeName": "gsi1sk", "KeyType": "RANGE"},
            ],
            "Projection": {"ProjectionType": "ALL"},
        }
    ]
    for name in ("registry", "tracking"):
        dynamodb.create_table(
            TableName=name,
            KeySchema=keys,
            AttributeDefinitions=attributes,
            GlobalSecondaryIndexes=gsi,
            BillingMode="PAY_PER_REQUEST",
        )
    dynamodb.create_table(
        TableName="features",
        KeySchema=keys,
        AttributeDefinitions=attributes[:2],
        BillingMode="PAY_PER_REQUEST",
    )
    dynamodb.create_table(
        TableName="prediction-cache",
        KeySchema=keys[:1],
        AttributeDefinitions=attributes[:1],
        BillingMode="PAY_PER_REQUEST",
    )


@pytest.fixture
def world() -> Iterator[World]:
    with mock_aws():
        create_tables(boto3.client("dynamodb", region_name="us-east-1"))
        boto3.client("s3", region_name="us-east-1").create_bucket(Bucket="artifacts")
        settings = PredictSettings.load(ENV)
        world = World(
            settings=settings,
            registry=DynamoRegistryStore(DynamoTable("registry", settings)),
            artifacts=ObjectStore("artifacts", settings),
        )
        data, _, _ = classifier(0)
        world.seed(version_of("churn", 1, data), data, "production")
        yield world


def call(
    service: InferenceService | None,
    body: Any,
    *,
    model: str = "churn",
    scopes: str = "predict",
    raw: str | None = None,
) -> tuple[int, dict[str, Any]]:
    event = load_event(
        "predict_request",
        path=f"/models/{model}/predict",
        pathParameters={"name": model},
        body=raw if raw is not None else json.dumps(body),
    )
    event["requestContext"]["authorizer"]["scopes"] = scopes
    response = predict_app.handler(event, CONTEXT, service)
    return response["statusCode"], json.loads(response["body"])


def logged_records(output: str) -> list[PredictionLogRecord]:
    """The prediction-log records among what the function printed (its log stream)."""
    return [
        PredictionLogRecord.model_validate_json(line)
        for line in output.splitlines()
        if line.startswith('{"mlambda_log":')
    ]


def test_predictions_over_the_handler_match_sklearn_and_are_logged(
    world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given
    _, model, X = classifier(0)
    # When
    status, body = call(world.service(), {"instances": [row(x) for x in X[:10]], "request_id": "r1"})
    # Then
    assert status == 200
    expected = model.predict_proba(X[:10].astype(np.float64))[:, 1]
    np.testing.assert_allclose([p["probabilities"]["1"] for p in body["predictions"]], expected, atol=1e-5)
    assert (body["model"], body["version"], body["variant"], body["request_id"]) == (
        "churn",
        1,
        "production",
        "r1",
    )
    (record,) = logged_records(capsys.readouterr().out)
    assert sorted(e.id for e in expand(record)) == sorted(f"r1:{i}" for i in range(10))


def test_the_handler_builds_its_service_from_the_environment(world: World) -> None:
    predict_app.service.cache_clear()
    try:
        with function_environment(ENV):
            status, body = call(None, {"instances": [row([0, 0, 0, 0])]})
    finally:
        predict_app.service.cache_clear()
    assert status == 200
    assert body["version"] == 1


@pytest.mark.parametrize(
    "case",
    [
        (None, '{"instances": [', 400, "malformed_json", None),
        (None, "", 422, "validation_error", None),
        ({"instances": [{"f0": 1}], "extra": 1}, None, 422, "validation_error", "extra"),
        ({"instances": []}, None, 422, "validation_error", "instances"),
        ({"instances": "nope"}, None, 422, "validation_error", "instances"),
        ({"instances": [row([0, 0, 0, 0])], "variant": "ghost"}, None, 400, "unknown_variant", "ghost"),
        ({"instances": [row([0, 0, 0, 0])] * 51}, None, 413, "too_many_instances", None),
        ({"instances": [{"f0": 1.0, "f1": 1.0, "f2": 1.0}]}, None, 422, "invalid_features", "f3"),
        ({"instances": [{"f0": "x", "f1": 1.0, "f2": 1.0, "f3": 1}]}, None, 422, "invalid_features", "f0"),
        (None, '{"instances": [{"f0": NaN, "f1": 1, "f2": 1, "f3": 1}]}', 422, "invalid_features", "f0"),
        (None, '{"instances": [{"f0": 1e999, "f1": 1, "f2": 1, "f3": 1}]}', 422, "invalid_features", "f0"),
        ({"instances": [{**row([0, 0, 0, 0]), "bonus": 1}]}, None, 422, "invalid_features", "bonus"),
        ({"instances": [{**row([0, 0, 0, 0]), "f1": 1e300}]}, None, 422, "invalid_features", "f1"),
        ({"instances": [[0.0, 0.0, -1e300, 0.0]]}, None, 422, "invalid_features", "instances[0].f2"),
        (
            {"dataframe_split": {"columns": ["f0", "f1", "f2", "f3"], "data": [[0, 0, 0, 1e300]]}},
            None,
            422,
            "invalid_features",
            "f3",
        ),
        ({"inputs": {"f0": [1e300], "f1": [0], "f2": [0], "f3": [0]}}, None, 422, "invalid_features", "f0"),
        ({"instances": [{"f0": "x" * 70_000}]}, None, 413, "body_too_large", None),
    ],
)
def test_bad_requests_get_the_right_status_and_name_the_problem(
    world: World, case: tuple[Any, str | None, int, str, str | None]
) -> None:
    body, raw, status, code, named = case
    got_status, error = call(world.service(), body, raw=raw)
    assert (got_status, error["code"]) == (status, code), error
    if named:
        assert named in error["message"]


def test_an_online_feature_beyond_64_bits_is_a_422_naming_it_not_a_500_in_the_log(
    world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given the entity's online features hold a 31-digit integer (an aggregate of huge increments,
    # written before increments were bounded)
    DynamoTable("features", world.settings).put(
        {
            "pk": "entity#u1",
            "sk": "fg#profile",
            "values": {"f0": 10**30},
            "at": NOW.isoformat(),
            "at_us": int(NOW.timestamp() * 1_000_000),
            "event_id": "e1",
        }
    )
    # When
    status, error = call(world.service(), {"entity_id": "u1", "features": {"f1": 0.5, "f2": 0.5, "f3": 0.5}})
    # Then
    assert (status, error["code"]) == (422, "invalid_features")
    assert error["details"][0]["field"] == "f0"
    assert "64-bit" in error["message"]
    assert logged_records(capsys.readouterr().out) == []


def test_unknown_model_is_404(world: World) -> None:
    status, error = call(world.service(), {"instances": [row([0, 0, 0, 0])]}, model="nobody")
    assert (status, error["code"]) == (404, "no_production_alias")


@pytest.mark.parametrize(
    ("method", "resource"), [("GET", "/models/{name}/predict"), ("POST", "/models/{name}/versions")]
)
def test_any_other_method_or_route_is_a_404_naming_it(
    world: World, method: str, resource: str, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given an event the function's one route does not match
    event = load_event("predict_request", httpMethod=method, resource=resource, path="/models/churn/x")
    # When
    response = predict_app.handler(event, CONTEXT, world.service())
    # Then
    body = json.loads(response["body"])
    assert (response["statusCode"], body["code"]) == (404, "no_route")
    assert body["message"] == f"no route for {method} /models/churn/x"
    assert response["multiValueHeaders"] == {"Content-Type": ["application/json"]}
    assert logged_records(capsys.readouterr().out) == []


def test_a_base64_encoded_body_is_decoded(world: World) -> None:
    # Given API Gateway passed the body base64-encoded (binary media types)
    body = json.dumps({"instances": [row([0, 0, 0, 0])]}).encode()
    event = load_event(
        "predict_request",
        pathParameters={"name": "churn"},
        body=base64.b64encode(body).decode(),
        isBase64Encoded=True,
    )
    # When
    response = predict_app.handler(event, CONTEXT, world.service())
    # Then
    assert response["statusCode"] == 200, response["body"]
    assert len(json.loads(response["body"])["predictions"]) == 1


def test_predicting_needs_the_predict_scope(world: World) -> None:
    status, error = call(world.service(), {"instances": [row([0, 0, 0, 0])]}, scopes="ingest")
    assert (status, error["code"]) == (403, "forbidden")


def test_a_corrupt_artifact_is_a_500_and_never_served(
    world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given the artifact was overwritten after registration
    world.artifacts.put("models/churn/1/model.onnx", b"tampered")
    # When
    status, error = call(world.service(), {"instances": [row([0, 0, 0, 0])]})
    # Then
    assert (status, error["code"]) == (500, "artifact_corrupt")
    assert "sha256" not in error["message"]  # 5xx bodies stay generic
    assert logged_records(capsys.readouterr().out) == []


def test_endpoint_variants_and_cache_through_the_registry_table(world: World) -> None:
    # Given v2 as a canary and the cache on
    data, _, _ = classifier(1)
    v2 = version_of("churn", 2, data)
    world.seed(v2, data)
    config = EndpointConfig(
        model="churn",
        variants=[
            Variant(name="main", target="production", weight=100),
            Variant(name="canary", target="v2", weight=0),
        ],
        cache=CachePolicy(enabled=True, ttl_seconds=60),
    )
    changed = HistoryEntry(model="churn", at=NOW, actor="test", action="endpoint_changed")
    world.registry.put_endpoint(config, ["production", "v2"], changed)
    service = world.service()
    # When
    _, first = call(service, {"instances": [row([1, 2, 3, 4])], "variant": "canary"})
    assert service.settle()  # the entry is written off the request path
    _, second = call(service, {"instances": [row([1, 2, 3, 4])], "variant": "canary"})
    # Then
    assert (first["variant"], first["version"], first["cached"]) == ("canary", 2, False)
    assert second["cached"] is True
    assert second["predictions"] == first["predictions"]


def test_cache_table_ignores_expired_items(world: World) -> None:
    table = PredictionCacheTable(DynamoTable("prediction-cache", world.settings))
    table.put_many({"a": {"value": 1.5}, "b": {"value": 2.5}}, expires_at=1000)
    assert table.get_many(["a", "b", "c"], now=999) == {"a": {"value": 1.5}, "b": {"value": 2.5}}
    assert table.get_many(["a"], now=1000) == {}


def test_model_sessions_fetch_verify_and_reuse(world: World) -> None:
    data, _, _ = classifier(0)
    sessions = ModelSessions(world.artifacts)
    version = version_of("churn", 1, data)
    assert sessions.get(version) is sessions.get(version)
    bad = version.model_copy(update={"artifact_sha256": hashlib.sha256(b"other").hexdigest(), "version": 9})
    with pytest.raises(Exception, match="sha256"):
        sessions.get(bad.model_copy(update={"artifact_key": version.artifact_key}))


def test_explanations_over_the_handler_read_the_explainer_from_the_artifacts_bucket(
    world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given: a version registered with an explainer beside its model (as the registry writes it)
    data, model, X = classifier(0)
    version = with_explainer(version_of("scored", 1, data), data, X, world.artifacts)
    world.seed(version, data, "production")
    service = world.service()
    # When
    status, body = call(
        service, {"instances": [row(x) for x in X[:3]], "explain": {"class": "1"}}, model="scored"
    )
    unknown_status, unknown = call(
        service, {"instances": [row(X[0])], "explain": {"class": "9"}}, model="scored"
    )
    # Then
    assert status == 200
    for prediction, x in zip(body["predictions"], X[:3], strict=True):
        explanation = prediction["explanation"]
        assert (explanation["method"], explanation["output"], explanation["class"]) == (
            "linear",
            "log_odds",
            "1",
        )
        assert explanation["value"] == pytest.approx(model.decision_function(x[None])[0], abs=1e-4)
    assert (unknown_status, unknown["code"]) == (422, "invalid_explain_class")
    records = logged_records(capsys.readouterr().out)
    assert records
    assert all("explanation" not in p for record in records for p in record.predictions)


def test_explaining_a_version_registered_without_a_reference_is_a_409(world: World) -> None:
    status, body = call(world.service(), {"instances": [row([0, 0, 0, 0])], "explain": True})
    assert (status, body["code"]) == (409, "explainer_unavailable")


# ---------------------------------------------------------------- MLflow's formats and the Open Inference Protocol


def call_route(
    service: InferenceService | None,
    method: str,
    resource: str,
    path: str,
    body: Any = None,
    *,
    scopes: str = "predict",
    **path_parameters: str,
) -> tuple[int, dict[str, Any]]:
    """Any of predict's routes, as API Gateway sends it."""
    event = load_event(
        "predict_request",
        httpMethod=method,
        resource=resource,
        path=path,
        pathParameters=path_parameters or None,
        body=None if body is None else json.dumps(body),
    )
    event["requestContext"]["authorizer"]["scopes"] = scopes
    response = predict_app.handler(event, CONTEXT, service)
    return response["statusCode"], json.loads(response["body"])


def test_dataframe_split_over_the_handler_answers_in_mlflows_shape_and_logs_one_columnar_record(
    world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given: MLflow's documented request body
    _, model, X = classifier(0)
    body = {"dataframe_split": {"columns": ["f0", "f1", "f2", "f3"], "data": X[:30].astype(float).tolist()}}
    # When
    status, answer = call(world.service(), {**body, "request_id": "split-1"})
    # Then
    assert status == 200
    assert answer["predictions"] == model.predict(X[:30].astype(np.float64)).tolist()
    np.testing.assert_allclose(
        answer["probabilities"], model.predict_proba(X[:30].astype(np.float64)), atol=1e-5
    )
    (record,) = logged_records(capsys.readouterr().out)
    assert record.v == 2
    assert sorted(e.id for e in expand(record)) == sorted(f"split-1:{i}" for i in range(30))


def test_v2_infer_over_the_handler_matches_sklearn(world: World, capsys: pytest.CaptureFixture[str]) -> None:
    # Given: the Open Inference Protocol's request, one tensor per feature
    _, model, X = classifier(0)
    inputs = [
        {"name": f"f{i}", "shape": [5], "datatype": "FP32", "data": X[:5, i].astype(float).tolist()}
        for i in range(4)
    ]
    # When
    status, answer = call_route(
        world.service(),
        "POST",
        "/v2/models/{name}/infer",
        "/v2/models/churn/infer",
        {"id": "v2-1", "inputs": inputs},
        name="churn",
    )
    # Then
    assert status == 200, answer
    assert (answer["model_name"], answer["model_version"], answer["id"]) == ("churn", "1", "v2-1")
    label = next(o for o in answer["outputs"] if o["name"] == "label")
    assert label["data"] == model.predict(X[:5].astype(np.float64)).tolist()
    (record,) = logged_records(capsys.readouterr().out)
    assert record.request_id == "v2-1" and record.row_count == 5


def test_v2_versioned_routes_metadata_ready_and_health(world: World) -> None:
    service = world.service()
    status, metadata = call_route(
        service,
        "GET",
        "/v2/models/{name}/versions/{version}",
        "/v2/models/churn/versions/1",
        name="churn",
        version="1",
    )
    assert status == 200 and metadata["versions"] == ["1"] and metadata["inputs"][0]["shape"] == [-1, 4]
    status, ready = call_route(
        service, "GET", "/v2/models/{name}/ready", "/v2/models/churn/ready", name="churn"
    )
    assert (status, ready) == (200, {"name": "churn", "ready": True})
    assert call_route(service, "GET", "/v2/health/ready", "/v2/health/ready") == (200, {"ready": True})
    assert call_route(service, "GET", "/v2/health/live", "/v2/health/live") == (200, {"live": True})
    status, server = call_route(service, "GET", "/v2", "/v2")
    assert status == 200 and server["name"] == "mlambda" and server["version"] == mlambda.__version__
    status, missing = call_route(
        service,
        "GET",
        "/v2/models/{name}/versions/{version}/ready",
        "/v2/models/churn/versions/9/ready",
        name="churn",
        version="9",
    )
    assert status == 404 and missing["error"] == missing["message"]


def test_v2_errors_carry_the_protocols_error_and_name_the_field(world: World) -> None:
    bad = {"inputs": [{"name": "f0", "shape": [3], "datatype": "FP32", "data": [1.0, 2.0]}]}
    status, body = call_route(
        world.service(), "POST", "/v2/models/{name}/infer", "/v2/models/churn/infer", bad, name="churn"
    )
    assert status == 422
    assert body["code"] == "shape_mismatch" and "inputs[0].shape" in body["message"]
    assert body["error"] == body["message"] and body["details"][0]["field"] == "inputs[0].shape"
    status, body = call_route(
        world.service(),
        "POST",
        "/v2/models/{name}/infer",
        "/v2/models/churn/infer",
        {"inputs": []},
        name="churn",
    )
    assert status == 422 and body["code"] == "validation_error" and "inputs" in body["message"]


@pytest.mark.parametrize(
    ("tensor", "status", "code", "field"),
    [
        # 2**40 x 2**24 overflows numpy's int64 product to 0, matching an empty data list (the
        # request then built 2**40 empty rows: the function hung until its timeout)
        (
            {"name": "input", "shape": [2**40, 2**24], "datatype": "FP32", "data": []},
            413,
            "too_many_instances",
            "inputs[0].shape",
        ),
        # a parameter beyond what JSON documents hold
        (
            {"name": "f0", "shape": [1], "datatype": "FP32", "data": [1.0], "parameters": {"p": 1e300}},
            422,
            "validation_error",
            "parameters",
        ),
    ],
    ids=["shape-product-wraps-around", "parameter-1e300"],
)
def test_a_v2_tensor_beyond_the_limits_is_refused_naming_the_field(
    world: World, tensor: dict[str, object], status: int, code: str, field: str
) -> None:
    # When
    answered, body = call_route(
        world.service(),
        "POST",
        "/v2/models/{name}/infer",
        "/v2/models/churn/infer",
        {"inputs": [tensor]},
        name="churn",
    )
    # Then it is refused before anything is built, naming the field
    assert (answered, body["code"]) == (status, code), body
    details = body["details"]
    named = details["field"] if isinstance(details, dict) else details[0]["field"]
    assert field in named


def test_v2_routes_need_the_predict_scope(world: World) -> None:
    status, body = call_route(
        world.service(), "GET", "/v2/models/{name}", "/v2/models/churn", scopes="ingest", name="churn"
    )
    assert status == 403 and body["code"] == "forbidden"


# ---------------------------------------------------------------- media types and the binary tensor data extension


@pytest.mark.parametrize(
    ("headers", "status", "named"),
    [
        ({"Content-Type": "application/json"}, 200, None),
        ({"Content-Type": "application/json; charset=UTF-8"}, 200, None),
        ({}, 200, None),
        ({"content-type": "text/plain"}, 415, "Content-Type"),
        ({"Content-Type": "application/x-www-form-urlencoded"}, 415, "Content-Type"),
        ({"Content-Type": "application/octet-stream"}, 415, "Content-Type"),
        ({"Content-Type": "application/json; charset=latin-1"}, 415, "Content-Type"),
        ({"Content-Type": "application/json", "Content-Encoding": "gzip"}, 415, "Content-Encoding"),
    ],
)
def test_predict_reads_json_only_and_any_other_media_type_is_a_415_naming_the_header(
    headers: dict[str, str], status: int, named: str | None
) -> None:
    # Given: the same JSON body under different declared media types (the service on in-memory fakes:
    # the media type is the handler's business)
    event = load_event(
        "predict_request",
        pathParameters={"name": "churn"},
        headers={"Accept": "application/json", **headers},
        multiValueHeaders={"Accept": ["application/json"], **{k: [v] for k, v in headers.items()}},
        body=json.dumps({"instances": [row([0, 0, 0, 0])]}),
    )
    # When
    response = predict_app.handler(event, CONTEXT, harness().service)
    # Then
    body = json.loads(response["body"])
    assert response["statusCode"] == status, body
    if named:
        assert body["code"] == "unsupported_media_type" and body["message"].startswith(named)
        assert body["details"][0]["field"] == named


def test_v2_binary_request_over_the_handler_answers_bytes_that_match_sklearn(
    world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given: tritonclient's default request (binary in, binary out) with the media types API Gateway needs
    _, model, X = classifier(0)
    body, length = binary_request([Tensor("X", X[:50].astype(np.float32))], request_id="bin-api")
    # When
    response = predict_app.handler(infer_event(body, length), CONTEXT, world.service())
    # Then: base64 bytes API Gateway decodes, the JSON header's length in the protocol's header
    assert response["statusCode"] == 200, response["body"]
    assert response["isBase64Encoded"] is True
    assert response["multiValueHeaders"]["Content-Type"] == ["application/octet-stream"]
    header, outputs = binary_answer(response)
    assert header["id"] == "bin-api" and header["model_version"] == "1"
    assert outputs["label"].tolist() == model.predict(X[:50].astype(np.float64)).tolist()
    np.testing.assert_allclose(
        outputs["probabilities"], model.predict_proba(X[:50].astype(np.float64)), atol=1e-5
    )
    (record,) = logged_records(capsys.readouterr().out)
    assert record.v == 2 and sorted(e.id for e in expand(record)) == sorted(f"bin-api:{i}" for i in range(50))


def test_v2_binary_request_from_a_caller_that_does_not_accept_bytes_is_answered_in_json(world: World) -> None:
    _, model, X = classifier(0)
    body, length = binary_request([Tensor("X", X[:5].astype(np.float32))])
    response = predict_app.handler(infer_event(body, length, accept=None), CONTEXT, world.service())
    assert response["statusCode"] == 200 and response["isBase64Encoded"] is False
    _, outputs = binary_answer(response)
    assert outputs["label"].tolist() == model.predict(X[:5].astype(np.float64)).tolist()


@pytest.mark.parametrize(
    ("content_type", "status", "code"),
    [
        (None, 415, "unsupported_media_type"),
        ("application/json", 415, "unsupported_media_type"),
        ("text/plain", 415, "unsupported_media_type"),
    ],
)
def test_v2_binary_data_that_api_gateway_passed_as_text_is_a_415(
    content_type: str | None, status: int, code: str, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given: tritonclient's binary body as sent (no Content-Type), which API Gateway hands over as text
    _, headers, body = next(iter(recorded_requests().values()))
    event = infer_event(body, int(headers["Inference-Header-Content-Length"]), content_type=content_type)
    # When
    response = predict_app.handler(event, CONTEXT, harness().service)
    # Then
    answer = json.loads(response["body"])
    assert (response["statusCode"], answer["code"]) == (status, code)
    assert answer["error"] == answer["message"]
    assert logged_records(capsys.readouterr().out) == []


def test_v2_a_binary_body_lying_about_its_length_over_the_handler_is_a_400_in_the_protocols_shape(
    world: World,
) -> None:
    _, _, X = classifier(0)
    body, length = binary_request([Tensor("X", X[:2].astype(np.float32))])
    response = predict_app.handler(infer_event(body[:-4], length), CONTEXT, world.service())
    answer = json.loads(response["body"])
    assert (response["statusCode"], answer["code"]) == (400, "invalid_binary_data")
    assert answer["details"][0]["field"] == "inputs[0].parameters.binary_data_size"
    assert answer["error"] == answer["message"]


def test_v2_binary_explanations_over_the_handler_add_up_and_match_the_json_request(world: World) -> None:
    # Given: a version registered with its explainer, asked to explain 3 rows in bytes and in JSON
    data, _, X = classifier(0)
    world.seed(with_explainer(version_of("scored", 1, data), data, X, world.artifacts), data, "production")
    service = world.service()
    rows = X[:3].astype(np.float32)
    body, length = binary_request([Tensor("X", rows)], request_id="why")
    request = json.loads(body[:length])
    request["parameters"]["explain"] = True
    header = json.dumps(request, separators=(",", ":")).encode()
    # When
    response = predict_app.handler(
        infer_event(header + body[length:], len(header), model="scored"), CONTEXT, service
    )
    status, as_json = call_route(
        service,
        "POST",
        "/v2/models/{name}/infer",
        "/v2/models/scored/infer",
        {
            "inputs": [{"name": "X", "shape": [3, 4], "datatype": "FP32", "data": rows.ravel().tolist()}],
            "parameters": {"explain": True},
        },
        name="scored",
    )
    # Then
    assert response["statusCode"] == 200 and status == 200, response["body"]
    answer, outputs = binary_answer(response)
    assert {"attributions", "baseline", "explained_value"} <= set(outputs)
    np.testing.assert_allclose(
        outputs["baseline"] + outputs["attributions"].sum(axis=1), outputs["explained_value"], atol=1e-9
    )
    json_outputs = {o["name"]: o for o in as_json["outputs"]}
    np.testing.assert_allclose(
        outputs["attributions"].ravel(), json_outputs["attributions"]["data"], atol=1e-12
    )
    assert answer["parameters"]["explanation"] == as_json["parameters"]["explanation"]


def test_the_template_declares_the_binary_media_type_the_function_reads() -> None:
    # Given / When
    template = (REPO_ROOT / "template.yaml").read_text()
    declared = re.search(r"BinaryMediaTypes:\s*\n((?:\s+- .+\n)+)", template)
    # Then: what API Gateway base64-encodes is what predict takes as bytes (mlambda.http)
    assert declared is not None
    types = [
        line.strip()[2:].strip().strip("'\"").replace("~1", "/") for line in declared.group(1).splitlines()
    ]
    assert types == list(BINARY_MEDIA_TYPES)
