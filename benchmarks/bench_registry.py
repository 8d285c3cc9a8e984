"""Registry figures: the cost of reading a version (what predict/batch/monitor pay) and of registering.

Run from the repo root: PYTHONPATH=. .venv/bin/python benchmarks/bench_registry.py (it reuses the
in-memory ports of tests/unit/fakes_registry.py). Prints figures; asserts nothing.
Compares a version stored as one JSON attribute (what the registry does) with the same version
as nested DynamoDB maps, decoded the way boto3 does it.
"""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Callable

os.environ.setdefault("AWS_ACCESS_KEY_ID", "bench")
os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "bench")
os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")

import boto3
from moto import mock_aws

from mlambda.adapters.dynamodb import deserialize, serialize
from mlambda.schemas.registry import ModelVersion
from mlambda.schemas.registry_api import CreateModelRequest, MoveAliasRequest, RegisterVersionRequest
from mlambda.services.registry.service import RegistryService
from tests.unit.fakes_registry import (
    InMemoryArtifacts,
    InMemoryRegistryStore,
    RecordingEvents,
    breast_cancer,
)


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


def main() -> None:
    from mlambda.adapters.registry import OnnxRuntime

    store, artifacts = InMemoryRegistryStore(), InMemoryArtifacts()
    service = RegistryService(store, artifacts, OnnxRuntime(), RecordingEvents())
    service.create_model(CreateModelRequest(name="cancer"), "bench")
    trained = breast_cancer()
    artifacts.objects[f"uploads/cancer/{'a' * 32}/m.onnx"] = trained.onnx
    artifacts.objects[f"uploads/cancer/{'a' * 32}/r.parquet"] = trained.parquet(569)
    request = RegisterVersionRequest(
        upload_key=f"uploads/cancer/{'a' * 32}/m.onnx",
        reference_key=f"uploads/cancer/{'a' * 32}/r.parquet",
        feature_names=trained.features,
    )
    start = time.perf_counter()
    version = service.register_version("cancer", request, "bench")
    print(
        f"{'register (30 features, 569-row reference, 20 smoke cases)':58} {(time.perf_counter() - start) * 1e3:9.1f} ms"
    )
    start = time.perf_counter()
    service.move_alias("cancer", "production", MoveAliasRequest(version=1), "bench")
    print(
        f"{'promote to production (gate: sha, load, 20 smoke cases)':58} {(time.perf_counter() - start) * 1e3:9.1f} ms"
    )

    body = version.model_dump_json()
    as_json = serialize({"pk": "model#cancer", "sk": "alias#production", "body": body})
    as_maps = serialize({"pk": "model#cancer", "sk": "alias#production", **version.model_dump(mode="json")})
    print(f"version item: {len(body)} bytes of JSON")
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

    with mock_aws():
        from mlambda.adapters.dynamodb import DynamoTable
        from mlambda.adapters.registry import DynamoModelCatalog
        from mlambda.config import RegistrySettings

        client = boto3.client("dynamodb")
        client.create_table(
            TableName="registry",
            BillingMode="PAY_PER_REQUEST",
            AttributeDefinitions=[{"AttributeName": n, "AttributeType": "S"} for n in ("pk", "sk")],
            KeySchema=[
                {"AttributeName": "pk", "KeyType": "HASH"},
                {"AttributeName": "sk", "KeyType": "RANGE"},
            ],
        )
        client.put_item(TableName="registry", Item=as_json)
        settings = RegistrySettings.model_validate({"REGISTRY_TABLE": "registry", "ARTIFACTS_BUCKET": "b"})
        catalog = DynamoModelCatalog(DynamoTable("registry", settings))
        timed(
            "DynamoModelCatalog.resolve('production') on in-process moto",
            lambda: catalog.resolve("cancer", "production"),
            300,
        )


if __name__ == "__main__":
    main()
