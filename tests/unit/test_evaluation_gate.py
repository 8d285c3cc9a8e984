"""The gate's evaluation requirement for every version that takes traffic (production, a served alias,\na split variant, the shadow), through the registry service on in-memory ports."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from mlambda.adapters.registry import OnnxRuntime
from mlambda.errors import ConflictError
from mlambda.schemas.evaluations import PublishedEvaluation
from mlambda.schemas.registry import ModelVersion
from mlambda.schemas.registry_api import (
    CreateModelRequest,
    EndpointConfigRequest,
    MoveAliasRequest,
    UpdateModelRequest,
)
from mlambda.services.registry.service import RegistryService
from tests.unit.test_registry_service import Registry as Harness


class Publications:
    """EvaluationPublications over a list."""

    def __init__(self) -> None:
        self.items: list[PublishedEvaluation] = []

    def published(self, model: str, version: int) -> list[PublishedEvaluation]:
        return [p for p in self.items if (p.model, p.version) == (model, version)]


class Registry(Harness):
    """The registry service and validator of the registry's tests, with publications to read."""

    def __init__(self) -> None:
        super().__init__()
        self.publications = Publications()
        self.service = RegistryService(
            self.store,
            self.artifacts,
            OnnxRuntime(),
            self.events,
            self.queue,
            publications=self.publications,
            clock=self.clock,
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
        assert caught.value.details == {
            "model": "cancer",
            "version": 1,
            "requirement": "require_evaluation",
            "where": "production",
        }
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


def endpoint(variants: dict[str, tuple[str, int]], shadow: str | None = None) -> EndpointConfigRequest:
    """An endpoint config: variant name -> (target, weight), and a shadow target."""
    body: dict[str, object] = {
        "variants": [
            {"name": name, "target": target, "weight": weight} for name, (target, weight) in variants.items()
        ]
    }
    if shadow is not None:
        body["shadow"] = {"target": shadow, "sample_percent": 10}
    return EndpointConfigRequest.model_validate(body)


@pytest.fixture
def evaluated_production(registry: Registry) -> Registry:
    """cancer v1 evaluated and in production, v2 registered (READY) without an evaluation."""
    first = registry.register("cancer")
    registry.register("cancer", c=0.1)
    registry.publish(first)
    registry.service.move_alias("cancer", "production", MoveAliasRequest(version=1), "tester")
    return registry


@pytest.mark.parametrize(
    "config",
    [
        endpoint({"main": ("production", 90), "canary": ("v2", 10)}),
        endpoint({"main": ("production", 100)}, shadow="v2"),
    ],
    ids=["split variant", "shadow"],
)
def test_an_endpoint_sends_no_traffic_to_an_unevaluated_version(
    evaluated_production: Registry, config: EndpointConfigRequest
) -> None:
    # When the endpoint would send v2 traffic
    with pytest.raises(ConflictError) as caught:
        evaluated_production.service.put_endpoint("cancer", config, "tester")
    # Then a 409 names the target, and nothing is stored
    assert caught.value.code == "evaluation_required"
    assert caught.value.details["version"] == 2
    assert caught.value.details["where"] == "endpoint target 'v2'"
    assert evaluated_production.store.endpoint_config("cancer") is None


def test_an_evaluated_version_takes_a_split_with_the_evaluation_in_its_gate(
    evaluated_production: Registry,
) -> None:
    # Given v2's evaluation is published
    second = evaluated_production.store.get_version("cancer", 2)
    evaluated_production.publish(second)
    # When
    stored = evaluated_production.service.put_endpoint(
        "cancer", endpoint({"main": ("production", 90), "canary": ("v2", 10)}), "tester"
    )
    # Then the history keeps v2's gate with the evaluation's check
    assert stored.revision == 1
    [entry] = [e for e in evaluated_production.store.entries if e.action == "endpoint_changed"]
    [gate] = entry.details["gates"]
    assert (gate["target"], gate["passed"]) == ("v2", True)
    assert "evaluation_completed" in [check["name"] for check in gate["checks"]]


def test_production_s_own_version_is_not_asked_again_by_an_endpoint_change(registry: Registry) -> None:
    # Given v1 went to production before the model required evaluations
    registry.register("cancer")
    registry.service.update_model("cancer", UpdateModelRequest(require_evaluation=False), "owner")
    registry.service.move_alias("cancer", "production", MoveAliasRequest(version=1), "tester")
    registry.service.update_model("cancer", UpdateModelRequest(require_evaluation=True), "owner")
    # When the endpoint only routes to production
    stored = registry.service.put_endpoint("cancer", endpoint({"main": ("production", 100)}), "tester")
    # Then it is accepted: production passed the gate of its day when it was promoted
    assert stored.revision == 1


def test_moving_an_alias_the_endpoint_serves_needs_an_evaluation_even_forced(
    evaluated_production: Registry,
) -> None:
    # Given a canary variant served by the alias 'staging' on the evaluated v1
    service = evaluated_production.service
    service.move_alias("cancer", "staging", MoveAliasRequest(version=1), "tester")
    service.put_endpoint(
        "cancer", endpoint({"main": ("production", 90), "canary": ("staging", 10)}), "tester"
    )
    # When staging moves to the unevaluated v2
    with pytest.raises(ConflictError) as caught:
        service.move_alias(
            "cancer", "staging", MoveAliasRequest(version=2, force=True, reason="hurry"), "tester"
        )
    # Then
    assert caught.value.code == "evaluation_required"
    assert caught.value.details["where"] == "alias 'staging' (the endpoint serves it)"
    assert evaluated_production.store.aliases[("cancer", "staging")].version == 1
