"""The registry function on moto: every route, every bad input, and the races."""

from __future__ import annotations

import argparse
import hashlib
import json
import threading
import time
import uuid
from collections.abc import Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl, quote, urlsplit

import boto3
import pytest
import requests
from moto import mock_aws

from functions.registry import app as registry_app
from functions.validator import app as validator_app
from mlambda.adapters.dynamodb import DynamoTable
from mlambda.adapters.messaging import EventBus
from mlambda.adapters.registry import (
    DynamoModelCatalog,
    DynamoRegistryStore,
    OnnxRuntime,
    S3RegistryArtifacts,
    SqsValidationQueue,
)
from mlambda.client import Client, HttpResponse
from mlambda.config import RegistrySettings, function_environment
from mlambda.errors import ConflictError
from mlambda.schemas.registry_api import MoveAliasRequest, RegisterVersionRequest
from mlambda.services.registry.service import EVENT_SOURCE, RegistryService
from mlambda_local.cloud.sqs import sqs_record
from mlambda_local.commands import models as models_commands
from tests.conftest import forged_token as forged
from tests.conftest import load_event
from tests.onnx_exploits import PLACES, sparse_initializer_values
from tests.unit.fakes_registry import (
    TrainedModel,
    breast_cancer,
    external_data_model,
    per_feature_regressor,
)

MAX_MODEL_BYTES = 200_000
WRITE = "registry:read,registry:write"
READ = "registry:read"
FOUR = ["f0", "f1", "f2", "f3"]


def create_stack(table: str, bucket: str) -> None:
    """The registry table and artifacts bucket as template.yaml declares them."""
    boto3.client("dynamodb").create_table(
        TableName=table,
        BillingMode="PAY_PER_REQUEST",
        AttributeDefinitions=[
            {"AttributeName": name, "AttributeType": "S"} for name in ("pk", "sk", "gsi1pk", "gsi1sk")
        ],
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
        GlobalSecondaryIndexes=[
            {
                "IndexName": "gsi1",
                "KeySchema": [
                    {"AttributeName": "gsi1pk", "KeyType": "HASH"},
                    {"AttributeName": "gsi1sk", "KeyType": "RANGE"},
                ],
                "Projection": {"ProjectionType": "ALL"},
            }
        ],
    )
    boto3.client("s3").create_bucket(Bucket=bucket)


