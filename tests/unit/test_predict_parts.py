"""The inference service's parts: session LRU, the prediction log record, decision rules."""

from __future__ import annotations

import dataclasses

import pytest

from mlambda.adapters.model_sessions import ModelSessions
from mlambda.errors import UpstreamError
from mlambda.schemas.prediction_log import PIECE_BYTES, PredictionLogRecord, expand
from mlambda.schemas.registry import DecisionRule, ModelVersion, Threshold
from mlambda.services.inference.prediction_log import LoggedRequest, PredictionLog, Scored
from mlambda.services.inference.serving_rules import decide
from tests.unit.fakes_predict import InMemoryArtifacts, classifier, version_of


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


def logged(
    rows: int,
    features: dict[str, object] | None = None,
    *,
    shadow: bool = False,
    positions: list[int] | None = None,
) -> LoggedRequest:
    inputs = [dict(features or {"f0": float(i)}) for i in range(rows)]
    answers = [{"label": 1, "probabilities": {"0": 0.25, "1": 0.75}} for _ in range(rows)]
    return LoggedRequest(
        request_id="r",
        model="m",
        timestamp="2026-01-01T00:00:00.000001+00:00",
        entity_id="e",
        positions=positions if positions is not None else list(range(rows)),
        inputs=inputs,
        served=Scored(1, "main", 0.1, answers),
        shadow=Scored(2, "shadow:staging", 0.2, answers) if shadow else None,
    )


class Lines:
    """A function's output: what was written, line by line."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def write(self, text: str) -> int:
        assert text.endswith("\n")
        self.lines.extend(text.splitlines())
        return len(text)

    def records(self) -> list[PredictionLogRecord]:
        return [PredictionLogRecord.model_validate_json(line) for line in self.lines]


class Bucket:
    """The data bucket as the log's overflow store (failing when asked to)."""

    def __init__(self, fail: bool = False) -> None:
        self.objects: dict[str, bytes] = {}
        self.fail = fail

    def put(self, key: str, body: bytes, *, content_type: str = "application/json") -> None:
        if self.fail:
            raise UpstreamError("bucket unavailable")
        self.objects[key] = body


def test_a_small_request_is_one_line_that_expands_to_its_served_and_shadow_rows() -> None:
    # Given
    out = Lines()
    # When
    pieces = PredictionLog(out.write).publish(logged(3, shadow=True, positions=[0, 2, 5]))
    # Then
    assert pieces == 1
    (record,) = out.records()
    envelopes = expand(record)
    assert [e.id for e in envelopes] == ["r:0", "r:2", "r:5", "r:0:shadow", "r:2:shadow", "r:5:shadow"]
    assert envelopes[1].payload["features"] == {"f0": 1.0}
    assert envelopes[4].payload == {
        **envelopes[1].payload,
        "version": 2,
        "variant": "shadow:staging",
        "shadow": True,
        "latency_ms": 0.2,
    }
    assert all(e.entity_id == "e" and e.model == "m" for e in envelopes)


def test_defect_8_a_1000_row_40_feature_request_is_logged_whole_in_pieces_under_the_event_limit() -> None:
    # Given: 1,000 rows of 40 features (1.4 MB as per-row envelopes; the old log jammed on it:
    # its SQS batch of 1.3 MB was refused, kept for retry ahead of every later record)
    out = Lines()
    request = logged(1000, {f"feature_{j:02d}": 0.123456789 * j for j in range(40)}, shadow=True)
    # When
    pieces = PredictionLog(out.write).publish(request)
    # Then: several CloudWatch-sized lines, which together give back every row, served and shadow
    assert pieces == len(out.lines) > 1
    assert all(len(line.encode()) <= PIECE_BYTES for line in out.lines)
    records = out.records()
    assert [(r.piece, r.pieces) for r in records] == [(i, pieces) for i in range(pieces)]
    ids = [e.id for r in records for e in expand(r)]
    assert sorted(ids) == sorted([f"r:{i}" for i in range(1000)] + [f"r:{i}:shadow" for i in range(1000)])
    assert {r.row_count for r in records} == {1000}


def test_a_row_too_large_for_an_event_is_stored_by_reference() -> None:
    # Given
    out, bucket = Lines(), Bucket()
    # When
    PredictionLog(out.write, overflow=bucket).publish(logged(2, {"blob": "x" * 300_000}))
    # Then: each row's piece is in the bucket, and the log names it
    records = out.records()
    assert [r.ref for r in records] == sorted(bucket.objects)
    stored = [PredictionLogRecord.model_validate_json(bucket.objects[r.ref or ""]) for r in records]
    assert [e.payload["features"]["blob"][:3] for r in stored for e in expand(r)] == ["xxx", "xxx"]


def test_a_row_that_cannot_be_stored_keeps_its_prediction_and_says_what_was_not_logged() -> None:
    # Given
    out = Lines()
    # When
    PredictionLog(out.write, overflow=Bucket(fail=True)).publish(logged(1, {"blob": "x" * 300_000}))
    # Then
    (record,) = out.records()
    (row,) = expand(record)
    assert row.payload["features"] == {}
    assert row.payload["prediction"]["label"] == 1
    assert row.payload["features_truncated_bytes"] > 300_000


def test_rows_with_different_keys_share_one_set_of_columns() -> None:
    # Given
    request = dataclasses.replace(logged(2), inputs=[{"a": 1, "b": 2}, {"b": 3, "c": 4}])
    out = Lines()
    # When
    PredictionLog(out.write).publish(request)
    # Then
    (record,) = out.records()
    assert record.columns == ["a", "b", "c"]
    assert record.features == [{"a": 1, "b": 2, "c": None}, {"a": None, "b": 3, "c": 4}]


def test_nothing_is_written_for_a_request_without_logged_rows() -> None:
    out = Lines()
    assert PredictionLog(out.write).publish(logged(0)) == 0
    assert out.lines == []


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
