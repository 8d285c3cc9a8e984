"""The inference service's parts: session LRU, prediction log packing and buffering, decision rules."""

from __future__ import annotations

import json

import orjson
import pytest

from mlambda.adapters.model_sessions import ModelSessions
from mlambda.schemas.archive import ArchiveEnvelope
from mlambda.schemas.registry import DecisionRule, ModelVersion, Threshold
from mlambda.services.inference.prediction_log import PredictionLog, pack, prediction_envelope
from mlambda.services.inference.serving_rules import decide
from tests.unit.fakes_predict import InMemoryArtifacts, RecordingSink, classifier, version_of


def loaded_sessions(
    max_models: int, max_bytes: int
) -> tuple[ModelSessions, InMemoryArtifacts, list[ModelVersion]]:
    artifacts = InMemoryArtifacts()
    versions = []
    for number in (1, 2, 3):
        data, _, _ = classifier(number)
        version = version_of("m", number, data)
        artifacts.put(version.artifact_key, data)
        versions.append(version)
    return ModelSessions(artifacts, max_models=max_models, max_bytes=max_bytes), artifacts, versions


def test_sessions_are_fetched_once_and_evicted_least_recently_used_by_count() -> None:
    sessions, artifacts, (v1, v2, v3) = loaded_sessions(max_models=2, max_bytes=10**9)
    sessions.get(v1)
    sessions.get(v2)
    sessions.get(v1)  # v1 is now the most recent
    sessions.get(v3)
    assert sessions.loaded == [("m", 1), ("m", 3)]
    assert artifacts.fetches == 3


def test_sessions_are_evicted_by_bytes_but_the_newest_always_stays() -> None:
    sessions, _, (v1, v2, _) = loaded_sessions(max_models=10, max_bytes=len(classifier(1)[0]) + 1)
    sessions.get(v1)
    sessions.get(v2)
    assert sessions.loaded == [("m", 2)]


def envelope(row: int, features: dict[str, object] | None = None) -> dict[str, object]:
    return prediction_envelope(
        request_id="r",
        row=row,
        model="m",
        version=1,
        variant="main",
        shadow=False,
        timestamp="2026-01-01T00:00:00+00:00",
        entity_id=None,
        features=features or {"f0": 1.0},
        prediction={"value": 1.0},
        latency_ms=0.1,
    )


def test_envelopes_are_packed_as_json_lists_under_the_message_budget() -> None:
    records = [orjson.dumps(envelope(i, {"f": "x" * 1000})) for i in range(50)]
    bodies = pack(records, budget=10_000)
    assert all(len(body.encode()) <= 10_000 for body in bodies)
    decoded = [ArchiveEnvelope.model_validate(e) for body in bodies for e in json.loads(body)]
    assert [e.id for e in decoded] == [f"r:{i}" for i in range(50)]


def test_an_envelope_too_large_for_a_message_keeps_its_prediction_only() -> None:
    sink = RecordingSink()
    PredictionLog(sink).publish([envelope(0, {"blob": "x" * 300_000})])
    (logged,) = sink.envelopes()
    assert logged["payload"]["features"] == {}
    assert logged["payload"]["prediction"] == {"value": 1.0}
    assert logged["payload"]["features_truncated_bytes"] > 300_000


def test_the_retry_buffer_is_bounded_and_drops_the_oldest() -> None:
    sink = RecordingSink(failures=100)
    log = PredictionLog(sink, max_buffered=3, sleep=lambda _s: None)
    for i in range(5):
        assert log.publish([envelope(i)]) is False
    assert log.buffered == 3
    sink.failures = 0
    assert log.publish([]) is True
    assert [e["id"] for e in sink.envelopes()] == ["r:2", "r:3", "r:4"]


def test_a_failing_sink_is_tried_once_per_invocation_until_it_recovers() -> None:
    sink = RecordingSink(failures=100)
    log = PredictionLog(sink, retry_delays=(0.01, 0.02), sleep=lambda _s: None)
    log.publish([envelope(0)])
    assert sink.attempts == 3  # first try + two inline retries
    log.publish([envelope(1)])
    assert sink.attempts == 4  # known to be failing: one try, no backoff


@pytest.mark.parametrize(
    ("prediction", "decision"),
    [
        ({"label": 1, "probabilities": {"0": 0.1, "1": 0.9}}, "block"),
        ({"label": 1, "probabilities": {"0": 0.4, "1": 0.6}}, "review"),
        ({"label": 0, "probabilities": {"0": 0.8, "1": 0.2}}, "allow"),
        ({"value": 0.75}, "review"),
        ({"label": 0}, "allow"),
    ],
)
def test_decisions_take_the_highest_threshold_reached(prediction: dict[str, object], decision: str) -> None:
    rule = DecisionRule(
        thresholds=[Threshold(min_score=0.5, decision="review"), Threshold(min_score=0.8, decision="block")],
        default="allow",
    )
    assert decide(rule, prediction) == decision


def test_upstream_errors_from_the_sink_are_what_triggers_buffering() -> None:
    sink = RecordingSink(failures=1)
    log = PredictionLog(sink, retry_delays=(), sleep=lambda _s: None)
    assert log.publish([envelope(0)]) is False
    assert log.publish([]) is True
    assert [e["id"] for e in sink.envelopes()] == ["r:0"]