@dataclass
class Api:
    """Calls the registry function as API Gateway does after the authorizer let a key through."""

    context: Any
    events_queue: str
    table: str
    bucket: str
    validation_queue: str

    def call(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        scopes: str = WRITE,
        query: dict[str, str] | None = None,
        raw_body: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> tuple[int, Any]:
        event = load_event(
            "apigw_rest",
            path=path,
            resource=path,
            httpMethod=method,
            queryStringParameters=query,
            multiValueQueryStringParameters={k: [v] for k, v in (query or {}).items()} or None,
            body=raw_body if raw_body is not None else (json.dumps(body) if body is not None else None),
        )
        if headers:
            event["headers"] = {**(event.get("headers") or {}), **headers}
            event["multiValueHeaders"] = {
                **(event.get("multiValueHeaders") or {}),
                **{k: [v] for k, v in headers.items()},
            }
        event["requestContext"]["authorizer"] = {
            "principalId": "k1",
            "key_id": "k1",
            "name": "alice",
            "scopes": scopes,
        }
        response = registry_app.handler(event, self.context)
        self.last_headers = {
            **{k: v[-1] for k, v in (response.get("multiValueHeaders") or {}).items() if v},
            **(response.get("headers") or {}),
        }
        return response["statusCode"], json.loads(response["body"]) if response["body"] else None

    def ok(self, method: str, path: str, body: Any = None, **kwargs: Any) -> Any:
        status, payload = self.call(method, path, body, **kwargs)
        assert status in (200, 201, 202), (status, payload)
        return payload

    def validate(self) -> list[str]:
        """Run the validator on what the registry queued, as the SQS event source does; each outcome."""
        sqs = boto3.client("sqs")
        outcomes: list[str] = []
        while True:
            messages = sqs.receive_message(
                QueueUrl=self.validation_queue, MaxNumberOfMessages=10, AttributeNames=["All"]
            ).get("Messages", [])
            if not messages:
                return outcomes
            for message in messages:
                event = {
                    "Records": [
                        sqs_record(message, "arn:aws:sqs:us-east-1:123456789012:validation", "us-east-1")
                    ]
                }
                result = validator_app.handler(event, self.context)
                assert result["batchItemFailures"] == [], result
                sqs.delete_message(QueueUrl=self.validation_queue, ReceiptHandle=message["ReceiptHandle"])
                outcomes.append(json.loads(message["Body"])["version"])

    def registered(self, model: str, body: dict[str, Any]) -> tuple[int, Any]:
        """POST the version (202), run the validator, then the version as GET shows it."""
        status, pending = self.call("POST", f"/models/{model}/versions", body)
        if status != 202:
            return status, pending
        self.validate()
        return status, self.ok("GET", f"/models/{model}/versions/{pending['version']}")

    def upload(self, model: str, filename: str, data: bytes, kind: str = "model") -> str:
        ticket = self.ok("POST", f"/models/{model}/uploads", {"filename": filename, "kind": kind})
        assert requests.put(ticket["url"], data=data, timeout=10).status_code == 200
        return str(ticket["upload_key"])

    def register(self, model: str, trained: TrainedModel, *, reference: bool = True, **body: Any) -> Any:
        request: dict[str, Any] = {"upload_key": self.upload(model, "model.onnx", trained.onnx), **body}
        if reference:
            request["reference_key"] = self.upload(model, "ref.parquet", trained.parquet(), "reference")
            request.setdefault("target", "target")
        return self.registered(model, request)

    def events(self) -> list[dict[str, Any]]:
        sqs = boto3.client("sqs")
        found = []
        while True:
            messages = sqs.receive_message(QueueUrl=self.events_queue, MaxNumberOfMessages=10).get(
                "Messages", []
            )
            if not messages:
                return found
            for message in messages:
                found.append(json.loads(message["Body"]))
                sqs.delete_message(QueueUrl=self.events_queue, ReceiptHandle=message["ReceiptHandle"])


@pytest.fixture(scope="module")
def aws() -> Iterator[str]:
    """One moto for the module (starting it costs more than a test): a queue that receives registry events."""
    with mock_aws():
        sqs = boto3.client("sqs")
        queue = sqs.create_queue(QueueName="registry-events")["QueueUrl"]
        arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        events = boto3.client("events")
        events.put_rule(Name="registry", EventPattern=json.dumps({"source": ["mlambda.registry"]}))
        events.put_targets(Rule="registry", Targets=[{"Id": "q", "Arn": arn}])
        yield queue


@pytest.fixture
def api(aws: str, lambda_context: Any) -> Iterator[Api]:
    """A fresh registry table and artifacts bucket per test, and the function pointed at them."""
    suffix = uuid.uuid4().hex[:12]
    table, bucket = f"registry-{suffix}", f"artifacts-{suffix}"
    queue = boto3.client("sqs").create_queue(QueueName=f"validation-{suffix}")["QueueUrl"]
    environment = {
        "REGISTRY_TABLE": table,
        "ARTIFACTS_BUCKET": bucket,
        "VALIDATION_QUEUE_URL": queue,
        "MAX_MODEL_BYTES": str(MAX_MODEL_BYTES),
    }
    caches = (registry_app.service, validator_app.settings, validator_app.validator)
    with function_environment(environment):
        create_stack(table, bucket)
        for cache in caches:
            cache.cache_clear()
        client = Api(lambda_context, aws, table, bucket, queue)
        client.events()
        yield client
        for cache in caches:
            cache.cache_clear()


@pytest.fixture
def with_versions(api: Api) -> Api:
    """Model 'cancer' with v1 (C=1) and v2 (C=0.1), both with a reference sample."""
    api.ok("POST", "/models", {"name": "cancer", "owner": "ml-team", "tags": {"team": "risk"}})
    for c in (1.0, 0.1):
        status, body = api.register("cancer", breast_cancer(c))
        assert (status, body["status"]) == (202, "READY"), body
    return api


class Serialized:
    """A boto3 client whose calls are atomic, as each call is on AWS: moto's in-process backend is not
    thread-safe, so the races under test happen between calls (read latest, then transact), not inside one."""

    lock = threading.Lock()

    def __init__(self, client: Any) -> None:
        self._client = client

    def __getattr__(self, name: str) -> Any:
        method = getattr(self._client, name)

        def call(*args: Any, **kwargs: Any) -> Any:
            with self.lock:
                return method(*args, **kwargs)

        return call


def service(api: Api) -> RegistryService:
    """The registry service for threads: the real adapters on serialized clients."""
    settings = RegistrySettings.load()
    return RegistryService(
        DynamoRegistryStore(DynamoTable(api.table, settings, Serialized(boto3.client("dynamodb")))),
        S3RegistryArtifacts(api.bucket, settings, Serialized(boto3.client("s3"))),
        OnnxRuntime(),
        EventBus(settings, source=EVENT_SOURCE, events_client=Serialized(boto3.client("events"))),
        SqsValidationQueue(api.validation_queue, settings, Serialized(boto3.client("sqs"))),
        max_model_bytes=settings.max_model_bytes,
    )


# ---------------------------------------------------------------------- models


def test_models_are_created_listed_filtered_updated_and_deleted(api: Api) -> None:
    # Given
    for name, owner, team in [
        ("a-model", "ann", "risk"),
        ("b-model", "bob", "ads"),
        ("c-model", "ann", "ads"),
    ]:
        assert api.call("POST", "/models", {"name": name, "owner": owner, "tags": {"team": team}})[0] == 201
    # When
    first = api.ok("GET", "/models", query={"limit": "2"})
    second = api.ok("GET", "/models", query={"limit": "2", "next_token": first["next_token"]})
    by_owner = api.ok("GET", "/models", query={"owner": "ann"})
    by_tag = api.ok("GET", "/models", query={"tag": "team:ads"})
    patched = api.ok("PATCH", "/models/b-model", {"description": "ads ranking", "tags": {"team": "growth"}})
    deleted = api.ok("DELETE", "/models/c-model")
    # Then
    assert [m["name"] for m in first["models"]] == ["a-model", "b-model"]
    assert [m["name"] for m in second["models"]] == ["c-model"]
    assert second["next_token"] is None
    assert {m["name"] for m in by_owner["models"]} == {"a-model", "c-model"}
    assert {m["name"] for m in by_tag["models"]} == {"b-model", "c-model"}
    assert patched["description"] == "ads ranking"
    assert patched["tags"] == {"team": "growth"}
    assert deleted == {"model": "c-model", "deleted": True}
    assert api.call("GET", "/models/c-model")[0] == 404
    assert [e["action"] for e in api.ok("GET", "/models/c-model/history")["entries"]] == [
        "model_deleted",
        "model_created",
    ]


def test_creating_a_model_twice_is_409(api: Api) -> None:
    api.ok("POST", "/models", {"name": "dup"})
    status, error = api.call("POST", "/models", {"name": "dup"})
    assert status == 409
    assert error["code"] == "model_exists"


@pytest.mark.parametrize("name", ["../etc", "a/b", "UPPER", "", "x" * 64, "-lead"])
def test_model_names_with_path_characters_are_refused(api: Api, name: str) -> None:
    status, error = api.call("POST", "/models", {"name": name})
    assert status == 422
    assert "name" in error["message"]


@pytest.mark.parametrize("name", ["..", "a..b", "A", "a%2Fb"])
def test_path_names_are_checked_before_any_lookup(api: Api, name: str) -> None:
    status, error = api.call("GET", f"/models/{quote(name)}/versions/1")
    assert status == 400
    assert error["code"] == "invalid_model_name"


@pytest.mark.parametrize(
    ("query", "code"),
    [({"tag": "no-colon"}, "invalid_filter"), ({"next_token": "garbage!!"}, "invalid_token")],
)
def test_bad_listing_parameters_are_400(api: Api, query: dict[str, str], code: str) -> None:
    status, error = api.call("GET", "/models", query=query)
    assert status == 400
    assert error["code"] == code


@pytest.mark.parametrize(
    ("path", "token"),
    [
        ("/models", forged({"gsi1pk": "models"})),
        ("/models", forged({"gsi1pk": "models", "gsi1sk": "b", "pk": "model#b", "sk": "meta"})),
        ("/models/a-model/versions", forged({"pk": "model#a-model"})),
        ("/models/a-model/versions", forged({"pk": "model#a-model", "sk": "version#0000000002"})),
        ("/models/a-model/history", forged({"pk": "model#a-model", "sk": "history#9"})),
        ("/models/a-model/history", "x" * 300),
        ("/models", "a.b"),
    ],
    ids=[
        "missing-keys",
        "well-formed-key",
        "versions-missing-sk",
        "versions-key",
        "history-key",
        "junk",
        "dots",
    ],
)
def test_forged_page_tokens_are_400_invalid_token(api: Api, path: str, token: str) -> None:
    # Given two models, a-model with two versions' worth of history
    for name in ("a-model", "b-model"):
        api.ok("POST", "/models", {"name": name})
    # When
    status, error = api.call("GET", path, query={"next_token": token, "limit": "1"})
    # Then
    assert (status, error["code"]) == (400, "invalid_token")
    assert "next_token" in error["message"]


def test_a_page_token_continues_only_the_listing_that_issued_it(api: Api) -> None:
    # Given three models of two owners, and a first page of ann's
    for name, owner in (("a-model", "ann"), ("b-model", "bob"), ("c-model", "ann")):
        api.ok("POST", "/models", {"name": name, "owner": owner})
    first = api.ok("GET", "/models", query={"limit": "1", "owner": "ann"})
    token = first["next_token"]
    body, mac = token.split(".")
    tampered = f"{body[:-2]}{'AA' if body[-2:] != 'AA' else 'BB'}.{mac}"
    # When
    same = api.call("GET", "/models", query={"limit": "1", "owner": "ann", "next_token": token})
    other_filter = api.call("GET", "/models", query={"limit": "1", "owner": "bob", "next_token": token})
    other_listing = api.call("GET", "/models/a-model/versions", query={"next_token": token})
    changed = api.call("GET", "/models", query={"limit": "1", "owner": "ann", "next_token": tampered})
    # Then
    assert same[0] == 200
    assert [m["name"] for m in same[1]["models"]] == ["c-model"]
    assert [(s, e["code"]) for s, e in (other_filter, other_listing, changed)] == [(400, "invalid_token")] * 3


def test_reads_need_registry_read_and_writes_registry_write(api: Api) -> None:
    # Given
    api.ok("POST", "/models", {"name": "scoped"})
    # When
    read_status, _ = api.call("GET", "/models/scoped", scopes=READ)
    write_status, error = api.call("PATCH", "/models/scoped", {"description": "x"}, scopes=READ)
    none_status, _ = api.call("GET", "/models/scoped", scopes="predict")
    # Then
    assert read_status == 200
    assert write_status == 403
    assert error["details"] == {"required": "registry:write"}
    assert none_status == 403


def test_a_model_an_alias_points_at_cannot_be_deleted(with_versions: Api) -> None:
    # Given
    api = with_versions
    api.ok("PUT", "/models/cancer/aliases/staging", {"version": 1})
    # When
    status, error = api.call("DELETE", "/models/cancer")
    api.ok("DELETE", "/models/cancer/aliases/staging")
    after_status, _ = api.call("DELETE", "/models/cancer")
    # Then
    assert status == 409
    assert error["code"] == "model_has_aliases"
    assert after_status == 200
    assert api.call("GET", "/models/cancer/versions/1")[0] == 404
    assert not list(
        boto3.client("s3").list_objects_v2(Bucket=api.bucket, Prefix="models/cancer/").get("Contents", [])
    )


# ---------------------------------------------------------------------- versions


def test_register_validates_stores_and_profiles_a_version(with_versions: Api) -> None:
    # Given
    api = with_versions
    trained = breast_cancer(1.0)
    # When
    version = api.ok("GET", "/models/cancer/versions/v1")
    page = api.ok("GET", "/models/cancer/versions", query={"limit": "1"})
    rest = api.ok("GET", "/models/cancer/versions", query={"limit": "1", "next_token": page["next_token"]})
    s3 = boto3.client("s3")
    artifact = s3.get_object(Bucket=api.bucket, Key=version["artifact_key"])["Body"].read()
    profile = json.loads(
        s3.get_object(Bucket=api.bucket, Key=version["reference_profile_key"])["Body"].read()
    )
    uploads = s3.list_object_versions(Bucket=api.bucket, Prefix="uploads/")
    # Then
    assert version["status"] == "READY"
    assert version["artifact_key"] == "models/cancer/v1/model.onnx"
    assert (
        version["artifact_sha256"]
        == hashlib.sha256(trained.onnx).hexdigest()
        == hashlib.sha256(artifact).hexdigest()
    )
    assert version["size_bytes"] == len(trained.onnx)
    assert version["signature"]["task"] == "classification"
    assert version["signature"]["class_labels"] == [0, 1]
    schema = version["feature_schema"]
    assert (schema["mode"], schema["tensor_input"], schema["tensor_dtype"]) == ("tensor", "input", "float32")
    assert [f["name"] for f in schema["features"]] == trained.features
    assert len(version["smoke_cases"]) == 20
    first = version["smoke_cases"][0]
    sample = trained.sample(200)
    assert first["inputs"]["mean_radius"] == pytest.approx(float(sample["mean_radius"].iloc[0]))
    expected = trained.estimator.predict_proba(sample[trained.features].to_numpy("float32")[:1])[0]
    assert first["expected"]["probabilities"]["1"] == pytest.approx(expected[1], abs=1e-5)
    assert profile["row_count"] == 200
    assert [f["name"] for f in profile["features"]] == trained.features
    assert profile["target"]["name"] == "target"
    assert set(profile["baseline"]["metrics"]) >= {"accuracy", "auc", "f1"}
    assert version["reference"]["target"] == "target"
    assert version["reference"]["sample_key"] == "models/cancer/v1/reference.parquet"
    assert version["owner"] == "ml-team"
    assert version["created_by"] == "alice"
    assert [v["version"] for v in page["versions"]] == [2]
    assert [v["version"] for v in rest["versions"]] == [1]
    assert not uploads.get("Versions") and not uploads.get("DeleteMarkers")
    events = api.events()
    registered = [e["detail"] for e in events if e["detail-type"] == "Model Version Registered"]
    ready = [e["detail"] for e in events if e["detail-type"] == "Model Version Ready"]
    assert [(d["version"], d["status"]) for d in registered] == [
        (1, "PENDING_VALIDATION"),
        (2, "PENDING_VALIDATION"),
    ]
    assert [d["version"] for d in ready] == [1, 2]
    assert ready[0]["reference_metrics"]["accuracy"] == version["reference"]["metrics"]["accuracy"]["value"]


def test_registration_answers_202_pending_and_the_version_is_not_servable_until_ready(api: Api) -> None:
    # Given
    api.ok("POST", "/models", {"name": "slow"})
    trained = breast_cancer(1.0)
    key = api.upload("slow", "m.onnx", trained.onnx)
    # When
    status, pending = api.call(
        "POST", "/models/slow/versions", {"upload_key": key, "feature_names": trained.features}
    )
    location = api.last_headers.get("Location")
    alias_status, alias_error = api.call("PUT", "/models/slow/aliases/production", {"version": 1})
    listed = api.ok("GET", "/models/slow/versions")["versions"]
    api.validate()
    after = api.ok("GET", "/models/slow/versions/1")
    # Then
    assert (status, pending["status"], pending["version"]) == (202, "PENDING_VALIDATION", 1)
    assert location == "/models/slow/versions/1"
    assert (alias_status, alias_error["code"]) == (409, "version_not_ready")
    assert [v["status"] for v in listed] == ["PENDING_VALIDATION"]
    assert after["status"] == "READY"
    assert api.ok("PUT", "/models/slow/aliases/production", {"version": 1})["gate"]["passed"] is True


def test_feature_names_come_from_a_csv_sample_when_not_declared(api: Api) -> None:
    # Given
    api.ok("POST", "/models", {"name": "small"})
    trained = breast_cancer(1.0, 10)
    sample = trained.sample(50).assign(row_id=range(50)).to_csv(index=False).encode()
    # When
    status, version = api.registered(
        "small",
        {
            "upload_key": api.upload("small", "m.onnx", trained.onnx),
            "reference_key": api.upload("small", "ref.csv", sample, "reference"),
            "target": "target",
            "exclude": ["row_id"],
            "metrics": {"auc": 0.97},
            "params": {"C": 1.0},
            "training_data_uri": "s3://data/cancer.parquet",
            "training_data_version": "2024-03-01",
            "source_code_version": "git:abc123",
            "tags": {"stage": "test"},
            "description": "ten features",
        },
    )
    # Then
    assert (status, version["status"]) == (202, "READY"), version
    assert [f["name"] for f in version["feature_schema"]["features"]] == trained.features
    assert version["metrics"] == {"auc": 0.97}
    assert version["training_data_version"] == "2024-03-01"
    assert version["source_code_version"] == "git:abc123"
    assert version["reference"]["sample_key"] == "models/small/v1/reference.csv"


def test_a_per_feature_model_takes_its_schema_from_its_inputs(api: Api) -> None:
    # Given
    api.ok("POST", "/models", {"name": "linear"})
    key = api.upload("linear", "m.onnx", per_feature_regressor())
    # When
    status, version = api.registered("linear", {"upload_key": key, "smoke_inputs": [{"a": 1.0, "b": 2.0}]})
    # Then
    assert (status, version["status"]) == (202, "READY"), version
    assert version["feature_schema"]["mode"] == "per_feature"
    assert [f["name"] for f in version["feature_schema"]["features"]] == ["a", "b"]
    assert version["smoke_cases"] == [{"inputs": {"a": 1.0, "b": 2.0}, "expected": {"value": 8.0}}]


def uploads_left(api: Api) -> list[str]:
    """Every stored object (any version) under uploads/."""
    listed = boto3.client("s3").list_object_versions(Bucket=api.bucket, Prefix="uploads/")
    return [entry["Key"] for entry in [*listed.get("Versions", []), *listed.get("DeleteMarkers", [])]]


@pytest.mark.parametrize(
    ("data", "code"),
    [
        (b"\x08\x07garbage that is not protobuf \xff\xfe", "invalid_model"),
        (b"<html>this is not a model</html>", "invalid_model"),
        (b"", "invalid_model"),
        (external_data_model(), "external_data"),
    ],
    ids=["corrupt", "not-onnx", "empty", "external-data"],
)
def test_unusable_artifacts_end_failed_with_the_reason_and_their_upload_deleted(
    api: Api, data: bytes, code: str
) -> None:
    # Given
    api.ok("POST", "/models", {"name": "bad"})
    key = api.upload("bad", "m.onnx", data)
    # When
    status, version = api.registered("bad", {"upload_key": key, "feature_names": ["a", "b"]})
    # Then
    assert (status, version["status"], version["failure"]["code"]) == (202, "FAILED", code)
    assert not version["validation"]["checks"][-1]["passed"]
    assert uploads_left(api) == []
    assert api.call("PUT", "/models/bad/aliases/staging", {"version": 1})[1]["code"] == "version_not_ready"
    failed = [e["detail"] for e in api.events() if e["detail-type"] == "Model Version Failed"]
    assert [(d["version"], d["code"]) for d in failed] == [(1, code)]


def test_the_delivery_after_the_last_attempt_records_the_version_failed(api: Api) -> None:
    # Given a version whose validation crashed three times (SQS counts the receives)
    api.ok("POST", "/models", {"name": "crashy"})
    trained = breast_cancer(1.0)
    key = api.upload("crashy", "m.onnx", trained.onnx)
    api.ok("POST", "/models/crashy/versions", {"upload_key": key, "feature_names": trained.features})
    sqs = boto3.client("sqs")
    [message] = sqs.receive_message(QueueUrl=api.validation_queue, AttributeNames=["All"])["Messages"]
    message["Attributes"]["ApproximateReceiveCount"] = "4"
    # When
    event = {"Records": [sqs_record(message, "arn:aws:sqs:us-east-1:123456789012:validation", "us-east-1")]}
    result = validator_app.handler(event, api.context)
    version = api.ok("GET", "/models/crashy/versions/1")
    # Then
    assert result["batchItemFailures"] == []
    assert (version["status"], version["failure"]["code"]) == ("FAILED", "validation_incomplete")
    assert uploads_left(api) == []


def test_an_upload_over_the_cap_is_413_and_deleted_at_once(api: Api) -> None:
    api.ok("POST", "/models", {"name": "huge"})
    key = api.upload("huge", "m.onnx", b"\0" * (MAX_MODEL_BYTES + 1))
    status, error = api.call("POST", "/models/huge/versions", {"upload_key": key, "feature_names": ["a"]})
    assert (status, error["code"]) == (413, "payload_too_large")
    assert uploads_left(api) == []
    assert api.ok("GET", "/models/huge")["latest_version"] == 0


def test_a_model_reading_a_local_file_through_a_sparse_initializer_is_refused(
    api: Api, tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given: a file in the function's working directory, and a model whose sparse weights point at it
    monkeypatch.chdir(tmp_path)
    (tmp_path / "secret.txt").write_bytes(b"mlk.admin.0123456789abcdef")
    api.ok("POST", "/models", {"name": "leak"})
    key = api.upload("leak", "m.onnx", sparse_initializer_values("secret.txt"))
    # When
    status, version = api.registered("leak", {"upload_key": key, "feature_names": FOUR})
    # Then
    assert (status, version["status"], version["failure"]["code"]) == (202, "FAILED", "external_data"), (
        version
    )
    assert version["failure"]["details"]["external_tensors"] == ["graph.sparse_initializer[0].values 'w'"]
    assert "mlk.admin" not in json.dumps(version)


@pytest.mark.parametrize("place", sorted(PLACES))
def test_external_data_is_refused_wherever_the_tensor_hides(api: Api, place: str) -> None:
    api.ok("POST", "/models", {"name": "hidden"})
    key = api.upload("hidden", "m.onnx", PLACES[place]("weights.bin"))
    _, version = api.registered("hidden", {"upload_key": key, "feature_names": FOUR})
    assert (version["status"], version["failure"]["code"]) == ("FAILED", "external_data"), version


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"feature_names": ["only", "three", "names"]}, "feature_count_mismatch"),
        ({}, "feature_names_required"),
        (
            {"feature_names": [f"f{i}" for i in range(30)], "feature_types": ["string"] * 30},
            "feature_type_mismatch",
        ),
        (
            {"feature_names": [f"f{i}" for i in range(30)], "smoke_inputs": [{"f0": "text"}]},
            "invalid_features",
        ),
    ],
    ids=["count", "no-names", "types", "bad-smoke-inputs"],
)
def test_feature_declarations_that_do_not_fit_the_model_fail_the_version(
    api: Api, body: dict[str, Any], code: str
) -> None:
    api.ok("POST", "/models", {"name": "decl"})
    key = api.upload("decl", "m.onnx", breast_cancer(1.0).onnx)
    _, version = api.registered("decl", {"upload_key": key, **body})
    assert (version["status"], version["failure"]["code"]) == ("FAILED", code)


