"""EvaluationService on in-memory ports: sampling from each source, scoring and explaining, verdicts
(idempotent, revised, concurrent, blind), completion with coverage, publication and the gate."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pytest
from sklearn.datasets import make_classification
from sklearn.neural_network import MLPClassifier

from mlambda.errors import (
    ConflictError,
    InvalidInputError,
    NotFoundError,
    PayloadTooLargeError,
    UnprocessableError,
)
from mlambda.schemas.evaluations import (
    CancelRequest,
    CompleteRequest,
    CreateEvaluationRequest,
    Evaluation,
    VerdictRequest,
)
from tests.explain_support import export, with_explainer
from tests.unit.fakes_evaluations import Evaluations, columns_of
from tests.unit.fakes_predict import FEATURES, classifier, regressor, row, version_of

MODEL = "churn"
UPLOAD = f"uploads/{MODEL}/{'a' * 32}/sample.csv"


@pytest.fixture
def ev() -> Evaluations:
    """The service with churn v1 (a 4-feature logistic regression with an explainer) in production."""
    evaluations = Evaluations()
    data, _, X = classifier()
    version = with_explainer(version_of(MODEL, 1, data), data, X, evaluations.artifacts)
    evaluations.add(version, data, "production")
    return evaluations


def rows_of(X: np.ndarray, count: int) -> list[dict[str, Any]]:
    return [row(values) for values in X[:count]]


def create(ev: Evaluations, count: int = 10, **fields: Any) -> Evaluation:
    _, _, X = classifier()
    body: dict[str, Any] = {"version": 1, "source": {"type": "rows", "rows": rows_of(X, count)}, **fields}
    evaluation, created = ev.service.create(MODEL, CreateEvaluationRequest.model_validate(body), "owner")
    assert created
    return evaluation


def judge(ev: Evaluations, evaluation: Evaluation, who: str, rows: range | list[int], **verdict: Any) -> None:
    request = VerdictRequest.model_validate({"verdict": "correct", **verdict})
    for index in rows:
        ev.service.record_verdict(evaluation.evaluation_id, index, request, who)


# ---------------------------------------------------------------------- creating


def test_rows_sent_in_the_request_are_scored_and_explained_by_the_version(ev: Evaluations) -> None:
    # Given
    _, fitted, X = classifier()
    # When
    evaluation = create(ev, 12, name="first look", instructions="Is the churn call right?")
    # Then every row carries its input, the version's prediction and an additive explanation
    assert (evaluation.status, evaluation.rows, evaluation.version) == ("open", 12, 1)
    assert evaluation.explained and evaluation.explanation_method == "linear"
    assert evaluation.source.type == "rows" and evaluation.source.available == 12
    rows = ev.store.all_rows(evaluation.evaluation_id)
    probabilities = fitted.predict_proba(X[:12])
    for item in rows:
        assert item.inputs == row(X[item.source.row or 0])
        expected = probabilities[item.source.row or 0]
        assert item.prediction["label"] == int(expected.argmax())
        assert item.prediction["probabilities"]["1"] == pytest.approx(expected[1], abs=1e-5)
        explanation = item.explanation
        assert explanation is not None and explanation["class"] == str(item.prediction["label"])
        assert explanation["value"] == pytest.approx(
            explanation["baseline"] + sum(explanation["attributions"].values()), abs=1e-9
        )


def test_a_source_larger_than_the_sample_is_sampled_reproducibly_and_first_takes_the_head(
    ev: Evaluations,
) -> None:
    # Given an upload of 200 rows with an id column
    _, _, X = classifier()
    table = [{"customer": f"c{i}", **row(X[i])} for i in range(200)]
    ev.sources.uploads[UPLOAD] = columns_of(table)
    body = {"version": 1, "source": {"type": "upload", "upload_key": UPLOAD}, "rows": 20}
    # When two evaluations draw at random (different ids) and one takes the first rows
    first = ev.service.create(MODEL, CreateEvaluationRequest.model_validate(body), "o")[0]
    ev.sources.uploads[UPLOAD] = columns_of(table)
    second = ev.service.create(MODEL, CreateEvaluationRequest.model_validate(body), "o")[0]
    ev.sources.uploads[UPLOAD] = columns_of(table)
    head = ev.service.create(
        MODEL, CreateEvaluationRequest.model_validate({**body, "sampling": "first"}), "o"
    )[0]

    # Then each holds 20 rows in source order, seeded by its id, with the id column as context
    def positions(evaluation: Evaluation) -> list[int]:
        return [item.source.row or 0 for item in ev.store.all_rows(evaluation.evaluation_id)]

    assert len(positions(first)) == 20 and positions(first) == sorted(positions(first))
    assert positions(first) != positions(second)
    assert positions(head) == list(range(20))
    assert first.source.seed is not None and head.source.seed is None
    item = ev.store.all_rows(first.evaluation_id)[0]
    assert item.context == {"customer": f"c{item.source.row}"}
    # and the uploads were deleted once consumed
    assert ev.sources.deleted == [UPLOAD] * 3


def test_rows_without_every_feature_are_left_out_and_counted_with_reasons(ev: Evaluations) -> None:
    # Given an upload where some rows miss a feature or hold text
    _, _, X = classifier()
    table: list[dict[str, Any]] = [row(X[i]) for i in range(10)]
    table[2]["f1"] = None
    table[5]["f3"] = "n/a"
    ev.sources.uploads[UPLOAD] = columns_of(table)
    # When
    body = {"version": 1, "source": {"type": "upload", "upload_key": UPLOAD}}
    evaluation = ev.service.create(MODEL, CreateEvaluationRequest.model_validate(body), "o")[0]
    # Then
    assert evaluation.rows == 8
    assert (evaluation.source.available, evaluation.source.skipped) == (8, 2)
    assert evaluation.source.skipped_reasons == [
        "row 2: column 'f1' is empty",
        "row 5: column 'f3': 'n/a' is not a number",
    ]


def test_a_source_without_the_models_features_is_refused_naming_them(ev: Evaluations) -> None:
    # Given
    ev.sources.uploads[UPLOAD] = columns_of([{"f0": 1.0, "f1": 2.0}])
    body = {"version": 1, "source": {"type": "upload", "upload_key": UPLOAD}}
    # When / Then
    with pytest.raises(UnprocessableError) as caught:
        ev.service.create(MODEL, CreateEvaluationRequest.model_validate(body), "o")
    assert caught.value.code == "missing_columns"
    assert caught.value.details["missing"] == ["f2", "f3"]


@pytest.mark.parametrize(
    "key",
    [
        f"uploads/other/{'a' * 32}/sample.csv",
        f"uploads/{MODEL}/{'a' * 32}/model.onnx",
        f"models/{MODEL}/v1/model.onnx",
        f"uploads/{MODEL}/{'a' * 32}/../x.csv",
    ],
)
def test_an_upload_key_that_is_not_this_models_csv_or_parquet_upload_is_refused(
    ev: Evaluations, key: str
) -> None:
    body = {"version": 1, "source": {"type": "upload", "upload_key": key}}
    with pytest.raises(InvalidInputError) as caught:
        ev.service.create(MODEL, CreateEvaluationRequest.model_validate(body), "o")
    assert caught.value.code == "invalid_upload_key"


def test_traffic_is_sampled_from_served_rows_only_with_where_each_came_from(ev: Evaluations) -> None:
    # Given an archive window with served, shadow and fallback rows
    _, _, X = classifier()
    at = datetime(2026, 3, 1, 10, tzinfo=UTC)
    n = 6
    ev.sources.traffic_columns = {
        "id": np.asarray([f"req{i}:0" for i in range(n)], dtype=object),
        "timestamp": np.asarray(
            [np.datetime64(at.replace(tzinfo=None) + timedelta(minutes=i), "us") for i in range(n)]
        ),
        "version": np.asarray([1, 1, 2, 1, 1, 1], dtype=np.int64),
        "shadow": np.asarray([False, True, False, False, False, False], dtype=object),
        "fallback": np.asarray([None, None, None, "model_failed", None, None], dtype=object),
        **{f"features.{name}": X[:n, j].astype(np.float64) for j, name in enumerate(FEATURES)},
    }
    body = {
        "version": 1,
        "source": {"type": "traffic", "start": "2026-03-01T00:00:00Z", "end": "2026-03-02T00:00:00Z"},
    }
    # When
    evaluation = ev.service.create(MODEL, CreateEvaluationRequest.model_validate(body), "o")[0]
    # Then the shadow and fallback rows are not in it; each row says which record it was
    rows = ev.store.all_rows(evaluation.evaluation_id)
    assert [item.source.record_id for item in rows] == ["req0:0", "req2:0", "req4:0", "req5:0"]
    assert rows[1].source.served_version == 2
    assert rows[1].source.served_at == at + timedelta(minutes=2)
    assert rows[1].inputs == row(X[2])
    assert ev.sources.windows == [(MODEL, datetime(2026, 3, 1, tzinfo=UTC), datetime(2026, 3, 2, tzinfo=UTC))]


def test_an_empty_traffic_window_is_a_clear_error(ev: Evaluations) -> None:
    body = {
        "version": 1,
        "source": {"type": "traffic", "start": "2026-03-01T00:00:00Z", "end": "2026-03-01T01:00:00Z"},
    }
    with pytest.raises(UnprocessableError) as caught:
        ev.service.create(MODEL, CreateEvaluationRequest.model_validate(body), "o")
    assert caught.value.code == "no_rows"


def test_the_reference_sample_kept_with_the_version_is_a_source(ev: Evaluations) -> None:
    # Given a reference sample kept with v1 (features, an id and the target)
    _, _, X = classifier()
    ev.sources.references[(MODEL, 1)] = columns_of(
        [{"id": f"r{i}", **row(X[i]), "target": float(i % 2)} for i in range(30)]
    )
    # When
    body = {"version": 1, "source": {"type": "reference"}, "rows": 5}
    evaluation = ev.service.create(MODEL, CreateEvaluationRequest.model_validate(body), "o")[0]
    # Then
    assert evaluation.source.key == f"models/{MODEL}/v1/reference.parquet"
    assert evaluation.rows == 5


def test_a_resent_request_id_returns_the_evaluation_it_created(ev: Evaluations) -> None:
    # Given
    _, _, X = classifier()
    body = CreateEvaluationRequest.model_validate(
        {"version": 1, "source": {"type": "rows", "rows": rows_of(X, 5)}, "request_id": "round-1-2026"}
    )
    # When
    first, created = ev.service.create(MODEL, body, "o")
    again, created_again = ev.service.create(MODEL, body, "o")
    # Then
    assert (created, created_again) == (True, False)
    assert first.evaluation_id == again.evaluation_id
    assert ev.store.creates == 1


def test_an_unknown_version_is_not_found(ev: Evaluations) -> None:
    _, _, X = classifier()
    body = {"version": 9, "source": {"type": "rows", "rows": rows_of(X, 2)}}
    with pytest.raises(NotFoundError):
        ev.service.create(MODEL, CreateEvaluationRequest.model_validate(body), "o")


def test_explanations_beyond_the_budget_are_refused_and_explain_false_is_the_way_out() -> None:
    # Given a model only kernel_shap explains (50 rows per evaluation)
    ev = Evaluations()
    X, y = make_classification(n_samples=200, n_features=4, n_informative=3, n_redundant=0, random_state=0)
    X = X.astype(np.float32)
    mlp = MLPClassifier(hidden_layer_sizes=(6,), solver="lbfgs", max_iter=400, random_state=0).fit(X, y)
    data = export(mlp, X)
    ev.add(with_explainer(version_of(MODEL, 1, data), data, X, ev.artifacts), data)
    body: dict[str, Any] = {"version": 1, "source": {"type": "rows", "rows": rows_of(X, 60)}}
    # When / Then
    with pytest.raises(PayloadTooLargeError) as caught:
        ev.service.create(MODEL, CreateEvaluationRequest.model_validate(body), "o")
    assert caught.value.code == "too_many_explanations"
    assert caught.value.details == {"rows": 60, "limit": 50, "method": "kernel_shap"}
    evaluation = ev.service.create(
        MODEL, CreateEvaluationRequest.model_validate({**body, "explain": False}), "o"
    )[0]
    assert evaluation.rows == 60 and not evaluation.explained


def test_a_version_without_an_explainer_is_evaluated_unexplained_unless_explain_was_asked() -> None:
    # Given a version without explainer
    ev = Evaluations()
    data, _, X = classifier()
    ev.add(version_of(MODEL, 1, data), data)
    body: dict[str, Any] = {"version": 1, "source": {"type": "rows", "rows": rows_of(X, 3)}}
    # When / Then: by default, rows come without explanations
    evaluation = ev.service.create(MODEL, CreateEvaluationRequest.model_validate(body), "o")[0]
    assert not evaluation.explained
    assert all(item.explanation is None for item in ev.store.all_rows(evaluation.evaluation_id))
    # and asking for them explicitly is a 409 naming why
    with pytest.raises(ConflictError) as caught:
        ev.service.create(MODEL, CreateEvaluationRequest.model_validate({**body, "explain": True}), "o")
    assert caught.value.code == "explainer_unavailable"


# ---------------------------------------------------------------------- verdicts


def test_the_same_verdict_sent_again_writes_nothing_and_a_changed_one_is_a_new_revision(
    ev: Evaluations,
) -> None:
    # Given
    evaluation = create(ev, 3)
    eid = evaluation.evaluation_id
    first = VerdictRequest(verdict="correct", comment="  looks right ")
    # When
    answer = ev.service.record_verdict(eid, 0, first, "alice")
    resent = ev.service.record_verdict(eid, 0, first, "alice")
    predicted = ev.store.all_rows(eid)[0].prediction["label"]
    changed = ev.service.record_verdict(
        eid, 0, VerdictRequest(verdict="incorrect", label=str(1 - predicted), comment="<b>no</b>"), "alice"
    )
    # Then
    assert answer.changed and not resent.changed
    assert resent.verdict == answer.verdict and answer.verdict.comment == "looks right"
    assert changed.changed and changed.verdict.revision == 2
    assert changed.verdict.label == 1 - predicted and isinstance(changed.verdict.label, int)
    assert changed.verdict.comment == "<b>no</b>"
    history = ev.service.history(eid, 0, "alice", sees_all=False).revisions
    assert [(v.revision, v.verdict) for v in history] == [(1, "correct"), (2, "incorrect")]
    stored = ev.service.get(eid)
    assert (stored.verdicts, stored.rows_judged, stored.evaluators, stored.revision) == (1, 1, ["alice"], 2)


@pytest.mark.parametrize(
    ("verdict", "code"),
    [
        ({"verdict": "correct", "label": "7"}, "unknown_label"),
        ({"verdict": "correct", "label": "OTHER"}, "invalid_verdict"),
        ({"verdict": "incorrect", "label": "PREDICTED"}, "invalid_verdict"),
        ({"verdict": "incorrect", "value": 3.0}, "invalid_verdict"),
    ],
)
def test_a_classifier_verdict_that_contradicts_itself_or_the_model_is_refused(
    ev: Evaluations, verdict: dict[str, Any], code: str
) -> None:
    # Given
    evaluation = create(ev, 1)
    predicted = ev.store.all_rows(evaluation.evaluation_id)[0].prediction["label"]
    label = verdict.get("label")
    if label == "PREDICTED":
        verdict["label"] = predicted
    elif label == "OTHER":
        verdict["label"] = 1 - predicted
    # When / Then
    with pytest.raises(UnprocessableError) as caught:
        ev.service.record_verdict(
            evaluation.evaluation_id, 0, VerdictRequest.model_validate(verdict), "alice"
        )
    assert caught.value.code == code


def test_a_regressor_takes_the_right_value_with_incorrect_only() -> None:
    # Given
    ev = Evaluations()
    data, _, X = regressor()
    ev.add(version_of(MODEL, 1, data), data)
    body = {"version": 1, "source": {"type": "rows", "rows": rows_of(X, 2)}}
    evaluation = ev.service.create(MODEL, CreateEvaluationRequest.model_validate(body), "o")[0]
    eid = evaluation.evaluation_id
    # When / Then
    answer = ev.service.record_verdict(eid, 0, VerdictRequest(verdict="incorrect", value=12.5), "alice")
    assert answer.verdict.value == 12.5
    for bad in ({"verdict": "correct", "value": 1.0}, {"verdict": "incorrect", "label": "1"}):
        with pytest.raises(UnprocessableError):
            ev.service.record_verdict(eid, 1, VerdictRequest.model_validate(bad), "alice")


def test_verdicts_on_unknown_rows_and_evaluations_are_not_found(ev: Evaluations) -> None:
    evaluation = create(ev, 2)
    with pytest.raises(NotFoundError) as caught:
        ev.service.record_verdict(evaluation.evaluation_id, 2, VerdictRequest(verdict="correct"), "a")
    assert caught.value.code == "row_not_found"
    for bad in ("f" * 20, "../../etc/passwd", "x"):
        with pytest.raises(NotFoundError):
            ev.service.get(bad)


def test_two_evaluators_at_once_are_counted_exactly(ev: Evaluations) -> None:
    # Given 20 rows, and two evaluators judging all of them at the same time, twice each (a resend)
    evaluation = create(ev, 20)
    eid = evaluation.evaluation_id
    errors: list[BaseException] = []

    def work(who: str) -> None:
        try:
            for _ in range(2):
                for index in range(20):
                    ev.service.record_verdict(eid, index, VerdictRequest(verdict="correct"), who)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(name,)) for name in ("alice", "bob", "carol")]
    # When
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    # Then
    assert errors == []
    stored = ev.service.get(eid)
    assert (stored.verdicts, stored.rows_judged, stored.revision) == (60, 20, 60)
    assert stored.evaluators == ["alice", "bob", "carol"]
    assert all(sorted(item.evaluators) == ["alice", "bob", "carol"] for item in ev.store.all_rows(eid))
    assert len(ev.store.history) == 60


def test_an_evaluator_sees_only_their_own_verdicts_until_the_evaluation_is_completed(ev: Evaluations) -> None:
    # Given two evaluators
    evaluation = create(ev, 2)
    eid = evaluation.evaluation_id
    judge(ev, evaluation, "alice", range(2))
    judge(ev, evaluation, "bob", range(1), comment="fine")
    # When / Then: while open
    assert {v.evaluator for v in ev.service.verdicts(eid, "alice", sees_all=False).verdicts} == {"alice"}
    assert {v.evaluator for v in ev.service.verdicts(eid, "owner", sees_all=True).verdicts} == {
        "alice",
        "bob",
    }
    assert {v.evaluator for v in ev.service.history(eid, 0, "bob", sees_all=False).revisions} == {"bob"}
    page = ev.service.rows(eid, "bob")
    assert [r.mine.evaluator if r.mine else None for r in page.rows] == ["bob", None]
    assert [r.verdict_count for r in page.rows] == [2, 1]
    assert [r.index for r in ev.service.rows(eid, "bob", todo=True).rows] == [1]
    # once completed, everyone sees every verdict
    ev.service.complete(eid, CompleteRequest(), "owner")
    assert {v.evaluator for v in ev.service.verdicts(eid, "alice", sees_all=False).verdicts} == {
        "alice",
        "bob",
    }


# ---------------------------------------------------------------------- completing


def test_an_evaluation_completes_only_with_every_row_judged_or_the_coverage_stated(ev: Evaluations) -> None:
    # Given 4 rows, 3 judged
    evaluation = create(ev, 4)
    eid = evaluation.evaluation_id
    with pytest.raises(ConflictError) as empty:
        ev.service.complete(eid, CompleteRequest(), "owner")
    assert empty.value.code == "no_verdicts"
    judge(ev, evaluation, "alice", range(3))
    # When / Then: complete refuses partial coverage by default, naming the rows left
    with pytest.raises(ConflictError) as caught:
        ev.service.complete(eid, CompleteRequest(), "owner")
    assert caught.value.code == "evaluation_incomplete"
    assert caught.value.details["unjudged"] == [3]
    assert caught.value.details["coverage"] == 0.75
    with pytest.raises(ConflictError):
        ev.service.complete(eid, CompleteRequest(min_coverage=0.8), "owner")
    # and accepts it when the caller states it
    done = ev.service.complete(eid, CompleteRequest(min_coverage=0.75, note="one row unreadable"), "owner")
    assert done.status == "completed" and done.results is not None
    assert (done.results.coverage, done.min_coverage, done.completed_by) == (0.75, 0.75, "owner")
    assert done.note == "one row unreadable"


def test_completion_publishes_the_results_to_the_version_with_the_evaluators_names(ev: Evaluations) -> None:
    # Given every row judged by two evaluators, one of them disagreeing on a row with a comment
    evaluation = create(ev, 3, name="round 1")
    eid = evaluation.evaluation_id
    judge(ev, evaluation, "alice", range(3))
    judge(ev, evaluation, "bob", range(2))
    predicted = ev.store.all_rows(eid)[2].prediction["label"]
    judge(
        ev,
        evaluation,
        "bob",
        [2],
        verdict="incorrect",
        label=1 - predicted,
        comment="<img src=x onerror=alert(1)>",
    )
    # When
    done = ev.service.complete(eid, CompleteRequest(), "owner")
    # Then the results are stored with the evaluation and published beside v1
    assert done.results is not None and done.results.agreement == pytest.approx(5 / 6)
    published = ev.service.published(MODEL, 1).evaluations
    assert [p.evaluation_id for p in published] == [eid]
    assert published[0].evaluators == ["alice", "bob"]
    assert published[0].artifact_sha256 == evaluation.artifact_sha256
    assert published[0].metrics["evaluation.coverage"] == 1.0
    entry = ev.store.entries[0]
    assert (entry.action, entry.to_version, entry.actor) == ("evaluation_completed", 1, "owner")
    assert ev.events.emitted[0][0] == "Model Evaluation Completed"
    # the comment is kept as text, exactly as written
    assert done.results.comments[0].comment == "<img src=x onerror=alert(1)>"
    # and the evaluation is closed: no more verdicts, completing again returns it unchanged
    with pytest.raises(ConflictError) as closed:
        judge(ev, evaluation, "carol", [0])
    assert closed.value.code == "evaluation_closed"
    assert ev.service.complete(eid, CompleteRequest(), "someone") == done
    assert len(ev.store.publications) == 1


def test_a_verdict_landing_while_completing_is_counted_in_the_published_results(ev: Evaluations) -> None:
    # Given 2 rows judged by alice, and bob's verdict arriving between the results and the commit
    evaluation = create(ev, 2)
    eid = evaluation.evaluation_id
    judge(ev, evaluation, "alice", range(2))
    ev.store.before_complete.append(lambda: judge(ev, evaluation, "bob", [0], verdict="incorrect"))
    # When
    done = ev.service.complete(eid, CompleteRequest(), "owner")
    # Then completion recomputed: bob's verdict is in the results
    assert done.results is not None and done.results.verdicts == 3
    assert ev.store.publications[0].verdicts == 3


def test_a_version_deleted_meanwhile_is_not_published_to(ev: Evaluations) -> None:
    evaluation = create(ev, 1)
    judge(ev, evaluation, "alice", [0])
    ev.store.deleted_versions.add((MODEL, 1))
    with pytest.raises(ConflictError) as caught:
        ev.service.complete(evaluation.evaluation_id, CompleteRequest(), "owner")
    assert caught.value.code == "version_gone"


def test_a_cancelled_evaluation_takes_no_verdicts_and_cannot_be_completed(ev: Evaluations) -> None:
    evaluation = create(ev, 2)
    judge(ev, evaluation, "alice", [0])
    cancelled = ev.service.cancel(evaluation.evaluation_id, CancelRequest(reason="wrong sample"), "owner")
    assert (cancelled.status, cancelled.cancelled_by, cancelled.note) == (
        "cancelled",
        "owner",
        "wrong sample",
    )
    for action in (
        lambda: judge(ev, evaluation, "alice", [1]),
        lambda: ev.service.complete(evaluation.evaluation_id, CompleteRequest(min_coverage=0.5), "owner"),
        lambda: ev.service.cancel(evaluation.evaluation_id, CancelRequest(), "owner"),
    ):
        with pytest.raises(ConflictError) as caught:
            action()
        assert caught.value.code == "evaluation_closed"
    assert ev.store.publications == []


def test_open_results_are_computed_live_and_listing_filters_by_status(ev: Evaluations) -> None:
    first = create(ev, 2)
    second = create(ev, 2)
    judge(ev, first, "alice", range(2))
    live = ev.service.results(first.evaluation_id, "owner", sees_all=True)
    assert (live.verdicts, live.coverage) == (2, 1.0)
    ev.service.complete(first.evaluation_id, CompleteRequest(), "owner")
    listed = ev.service.list_evaluations(MODEL)
    assert [e.evaluation_id for e in listed.evaluations] == [second.evaluation_id, first.evaluation_id]
    open_only = ev.service.list_evaluations(MODEL, status="open")
    assert [e.evaluation_id for e in open_only.evaluations] == [second.evaluation_id]
    with pytest.raises(InvalidInputError):
        ev.service.list_evaluations("Bad Name")
