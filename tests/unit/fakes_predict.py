"""In-memory ports and small real models for the inference service's unit tests."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from functools import cache
from typing import Any

import numpy as np
from skl2onnx import to_onnx
from sklearn.datasets import make_classification, make_regression
from sklearn.linear_model import LinearRegression, LogisticRegression

from mlambda.adapters.onnx import inspect_model
from mlambda.errors import NotFoundError, UpstreamError
from mlambda.schemas.prediction_log import PredictionLogRecord, expand
from mlambda.schemas.registry import (
    EndpointConfig,
    FeatureSchema,
    FeatureSpec,
    ModelVersion,
    parse_version_ref,
)

FEATURES = ["f0", "f1", "f2", "f3"]


@cache
def classifier(seed: int = 0) -> tuple[bytes, Any, np.ndarray]:
    """A 4-feature logistic regression as ONNX (no ZipMap), the sklearn model and its data."""
    X, y = make_classification(n_samples=300, n_features=4, n_informative=3, n_redundant=0, random_state=seed)
    model = LogisticRegression(max_iter=500).fit(X, y)
    onx = to_onnx(model, X[:1].astype(np.float32), options={id(model): {"zipmap": False}})
    return onx.SerializeToString(), model, X.astype(np.float32)


@cache
def regressor() -> tuple[bytes, Any, np.ndarray]:
    X, y = make_regression(n_samples=200, n_features=4, random_state=0)
    model = LinearRegression().fit(X, y)
    return to_onnx(model, X[:1].astype(np.float32)).SerializeToString(), model, X.astype(np.float32)


def version_of(name: str, number: int, data: bytes, *, sha256: str | None = None) -> ModelVersion:
    """A registered version of ``data`` with a 4-float-feature tensor schema."""
    signature = inspect_model(data, max_bytes=10 * 1024 * 1024)
    return ModelVersion(
        model=name,
        version=number,
        artifact_key=f"models/{name}/{number}/model.onnx",
        artifact_sha256=sha256 or hashlib.sha256(data).hexdigest(),
        size_bytes=len(data),
        signature=signature,
        feature_schema=FeatureSchema(
            mode="tensor",
            features=[FeatureSpec(name=n, dtype="float") for n in FEATURES],
            tensor_input=signature.inputs[0].name,
            tensor_dtype="float32",
        ),
        created_at=datetime(2026, 1, 1, tzinfo=UTC),
        created_by="test",
    )


def row(values: Sequence[float]) -> dict[str, float]:
    return {name: float(v) for name, v in zip(FEATURES, values, strict=True)}


class InMemoryCatalog:
    """ModelCatalog over dicts; counts reads to prove the TTL cache works."""

    def __init__(self) -> None:
        self.versions: dict[tuple[str, int], ModelVersion] = {}
        self.aliases: dict[tuple[str, str], int] = {}
        self.endpoints: dict[str, EndpointConfig] = {}
        self.reads = 0

    def add(self, version: ModelVersion, *aliases: str) -> None:
        self.versions[(version.model, version.version)] = version
        for alias in aliases:
            self.aliases[(version.model, alias)] = version.version

    def get_version(self, model: str, version: int) -> ModelVersion:
        self.reads += 1
        found = self.versions.get((model, version))
        if found is None:
            raise NotFoundError(f"{model} v{version} not found", code="version_not_found")
        return found

    def resolve(self, model: str, ref: str) -> ModelVersion:
        number = parse_version_ref(ref)
        if number is None:
            self.reads += 1
            number = self.aliases.get((model, ref))
            if number is None:
                raise NotFoundError(f"{model} has no alias {ref}", code="alias_not_found")
        return self.get_version(model, number)

    def endpoint_config(self, model: str) -> EndpointConfig | None:
        self.reads += 1
        return self.endpoints.get(model)

    def models_with_alias(self, alias: str) -> list[ModelVersion]:
        return [self.versions[(m, v)] for (m, a), v in self.aliases.items() if a == alias]


class InMemoryArtifacts:
    """ArtifactStore in a dict; counts fetches."""

    def __init__(self) -> None:
        self.objects: dict[str, bytes] = {}
        self.fetches = 0

    def get(self, key: str) -> bytes:
        self.fetches += 1
        if key not in self.objects:
            raise NotFoundError(f"{key} not found")
        return self.objects[key]

    def put(self, key: str, body: bytes, *, content_type: str = "application/octet-stream") -> None:
        self.objects[key] = body


class RecordingOutput:
    """The function's output as predict's PredictionLog writes it: the lines, parsed back on demand."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def write(self, text: str) -> int:
        self.lines.extend(text.splitlines())
        return len(text)

    def records(self) -> list[PredictionLogRecord]:
        return [PredictionLogRecord.model_validate_json(line) for line in self.lines]

    def envelopes(self) -> list[dict[str, Any]]:
        """The archive envelopes the archiver makes of the records (JSON-ready, as archived)."""
        return [e.model_dump(mode="json") for record in self.records() for e in expand(record)]


