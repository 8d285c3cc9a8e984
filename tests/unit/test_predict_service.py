"""The inference service on in-memory ports, with real (small) ONNX models."""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest

from mlambda.adapters.model_sessions import ModelSessions
from mlambda.errors import (
    ForbiddenError,
    MlambdaError,
    NotFoundError,
    PayloadTooLargeError,
    UnprocessableError,
    UpstreamError,
)
from mlambda.observability import metrics
from mlambda.schemas.archive import ArchiveEnvelope
from mlambda.schemas.inference import PredictRequest
from mlambda.schemas.registry import (
    CachePolicy,
    DecisionRule,
    EndpointConfig,
    EnrichItems,
    ExcludeRecentlySeen,
    Fallback,
    ModelVersion,
    ServingRules,
    Shadow,
    Threshold,
    Variant,
)
from mlambda.services.inference import service as service_module
from mlambda.services.inference.prediction_cache import PredictionCache
from mlambda.services.inference.prediction_log import PredictionLog
from mlambda.services.inference.service import InferenceService, ServingModel
from tests.unit.fakes_predict import (
    BrokenModel,
    InMemoryArtifacts,
    InMemoryCacheStore,
    InMemoryCatalog,
    InMemoryFeatures,
    InMemoryItems,
    InMemoryTracking,
    ManualClock,
    RecordingOutput,
    classifier,
    regressor,
    row,
    version_of,
)


@dataclass
class Harness:
    catalog: InMemoryCatalog
    artifacts: InMemoryArtifacts
    sink: RecordingOutput
    cache: InMemoryCacheStore
    features: InMemoryFeatures
    tracking: InMemoryTracking
    items: InMemoryItems
    clock: ManualClock
    service: InferenceService

    def predict(self, body: dict[str, Any], model: str = "churn") -> dict[str, Any]:
        metrics.clear_metrics()  # each call is one invocation: a flush clears metrics and dimensions
        return self.service.predict(model, PredictRequest.model_validate(body))


class OverrideModels:
    """ModelProvider that serves ``broken`` for one version and the real sessions otherwise."""

    def __init__(self, real: ModelSessions, broken: dict[int, ServingModel]) -> None:
        self.real = real
        self.broken = broken

    def get(self, version: ModelVersion) -> ServingModel:
        return self.broken.get(version.version) or self.real.get(version)


def harness(
    endpoint: EndpointConfig | None = None,
    *,
    broken: dict[int, ServingModel] | None = None,
    max_instances: int = 100,
) -> Harness:
    catalog, artifacts = InMemoryCatalog(), InMemoryArtifacts()
    for number, seed, aliases in ((1, 0, ("production",)), (2, 1, ("staging",))):
        data, _, _ = classifier(seed)
        version = version_of("churn", number, data)
        artifacts.put(version.artifact_key, data)
        catalog.add(version, *aliases)
    data, _, _ = regressor()
    version = version_of("price", 1, data)
    artifacts.put(version.artifact_key, data)
    catalog.add(version, "production")
    if endpoint is not None:
        catalog.endpoints[endpoint.model] = endpoint
    sink, cache, clock = RecordingOutput(), InMemoryCacheStore(), ManualClock()
    features, tracking, items = InMemoryFeatures(), InMemoryTracking(), InMemoryItems()
    models = OverrideModels(ModelSessions(artifacts), broken or {})
    service = InferenceService(
        catalog,
        models,
        PredictionLog(sink.write),
        features=features,
        tracking=tracking,
        items=items,
        cache=PredictionCache(cache, clock=clock, write_behind=False),
        max_instances=max_instances,
        rng=random.Random(0),
        clock=clock,
    )
    return Harness(catalog, artifacts, sink, cache, features, tracking, items, clock, service)


def endpoint(**kwargs: Any) -> EndpointConfig:
    values: dict[str, Any] = {
        "model": "churn",
        "variants": [Variant(name="main", target="production", weight=100)],
    }
    values.update(kwargs)
    return EndpointConfig(**values)