@pytest.mark.parametrize(
    "body",
    [
        {"target": "label"},
        {"exclude": ["id"]},
        {"reference_key": "uploads/x", "target": "label", "exclude": ["label"]},
        {"reference_key": "uploads/x", "target": "a", "feature_names": ["a", "b"]},
    ],
    ids=["target-without-reference", "exclude-without-reference", "target-excluded", "target-is-feature"],
)
def test_contradictory_column_roles_are_422_before_anything_is_registered(
    api: Api, body: dict[str, Any]
) -> None:
    api.ok("POST", "/models", {"name": "roles"})
    key = api.upload("roles", "m.onnx", breast_cancer(1.0).onnx)
    status, _ = api.call("POST", "/models/roles/versions", {"upload_key": key, **body})
    assert status == 422
    assert api.ok("GET", "/models/roles")["latest_version"] == 0


def test_wrong_content_in_the_reference_sample_fails_the_version(api: Api) -> None:
    # Given
    api.ok("POST", "/models", {"name": "ref"})
    trained = breast_cancer(1.0)
    garbage = api.upload("ref", "ref.parquet", b"PAR1 not really parquet", "reference")
    wrong_columns = api.upload("ref", "other.csv", b"x,y\n1,2\n", "reference")
    # When
    _, unreadable = api.registered(
        "ref", {"upload_key": api.upload("ref", "m.onnx", trained.onnx), "reference_key": garbage}
    )
    _, mismatch = api.registered(
        "ref",
        {
            "upload_key": api.upload("ref", "m.onnx", trained.onnx),
            "reference_key": wrong_columns,
            "feature_names": trained.features,
        },
    )
    # Then
    assert unreadable["failure"]["code"] == "invalid_reference"
    assert mismatch["failure"]["code"] == "reference_mismatch"


