"""RegistryService on in-memory ports: schemas, numbering under races, the gate, history, events."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd
import pytest

from mlambda.adapters.registry import OnnxRuntime
from mlambda.errors import ConflictError, UnprocessableError, UpstreamError
from mlambda.schemas.registry import HistoryEntry, ModelVersion, Signature, TensorSpec
from mlambda.schemas.registry_api import (
    CreateModelRequest,
    MoveAliasRequest,
    RegisterVersionRequest,
    RollbackRequest,
)
from mlambda.services.registry.service import RegistryService, compatibility, feature_schema
from tests.unit.fakes_registry import (
    InMemoryArtifacts,
    InMemoryRegistryStore,
    RecordingEvents,
    breast_cancer,
    per_feature_regressor,
)


class Clock:
    """A clock that ticks one second per read."""

    def __init__(self) -> None:
        self.now = datetime(2026, 3, 3, 12, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        self.now += timedelta(seconds=1)
        return self.now


class Registry:
    def __init__(self) -> None:
        self.store = InMemoryRegistryStore()
        self.artifacts = InMemoryArtifacts()
        self.events = RecordingEvents()
        self.clock = Clock()
        self.service = RegistryService(
            self.store, self.artifacts, OnnxRuntime(), self.events, clock=self.clock
        )

    def upload(self, model: str, data: bytes, name: str = "m.onnx") -> str:
        key = f"uploads/{model}/{'a' * 32}/{name}"
        self.artifacts.objects[key] = data
        return key

    def register(self, model: str, c: float = 1.0, n_features: int = 30) -> ModelVersion:
        trained = breast_cancer(c, n_features)
        request = RegisterVersionRequest(
            upload_key=self.upload(model, trained.onnx),
            reference_key=self.upload(model, trained.parquet(), "ref.parquet"),
            feature_names=trained.features,
        )
        return self.service.register_version(model, request, "tester")


@pytest.fixture
def registry() -> Registry:
    created = Registry()
    created.service.create_model(CreateModelRequest(name="cancer"), "tester")
    return created


def signature(*inputs: TensorSpec) -> Signature:
    return Signature(inputs=list(inputs), outputs=[TensorSpec(name="v", dtype="float32")], task="regression")


def test_single_tensor_features_come_from_declared_names_or_the_sample() -> None:
    # Given
    tensor = signature(TensorSpec(name="input", dtype="float32", shape=[None, 2]))
    # When
    declared = feature_schema(tensor, ["a", "b"], ["float", "int"], None)
    sampled = feature_schema(tensor, None, None, pd.DataFrame({"x": [1.0], "y": [2.0]}))
    # Then
    assert [(f.name, f.dtype) for f in declared.features] == [("a", "float"), ("b", "int")]
    assert (declared.mode, declared.tensor_input, declared.tensor_dtype) == ("tensor", "input", "float32")
    assert sampled.names == ["x", "y"]


@pytest.mark.parametrize(
    ("inputs", "names", "types", "code"),
    [
        (
            [TensorSpec(name="input", dtype="float32", shape=[None, 3])],
            ["a", "b"],
            None,
            "feature_count_mismatch",
        ),
        ([TensorSpec(name="input", dtype="float32", shape=[None, 2])], None, None, "feature_names_required"),
        (
            [TensorSpec(name="input", dtype="int64", shape=[None, 1])],
            ["a"],
            ["float"],
            "feature_type_mismatch",
        ),
        ([TensorSpec(name="input", dtype="float32", shape=[None, 2, 2])], ["a"], None, "unsupported_inputs"),
        (
            [
                TensorSpec(name="a", dtype="float64", shape=[None, 1]),
                TensorSpec(name="b", dtype="float32", shape=[None, 1]),
            ],
            None,
            None,
            "unsupported_inputs",
        ),
        (
            [
                TensorSpec(name="a", dtype="float32", shape=[None, 1]),
                TensorSpec(name="b", dtype="float32", shape=[None, 1]),
            ],
            ["a", "c"],
            None,
            "feature_mismatch",
        ),
    ],
    ids=["count", "no-names", "types", "rank", "per-feature-double", "per-feature-names"],
)
def test_feature_schemas_that_cannot_work_are_refused(
    inputs: list[TensorSpec], names: list[str] | None, types: Any, code: str
) -> None:
    with pytest.raises(UnprocessableError) as error:
        feature_schema(signature(*inputs), names, types, None)
    assert error.value.code == code


def test_a_lost_numbering_race_takes_the_next_number(registry: Registry) -> None:
    # Given a registration that slips in between our read of latest_version and our write
    store = registry.store
    original = store.add_version
    raced = {"done": False}

    def add_version(version: ModelVersion, entry: HistoryEntry) -> None:
        if not raced["done"]:
            raced["done"] = True
            original(version.model_copy(update={"created_by": "other"}), entry)
        original(version, entry)

    store.add_version = add_version  # type: ignore[method-assign]
    # When
    version = registry.register("cancer")
    # Then
    assert version.version == 2
    assert version.artifact_key == "models/cancer/v2/model.onnx"
    assert "models/cancer/v2/model.onnx" in registry.artifacts.objects
    assert store.versions[("cancer", 1)].created_by == "other"


def test_registration_gives_up_after_too_many_lost_races(registry: Registry) -> None:
    def always_lose(version: ModelVersion, entry: HistoryEntry) -> None:
        raise ConflictError("raced")

    registry.store.add_version = always_lose  # type: ignore[method-assign]
    with pytest.raises(ConflictError) as error:
        registry.register("cancer")
    assert error.value.code == "version_conflict"


def test_per_feature_models_record_smoke_cases_from_given_inputs(registry: Registry) -> None:
    request = RegisterVersionRequest(
        upload_key=registry.upload("cancer", per_feature_regressor()),
        smoke_inputs=[{"a": 1.0, "b": 1.0}, {"a": 0.0, "b": 2.0}],
    )
    version = registry.service.register_version("cancer", request, "tester")
    assert [case.expected for case in version.smoke_cases] == [{"value": 5.0}, {"value": 6.0}]


def test_the_gate_fails_on_a_missing_or_replaced_artifact(registry: Registry) -> None:
    # Given
    version = registry.register("cancer")
    good = registry.service.gate(version, None)
    # When
    registry.artifacts.objects[version.artifact_key] = breast_cancer(0.1).onnx
    replaced = registry.service.gate(version, None)
    del registry.artifacts.objects[version.artifact_key]
    missing = registry.service.gate(version, None)
    # Then
    assert good.passed
    assert [c.name for c in replaced.checks if not c.passed] == ["artifact_integrity"]
    assert "does not match" in replaced.checks[0].message
    assert not missing.passed
    assert "missing" in missing.checks[0].message


def test_compatibility_compares_task_features_and_labels(registry: Registry) -> None:
    wide = registry.register("cancer")
    narrow = registry.register("cancer", n_features=10)
    assert compatibility(wide, None).passed
    assert compatibility(wide, wide).passed
    verdict = compatibility(narrow, wide)
    assert not verdict.passed
    assert "missing" in verdict.message


def test_history_answers_where_production_pointed_at_each_time(registry: Registry) -> None:
    # Given
    registry.register("cancer")
    registry.register("cancer", c=0.1)
    registry.service.move_alias("cancer", "production", MoveAliasRequest(version=1), "ann")
    on_v1 = registry.clock.now
    registry.service.move_alias("cancer", "production", MoveAliasRequest(version=2), "bob")
    on_v2 = registry.clock.now
    registry.service.rollback("cancer", RollbackRequest(reason="bad"), "ann")
    # When
    answers = [
        registry.service.history("cancer", alias="production", at=t)
        for t in (on_v1 - timedelta(days=1), on_v1, on_v2, registry.clock.now)
    ]
    # Then
    assert [getattr(a, "version", None) for a in answers] == [None, 1, 2, 1]


def test_events_are_emitted_after_each_change_and_a_failed_publish_does_not_undo_it(
    registry: Registry,
) -> None:
    # Given
    registry.register("cancer")

    def broken(detail_type: str, details: Any) -> None:
        raise UpstreamError("bus down")

    # When
    registry.events.emit = broken  # type: ignore[method-assign]
    moved = registry.service.move_alias("cancer", "staging", MoveAliasRequest(version=1), "ann")
    # Then
    assert [t for t, _ in registry.events.events] == ["Model Version Registered"]
    assert moved.version == 1
    assert registry.store.aliases[("cancer", "staging")].version == 1


def test_register_with_a_reference_stores_an_explainer_beside_the_model(registry: Registry) -> None:
    # Given: a scaler -> logistic regression pipeline registered with its reference sample
    from mlambda.services.inference.explain import Explainer

    trained = breast_cancer()
    # When
    version = registry.register("cancer")
    # Then
    assert version.explainer_key == "models/cancer/v1/explainer.npz"
    explainer = Explainer.from_bytes(
        registry.artifacts.objects[version.explainer_key], model_sha256=version.artifact_sha256
    )
    rows = trained.frame[trained.features].to_numpy(np.float32)[:3]
    explanation = explainer.explain(rows, [1, 1, 1], score=lambda m: m)
    assert explanation.method == "linear" and explanation.output == "log_odds"
    np.testing.assert_allclose(explanation.values, trained.estimator.decision_function(rows), atol=1e-4)


def test_register_without_a_reference_has_no_explainer(registry: Registry) -> None:
    trained = breast_cancer()
    request = RegisterVersionRequest(
        upload_key=registry.upload("cancer", trained.onnx), feature_names=trained.features
    )
    version = registry.service.register_version("cancer", request, "tester")
    assert version.explainer_key is None
    assert not any(key.endswith("explainer.npz") for key in registry.artifacts.objects)
