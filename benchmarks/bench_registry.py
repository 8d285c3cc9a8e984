"""Registry figures: registration latency (the API's 202) against the validation it no longer waits
for, by model size; the structure check; the gate; reading a version (what predict/batch/monitor pay).

Run from the repo root: PYTHONPATH=. .venv/bin/python benchmarks/bench_registry.py (it reuses test
helpers). Prints figures; asserts nothing. Registration and validation run on the real adapters
over in-process moto (DynamoDB transactions, S3, SQS), so the 202 includes what AWS calls it makes.

"before" is what wave 1's register cost the caller: the API loaded and validated the model inside
the request (API Gateway gives it 29 s), i.e. today's 202 plus the validation, measured here.
"""

from __future__ import annotations

import os
import statistics
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

os.environ.setdefault("AWS_ACCESS_KEY_ID", "bench")
os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "bench")
os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")

import boto3
import numpy as np
from moto import mock_aws
from onnx import TensorProto, helper

from mlambda.adapters.dynamodb import deserialize, serialize
from mlambda.schemas.registry import HistoryEntry, ModelVersion
from mlambda.schemas.registry_api import CreateModelRequest, MoveAliasRequest, RegisterVersionRequest
from tests.integration.test_registry_api import create_stack as create_registry_stack
from tests.unit.fakes_registry import breast_cancer


def timed(label: str, fn: Callable[[], object], repeat: int) -> None:
    samples = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - start) * 1e6)
    samples.sort()
    print(
        f"{label:58} p50 {statistics.median(samples):9.1f} us  p95 {samples[int(len(samples) * 0.95) - 1]:9.1f} us"
    )


def wide_regressor(megabytes: int) -> bytes:
    """y = sum(x @ W) with W float32 [4, n]: an artifact of about ``megabytes`` MB."""
    columns = megabytes * 1024 * 1024 // 16
    weights = helper.make_tensor(
        "w", TensorProto.FLOAT, [4, columns], np.full((4, columns), 0.25, np.float32).tobytes(), raw=True
    )
    graph = helper.make_graph(
        [
            helper.make_node("MatMul", ["x", "w"], ["wide"]),
            helper.make_node("ReduceSum", ["wide"], ["value"], keepdims=1, axes=[1]),
        ],
        "wide",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 4])],
        [helper.make_tensor_value_info("value", TensorProto.FLOAT, [None, 1])],
        [weights],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 12)])
    model.ir_version = 7
    return model.SerializeToString()


def create_stack() -> tuple[str, str, str]:
    """The registry's table and bucket as the registry API's tests make them, versioned, and its queue."""
    table, bucket = "registry", "artifacts"
    create_registry_stack(table, bucket)
    s3 = boto3.client("s3")
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    queue = boto3.client("sqs").create_queue(QueueName="validation")["QueueUrl"]
    return table, bucket, queue


def registration_section() -> None:
    from mlambda.config import RegistrySettings, ValidatorSettings
    from mlambda.services.registry.service import RegistryService
    from mlambda.services.registry.validation import VersionValidator

    print("== registration: the API's 202 vs the validation it hands to the validator (moto in-process)")
    table, bucket, queue = create_stack()
    env = {
        "REGISTRY_TABLE": table,
        "ARTIFACTS_BUCKET": bucket,
        "VALIDATION_QUEUE_URL": queue,
        "MAX_MODEL_BYTES": str(200 * 1024 * 1024),
    }
    service = RegistryService.from_settings(RegistrySettings.model_validate(env))
    validator = VersionValidator.from_settings(ValidatorSettings.model_validate(env))
    s3 = boto3.client("s3")
    trained = breast_cancer()
    cases: list[tuple[str, bytes, dict[str, Any], bytes | None]] = [
        (
            "logistic regression, 30 features + 200-row labelled reference",
            trained.onnx,
            {"target": "target"},
            trained.parquet(200),
        ),
        ("60 MB artifact, no reference", wide_regressor(60), {"feature_names": ["a", "b", "c", "d"]}, None),
    ]
    for label, data, fields, reference in cases:
        name = f"m-{uuid.uuid4().hex[:8]}"
        service.create_model(CreateModelRequest(name=name), "bench")
        accepted, validated = [], []
        for _ in range(3):
            model_key = f"uploads/{name}/{uuid.uuid4().hex}/model.onnx"
            s3.put_object(Bucket=bucket, Key=model_key, Body=data)
            body: dict[str, Any] = {"upload_key": model_key, **fields}
            if reference is not None:
                body["reference_key"] = f"uploads/{name}/{uuid.uuid4().hex}/ref.parquet"
                s3.put_object(Bucket=bucket, Key=body["reference_key"], Body=reference)
            started = time.perf_counter()
            pending = service.register_version(name, RegisterVersionRequest(**body), "bench")
            accepted.append((time.perf_counter() - started) * 1e3)
            started = time.perf_counter()
            outcome = validator.validate(name, pending.version)
            validated.append((time.perf_counter() - started) * 1e3)
            assert outcome is not None and outcome.status == "READY", outcome
        api, work = statistics.median(accepted), statistics.median(validated)
        print(f"  {label} ({len(data) / 1e6:.1f} MB)")
        print(f"    register API, 202 PENDING_VALIDATION     p50 {api:9.1f} ms")
        print(f"    validator (load, reference, profile...)  p50 {work:9.1f} ms")
        print(f"    before: register did both in the request      {api + work:9.1f} ms")
        if reference is None:
            started = time.perf_counter()
            service.move_alias(name, "production", MoveAliasRequest(version=1), "bench")
            print(
                f"    promote (gate: sha256, load, smoke)           {(time.perf_counter() - started) * 1e3:9.1f} ms"
            )