def test_upload_keys_must_be_this_models_uploads(api: Api) -> None:
    # Given
    api.ok("POST", "/models", {"name": "one"})
    api.ok("POST", "/models", {"name": "two"})
    other = api.upload("two", "m.onnx", breast_cancer(1.0).onnx)
    # When
    cases = {
        "other-model": api.call("POST", "/models/one/versions", {"upload_key": other}),
        "traversal": api.call(
            "POST", "/models/one/versions", {"upload_key": "uploads/one/../../models/two/v1/model.onnx"}
        ),
        "outside": api.call("POST", "/models/one/versions", {"upload_key": "models/two/v1/model.onnx"}),
        "missing": api.call("POST", "/models/one/versions", {"upload_key": f"uploads/one/{'0' * 32}/m.onnx"}),
    }
    # Then
    assert {k: (s, e["code"]) for k, (s, e) in cases.items()} == {
        "other-model": (400, "invalid_upload_key"),
        "traversal": (400, "invalid_upload_key"),
        "outside": (400, "invalid_upload_key"),
        "missing": (404, "upload_not_found"),
    }


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"filename": "../x.onnx"}, "filename"),
        ({"filename": "model.pkl"}, "model upload"),
        ({"filename": "ref.json", "kind": "reference"}, "reference upload"),
        ({"filename": "m.onnx", "kind": "weights"}, "kind"),
    ],
)
def test_upload_requests_are_validated(api: Api, body: dict[str, Any], field: str) -> None:
    api.ok("POST", "/models", {"name": "up"})
    status, error = api.call("POST", "/models/up/uploads", body)
    assert status == 422
    assert field in error["message"]