# ---------------------------------------------------------------- scoring


def test_classifier_predictions_match_sklearn_predict_proba() -> None:
    # Given
    h = harness()
    _, model, X = classifier(0)
    # When
    body = h.predict({"instances": [row(x) for x in X[:20]]})
    # Then
    expected = model.predict_proba(X[:20].astype(np.float64))
    assert body["model"] == "churn" and body["version"] == 1 and body["variant"] == "production"
    for prediction, want, label in zip(body["predictions"], expected, model.predict(X[:20]), strict=True):
        assert prediction["label"] == int(label)
        got = [prediction["probabilities"][str(c)] for c in model.classes_]
        np.testing.assert_allclose(got, want, atol=1e-5)


def test_regressor_predictions_match_sklearn() -> None:
    h = harness()
    _, model, X = regressor()
    body = h.predict({"instances": [row(x) for x in X[:5]]}, model="price")
    np.testing.assert_allclose([p["value"] for p in body["predictions"]], model.predict(X[:5]), rtol=1e-4)


def test_integer_values_of_float_features_are_accepted() -> None:
    h = harness()
    body = h.predict({"instances": [{"f0": 1, "f1": 0, "f2": -2, "f3": 3}]})
    assert body["predictions"][0]["label"] in (0, 1)


def test_without_endpoint_config_production_is_served() -> None:
    h = harness()
    assert h.predict({"instances": [row([0, 0, 0, 0])]})["version"] == 1


def test_a_model_without_production_alias_is_404() -> None:
    h = harness()
    with pytest.raises(NotFoundError) as error:
        h.predict({"instances": [row([0, 0, 0, 0])]}, model="nobody")
    assert error.value.code == "no_production_alias"


@pytest.mark.parametrize("model", ["x" * 3000, "../etc", "UPPER"])
def test_a_name_no_model_can_have_is_404_without_asking_the_registry(model: str) -> None:
    # Given (DynamoDB refuses keys over 2048 bytes: a 502 on AWS)
    h = harness()
    # When
    with pytest.raises(NotFoundError) as error:
        h.predict({"instances": [row([0, 0, 0, 0])]}, model=model)
    # Then
    assert (error.value.code, h.catalog.reads) == ("model_not_found", 0)


