"""The production gate's evaluation requirement, through the registry service on in-memory ports."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from mlambda.adapters.registry import OnnxRuntime
from mlambda.errors import ConflictError
from mlambda.schemas.evaluations import PublishedEvaluation
from mlambda.schemas.registry import ModelVersion
from mlambda.schemas.registry_api import (
    CreateModelRequest,
    MoveAliasRequest,
    RegisterVersionRequest,
    UpdateModelRequest,
)
from mlambda.services.registry.service import RegistryService
from tests.unit.fakes_registry import InMemoryArtifacts, InMemoryRegistryStore, RecordingEvents, breast_cancer


class Publications:
    """EvaluationPublications over a list."""

    def __init__(self) -> None:
        self.items: list[PublishedEvaluation] = []

    def published(self, model: str, version: int) -> list[PublishedEvaluation]:
        return [p for p in self.items if (p.model, p.version) == (model, version)]


class Registry:
    def __init__(self) -> None:
        self.store = InMemoryRegistryStore()
        self.artifacts = InMemoryArtifacts()
        self.publications = Publications()
        self.service = RegistryService(
            self.store, self.artifacts, OnnxRuntime(), RecordingEvents(), publications=self.publications
        )

    def register(self, model: str) -> ModelVersion:
        trained = breast_cancer()
        key = f"uploads/{model}/{'b' * 32}/m.onnx"
        self.artifacts.objects[key] = trained.onnx
        return self.service.register_version(
            model, RegisterVersionRequest(upload_key=key, feature_names=trained.features), "tester"
        )

    def publish(self, version: ModelVersion, sha256: str | None = None) -> None:
        self.publications.items.append(
            PublishedEvaluation(
                model=version.model,
                version=version.version,
                artifact_sha256=sha256 or version.artifact_sha256,
                evaluation_id="a" * 20,
                completed_at=datetime(2026, 3, 3, tzinfo=UTC),
                completed_by="owner",
                evaluators=["alice", "bob"],
                rows=50,
                rows_judged=50,
                coverage=1.0,
                verdicts=100,
                agreement=0.92,
            )
        )


@pytest.fixture
def registry() -> Registry:
    created = Registry()
    created.service.create_model(CreateModelRequest(name="cancer", require_evaluation=True), "tester")
    return created


def test_production_refuses_a_version_without_a_completed_evaluation_even_forced(registry: Registry) -> None:
    # Given a model that requires an evaluation, and an unevaluated version
    version = registry.register("cancer")
    # When / Then: a 409 naming what is missing, which force does not bypass
    for request in (MoveAliasRequest(version=1), MoveAliasRequest(version=1, force=True, reason="hurry")):
        with pytest.raises(ConflictError) as caught:
            registry.service.move_alias("cancer", "production", request, "tester")
        assert caught.value.code == "evaluation_required"
        assert caught.value.details == {"model": "cancer", "version": 1, "requirement": "require_evaluation"}
    # other aliases are not gated
    staged = registry.service.move_alias(
        "cancer", "staging", MoveAliasRequest(version=version.version), "tester"
    )
    assert staged.version == 1


def test_a_completed_evaluation_of_the_same_artifact_lets_the_version_through_and_shows_in_the_gate(
    registry: Registry,
) -> None:
    # Given an evaluation of another artifact under the same name and version (a model recreated)
    version = registry.register("cancer")
    registry.publish(version, sha256="0" * 64)
    with pytest.raises(ConflictError):
        registry.service.move_alias("cancer", "production", MoveAliasRequest(version=1), "tester")
    # When the version's own evaluation is published
    registry.publish(version)
    moved = registry.service.move_alias("cancer", "production", MoveAliasRequest(version=1), "tester")
    # Then
    assert moved.version == 1 and moved.gate is not None and moved.gate.passed
    check = next(c for c in moved.gate.checks if c.name == "evaluation_completed")
    assert check.passed and "alice, bob" in check.message and "agreement 92%" in check.message


def test_the_requirement_is_a_model_setting_changed_with_patch(registry: Registry) -> None:
    # Given
    registry.register("cancer")
    # When the owner lifts the requirement
    updated = registry.service.update_model("cancer", UpdateModelRequest(require_evaluation=False), "owner")
    # Then production takes the version, with no evaluation check in its gate
    assert updated.require_evaluation is False
    moved = registry.service.move_alias("cancer", "production", MoveAliasRequest(version=1), "tester")
    assert moved.gate is not None and all(c.name != "evaluation_completed" for c in moved.gate.checks)
    assert registry.service.get_model("cancer").require_evaluation is False