def test_uploads_for_unknown_models_are_404(api: Api) -> None:
    status, error = api.call("POST", "/models/ghost/uploads", {"filename": "m.onnx"})
    assert (status, error["code"]) == (404, "model_not_found")


@pytest.mark.parametrize(
    ("ref", "status", "code"), [("v9", 404, "version_not_found"), ("latest", 400, "invalid_version")]
)
def test_unknown_versions_are_404(with_versions: Api, ref: str, status: int, code: str) -> None:
    got, error = with_versions.call("GET", f"/models/cancer/versions/{ref}")
    assert (got, error["code"]) == (status, code)


def test_parallel_registrations_get_versions_one_to_n(api: Api) -> None:
    # Given
    api.ok("POST", "/models", {"name": "race"})
    trained = breast_cancer(1.0)
    keys = [api.upload("race", f"m{i}.onnx", trained.onnx) for i in range(8)]
    registry = service(api)
    barrier = threading.Barrier(len(keys))

    def register(key: str) -> int:
        barrier.wait()
        request = RegisterVersionRequest(upload_key=key, feature_names=trained.features)
        return registry.register_version("race", request, "racer").version

    # When
    with ThreadPoolExecutor(len(keys)) as pool:
        numbers = list(pool.map(register, keys))
    # Then
    assert sorted(numbers) == list(range(1, 9))
    listed = api.ok("GET", "/models/race/versions")["versions"]
    assert [v["version"] for v in listed] == list(range(8, 0, -1))
    assert api.ok("GET", "/models/race")["latest_version"] == 8
    history = api.ok("GET", "/models/race/history", query={"limit": "100"})["entries"]
    assert sorted(e["to_version"] for e in history if e["action"] == "version_registered") == list(
        range(1, 9)
    )
    api.validate()
    assert {v["status"] for v in api.ok("GET", "/models/race/versions")["versions"]} == {"READY"}
    assert uploads_left(api) == []


# ---------------------------------------------------------------------- aliases, gate, rollback


def test_promotion_runs_the_gate_and_records_the_move(with_versions: Api) -> None:
    # Given
    api = with_versions
    # When
    first = api.ok("PUT", "/models/cancer/aliases/production", {"version": 1, "reason": "first release"})
    second = api.ok("PUT", "/models/cancer/aliases/production", {"version": 2})
    alias = api.ok("GET", "/models/cancer/aliases/production")
    model = api.ok("GET", "/models/cancer")
    # Then
    assert first["gate"]["passed"] is True
    assert [c["name"] for c in first["gate"]["checks"]] == [
        "artifact_integrity",
        "loads",
        "smoke_cases",
        "signature_compatible",
    ]
    assert second["gate"]["checks"][-1]["message"] == "compatible with live v1"
    assert (alias["version"], alias["previous_version"], alias["updated_by"]) == (2, 1, "alice")
    assert model["aliases"] == {"production": 2}
    moved = [e["detail"] for e in api.events() if e["detail-type"] == "Model Alias Moved"]
    assert [(d["alias"], d["version"], d["previous_version"]) for d in moved] == [
        ("production", 1, None),
        ("production", 2, 1),
    ]


def test_models_are_found_by_a_part_of_their_name_and_by_the_stages_they_have(with_versions: Api) -> None:
    # Given "cancer" with a production alias, and two models with none
    api = with_versions
    api.ok("POST", "/models", {"name": "cancer-staging-copy"})
    api.ok("POST", "/models", {"name": "churn"})
    api.ok("PUT", "/models/cancer/aliases/production", {"version": 1})
    # When
    by_name = api.ok("GET", "/models", query={"name": "CANCER"})
    by_stage = api.ok("GET", "/models", query={"stage": "production"})
    both = api.ok("GET", "/models", query={"name": "copy", "stage": "production"})
    paged = api.ok("GET", "/models", query={"name": "c", "limit": "1"})
    # Then
    assert [m["name"] for m in by_name["models"]] == ["cancer", "cancer-staging-copy"]
    assert [m["name"] for m in by_stage["models"]] == ["cancer"]
    assert both["models"] == []
    assert len(paged["models"]) == 1 and paged["next_token"]
    # And the filters are bounded like the rest of the query
    assert api.call("GET", "/models", query={"stage": "Prod uction"})[0] == 422
    assert api.call("GET", "/models", query={"stage": "v1"})[1]["code"] == "invalid_alias"
    assert api.call("GET", "/models", query={"name": "x" * 64})[0] == 422


def test_catalog_resolves_aliases_and_versions_for_other_functions(with_versions: Api) -> None:
    # Given
    api = with_versions
    api.ok("PUT", "/models/cancer/aliases/production", {"version": 2})
    api.ok("PUT", "/models/cancer/aliases/staging", {"version": 1})
    catalog = DynamoModelCatalog(DynamoTable(api.table, RegistrySettings.load()))
    # When
    production = catalog.resolve("cancer", "production")
    by_ref = catalog.resolve("cancer", "v1")
    everywhere = catalog.models_with_alias("production")
    # Then
    assert (production.version, by_ref.version) == (2, 1)
    assert [(v.model, v.version) for v in everywhere] == [("cancer", 2)]
    assert catalog.endpoint_config("cancer") is None
    with pytest.raises(Exception, match="no alias 'canary'"):
        catalog.resolve("cancer", "canary")


