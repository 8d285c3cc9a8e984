"""Evaluation results: Krippendorff's alpha against its published example, per-class figures,
regression errors, majorities and evaluators' agreement, by hand-computed cases."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from mlambda.schemas.evaluations import VerdictRecord
from mlambda.services.evaluations.results import compute_results, krippendorff_alpha

T0 = datetime(2026, 3, 1, tzinfo=UTC)


def verdict(row: int, who: str, said: str, minutes: int = 0, **fields: Any) -> VerdictRecord:
    return VerdictRecord(
        evaluation_id="e" * 20,
        row=row,
        evaluator=who,
        verdict=said,  # type: ignore[arg-type]
        revision=1,
        at=T0 + timedelta(minutes=minutes),
        **fields,
    )


def test_krippendorff_alpha_matches_the_published_nominal_example() -> None:
    # Given Krippendorff (2011)'s 4 observers x 12 units with missing values (nominal alpha 0.743)
    units = [
        [1, 1, 1],
        [2, 2, 3, 2],
        [3, 3, 3, 3],
        [3, 3, 3, 3],
        [2, 2, 2, 2],
        [1, 2, 3, 4],
        [4, 4, 4, 4],
        [1, 1, 2, 1],
        [2, 2, 2, 2],
        [5, 5, 5],
        [1, 1],
        [3],
    ]
    # When / Then
    assert krippendorff_alpha(units) == pytest.approx(0.743, abs=5e-4)


def test_krippendorff_alpha_is_one_for_agreement_negative_for_systematic_disagreement_none_when_undefined() -> (
    None
):
    assert krippendorff_alpha([["a", "a"], ["b", "b"]]) == 1.0
    assert krippendorff_alpha([["a", "b"], ["a", "b"]]) == pytest.approx(-0.5)
    assert krippendorff_alpha([["a", "a"], ["a", "a"]]) is None  # one category: no expected disagreement
    assert krippendorff_alpha([["a"], ["b"]]) is None  # no row with two values


def test_classifier_figures_per_class_from_verdicts_and_the_right_labels_they_name() -> None:
    # Given rows predicted 0, 0, 1, 1 and one evaluator's verdicts:
    # row 0 correct; row 1 incorrect, really 1; row 2 correct; row 3 incorrect, no label
    predictions = {i: {"label": label} for i, label in enumerate([0, 0, 1, 1])}
    verdicts = [
        verdict(0, "alice", "correct"),
        verdict(1, "alice", "incorrect", label=1),
        verdict(2, "alice", "correct"),
        verdict(3, "alice", "incorrect"),
    ]
    # When
    results = compute_results(
        task="classification", class_labels=[0, 1], predictions=predictions, verdicts=verdicts
    )
    # Then
    assert (results.rows, results.rows_judged, results.coverage) == (4, 4, 1.0)
    assert (results.verdicts, results.correct, results.agreement) == (4, 2, 0.5)
    assert (results.labelled_verdicts, results.accuracy) == (3, pytest.approx(2 / 3))
    by_class = {figures.label: figures for figures in results.per_class}
    assert (by_class["0"].predicted, by_class["0"].confirmed, by_class["0"].precision) == (2, 1, 0.5)
    assert (by_class["0"].actual, by_class["0"].recall) == (1, 1.0)
    assert by_class["0"].f1 == pytest.approx(2 / 3)
    assert (by_class["1"].predicted, by_class["1"].precision, by_class["1"].actual, by_class["1"].recall) == (
        2,
        0.5,
        2,
        0.5,
    )
    assert results.confusion == {"0": {"0": 1}, "1": {"0": 1, "1": 1}}
    assert results.regression is None


def test_string_labels_outside_the_model_classes_still_get_a_row() -> None:
    predictions = {0: {"label": "cat"}}
    results = compute_results(
        task="classification",
        class_labels=["cat", "dog"],
        predictions=predictions,
        verdicts=[verdict(0, "a", "incorrect", label="dog")],
    )
    assert [f.label for f in results.per_class] == ["cat", "dog"]
    assert results.per_class[0].recall is None and results.per_class[1].recall == 0.0


def test_regression_errors_use_the_values_evaluators_gave() -> None:
    # Given predictions 10 and 20; row 0 correct, row 1 really 25, row 1 also "incorrect" with no value
    predictions = {0: {"value": 10.0}, 1: {"value": 20.0}}
    verdicts = [
        verdict(0, "alice", "correct"),
        verdict(1, "alice", "incorrect", value=25.0),
        verdict(1, "bob", "incorrect"),
    ]
    # When
    results = compute_results(
        task="regression", class_labels=None, predictions=predictions, verdicts=verdicts
    )
    # Then
    assert results.regression is not None
    assert results.regression.judged == 2
    assert results.regression.mae == 2.5
    assert results.regression.rmse == pytest.approx(math.sqrt(12.5))
    assert results.regression.bias == -2.5
    assert results.per_class == [] and results.accuracy is None


def test_majorities_pairwise_agreement_and_evaluator_figures() -> None:
    # Given three rows: all agree correct; split 1-1; two say incorrect, one correct
    predictions = {i: {"label": 1} for i in range(4)}
    verdicts = [
        verdict(0, "a", "correct"),
        verdict(0, "b", "correct"),
        verdict(1, "a", "correct"),
        verdict(1, "b", "incorrect", label=0),
        verdict(2, "a", "incorrect", label=0),
        verdict(2, "b", "incorrect", label=0),
        verdict(2, "c", "correct", minutes=5, comment="fine by me"),
    ]
    # When
    results = compute_results(
        task="classification", class_labels=[0, 1], predictions=predictions, verdicts=verdicts
    )
    # Then
    assert (results.rows_correct, results.rows_incorrect, results.rows_split) == (1, 1, 1)
    assert results.coverage == 0.75
    shared = results.inter_evaluator
    assert (shared.rows, shared.pairs) == (3, 5)
    assert shared.pairwise_agreement == pytest.approx(2 / 5)
    assert shared.krippendorff_alpha is not None and shared.label_alpha is not None
    assert [(e.name, e.verdicts, e.correct) for e in results.evaluators] == [
        ("a", 3, 2),
        ("b", 3, 1),
        ("c", 1, 1),
    ]
    assert [c.comment for c in results.comments] == ["fine by me"] and results.comments_total == 1


def test_no_verdicts_gives_empty_figures_not_errors() -> None:
    results = compute_results(
        task="classification", class_labels=[0, 1], predictions={0: {"label": 0}}, verdicts=[]
    )
    assert (results.rows, results.rows_judged, results.coverage, results.agreement) == (1, 0, 0.0, None)
    assert results.inter_evaluator.krippendorff_alpha is None