def structure_section() -> None:
    from mlambda.adapters.onnx_structure import read_structure

    print("== structure check (protobuf-level walk: no external data anywhere)")
    for label, data in (
        ("logistic regression", breast_cancer().onnx),
        ("60 MB artifact", wide_regressor(60)),
    ):
        timed(f"read_structure: {label} ({len(data) / 1e6:.1f} MB)", lambda d=data: read_structure(d), 20)


def version_read_section() -> None:
    from mlambda.adapters.dynamodb import DynamoTable
    from mlambda.adapters.registry import DynamoModelCatalog, OnnxRuntime
    from mlambda.config import RegistrySettings
    from mlambda.schemas.registry import PendingVersion
    from mlambda.schemas.registry_api import ModelDetails
    from mlambda.services.registry.validation import VersionValidator
    from tests.unit.fakes_registry import InMemoryArtifacts, InMemoryRegistryStore, RecordingEvents

    print("== reading a version (what predict, batch and monitor pay)")
    store, artifacts = InMemoryRegistryStore(), InMemoryArtifacts()
    trained = breast_cancer()
    stamp = datetime.now(UTC)
    store.models["cancer"] = ModelDetails(name="cancer", created_at=stamp, updated_at=stamp)
    artifacts.objects[f"uploads/cancer/{'a' * 32}/m.onnx"] = trained.onnx
    artifacts.objects[f"uploads/cancer/{'a' * 32}/r.parquet"] = trained.parquet(200)
    request = RegisterVersionRequest(
        upload_key=f"uploads/cancer/{'a' * 32}/m.onnx",
        reference_key=f"uploads/cancer/{'a' * 32}/r.parquet",
        target="target",
    )
    pending = PendingVersion(
        model="cancer",
        version=1,
        request=request.model_dump(mode="json", exclude_none=True),
        created_at=stamp,
        created_by="bench",
        updated_at=stamp,
    )
    store.add_version(
        pending,
        HistoryEntry(model="cancer", at=stamp, actor="bench", action="version_registered", to_version=1),
    )
    version = VersionValidator(store, artifacts, OnnxRuntime(), RecordingEvents()).validate("cancer", 1)
    assert isinstance(version, ModelVersion)
    body = version.model_dump_json()
    as_json = serialize({"pk": "model#cancer", "sk": "alias#production", "body": body})
    as_maps = serialize({"pk": "model#cancer", "sk": "alias#production", **version.model_dump(mode="json")})
    print(f"  version item: {len(body)} bytes of JSON")
    timed(
        "decode version: one JSON attribute + model_validate_json",
        lambda: ModelVersion.model_validate_json(deserialize(as_json)["body"]),
        2000,
    )
    timed(
        "decode version: nested maps + model_validate",
        lambda: ModelVersion.model_validate(deserialize(as_maps)),
        2000,
    )
    client = boto3.client("dynamodb")
    client.put_item(TableName="registry", Item=as_json)
    settings = RegistrySettings.model_validate(
        {"REGISTRY_TABLE": "registry", "ARTIFACTS_BUCKET": "b", "VALIDATION_QUEUE_URL": "q"}
    )
    catalog = DynamoModelCatalog(DynamoTable("registry", settings))
    timed(
        "DynamoModelCatalog.resolve('production') on in-process moto",
        lambda: catalog.resolve("cancer", "production"),
        300,
    )


def main() -> None:
    with mock_aws():
        registration_section()
        structure_section()
        version_read_section()


if __name__ == "__main__":
    main()