def test_a_version_with_another_schema_fails_the_gate_unless_forced(with_versions: Api) -> None:
    # Given
    api = with_versions
    api.ok("PUT", "/models/cancer/aliases/production", {"version": 1})
    assert api.register("cancer", breast_cancer(1.0, 10))[1]["status"] == "READY"
    # When
    refused, error = api.call("PUT", "/models/cancer/aliases/production", {"version": 3})
    no_reason, _ = api.call("PUT", "/models/cancer/aliases/production", {"version": 3, "force": True})
    forced = api.ok(
        "PUT", "/models/cancer/aliases/production", {"version": 3, "force": True, "reason": "new feature set"}
    )
    # Then
    assert (refused, error["code"]) == (422, "gate_failed")
    assert "features differ from v1" in error["message"]
    assert no_reason == 422
    assert forced["forced"] is True
    assert forced["version"] == 3
    entry = api.ok("GET", "/models/cancer/history", query={"alias": "production", "limit": "1"})["entries"][0]
    assert (entry["reason"], entry["details"]["forced"]) == ("new feature set", True)


def test_a_version_whose_artifact_was_replaced_fails_the_gate(with_versions: Api) -> None:
    # Given
    api = with_versions
    api.ok("PUT", "/models/cancer/aliases/production", {"version": 1})
    boto3.client("s3").put_object(
        Bucket=api.bucket, Key="models/cancer/v2/model.onnx", Body=breast_cancer(0.1, 10).onnx
    )
    # When
    status, error = api.call("PUT", "/models/cancer/aliases/production", {"version": 2})
    # Then
    assert (status, error["code"]) == (422, "gate_failed")
    integrity = error["details"]["checks"][0]
    assert (integrity["name"], integrity["passed"]) == ("artifact_integrity", False)
    assert api.ok("GET", "/models/cancer/aliases/production")["version"] == 1


def test_a_version_whose_smoke_cases_no_longer_reproduce_fails_the_gate(with_versions: Api) -> None:
    # Given: v2's recorded outputs are edited behind the registry's back
    api = with_versions
    table = boto3.client("dynamodb")
    key = {"pk": {"S": "model#cancer"}, "sk": {"S": "version#0000000002"}}
    item = table.get_item(TableName=api.table, Key=key)["Item"]
    body = json.loads(item["body"]["S"])
    body["smoke_cases"][0]["expected"]["label"] = 7
    item["body"] = {"S": json.dumps(body)}
    table.put_item(TableName=api.table, Item=item)
    # When
    status, error = api.call("PUT", "/models/cancer/aliases/production", {"version": 2})
    # Then
    assert (status, error["code"]) == (422, "gate_failed")
    smoke = next(c for c in error["details"]["checks"] if c["name"] == "smoke_cases")
    assert smoke["message"].startswith("1 of 20 smoke cases differ")


def test_moves_to_unknown_versions_or_with_bad_alias_names_are_refused(with_versions: Api) -> None:
    api = with_versions
    assert (
        api.call("PUT", "/models/cancer/aliases/production", {"version": 9})[1]["code"] == "version_not_found"
    )
    assert api.call("PUT", "/models/cancer/aliases/Prod!", {"version": 1})[1]["code"] == "invalid_alias"
    assert api.call("PUT", "/models/cancer/aliases/v2", {"version": 1})[1]["code"] == "invalid_alias"
    assert api.call("GET", "/models/cancer/aliases/production")[1]["code"] == "alias_not_found"
    assert api.call("PUT", "/models/cancer/aliases/production", {"version": 0})[0] == 422


def test_a_move_expecting_a_stale_version_is_409(with_versions: Api) -> None:
    api = with_versions
    api.ok("PUT", "/models/cancer/aliases/staging", {"version": 1})
    api.ok("PUT", "/models/cancer/aliases/staging", {"version": 2, "expected_version": 1})
    status, error = api.call("PUT", "/models/cancer/aliases/staging", {"version": 1, "expected_version": 1})
    assert (status, error["code"]) == (409, "alias_conflict")
    assert error["details"] == {"current_version": 2}


def test_parallel_alias_moves_exactly_one_wins(api: Api) -> None:
    # Given: six versions and production on v1
    api.ok("POST", "/models", {"name": "moves"})
    trained = breast_cancer(1.0)
    for _ in range(6):
        key = api.upload("moves", "m.onnx", trained.onnx)
        _, version = api.registered("moves", {"upload_key": key, "feature_names": trained.features})
        assert version["status"] == "READY"
    registry = service(api)
    registry.move_alias("moves", "production", MoveAliasRequest(version=1), "setup")
    barrier = threading.Barrier(5)

    def move(version: int) -> str:
        barrier.wait()
        try:
            registry.move_alias(
                "moves",
                "production",
                MoveAliasRequest(version=version, expected_version=1),
                f"mover-{version}",
            )
        except ConflictError as exc:
            return exc.code
        return "won"

    # When
    with ThreadPoolExecutor(5) as pool:
        results = dict(zip(range(2, 7), pool.map(move, range(2, 7)), strict=True))
    # Then
    winners = [v for v, result in results.items() if result == "won"]
    assert len(winners) == 1
    assert sorted(r for r in results.values() if r != "won") == ["alias_conflict"] * 4
    alias = api.ok("GET", "/models/moves/aliases/production")
    assert (alias["version"], alias["previous_version"]) == (winners[0], 1)
    assert api.ok("GET", "/models/moves")["aliases"] == {"production": winners[0]}
    moves = api.ok("GET", "/models/moves/history", query={"alias": "production"})["entries"]
    assert [m["to_version"] for m in moves] == [winners[0], 1]


def test_rollback_returns_production_to_the_previous_version(with_versions: Api) -> None:
    # Given
    api = with_versions
    nothing, error = api.call("POST", "/models/cancer/rollback", {})
    api.ok("PUT", "/models/cancer/aliases/production", {"version": 1})
    first_only, first_error = api.call("POST", "/models/cancer/rollback", {})
    api.ok("PUT", "/models/cancer/aliases/production", {"version": 2})
    # When
    rolled = api.ok("POST", "/models/cancer/rollback", {"reason": "latency regression"})
    # Then
    assert (nothing, error["code"]) == (404, "alias_not_found")
    assert (first_only, first_error["code"]) == (409, "nothing_to_roll_back")
    assert (rolled["version"], rolled["previous_version"]) == (1, 2)
    entry = api.ok("GET", "/models/cancer/history", query={"limit": "1"})["entries"][0]
    assert (entry["action"], entry["from_version"], entry["to_version"], entry["reason"]) == (
        "rollback",
        2,
        1,
        "latency regression",
    )


# ---------------------------------------------------------------------- endpoint


