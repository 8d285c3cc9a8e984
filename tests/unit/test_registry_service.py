"""RegistryService and VersionValidator on in-memory ports: statuses, numbering under races, the gate
for every version that takes traffic, endpoint read-modify-write, history, events."""

from __future__ import annotations

import hashlib
import io
from datetime import UTC, datetime, timedelta
from functools import cache
from typing import Any

import numpy as np
import pandas as pd
import pytest

from mlambda.adapters.registry import OnnxRuntime, VersionNotReadyError
from mlambda.errors import (
    ConflictError,
    InvalidInputError,
    NotFoundError,
    PayloadTooLargeError,
    PreconditionRequiredError,
    UnprocessableError,
    UpstreamError,
)
from mlambda.schemas.monitoring import MetricEstimate, ModelBaseline, ReferenceProfile
from mlambda.schemas.registry import (
    HistoryEntry,
    ModelVersion,
    PendingVersion,
    Signature,
    TensorSpec,
)
from mlambda.schemas.registry_api import (
    CreateModelRequest,
    EndpointConfigRequest,
    EndpointPatch,
    MoveAliasRequest,
    RegisterVersionRequest,
    RollbackRequest,
)
from mlambda.services.monitoring.model_quality import canonical_metric
from mlambda.services.monitoring.profiling import training_like
from mlambda.services.registry.gate import compatibility
from mlambda.services.registry.service import RegistryService, merge_patch, parse_if_match
from mlambda.services.registry.validation import VersionValidator, feature_schema
from tests.unit.fakes_registry import (
    InMemoryArtifacts,
    InMemoryRegistryStore,
    RecordingEvents,
    RecordingQueue,
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
    """The API service and the validator over one set of in-memory ports."""

    def __init__(self) -> None:
        self.store = InMemoryRegistryStore()
        self.artifacts = InMemoryArtifacts()
        self.events = RecordingEvents()
        self.queue = RecordingQueue()
        self.clock = Clock()
        self.service = RegistryService(
            self.store, self.artifacts, OnnxRuntime(), self.events, self.queue, clock=self.clock
        )
        self.validator = VersionValidator(
            self.store, self.artifacts, OnnxRuntime(), self.events, clock=self.clock
        )
        self.uploads = 0

    def upload(self, model: str, data: bytes, name: str = "m.onnx") -> str:
        self.uploads += 1
        key = f"uploads/{model}/{self.uploads:032x}/{name}"
        self.artifacts.objects[key] = data
        return key

    def submit(self, model: str, **body: Any) -> PendingVersion:
        return self.service.register_version(model, RegisterVersionRequest(**body), "tester")

    def validate_all(self) -> list[ModelVersion | PendingVersion | None]:
        done = [self.validator.validate(model, number) for model, number in self.queue.requests]
        self.queue.requests.clear()
        return done

    def ready(self, model: str, **body: Any) -> ModelVersion:
        pending = self.submit(model, **body)
        self.validate_all()
        record = self.store.version_record(model, pending.version)
        assert isinstance(record, ModelVersion), record
        return record

    def register(self, model: str, c: float = 1.0, n_features: int = 30, **body: Any) -> ModelVersion:
        trained = breast_cancer(c, n_features)
        return self.ready(
            model,
            upload_key=self.upload(model, trained.onnx),
            reference_key=self.upload(model, trained.parquet(), "ref.parquet"),
            target="target",
            **body,
        )


@pytest.fixture
def registry() -> Registry:
    created = Registry()
    created.service.create_model(CreateModelRequest(name="cancer"), "tester")
    return created


def signature(*inputs: TensorSpec) -> Signature:
    return Signature(inputs=list(inputs), outputs=[TensorSpec(name="v", dtype="float32")], task="regression")


# ---------------------------------------------------------------------- feature schemas


def test_single_tensor_features_come_from_declared_names_or_the_sample() -> None:
    # Given
    tensor = signature(TensorSpec(name="input", dtype="float32", shape=[None, 2]))
    # When
    declared = feature_schema(tensor, ["a", "b"], ["float", "int"], None)
    sampled = feature_schema(tensor, None, None, {"x": np.array([1.0]), "y": np.array([2.0])})
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


# ---------------------------------------------------------------------- registration and validation


def test_registration_answers_pending_at_once_and_queues_the_validation(registry: Registry) -> None:
    # Given
    trained = breast_cancer()
    model_key = registry.upload("cancer", trained.onnx)
    # When
    pending = registry.submit("cancer", upload_key=model_key, feature_names=trained.features)
    # Then: nothing was loaded yet, nothing can serve it
    assert (pending.version, pending.status) == (1, "PENDING_VALIDATION")
    assert registry.queue.requests == [("cancer", 1)]
    assert "models/cancer/v1/model.onnx" not in registry.artifacts.objects
    with pytest.raises(VersionNotReadyError):
        registry.store.get_version("cancer", 1)
    with pytest.raises(ConflictError) as error:
        registry.service.move_alias("cancer", "staging", MoveAliasRequest(version=1), "ann")
    assert error.value.code == "version_not_ready"
    assert [t for t, _ in registry.events.events] == ["Model Version Registered"]


def test_validation_makes_the_version_ready_with_its_report_and_deletes_the_uploads(
    registry: Registry,
) -> None:
    # Given
    trained = breast_cancer()
    keys = [
        registry.upload("cancer", trained.onnx),
        registry.upload("cancer", trained.parquet(), "r.parquet"),
    ]
    registry.submit("cancer", upload_key=keys[0], reference_key=keys[1], target="target")
    # When
    [ready] = registry.validate_all()
    # Then
    assert isinstance(ready, ModelVersion)
    assert registry.store.get_version("cancer", 1).artifact_sha256 == ready.artifact_sha256
    assert not any(key in registry.artifacts.objects for key in keys)
    assert {"models/cancer/v1/model.onnx", "models/cancer/v1/reference.parquet"} <= set(
        registry.artifacts.objects
    )
    assert ready.validation is not None
    assert [c.name for c in ready.validation.checks] == [
        "upload",
        "model",
        "reference",
        "feature_schema",
        "reference_scored",
        "smoke_cases",
        "explainer",
        "artifacts",
    ]
    assert all(c.passed for c in ready.validation.checks)
    assert [t for t, _ in registry.events.events] == ["Model Version Registered", "Model Version Ready"]
    assert [e.action for e in registry.store.entries][-2:] == ["version_registered", "version_ready"]


def test_a_model_that_fails_validation_is_failed_with_the_reason_and_never_servable(
    registry: Registry,
) -> None:
    # Given
    key = registry.upload("cancer", b"not a model at all")
    registry.submit("cancer", upload_key=key, feature_names=["a"])
    # When
    [failed] = registry.validate_all()
    # Then
    assert isinstance(failed, PendingVersion)
    assert failed.status == "FAILED"
    assert failed.failure is not None
    assert (failed.failure.code, failed.failure.message[:29]) == (
        "invalid_model",
        "artifact is not an ONNX model",
    )
    assert failed.validation is not None
    assert [(c.name, c.passed) for c in failed.validation.checks] == [("upload", True), ("model", False)]
    assert key not in registry.artifacts.objects
    assert registry.events.events[-1][0] == "Model Version Failed"
    assert registry.events.events[-1][1]["code"] == "invalid_model"
    with pytest.raises(VersionNotReadyError):
        registry.store.get_version("cancer", 1)
    with pytest.raises(ConflictError) as error:
        registry.service.move_alias(
            "cancer", "production", MoveAliasRequest(version=1, force=True, reason="x"), "a"
        )
    assert error.value.code == "version_not_ready"
    assert error.value.details["failure"]["code"] == "invalid_model"


def test_validation_is_idempotent_per_version(registry: Registry) -> None:
    # Given a version validated once
    version = registry.register("cancer")
    events = len(registry.events.events)
    # When SQS delivers its message again
    again = registry.validator.validate("cancer", version.version)
    # Then
    assert again == version
    assert len(registry.events.events) == events
    assert sum(e.action == "version_ready" for e in registry.store.entries) == 1


def test_an_upload_replaced_during_validation_is_not_copied_and_the_validation_is_retried(
    registry: Registry,
) -> None:
    # Given an upload whose bytes change after the validator read them (someone still holds the URL)
    trained = breast_cancer()
    key = registry.upload("cancer", trained.onnx)
    registry.submit("cancer", upload_key=key, feature_names=trained.features)
    original = registry.artifacts.get_tagged

    def read_then_replace(upload: str) -> tuple[bytes, str]:
        answer = original(upload)
        registry.artifacts.objects[upload] = breast_cancer(0.1).onnx
        return answer

    registry.artifacts.get_tagged = read_then_replace  # type: ignore[method-assign]
    # When
    with pytest.raises(ConflictError):
        registry.validate_all()
    # Then: nothing was registered from bytes nobody validated; the retry validates what is there now
    assert "models/cancer/v1/model.onnx" not in registry.artifacts.objects
    assert registry.store.version_record("cancer", 1).status == "PENDING_VALIDATION"  # type: ignore[union-attr]
    registry.artifacts.get_tagged = original  # type: ignore[method-assign]
    retried = registry.validator.validate("cancer", 1)
    assert isinstance(retried, ModelVersion)
    assert retried.artifact_sha256 == hashlib.sha256(breast_cancer(0.1).onnx).hexdigest()


def test_a_validation_that_keeps_crashing_ends_failed_not_pending(registry: Registry) -> None:
    # Given
    pending = registry.submit(
        "cancer",
        upload_key=registry.upload("cancer", breast_cancer().onnx),
        feature_names=breast_cancer().features,
    )
    # When the delivery after the last attempt arrives
    failed = registry.validator.give_up("cancer", pending.version, attempts=4)
    # Then
    assert isinstance(failed, PendingVersion)
    assert failed.failure is not None
    assert (failed.status, failed.failure.code) == ("FAILED", "validation_incomplete")
    assert "3 attempts" in failed.failure.message


def test_a_version_whose_validation_cannot_be_queued_is_failed_not_left_pending(registry: Registry) -> None:
    # Given
    registry.queue.fail = UpstreamError("sqs down")
    key = registry.upload("cancer", breast_cancer().onnx)
    # When
    with pytest.raises(UpstreamError) as error:
        registry.submit("cancer", upload_key=key, feature_names=breast_cancer().features)
    # Then
    record = registry.store.version_record("cancer", 1)
    assert error.value.code == "validation_not_queued"
    assert isinstance(record, PendingVersion)
    assert record.failure is not None
    assert (record.status, record.failure.code) == ("FAILED", "validation_not_queued")


def test_an_upload_over_the_cap_is_refused_and_deleted(registry: Registry) -> None:
    registry.service.max_model_bytes = 10
    key = registry.upload("cancer", breast_cancer().onnx)
    with pytest.raises(PayloadTooLargeError):
        registry.submit("cancer", upload_key=key, feature_names=["a"])
    assert key not in registry.artifacts.objects
    assert registry.store.version_record("cancer", 1) is None


def test_a_lost_numbering_race_takes_the_next_number(registry: Registry) -> None:
    # Given a registration that slips in between our read of latest_version and our write
    store = registry.store
    original = store.add_version
    raced = {"done": False}

    def add_version(version: ModelVersion | PendingVersion, entry: HistoryEntry) -> None:
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
    def always_lose(version: ModelVersion | PendingVersion, entry: HistoryEntry) -> None:
        raise ConflictError("raced")

    registry.store.add_version = always_lose  # type: ignore[method-assign]
    with pytest.raises(ConflictError) as error:
        registry.register("cancer")
    assert error.value.code == "version_conflict"


def test_per_feature_models_record_smoke_cases_from_given_inputs(registry: Registry) -> None:
    version = registry.ready(
        "cancer",
        upload_key=registry.upload("cancer", per_feature_regressor()),
        smoke_inputs=[{"a": 1.0, "b": 1.0}, {"a": 0.0, "b": 2.0}],
    )
    assert [case.expected for case in version.smoke_cases] == [{"value": 5.0}, {"value": 6.0}]
    assert [w.code for w in version.warnings] == ["no_reference"]


# ---------------------------------------------------------------------- the reference understood


def test_the_reference_target_gives_the_baseline_and_the_profile_carries_it(registry: Registry) -> None:
    # Given held-out rows with their label, and an id column that is neither feature nor target
    trained = breast_cancer()
    sample = trained.sample(200).assign(patient_id=range(200))
    buffer = io.BytesIO()
    sample.to_parquet(buffer, index=False)
    # When
    version = registry.ready(
        "cancer",
        upload_key=registry.upload("cancer", trained.onnx),
        reference_key=registry.upload("cancer", buffer.getvalue(), "ref.parquet"),
        target="target",
        exclude=["patient_id"],
        metrics={"accuracy": 0.95},
    )
    profile = ReferenceProfile.from_json(registry.artifacts.objects[version.reference_profile_key or ""])
    # Then: the features are the columns but target and id, and the baseline matches sklearn
    assert version.feature_schema.names == trained.features
    assert version.reference is not None
    assert (version.reference.target, version.reference.excluded) == ("target", ["patient_id"])
    assert version.reference.labelled_rows == 200
    expected = float(
        np.mean(trained.estimator.predict(sample[trained.features].to_numpy(np.float32)) == sample["target"])
    )
    accuracy = version.reference.metrics["accuracy"]
    assert accuracy.value == pytest.approx(expected, abs=1e-6)
    assert accuracy.low is not None and accuracy.high is not None
    assert accuracy.low <= accuracy.value <= accuracy.high
    assert "auc" in version.reference.metrics
    assert profile.target is not None
    assert (profile.target.name, profile.target.kind, profile.target.count) == ("target", "categorical", 200)
    assert profile.baseline is not None
    assert profile.baseline.metrics["accuracy"].registered == 0.95
    assert [p.name for p in profile.predictions] == ["prediction.label", "prediction.probabilities.1"]
    assert "patient_id" not in profile.feature_names
    assert version.warnings == []


def test_a_reference_of_training_rows_that_scores_like_training_data_is_warned_about(
    registry: Registry,
) -> None:
    # Given a tree that learnt its training rows by heart
    data, frame = overfit_tree()
    training = frame.iloc[::2]
    buffer = io.BytesIO()
    training.to_parquet(buffer, index=False)
    # When
    version = registry.ready(
        "cancer",
        upload_key=registry.upload("cancer", data),
        reference_key=registry.upload("cancer", buffer.getvalue(), "ref.parquet"),
        target="target",
    )
    # Then
    assert version.reference is not None
    assert version.reference.metrics["accuracy"].value == 1.0
    assert [w.code for w in version.warnings] == ["reference_looks_like_training_data"]
    assert "held-out" in version.warnings[0].message


def test_a_reference_without_a_target_registers_with_a_warning_and_no_baseline(registry: Registry) -> None:
    trained = breast_cancer()
    buffer = io.BytesIO()
    trained.sample(100)[trained.features].to_parquet(buffer, index=False)
    version = registry.ready(
        "cancer",
        upload_key=registry.upload("cancer", trained.onnx),
        reference_key=registry.upload("cancer", buffer.getvalue(), "ref.parquet"),
    )
    assert version.reference is not None
    assert version.reference.metrics == {}
    assert [w.code for w in version.warnings] == ["no_target"]


def test_a_labelled_sample_without_target_fails_naming_the_fix(registry: Registry) -> None:
    # Given the README's old example: the sample keeps its label column, no target named
    trained = breast_cancer()
    registry.submit(
        "cancer",
        upload_key=registry.upload("cancer", trained.onnx),
        reference_key=registry.upload("cancer", trained.parquet(), "ref.parquet"),
    )
    # When
    [failed] = registry.validate_all()
    # Then
    assert isinstance(failed, PendingVersion)
    assert failed.failure is not None
    assert failed.failure.code == "feature_count_mismatch"
    assert "--target" in failed.failure.message


def test_a_target_missing_from_the_sample_fails_the_version(registry: Registry) -> None:
    trained = breast_cancer()
    registry.submit(
        "cancer",
        upload_key=registry.upload("cancer", trained.onnx),
        reference_key=registry.upload("cancer", trained.parquet(), "ref.parquet"),
        target="label",
    )
    [failed] = registry.validate_all()
    assert isinstance(failed, PendingVersion)
    assert failed.failure is not None
    assert failed.failure.code == "reference_mismatch"
    assert "'label'" in failed.failure.message


@pytest.mark.parametrize(
    ("task", "estimates", "registered", "expected"),
    [
        ("classification", {"accuracy": (0.995, 0.98, 1.0)}, {}, True),
        ("classification", {"accuracy": (0.97, 0.95, 0.99)}, {}, False),
        ("classification", {"accuracy": (0.97, 0.95, 0.99)}, {"test_accuracy": 0.90}, True),
        ("classification", {"accuracy": (0.97, 0.95, 0.99)}, {"test_accuracy": 0.96}, False),
        ("regression", {"r2": (0.999, 0.998, 1.0)}, {}, True),
        ("regression", {"r2": (0.8, 0.7, 0.9), "rmse": (1.0, 0.9, 1.1)}, {"rmse": 2.0}, True),
        ("regression", {"r2": (0.8, 0.7, 0.9), "rmse": (1.0, 0.9, 1.1)}, {"rmse": 1.05}, False),
    ],
    ids=["perfect", "plausible", "beats-registered", "matches-registered", "r2", "rmse-beats", "rmse-ok"],
)
def test_training_data_is_recognised_by_near_perfect_or_better_than_registered_scores(
    task: str, estimates: dict[str, tuple[float, float, float]], registered: dict[str, float], expected: bool
) -> None:
    claimed = {canonical_metric(name): value for name, value in registered.items()}
    baseline = ModelBaseline(
        task=task,
        rows=500,
        metrics={
            name: MetricEstimate(value=value, low=low, high=high, registered=claimed.get(name))
            for name, (value, low, high) in estimates.items()
        },
    )
    assert bool(training_like(baseline)) is expected


@cache
def overfit_tree() -> tuple[bytes, pd.DataFrame]:
    """A fully grown decision tree on half of breast cancer: training accuracy 1.0."""
    from sklearn.tree import DecisionTreeClassifier

    from mlambda_local.sklearn_export import to_onnx

    trained = breast_cancer()
    frame = trained.frame
    tree = DecisionTreeClassifier(random_state=0).fit(
        frame.iloc[::2][trained.features].to_numpy(np.float32), frame.iloc[::2]["target"]
    )
    return to_onnx(tree), frame


# ---------------------------------------------------------------------- the gate


def test_the_gate_fails_on_a_missing_or_replaced_artifact(registry: Registry) -> None:
    # Given
    version = registry.register("cancer")
    good = registry.service.gate.check(version, None)
    # When
    registry.artifacts.objects[version.artifact_key] = breast_cancer(0.1).onnx
    replaced = registry.service.gate.check(version, None)
    del registry.artifacts.objects[version.artifact_key]
    missing = registry.service.gate.check(version, None)
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


def test_every_version_a_split_sends_traffic_to_passes_the_gate(registry: Registry) -> None:
    # Given production on v1 and a v2 with another feature set
    registry.register("cancer")
    registry.register("cancer", n_features=10)
    registry.service.move_alias("cancer", "production", MoveAliasRequest(version=1), "ann")
    split = EndpointConfigRequest.model_validate(
        {
            "variants": [
                {"name": "a", "target": "production", "weight": 90},
                {"name": "b", "target": "v2", "weight": 10},
            ]
        }
    )
    # When
    with pytest.raises(UnprocessableError) as error:
        registry.service.put_endpoint("cancer", split, "ann")
    # Then
    assert error.value.code == "gate_failed"
    [gate] = error.value.details["gates"]
    assert (gate["target"], gate["version"], gate["passed"]) == ("v2", 2, False)
    assert "features differ from v1" in error.value.message
    assert registry.store.endpoint_config("cancer") is None


def test_a_shadow_whose_artifact_was_replaced_is_refused(registry: Registry) -> None:
    # Given
    registry.register("cancer")
    shadow = registry.register("cancer", c=0.1)
    registry.service.move_alias("cancer", "production", MoveAliasRequest(version=1), "ann")
    registry.artifacts.objects[shadow.artifact_key] = breast_cancer(0.5).onnx
    config = EndpointConfigRequest.model_validate(
        {
            "variants": [{"name": "main", "target": "production", "weight": 100}],
            "shadow": {"target": "v2", "sample_percent": 10},
        }
    )
    # When
    with pytest.raises(UnprocessableError) as error:
        registry.service.put_endpoint("cancer", config, "ann")
    # Then
    [gate] = error.value.details["gates"]
    assert gate["target"] == "v2"
    assert [c["name"] for c in gate["checks"] if not c["passed"]] == ["artifact_integrity"]


def test_moving_an_alias_the_endpoint_serves_runs_the_gate(registry: Registry) -> None:
    # Given staging serves 10 % of traffic
    registry.register("cancer")
    registry.register("cancer", c=0.1)
    registry.register("cancer", n_features=10)
    for alias, number in (("production", 1), ("staging", 2)):
        registry.service.move_alias("cancer", alias, MoveAliasRequest(version=number), "ann")
    registry.service.put_endpoint(
        "cancer",
        EndpointConfigRequest.model_validate(
            {
                "variants": [
                    {"name": "main", "target": "production", "weight": 90},
                    {"name": "canary", "target": "staging", "weight": 10},
                ]
            }
        ),
        "ann",
    )
    # When staging moves to a version with another feature set, even forced
    with pytest.raises(UnprocessableError) as error:
        registry.service.move_alias(
            "cancer", "staging", MoveAliasRequest(version=3, force=True, reason="try"), "ann"
        )
    # Then
    assert error.value.code == "gate_failed"
    assert registry.store.aliases[("cancer", "staging")].version == 2


# ---------------------------------------------------------------------- endpoint read-modify-write


@pytest.fixture
def served(registry: Registry) -> Registry:
    """v1 in production, v2 registered, an endpoint with rules and a cache (revision 1)."""
    registry.register("cancer")
    registry.register("cancer", c=0.1)
    registry.service.move_alias("cancer", "production", MoveAliasRequest(version=1), "ann")
    registry.service.put_endpoint(
        "cancer",
        EndpointConfigRequest.model_validate(
            {
                "variants": [{"name": "main", "target": "production", "weight": 100}],
                "shadow": {"target": "v2", "sample_percent": 5},
                "cache": {"enabled": True, "ttl_seconds": 60},
                "rules": {
                    "fallback": {"response": {"label": -1}, "timeout_ms": 200},
                    "decision": {"thresholds": [{"min_score": 0.5, "decision": "refer"}]},
                    "honour_opt_out": True,
                },
            }
        ),
        "ann",
    )
    return registry


def test_a_canary_ramp_keeps_the_rules_and_the_cache(served: Registry) -> None:
    # Given
    before = served.service.get_endpoint("cancer")
    # When: the traffic split alone changes, as `mlambda models split` sends it
    ramp = EndpointPatch.model_validate(
        {
            "variants": [
                {"name": "main", "target": "production", "weight": 90},
                {"name": "canary", "target": "v2", "weight": 10},
            ]
        }
    )
    after = served.service.patch_endpoint("cancer", ramp, "bob", if_match=before.revision)
    # Then
    assert after.revision == before.revision + 1
    assert after.rules == before.rules
    assert after.cache == before.cache
    assert after.shadow == before.shadow
    assert [v.weight for v in after.variants] == [90, 10]
    entry = served.store.entries[-1]
    assert entry.action == "endpoint_changed"
    assert entry.details["before"]["rules"]["fallback"] == {"response": {"label": -1}, "timeout_ms": 200}
    assert entry.details["after"]["rules"] == entry.details["before"]["rules"]
    assert (entry.details["before"]["revision"], entry.details["after"]["revision"]) == (1, 2)


def test_a_patch_merges_objects_and_null_removes(served: Registry) -> None:
    patch = EndpointPatch.model_validate(
        {"shadow": None, "rules": {"fallback": None}, "cache": {"ttl_seconds": 30}}
    )
    after = served.service.patch_endpoint("cancer", patch, "bob")
    assert after.shadow is None
    assert after.rules.fallback is None
    assert after.rules.decision is not None
    assert (after.cache.enabled, after.cache.ttl_seconds) == (True, 30)


def test_a_stale_write_is_a_409_conflict(served: Registry) -> None:
    # Given two clients that read revision 1
    read = served.service.get_endpoint("cancer").revision
    served.service.patch_endpoint(
        "cancer", EndpointPatch.model_validate({"sticky_key": "user_id"}), "ann", if_match=read
    )
    # When the second writes what it read
    with pytest.raises(ConflictError) as error:
        served.service.patch_endpoint(
            "cancer", EndpointPatch.model_validate({"sticky_key": "entity_id"}), "bob", if_match=read
        )
    # Then
    assert error.value.code == "conflict"
    assert error.value.details == {"expected_revision": 1, "current_revision": 2}
    assert served.service.get_endpoint("cancer").sticky_key == "user_id"


def test_replacing_an_existing_config_needs_if_match(served: Registry) -> None:
    whole = EndpointConfigRequest.model_validate(
        {"variants": [{"name": "main", "target": "production", "weight": 100}]}
    )
    with pytest.raises(PreconditionRequiredError) as error:
        served.service.put_endpoint("cancer", whole, "bob")
    assert error.value.details == {"current_revision": 1}
    replaced = served.service.put_endpoint("cancer", whole, "bob", if_match=1)
    assert (replaced.revision, replaced.shadow, replaced.rules.fallback) == (2, None, None)


def test_a_patch_without_if_match_retries_when_another_write_slips_in(served: Registry) -> None:
    # Given a write that lands between the patch's read and its write
    store = served.store
    original = store.put_endpoint
    raced = {"done": False}

    def put_endpoint(
        config: Any, targets: list[str], entry: HistoryEntry, *, expected_revision: int | None
    ) -> None:
        if not raced["done"]:
            raced["done"] = True
            current = store.endpoints["cancer"]
            original(
                current.model_copy(update={"revision": 2, "sticky_key": "user_id"}),
                targets,
                entry,
                expected_revision=1,
            )
        original(config, targets, entry, expected_revision=expected_revision)

    store.put_endpoint = put_endpoint  # type: ignore[method-assign]
    # When
    after = served.service.patch_endpoint(
        "cancer", EndpointPatch.model_validate({"cache": {"enabled": False}}), "bob"
    )
    # Then: the patch was applied on top of the other write, not over it
    assert (after.revision, after.sticky_key, after.cache.enabled) == (3, "user_id", False)


def test_an_invalid_patched_config_is_422_naming_the_field(served: Registry) -> None:
    with pytest.raises(UnprocessableError) as error:
        served.service.patch_endpoint("cancer", EndpointPatch.model_validate({"rules": {"bogus": 1}}), "bob")
    assert error.value.code == "invalid_endpoint"
    assert "rules.bogus" in error.value.message


def test_merge_patch_follows_rfc_7396() -> None:
    assert merge_patch({"a": {"b": 1, "c": 2}, "d": [1]}, {"a": {"b": None, "e": 3}, "d": [2]}) == {
        "a": {"c": 2, "e": 3},
        "d": [2],
    }
    assert [parse_if_match(v) for v in ('"3"', 'W/"3"', "3", "*", None)] == [3, 3, 3, "*", None]


@pytest.mark.parametrize("tag", ['"\u00b3"', '"\u0663"', '"1_0"', '" 3"'])
def test_an_if_match_of_other_than_ascii_digits_is_400(tag: str) -> None:
    # "³" passed str.isdigit and then int() raised (a 500); "٣" was read as revision 3
    with pytest.raises(InvalidInputError) as raised:
        parse_if_match(tag)
    assert raised.value.code == "invalid_if_match"


# ---------------------------------------------------------------------- history and events


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
    assert [t for t, _ in registry.events.events] == ["Model Version Registered", "Model Version Ready"]
    assert moved.version == 1
    assert registry.store.aliases[("cancer", "staging")].version == 1


def test_unknown_versions_are_not_found(registry: Registry) -> None:
    with pytest.raises(NotFoundError) as error:
        registry.service.get_version("cancer", "v9")
    assert error.value.code == "version_not_found"


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
    version = registry.ready(
        "cancer", upload_key=registry.upload("cancer", trained.onnx), feature_names=trained.features
    )
    assert version.explainer_key is None
    assert not any(key.endswith("explainer.npz") for key in registry.artifacts.objects)
