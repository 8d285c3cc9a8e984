"""In-memory registry ports, and small real ONNX models to register (shared by unit, integration, e2e)."""

from __future__ import annotations

import hashlib
import io
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import cache
from typing import Any

import numpy as np
import onnx
import pandas as pd
from onnx import TensorProto, helper

from mlambda.adapters import tabular
from mlambda.adapters.registry import VersionNotReadyError
from mlambda.errors import ConflictError, InvalidInputError, NotFoundError
from mlambda.schemas.registry import (
    PENDING_VALIDATION,
    Alias,
    EndpointConfig,
    HistoryEntry,
    ModelVersion,
    PendingVersion,
    RegisteredModel,
    parse_version_ref,
)
from mlambda.schemas.registry_api import ModelDetails


class InMemoryRegistryStore:
    """RegistryStore in dicts, with the same conditions as the DynamoDB one (under one lock)."""

    def __init__(self) -> None:
        self.models: dict[str, ModelDetails] = {}
        self.versions: dict[tuple[str, int], ModelVersion | PendingVersion] = {}
        self.aliases: dict[tuple[str, str], Alias] = {}
        self.endpoints: dict[str, EndpointConfig] = {}
        self.entries: list[HistoryEntry] = []
        self.lock = threading.Lock()

    # ModelCatalog
    def get_version(self, model: str, version: int) -> ModelVersion:
        found = self.versions.get((model, version))
        if found is None:
            raise NotFoundError(f"model '{model}' has no version {version}", code="version_not_found")
        if isinstance(found, PendingVersion):
            raise VersionNotReadyError(f"version {version} is {found.status}")
        return found

    def resolve(self, model: str, ref: str) -> ModelVersion:
        number = parse_version_ref(ref)
        if number is not None:
            return self.get_version(model, number)
        alias = self.aliases.get((model, ref))
        if alias is None:
            raise NotFoundError(f"no alias {ref}", code="alias_not_found")
        return self.get_version(model, alias.version)

    def endpoint_config(self, model: str) -> EndpointConfig | None:
        return self.endpoints.get(model)

    def models_with_alias(self, alias: str) -> list[ModelVersion]:
        return [self.get_version(m, a.version) for (m, name), a in self.aliases.items() if name == alias]

    # RegistryStore
    def create_model(self, model: RegisteredModel, entry: HistoryEntry) -> None:
        with self.lock:
            if model.name in self.models:
                raise ConflictError("exists", code="model_exists")
            self.models[model.name] = ModelDetails(**model.model_dump())
            self.entries.append(entry)

    def get_model(self, name: str) -> ModelDetails | None:
        return self.models.get(name)

    def list_models(
        self,
        *,
        limit: int,
        token: str | None,
        owner: str | None,
        tag: tuple[str, str] | None,
        name: str | None = None,
        stage: str | None = None,
    ) -> tuple[list[ModelDetails], str | None]:
        chosen = [
            m
            for key, m in sorted(self.models.items())
            if (token is None or key > token)
            and (owner is None or m.owner == owner)
            and (tag is None or m.tags.get(tag[0]) == tag[1])
            and (name is None or name in key)
            and (stage is None or stage in m.aliases)
        ]
        page = chosen[:limit]
        return page, (page[-1].name if len(chosen) > limit else None)

    def update_model(self, model: RegisteredModel, entry: HistoryEntry) -> None:
        with self.lock:
            current = self.models.get(model.name)
            if current is None:
                raise NotFoundError("gone", code="model_not_found")
            self.models[model.name] = ModelDetails(**model.model_dump(), aliases=current.aliases)
            self.entries.append(entry)

    def delete_model(self, name: str, entry: HistoryEntry) -> None:
        with self.lock:
            current = self.models.get(name)
            if current is None:
                raise NotFoundError("gone", code="model_not_found")
            if current.aliases:
                raise ConflictError("aliases", code="model_has_aliases")
            del self.models[name]
            for key in [k for k in self.versions if k[0] == name]:
                del self.versions[key]
            self.endpoints.pop(name, None)
            self.entries.append(entry)

    def latest_version(self, name: str) -> int:
        model = self.models.get(name)
        if model is None:
            raise NotFoundError("gone", code="model_not_found")
        return model.latest_version

    def add_version(self, version: ModelVersion | PendingVersion, entry: HistoryEntry) -> None:
        with self.lock:
            model = self.models.get(version.model)
            if model is None or model.latest_version != version.version - 1:
                raise ConflictError("raced", code="version_conflict")
            self.models[version.model] = model.model_copy(update={"latest_version": version.version})
            self.versions[(version.model, version.version)] = version
            self.entries.append(entry)

    def version_record(self, name: str, version: int) -> ModelVersion | PendingVersion | None:
        return self.versions.get((name, version))

    def finish_version(self, version: ModelVersion | PendingVersion, entry: HistoryEntry) -> None:
        with self.lock:
            current = self.versions.get((version.model, version.version))
            if current is None or current.status != PENDING_VALIDATION:
                raise ConflictError("not pending", code="version_not_pending")
            self.versions[(version.model, version.version)] = version
            self.entries.append(entry)

    def list_versions(
        self, name: str, *, limit: int, token: str | None
    ) -> tuple[list[ModelVersion | PendingVersion], str | None]:
        numbers = sorted((v for (m, v) in self.versions if m == name), reverse=True)
        if token is not None:
            numbers = [n for n in numbers if n < int(token)]
        page = numbers[:limit]
        return [self.versions[(name, n)] for n in page], (str(page[-1]) if len(numbers) > limit else None)

    def get_alias(self, name: str, alias: str) -> Alias | None:
        return self.aliases.get((name, alias))

    def move_alias(
        self, alias: Alias, target: ModelVersion, expected: int | None, entry: HistoryEntry
    ) -> None:
        with self.lock:
            current = self.aliases.get((alias.model, alias.alias))
            if (current.version if current else None) != expected:
                raise ConflictError("moved", code="alias_conflict")
            model = self.models.get(alias.model)
            if model is None or (alias.model, target.version) not in self.versions:
                raise NotFoundError("gone", code="model_not_found")
            self.aliases[(alias.model, alias.alias)] = alias
            self.models[alias.model] = model.model_copy(
                update={"aliases": {**model.aliases, alias.alias: alias.version}}
            )
            self.entries.append(entry)

    def delete_alias(self, name: str, alias: str, expected: int, entry: HistoryEntry) -> None:
        with self.lock:
            current = self.aliases.get((name, alias))
            if current is None or current.version != expected:
                raise ConflictError("moved", code="alias_conflict")
            del self.aliases[(name, alias)]
            model = self.models[name]
            self.models[name] = model.model_copy(
                update={"aliases": {k: v for k, v in model.aliases.items() if k != alias}}
            )
            self.entries.append(entry)

    def put_endpoint(
        self,
        config: EndpointConfig,
        targets: list[str],
        entry: HistoryEntry,
        *,
        expected_revision: int | None = None,
    ) -> None:
        with self.lock:
            current = self.endpoints.get(config.model)
            if (current.revision if current else None) != expected_revision:
                raise ConflictError("stale", code="conflict")
            self.endpoints[config.model] = config
            self.entries.append(entry)

    def history(
        self, name: str, *, limit: int, token: str | None, alias: str | None
    ) -> tuple[list[HistoryEntry], str | None]:
        chosen = [
            e for e in reversed(self.entries) if e.model == name and (alias is None or e.alias == alias)
        ]
        start = int(token or 0)
        page = chosen[start : start + limit]
        return page, (str(start + limit) if len(chosen) > start + limit else None)

    def alias_entry_at(self, name: str, alias: str, at: datetime) -> HistoryEntry | None:
        moves = [
            e
            for e in self.entries
            if e.model == name
            and e.alias == alias
            and e.action in ("alias_moved", "rollback", "alias_deleted")
            and e.at <= at
        ]
        return max(moves, key=lambda e: e.at) if moves else None