def test_endpoint_configs_are_validated_and_stored(with_versions: Api) -> None:
    # Given
    api = with_versions
    api.ok("PUT", "/models/cancer/aliases/production", {"version": 1})
    body = {
        "variants": [
            {"name": "a", "target": "production", "weight": 90},
            {"name": "b", "target": "v2", "weight": 10},
        ],
        "shadow": {"target": "v2", "sample_percent": 25},
        "sticky_key": "entity_id",
    }
    # When
    stored = api.ok("PUT", "/models/cancer/endpoint", body)
    read = api.ok("GET", "/models/cancer/endpoint")
    in_use, in_use_error = api.call("DELETE", "/models/cancer/aliases/production")
    # Then
    assert read == stored
    assert (read["model"], read["updated_by"], read["sticky_key"]) == ("cancer", "alice", "entity_id")
    assert [v["weight"] for v in read["variants"]] == [90, 10]
    assert (in_use, in_use_error["code"]) == (409, "alias_in_use")
    assert [e["detail-type"] for e in api.events()][-1] == "Model Endpoint Changed"


@pytest.mark.parametrize(
    ("variants", "shadow", "status", "needle"),
    [
        (
            [{"name": "a", "target": "v1", "weight": 60}, {"name": "b", "target": "v2", "weight": 30}],
            None,
            422,
            "sum to 100",
        ),
        ([{"name": "a", "target": "v9", "weight": 100}], None, 422, "no version 9"),
        ([{"name": "a", "target": "canary", "weight": 100}], None, 422, "no such alias"),
        (
            [{"name": "a", "target": "v1", "weight": 100}],
            {"target": "v7", "sample_percent": 5},
            422,
            "no version 7",
        ),
        (
            [{"name": "a", "target": "v1", "weight": 50}, {"name": "a", "target": "v2", "weight": 50}],
            None,
            422,
            "unique",
        ),
    ],
    ids=["weights", "unknown-version", "unknown-alias", "unknown-shadow", "duplicate-names"],
)
def test_invalid_endpoint_configs_are_refused(
    with_versions: Api, variants: list[Any], shadow: Any, status: int, needle: str
) -> None:
    got, error = with_versions.call(
        "PUT", "/models/cancer/endpoint", {"variants": variants, "shadow": shadow}
    )
    assert got == status
    assert needle in error["message"]
    assert with_versions.call("GET", "/models/cancer/endpoint")[1]["code"] == "no_endpoint_config"


def nested(depth: int) -> dict[str, Any]:
    """``{"a": {"a": ... {"a": 1}}}``, ``depth`` objects deep."""
    document: dict[str, Any] = {"a": 1}
    for _ in range(depth - 1):
        document = {"a": document}
    return document


VARIANTS = '"variants": [{"name": "a", "target": "v1", "weight": 100}]'


@pytest.mark.parametrize(
    ("method", "raw", "field"),
    [
        ("PUT", f'{{{VARIANTS}, "rules": {{"fallback": {{"response": {{"label": 1e999}}}}}}}}', "response"),
        ("PUT", f'{{{VARIANTS}, "rules": {{"fallback": {{"response": {{"p": NaN}}}}}}}}', "response"),
        (
            "PUT",
            f'{{{VARIANTS}, "rules": {{"fallback": {{"response": {json.dumps(nested(40))}}}}}}}',
            "response",
        ),
        (
            "PUT",
            f'{{{VARIANTS}, "rules": {{"exclude_recently_seen": {{"item_field": "{"x" * 500_000}", "hours": 1}}}}}}',
            "item_field",
        ),
        (
            "PUT",
            f'{{{VARIANTS}, "rules": {{"decision": {{"thresholds": [{{"min_score": Infinity, "decision": "a"}}]}}}}}}',
            "min_score",
        ),
        (
            "PUT",
            f'{{{VARIANTS}, "rules": {{"enrich_items": {{"item_field": "i", "attributes": ["{"a" * 200}"]}}}}}}',
            "attributes",
        ),
        ("PUT", f'{{{VARIANTS}, "sticky_key": "{"k" * 100}"}}', "sticky_key"),
        (
            "PUT",
            f'{{{VARIANTS}, "rules": {{"exclude_recently_seen": {{"item_field": "i", "hours": 1, '
            f'"interactions": {json.dumps(["view"] * 1000)}}}}}}}',
            "interactions",
        ),
        ("PATCH", f'{{"rules": {json.dumps(nested(40))}}}', "rules"),
        ("PATCH", '{"rules": {"fallback": {"response": {"label": -1e999}}}}', "rules"),
    ],
    ids=[
        "inf",
        "nan",
        "nested-40",
        "item-field-500k",
        "inf-threshold",
        "long-attribute",
        "sticky-key",
        "interactions-1000",
        "patch-nested",
        "patch-inf",
    ],
)
def test_endpoint_configs_beyond_their_bounds_are_422_naming_the_field(
    api: Api, method: str, raw: str, field: str
) -> None:
    # Given
    api.ok("POST", "/models", {"name": "bounded"})
    # When
    status, error = api.call(method, "/models/bounded/endpoint", raw_body=raw)
    # Then nothing was stored, and the answer names the field
    assert (status, error["code"]) == (422, "validation_error"), error
    assert field in error["details"][0]["field"]
    assert api.call("GET", "/models/bounded/endpoint")[1]["code"] == "no_endpoint_config"


@pytest.mark.parametrize(
    ("raw", "field"),
    [
        ('{"upload_key": "k", "metrics": {"auc": NaN}}', "metrics"),
        ('{"upload_key": "k", "metrics": {"auc": 1e999}}', "metrics"),
        (f'{{"upload_key": "k", "params": {json.dumps(nested(40))}}}', "params"),
        ('{"upload_key": "k", "params": {"seed": 1e300}}', "params"),
        (f'{{"upload_key": "k", "smoke_inputs": [{{"f0": "{"x" * 5000}"}}]}}', "smoke_inputs"),
        (f'{{"upload_key": "k", "feature_names": ["{"f" * 200}"]}}', "feature_names"),
        (f'{{"upload_key": "k", "metrics": {json.dumps({f"m{i}": 1 for i in range(101)})}}}', "metrics"),
    ],
    ids=[
        "nan-metric",
        "inf-metric",
        "nested-params",
        "huge-param",
        "long-smoke-value",
        "long-name",
        "many-metrics",
    ],
)
def test_version_registrations_beyond_their_bounds_are_422_naming_the_field(
    api: Api, raw: str, field: str
) -> None:
    # Given
    api.ok("POST", "/models", {"name": "bounded"})
    # When
    status, error = api.call("POST", "/models/bounded/versions", raw_body=raw)
    # Then
    assert (status, error["code"]) == (422, "validation_error"), error
    assert field in error["details"][0]["field"]


def test_version_numbers_are_bounded_in_bodies_and_paths(api: Api) -> None:
    # Given
    api.ok("POST", "/models", {"name": "bounded"})
    # When
    moved = api.call("PUT", "/models/bounded/aliases/production", {"version": 10**40})
    read = api.call("GET", f"/models/bounded/versions/{'9' * 40}")
    # Then
    assert (moved[0], moved[1]["code"]) == (422, "validation_error")
    assert read[0] in (400, 404)