def test_names_callers_choose_cannot_grow_the_catalog_cache_without_end(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given a cache of at most 50 entries per map
    monkeypatch.setattr(service_module, "MAX_CACHED", 50)
    h = harness()
    # When 200 requests name 200 models that do not exist
    for index in range(200):
        with pytest.raises(NotFoundError):
            h.predict({"instances": [row([0, 0, 0, 0])]}, model=f"m{index}")
    # Then the cache stayed within its bound, and still serves
    catalog = h.service._catalog
    assert len(catalog._endpoints) <= 50 and len(catalog._versions) <= 50
    assert h.predict({"instances": [row([0, 0, 0, 0])]})["version"] == 1


def test_too_many_instances_is_413() -> None:
    h = harness(max_instances=3)
    with pytest.raises(PayloadTooLargeError) as error:
        h.predict({"instances": [row([0, 0, 0, 0])] * 4})
    assert error.value.code == "too_many_instances"


@pytest.mark.parametrize(
    ("instance", "field", "message"),
    [
        ({"f0": 1.0, "f1": 1.0, "f2": 1.0}, "f3", "is missing"),
        ({"f0": 1.0, "f1": 1.0, "f2": 1.0, "f3": "x"}, "f3", "must be a number"),
        ({"f0": 1.0, "f1": 1.0, "f2": 1.0, "f3": True}, "f3", "must be a number"),
        ({"f0": float("nan"), "f1": 1.0, "f2": 1.0, "f3": 1.0}, "f0", "finite"),
        ({"f0": float("inf"), "f1": 1.0, "f2": 1.0, "f3": 1.0}, "f0", "finite"),
        ({"f0": 1.0, "f1": 1.0, "f2": 1.0, "f3": None}, "f3", "missing"),
        ({"f0": 1.0, "f1": 1.0, "f2": 1.0, "f3": 1.0, "zz": 1}, "zz", "not a feature"),
    ],
)
def test_bad_instances_are_422_naming_the_row_and_field(
    instance: dict[str, Any], field: str, message: str
) -> None:
    h = harness()
    with pytest.raises(UnprocessableError) as error:
        h.predict({"instances": [row([0, 0, 0, 0]), instance]})
    assert error.value.status == 422
    assert {"row": 1, "field": field} == {k: error.value.details[0][k] for k in ("row", "field")}
    assert message in error.value.message
    assert f"instances[1].{field}" in error.value.message


# ---------------------------------------------------------------- variants and shadow


def test_variant_override_serves_the_named_variant() -> None:
    h = harness(
        endpoint(
            variants=[
                Variant(name="main", target="production", weight=100),
                Variant(name="canary", target="v2", weight=0),
            ]
        )
    )
    body = h.predict({"instances": [row([0, 0, 0, 0])], "variant": "canary"})
    assert (body["variant"], body["version"]) == ("canary", 2)


def test_sticky_entities_keep_their_variant_through_the_service() -> None:
    h = harness(
        endpoint(
            variants=[
                Variant(name="main", target="production", weight=50),
                Variant(name="canary", target="v2", weight=50),
            ],
            sticky_key="entity_id",
        )
    )
    h.features.values = {f"u{i}": row([i, 0, 1, 2]) for i in range(30)}
    for i in range(30):
        first = {h.predict({"entity_id": f"u{i}"})["variant"] for _ in range(3)}
        assert len(first) == 1


def test_shadow_is_logged_but_never_returned() -> None:
    # Given a shadow on every request
    h = harness(endpoint(shadow=Shadow(target="staging", sample_percent=100)))
    _, model_v2, X = classifier(1)
    # When
    body = h.predict({"instances": [row(x) for x in X[:3]], "request_id": "req-1"})
    # Then the caller sees production only
    assert body["version"] == 1 and body["variant"] == "main"
    assert all(set(p) == {"label", "probabilities"} for p in body["predictions"])
    # and the log holds both, the shadow marked as such with v2's answers
    logged = [ArchiveEnvelope.model_validate(e) for e in h.sink.envelopes()]
    served = [e for e in logged if not e.payload["shadow"]]
    shadow = [e for e in logged if e.payload["shadow"]]
    assert [e.id for e in served] == ["req-1:0", "req-1:1", "req-1:2"]
    assert [e.id for e in shadow] == ["req-1:0:shadow", "req-1:1:shadow", "req-1:2:shadow"]
    assert {e.payload["version"] for e in shadow} == {2}
    expected = model_v2.predict_proba(X[:3].astype(np.float64))[:, 1]
    np.testing.assert_allclose(
        [e.payload["prediction"]["probabilities"]["1"] for e in shadow], expected, atol=1e-5
    )


def test_a_failing_shadow_never_fails_the_request() -> None:
    h = harness(endpoint(shadow=Shadow(target="staging", sample_percent=100)), broken={2: BrokenModel()})
    body = h.predict({"instances": [row([0, 0, 0, 0])]})
    assert body["version"] == 1
    assert all(not e["payload"]["shadow"] for e in h.sink.envelopes())


# ---------------------------------------------------------------- cache


def test_second_identical_request_is_served_from_cache_until_expiry() -> None:
    # Given a cached endpoint and a model that breaks after the first call
    h = harness(endpoint(cache=CachePolicy(enabled=True, ttl_seconds=60)))
    first = h.predict({"instances": [row([1, 2, 3, 4])]})
    h.service._models = OverrideModels(ModelSessions(h.artifacts), {1: BrokenModel()})  # type: ignore[assignment]
    # When the same features come again (ints this time: same normalised input)
    second = h.predict({"instances": [{"f0": 1, "f1": 2, "f2": 3, "f3": 4}]})
    # Then the cache answered
    assert first["cached"] is False and second["cached"] is True
    assert second["predictions"] == first["predictions"]
    # When the entry expires, the (broken) model is asked again
    h.clock.now += 61
    with pytest.raises(UpstreamError):
        h.predict({"instances": [row([1, 2, 3, 4])]})


def test_partial_cache_hits_score_only_the_misses() -> None:
    h = harness(endpoint(cache=CachePolicy(enabled=True, ttl_seconds=60)))
    h.predict({"instances": [row([1, 2, 3, 4])]})
    body = h.predict({"instances": [row([5, 6, 7, 8]), row([1, 2, 3, 4])]})
    reference = harness().predict({"instances": [row([5, 6, 7, 8]), row([1, 2, 3, 4])]})
    assert body["cached"] is False
    for got, want in zip(body["predictions"], reference["predictions"], strict=True):
        assert got["label"] == want["label"]
        np.testing.assert_allclose(
            list(got["probabilities"].values()), list(want["probabilities"].values()), atol=1e-6
        )


def test_cache_is_not_used_unless_enabled() -> None:
    h = harness()
    h.predict({"instances": [row([1, 2, 3, 4])]})
    assert h.cache.items == {}


# ---------------------------------------------------------------- rules


def test_decision_thresholds_map_scores_to_decisions() -> None:
    rule = DecisionRule(
        score_of_class=1,
        thresholds=[Threshold(min_score=0.8, decision="block"), Threshold(min_score=0.5, decision="review")],
        default="allow",
    )
    h = harness(endpoint(rules=ServingRules(decision=rule)))
    body = h.predict({"instances": [row(x) for x in classifier(0)[2][:40]]})
    for p in body["predictions"]:
        score = p["probabilities"]["1"]
        assert p["decision"] == ("block" if score >= 0.8 else "review" if score >= 0.5 else "allow")
    assert {p["decision"] for p in body["predictions"]} >= {"block", "allow"}


def test_recently_seen_items_are_excluded_and_not_scored() -> None:
    rule = ExcludeRecentlySeen(item_field="item_id", hours=24)
    h = harness(endpoint(rules=ServingRules(exclude_recently_seen=rule)))
    h.tracking.seen["u1"] = {"i2"}
    body = h.predict(
        {
            "entity_id": "u1",
            "instances": [{**row([0, 0, 0, 0]), "item_id": "i1"}, {**row([1, 1, 1, 1]), "item_id": "i2"}],
        }
    )
    assert "label" in body["predictions"][0]
    assert body["predictions"][1] == {"excluded": "recently_seen"}
    assert [e["id"].split(":")[-1] for e in h.sink.envelopes()] == ["0"]


def test_exclusion_lookup_failure_serves_unfiltered() -> None:
    h = harness(
        endpoint(
            rules=ServingRules(
                exclude_recently_seen=ExcludeRecentlySeen(item_field="item_id", hours=24),
                honour_opt_out=False,
            )
        )
    )
    h.tracking.fail_lookups = True
    body = h.predict({"entity_id": "u1", "instances": [{**row([0, 0, 0, 0]), "item_id": "i1"}]})
    assert "label" in body["predictions"][0]


def test_item_metadata_enriches_predictions_of_rows_naming_an_item() -> None:
    rule = EnrichItems(item_field="item_id", attributes=["title", "price"])
    h = harness(
        endpoint(
            rules=ServingRules(
                enrich_items=rule, exclude_recently_seen=ExcludeRecentlySeen(item_field="item_id", hours=24)
            )
        )
    )
    h.items.items = {"i1": {"title": "Boots", "price": 80, "internal": "x"}, "i3": {"title": "Hat"}}
    h.tracking.seen["u1"] = {"i3"}
    body = h.predict(
        {
            "entity_id": "u1",
            "instances": [
                {**row([0, 0, 0, 0]), "item_id": "i1"},
                {**row([1, 1, 1, 1]), "item_id": "i2"},
                {**row([1, 0, 1, 0]), "item_id": "i3"},
                row([0, 1, 0, 1]),
            ],
        }
    )
    first, unknown, excluded, no_item = body["predictions"]
    assert first["item"] == {"title": "Boots", "price": 80} and "label" in first
    assert unknown["item"] is None and "label" in unknown
    assert excluded == {"excluded": "recently_seen"}
    assert "item" not in no_item and "label" in no_item
    assert h.items.reads == [["i1", "i2", "i3"]]


def test_item_metadata_failure_serves_unenriched_predictions() -> None:
    h = harness(endpoint(rules=ServingRules(enrich_items=EnrichItems(item_field="item_id"))))
    h.items.fail = True
    body = h.predict({"instances": [{**row([0, 0, 0, 0]), "item_id": "i1"}]})
    assert "label" in body["predictions"][0] and "item" not in body["predictions"][0]


@pytest.mark.parametrize("code", ["model_failed", "model_timeout"])
def test_model_failure_or_timeout_answers_the_fallback(code: str) -> None:
    fallback = Fallback(response={"label": 0, "probabilities": {"0": 1.0, "1": 0.0}}, timeout_ms=50)
    h = harness(endpoint(rules=ServingRules(fallback=fallback)), broken={1: BrokenModel(code)})
    body = h.predict({"instances": [row([0, 0, 0, 0])] * 2})
    assert body["predictions"] == [{"label": 0, "probabilities": {"0": 1.0, "1": 0.0}, "fallback": code}] * 2


def test_fallback_answers_are_marked_as_such_in_the_prediction_log() -> None:
    # Given an endpoint whose model fails and whose fallback answers label -1
    fallback = Fallback(response={"label": -1})
    broken = harness(endpoint(rules=ServingRules(fallback=fallback)), broken={1: BrokenModel("model_failed")})
    healthy = harness()
    # When both answer
    broken.predict({"instances": [row([0, 0, 0, 0])] * 2})
    healthy.predict({"instances": [row([0, 0, 0, 0])]})
    # Then the log says which answers came from the fallback (and why), so monitoring can leave them out
    assert [e["payload"]["fallback"] for e in broken.sink.envelopes()] == ["model_failed", "model_failed"]
    assert [e["payload"]["fallback"] for e in healthy.sink.envelopes()] == [None]


def test_model_failure_without_fallback_is_an_upstream_error() -> None:
    h = harness(broken={1: BrokenModel()})
    with pytest.raises(UpstreamError) as error:
        h.predict({"instances": [row([0, 0, 0, 0])]})
    assert error.value.code == "model_failed"


def test_opted_out_entities_get_the_fallback_or_403() -> None:
    fallback = Fallback(response={"label": 0})
    with_fallback = harness(endpoint(rules=ServingRules(fallback=fallback)))
    without = harness()
    for h in (with_fallback, without):
        h.tracking.opted_out.add("u1")
    body = with_fallback.predict({"entity_id": "u1", "features": row([0, 0, 0, 0])})
    assert body["predictions"] == [{"label": 0, "fallback": "opted_out"}]
    assert with_fallback.sink.lines == []
    with pytest.raises(ForbiddenError) as error:
        without.predict({"entity_id": "u1", "features": row([0, 0, 0, 0])})
    assert error.value.code == "opted_out"


def test_opt_out_lookup_failure_fails_closed() -> None:
    h = harness()
    h.tracking.fail_lookups = True
    with pytest.raises(UpstreamError) as error:
        h.predict({"entity_id": "u1", "features": row([0, 0, 0, 0])})
    assert error.value.code == "tracking_unavailable"


# ---------------------------------------------------------------- online features


def test_entity_features_are_merged_under_request_values() -> None:
    h = harness()
    h.features.values["u1"] = {**row([9, 9, 9, 9]), "other_model_feature": 5}
    merged = h.predict({"entity_id": "u1", "features": {"f0": 1.0}})
    direct = h.predict({"instances": [row([1, 9, 9, 9])]})
    assert merged["predictions"] == direct["predictions"]
    logged = h.sink.envelopes()[0]["payload"]["features"]
    assert logged == row([1, 9, 9, 9])


def test_features_still_missing_after_the_merge_are_422_naming_them() -> None:
    h = harness()
    h.features.values["u1"] = {"f0": 1.0, "f1": 2.0}
    with pytest.raises(UnprocessableError) as error:
        h.predict({"entity_id": "u1", "features": {"f2": 3.0}})
    assert error.value.details[0]["field"] == "f3"


def test_the_feature_store_is_not_read_when_the_request_is_complete() -> None:
    h = harness()
    h.predict({"entity_id": "u1", "features": row([1, 2, 3, 4])})
    assert h.features.reads == 0


def test_what_an_entity_was_served_leaves_in_the_log_record_not_by_a_tracking_write() -> None:
    h = harness()
    body = h.predict({"entity_id": "u1", "features": row([1, 2, 3, 4]), "request_id": "r-9"})
    (record,) = h.sink.records()
    assert (record.entity_id, record.request_id, record.model) == ("u1", "r-9", "churn")
    assert record.predictions == body["predictions"]


# ---------------------------------------------------------------- registry reads, log


def test_registry_is_read_once_per_ttl() -> None:
    h = harness(endpoint())
    h.predict({"instances": [row([0, 0, 0, 0])]})
    reads = h.catalog.reads
    for _ in range(5):
        h.predict({"instances": [row([0, 0, 0, 0])]})
    assert h.catalog.reads == reads
    h.clock.now += 11
    h.predict({"instances": [row([0, 0, 0, 0])]})
    assert h.catalog.reads > reads


def test_every_served_row_is_logged_as_an_archive_envelope() -> None:
    h = harness()
    h.predict({"instances": [row([0, 0, 0, 0]), row([1, 1, 1, 1])], "request_id": "abc", "entity_id": "e"})
    logged = [ArchiveEnvelope.model_validate(e) for e in h.sink.envelopes()]
    assert [(e.id, e.type, e.model, e.entity_id) for e in logged] == [
        ("abc:0", "prediction", "churn", "e"),
        ("abc:1", "prediction", "churn", "e"),
    ]
    payload = logged[1].payload
    assert payload["features"] == row([1, 1, 1, 1])
    assert {"request_id", "row", "version", "variant", "shadow", "prediction", "latency_ms"} <= set(payload)


def test_one_record_per_request_holds_the_inputs_as_a_columnar_block() -> None:
    # When
    h = harness()
    h.predict({"instances": [row([0, 0, 0, 0]), row([1, 2, 3, 4])], "request_id": "abc"})
    # Then: one line, one header, the rows as a matrix
    assert len(h.sink.lines) == 1
    (record,) = h.sink.records()
    assert (record.piece, record.pieces, record.row_count, record.rows) == (0, 1, 2, [0, 1])
    assert record.columns == ["f0", "f1", "f2", "f3"]
    assert record.values == [[0, 0, 0, 0], [1, 2, 3, 4]]
    assert (record.served.version, record.served.variant) == (1, "production")


def test_a_corrupt_artifact_is_refused_and_never_served() -> None:
    h = harness()
    version = h.catalog.versions[("churn", 1)]
    h.artifacts.objects[version.artifact_key] = h.artifacts.objects[version.artifact_key][:-1] + b"\x00"
    with pytest.raises(MlambdaError) as error:
        h.predict({"instances": [row([0, 0, 0, 0])]})
    assert (error.value.status, error.value.code) == (500, "artifact_corrupt")
    assert h.sink.lines == []