class InMemoryArtifacts:
    """RegistryArtifacts in a dict; ``upload_url`` returns a fake URL, tests write ``objects`` directly."""

    def __init__(self) -> None:
        self.objects: dict[str, bytes] = {}

    def get(self, key: str) -> bytes:
        if key not in self.objects:
            raise NotFoundError(f"{key} not found")
        return self.objects[key]

    def put(self, key: str, body: bytes, *, content_type: str = "application/octet-stream") -> None:
        self.objects[key] = body

    def size(self, key: str) -> int:
        return len(self.get(key))

    def upload_url(self, key: str, *, expires_in: int) -> str:
        return f"https://uploads.example/{key}?ttl={expires_in}"

    def read_table(self, key: str) -> dict[str, np.ndarray[Any, Any]]:
        data = self.get(key)
        try:
            table = (
                tabular.read_parquet_table(data) if key.endswith(".parquet") else tabular.read_csv_table(data)
            )
        except tabular.TableError as exc:
            raise InvalidInputError(f"unreadable: {exc}", code="invalid_reference") from exc
        return table.to_columns()

    def delete_prefix(self, prefix: str) -> None:
        for key in [k for k in self.objects if k.startswith(prefix)]:
            del self.objects[key]

    def get_tagged(self, key: str) -> tuple[bytes, str]:
        data = self.get(key)
        return data, hashlib.md5(data).hexdigest()

    def copy(self, source: str, target: str, *, etag: str | None = None) -> None:
        data, tag = self.get_tagged(source)
        if etag is not None and etag != tag:
            raise ConflictError(f"{source} changed", code="precondition_failed")
        self.objects[target] = data

    def purge(self, key: str) -> None:
        self.objects.pop(key, None)