class InMemoryCacheStore:
    """PredictionCacheStore that keeps expired entries, as moto does."""

    def __init__(self) -> None:
        self.items: dict[str, tuple[dict[str, Any], int]] = {}

    def get_many(self, keys: Sequence[str], *, now: float) -> dict[str, dict[str, Any]]:
        return {k: self.items[k][0] for k in keys if k in self.items and self.items[k][1] > now}

    def put_many(self, entries: Mapping[str, dict[str, Any]], *, expires_at: int) -> None:
        for key, prediction in entries.items():
            self.items[key] = (dict(prediction), expires_at)


class InMemoryFeatures:
    """OnlineFeatureSource over a dict of entity -> features."""

    def __init__(self, values: dict[str, dict[str, Any]] | None = None) -> None:
        self.values = values or {}
        self.reads = 0

    def latest(self, entity_id: str, names: Sequence[str]) -> dict[str, Any]:
        self.reads += 1
        stored = self.values.get(entity_id, {})
        return {n: stored[n] for n in names if n in stored}


class InMemoryItems:
    """ItemMetadataSource over a dict of item id -> attributes."""

    def __init__(self) -> None:
        self.items: dict[str, dict[str, Any]] = {}
        self.fail = False
        self.reads: list[list[str]] = []

    def get_many(self, item_ids: Sequence[str]) -> dict[str, dict[str, Any]]:
        if self.fail:
            raise UpstreamError("metadata store unavailable")
        self.reads.append(list(item_ids))
        return {i: dict(self.items[i]) for i in item_ids if i in self.items}


class InMemoryTracking:
    """EntityTracking with opted-out entities and seen items."""

    def __init__(self) -> None:
        self.opted_out: set[str] = set()
        self.seen: dict[str, set[str]] = {}
        self.fail_lookups = False

    def is_opted_out(self, entity_id: str) -> bool:
        if self.fail_lookups:
            raise UpstreamError("tracking table unavailable")
        return entity_id in self.opted_out

    def seen_items(self, entity_id: str, hours: float, kinds: Sequence[str]) -> set[str]:
        if self.fail_lookups:
            raise UpstreamError("tracking table unavailable")
        return set(self.seen.get(entity_id, set()))


class BrokenModel:
    """A ServingModel that fails (or times out) every run."""

    def __init__(self, code: str = "model_failed", delay: float = 0.0) -> None:
        self.code = code
        self.delay = delay

    def run(
        self, feed: Mapping[str, np.ndarray], outputs: Sequence[str], *, timeout_ms: int | None = None
    ) -> dict[str, Any]:
        time.sleep(self.delay)
        raise UpstreamError("model broke", code=self.code)


class ManualClock:
    """A clock tests move by hand."""

    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now