def test_endpoint_changes_are_read_modify_write_with_etags(with_versions: Api) -> None:
    # Given an endpoint with serving rules and a cache
    api = with_versions
    api.ok("PUT", "/models/cancer/aliases/production", {"version": 1})
    created = api.ok(
        "PUT",
        "/models/cancer/endpoint",
        {
            "variants": [{"name": "main", "target": "production", "weight": 100}],
            "cache": {"enabled": True, "ttl_seconds": 120},
            "rules": {"fallback": {"response": {"label": 0}, "timeout_ms": 300}, "honour_opt_out": False},
        },
    )
    etag = api.last_headers["ETag"]
    # When: a canary ramp changes the split only, naming the revision it read
    blind_status, blind = api.call(
        "PUT",
        "/models/cancer/endpoint",
        {"variants": [{"name": "main", "target": "production", "weight": 100}]},
    )
    ramped = api.ok(
        "PATCH",
        "/models/cancer/endpoint",
        {
            "variants": [
                {"name": "main", "target": "production", "weight": 90},
                {"name": "canary", "target": "v2", "weight": 10},
            ]
        },
        headers={"If-Match": etag},
    )
    stale_status, stale = api.call(
        "PATCH", "/models/cancer/endpoint", {"sticky_key": "user_id"}, headers={"If-Match": etag}
    )
    read = api.ok("GET", "/models/cancer/endpoint")
    read_etag = api.last_headers["ETag"]
    entry = api.ok("GET", "/models/cancer/history", query={"limit": "1"})["entries"][0]
    # Then
    assert (created["revision"], etag) == (1, '"1"')
    assert (blind_status, blind["code"]) == (428, "precondition_required")
    assert (ramped["revision"], ramped["rules"], ramped["cache"]) == (2, created["rules"], created["cache"])
    assert (stale_status, stale["code"], stale["details"]["current_revision"]) == (409, "conflict", 2)
    assert (read, read_etag) == (ramped, '"2"')
    assert entry["action"] == "endpoint_changed"
    assert entry["details"]["before"]["rules"] == entry["details"]["after"]["rules"] == created["rules"]
    assert [v["weight"] for v in entry["details"]["after"]["variants"]] == [90, 10]
    assert [g["target"] for g in entry["details"]["gates"]] == ["v2"]


class HandlerTransport:
    """The SDK's transport, answered by the registry function in-process."""

    def __init__(self, api: Api) -> None:
        self.api = api

    def send(
        self, method: str, url: str, *, headers: Mapping[str, str], body: Any, timeout: float
    ) -> HttpResponse:
        parts = urlsplit(url)
        status, payload = self.api.call(
            method,
            parts.path.removeprefix("/v1"),
            json.loads(body) if body else None,
            query=dict(parse_qsl(parts.query)) or None,
            headers={k: v for k, v in headers.items() if k.lower() == "if-match"},
        )
        return HttpResponse(status, json.dumps(payload).encode())


def test_a_canary_ramp_with_the_cli_keeps_the_rules_and_the_cache(
    with_versions: Api, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given an endpoint whose rules were set (opt-out fallback, a decision, a cache)
    api = with_versions
    api.ok("PUT", "/models/cancer/aliases/production", {"version": 1})
    rules = {
        "fallback": {"response": {"label": 0}, "timeout_ms": 250},
        "decision": {"thresholds": [{"min_score": 0.7, "decision": "refer"}], "default": "accept"},
        "honour_opt_out": True,
    }
    api.ok(
        "PUT",
        "/models/cancer/endpoint",
        {
            "variants": [{"name": "production", "target": "production", "weight": 100}],
            "cache": {"enabled": True, "ttl_seconds": 90},
            "rules": rules,
        },
    )
    client = Client("http://registry.test/v1", "mlk.k.s", transport=HandlerTransport(api))
    monkeypatch.setattr(models_commands, "api", lambda _args: client)
    # When: `mlambda models split cancer production=90 v2=10 --sticky entity_id`
    args = argparse.Namespace(
        name="cancer", variants=["production=90", "v2=10"], shadow=None, no_shadow=False, sticky="entity_id"
    )
    assert models_commands.models_split(args).code == 0
    capsys.readouterr()
    # Then
    after = api.ok("GET", "/models/cancer/endpoint")
    assert [(v["target"], v["weight"]) for v in after["variants"]] == [("production", 90), ("v2", 10)]
    assert after["rules"]["fallback"] == rules["fallback"]
    assert after["rules"]["decision"]["thresholds"] == rules["decision"]["thresholds"]
    assert after["cache"] == {"enabled": True, "ttl_seconds": 90}
    assert after["sticky_key"] == "entity_id"
    entry = api.ok("GET", "/models/cancer/history", query={"limit": "1"})["entries"][0]
    assert entry["details"]["before"]["rules"] == entry["details"]["after"]["rules"]


def test_a_variant_that_fails_the_gate_is_refused_with_the_report(with_versions: Api) -> None:
    # Given production v1 and a v3 with ten features
    api = with_versions
    api.ok("PUT", "/models/cancer/aliases/production", {"version": 1})
    assert api.register("cancer", breast_cancer(1.0, 10))[1]["status"] == "READY"
    # When
    status, error = api.call(
        "PUT",
        "/models/cancer/endpoint",
        {
            "variants": [
                {"name": "main", "target": "production", "weight": 95},
                {"name": "canary", "target": "v3", "weight": 5},
            ]
        },
    )
    shadow_status, shadow_error = api.call(
        "PUT",
        "/models/cancer/endpoint",
        {
            "variants": [{"name": "main", "target": "production", "weight": 100}],
            "shadow": {"target": "v3", "sample_percent": 50},
        },
    )
    # Then
    assert (status, error["code"]) == (422, "gate_failed")
    [gate] = error["details"]["gates"]
    assert (gate["target"], gate["version"], gate["passed"]) == ("v3", 3, False)
    assert [c["name"] for c in gate["checks"] if not c["passed"]] == ["signature_compatible"]
    assert (shadow_status, shadow_error["code"]) == (422, "gate_failed")
    assert api.call("GET", "/models/cancer/endpoint")[1]["code"] == "no_endpoint_config"


# ---------------------------------------------------------------------- history


def test_history_answers_where_an_alias_pointed_at_a_time(with_versions: Api) -> None:
    # Given
    api = with_versions
    before = datetime.now(UTC)
    time.sleep(0.002)
    api.ok("PUT", "/models/cancer/aliases/production", {"version": 1})
    time.sleep(0.002)
    between = datetime.now(UTC)
    time.sleep(0.002)
    api.ok("PUT", "/models/cancer/aliases/production", {"version": 2})
    api.ok("PUT", "/models/cancer/aliases/staging", {"version": 1})
    # When
    at = {
        t: api.ok("GET", "/models/cancer/history", query={"alias": "production", "at": t.isoformat()})
        for t in (before, between, datetime.now(UTC))
    }
    needs_alias, error = api.call("GET", "/models/cancer/history", query={"at": between.isoformat()})
    bad_time, _ = api.call("GET", "/models/cancer/history", query={"alias": "production", "at": "yesterday"})
    # Then
    assert [at[t]["version"] for t in at] == [None, 1, 2]
    assert at[between]["entry"]["actor"] == "alice"
    assert (needs_alias, error["code"]) == (400, "invalid_query")
    assert bad_time == 422
    everything = api.ok("GET", "/models/cancer/history")["entries"]
    assert [e["action"] for e in everything] == [
        "alias_moved",
        "alias_moved",
        "alias_moved",
        "version_ready",
        "version_registered",
        "version_ready",
        "version_registered",
        "model_created",
    ]