class RecordingQueue:
    """ValidationQueue that keeps what was queued (``fail`` makes sends raise)."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, int]] = []
        self.fail: Exception | None = None

    def request_validation(self, model: str, version: int) -> None:
        if self.fail is not None:
            raise self.fail
        self.requests.append((model, version))


class RecordingEvents:
    """EventPublisher that keeps what was emitted."""

    def __init__(self) -> None:
        self.events: list[tuple[str, dict[str, Any]]] = []

    def emit(self, detail_type: str, details: Sequence[Mapping[str, Any]]) -> None:
        self.events.extend((detail_type, dict(d)) for d in details)


# ---------------------------------------------------------------------- real models to register


@dataclass(frozen=True)
class TrainedModel:
    """An exported sklearn model, the data it was trained on, and the estimator for comparisons."""

    onnx: bytes
    features: list[str]
    frame: pd.DataFrame
    estimator: Any
    trained_on: pd.Index

    def parquet(self, rows: int = 200, *, held_out: bool = True) -> bytes:
        """A reference sample as Parquet (features plus the ``target`` column), from held-out rows."""
        buffer = io.BytesIO()
        self.sample(rows, held_out=held_out).to_parquet(buffer, index=False)
        return buffer.getvalue()

    def csv(self, rows: int = 200, *, held_out: bool = True) -> bytes:
        """A reference sample as CSV."""
        return self.sample(rows, held_out=held_out).to_csv(index=False).encode()

    def sample(self, rows: int, *, held_out: bool = True) -> pd.DataFrame:
        """The first ``rows`` held-out rows (never seen in training), or training rows."""
        frame = (
            self.frame[~self.frame.index.isin(self.trained_on)]
            if held_out
            else self.frame.loc[self.trained_on]
        )
        return frame.head(rows)


@cache
def breast_cancer(c: float = 1.0, n_features: int = 30) -> TrainedModel:
    """Logistic regression on sklearn's breast cancer data (first ``n_features`` columns)."""
    from sklearn.datasets import load_breast_cancer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from mlambda_local.sklearn_export import snake_case, to_onnx

    data = load_breast_cancer(as_frame=True)
    names = snake_case(list(data.feature_names))[:n_features]
    frame = data.data.iloc[:, :n_features].set_axis(names, axis=1)
    # Every other row trains; the rest is held out (what a reference sample should be).
    trained_on = frame.index[1::2]
    estimator = make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=1000))
    estimator.fit(frame.loc[trained_on].to_numpy(np.float32), data.target[trained_on])
    labelled = frame.assign(target=data.target)
    return TrainedModel(
        onnx=to_onnx(estimator), features=names, frame=labelled, estimator=estimator, trained_on=trained_on
    )


def per_feature_regressor() -> bytes:
    """A hand-built graph with one [N, 1] float input per feature: value = 2a + 3b."""
    a = helper.make_tensor_value_info("a", TensorProto.FLOAT, [None, 1])
    b = helper.make_tensor_value_info("b", TensorProto.FLOAT, [None, 1])
    out = helper.make_tensor_value_info("value", TensorProto.FLOAT, [None, 1])
    weights = helper.make_tensor("w", TensorProto.FLOAT, [2, 1], [2.0, 3.0])
    graph = helper.make_graph(
        [
            helper.make_node("Concat", ["a", "b"], ["ab"], axis=1),
            helper.make_node("MatMul", ["ab", "w"], ["value"]),
        ],
        "per_feature",
        [a, b],
        [out],
        [weights],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model.SerializeToString()


def external_data_model() -> bytes:
    """A valid-looking graph whose weights live in an external file outside the artifact."""
    model = onnx.load_model_from_string(per_feature_regressor())
    weights = model.graph.initializer[0]
    weights.ClearField("float_data")
    weights.data_location = TensorProto.EXTERNAL
    entry = weights.external_data.add()
    entry.key, entry.value = "location", "../../etc/passwd"
    return model.SerializeToString()
