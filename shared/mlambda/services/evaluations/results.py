"""What the verdicts of an evaluation say: coverage, agreement with the model, per-class figures,
and how much evaluators agree with each other.

Pure functions over rows (their predictions) and the evaluators' current verdicts, so the figures
shown while an evaluation is open and the ones published when it completes are computed alike.

Each verdict gives a *right answer* when it can: ``correct`` means the prediction itself,
``incorrect`` with a label (value) means that label (value), ``incorrect`` alone means "not the
prediction", which counts against the model but names no class. Classifier figures per class:
``precision`` is the share of verdicts on rows predicted as the class that confirm it; ``recall``
(the model's accuracy on the class, by the evaluators' labels) the share of verdicts whose right
label is the class on rows the model predicted as it.

Agreement between evaluators is Krippendorff's alpha (nominal), which handles rows judged by any
number of evaluators (Krippendorff, *Computing Krippendorff's Alpha-Reliability*, 2011): 1 is
perfect agreement, 0 what chance gives; it is undefined (None) when no row has two verdicts or
only one category was ever used.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Hashable, Iterable, Mapping, Sequence
from itertools import combinations
from typing import Any

from mlambda.schemas.evaluations import (
    MAX_COMMENTS_SHOWN,
    ClassFigures,
    Comment,
    EvaluationResults,
    EvaluatorFigures,
    InterEvaluator,
    RegressionFigures,
    VerdictRecord,
)


def _share(part: int, whole: int) -> float | None:
    return part / whole if whole else None


def krippendorff_alpha(units: Iterable[Sequence[Hashable]]) -> float | None:
    """Nominal Krippendorff's alpha over units (rows), each the values its evaluators gave.

    Units with fewer than two values carry no information about agreement and are skipped.
    None when undefined: no pairable values, or a single category (no expected disagreement).
    """
    coincidences: dict[tuple[Hashable, Hashable], float] = defaultdict(float)
    for values in units:
        m = len(values)
        if m < 2:
            continue
        for i, j in ((i, j) for i in range(m) for j in range(m) if i != j):
            coincidences[(values[i], values[j])] += 1.0 / (m - 1)
    totals: dict[Hashable, float] = defaultdict(float)
    for (c, _k), count in coincidences.items():
        totals[c] += count
    n = sum(totals.values())
    if n <= 1:
        return None
    observed = sum(count for (c, k), count in coincidences.items() if c != k)
    expected = sum(totals[c] * totals[k] for c in totals for k in totals if c != k) / (n - 1)
    if expected == 0:
        return None
    return 1.0 - observed / expected


def _right_label(verdict: VerdictRecord, predicted: str) -> str | None:
    if verdict.verdict == "correct":
        return predicted
    return None if verdict.label is None else str(verdict.label)


def _right_value(verdict: VerdictRecord, predicted: float) -> float | None:
    if verdict.verdict == "correct":
        return predicted
    return verdict.value


def _per_class(
    class_labels: Sequence[Any] | None,
    pairs: Sequence[tuple[str, VerdictRecord]],
) -> tuple[list[ClassFigures], dict[str, dict[str, int]], int, int]:
    """Per-class figures, the confusion counts, verdicts with a known right label, and those equal to the prediction."""
    predicted_count: Counter[str] = Counter()
    confirmed: Counter[str] = Counter()
    actual: Counter[str] = Counter()
    hits: Counter[str] = Counter()
    confusion: dict[str, dict[str, int]] = defaultdict(dict)
    labelled = 0
    for predicted, verdict in pairs:
        predicted_count[predicted] += 1
        if verdict.verdict == "correct":
            confirmed[predicted] += 1
        right = _right_label(verdict, predicted)
        if right is None:
            continue
        labelled += 1
        actual[right] += 1
        if right == predicted:
            hits[right] += 1
        confusion[right][predicted] = confusion[right].get(predicted, 0) + 1
    known = [str(label) for label in class_labels or ()]
    seen = [label for label in sorted(set(predicted_count) | set(actual)) if label not in known]
    figures = []
    for label in [*known, *seen]:
        if not predicted_count[label] and not actual[label]:
            continue
        precision = _share(confirmed[label], predicted_count[label])
        recall = _share(hits[label], actual[label])
        f1 = (
            2 * precision * recall / (precision + recall)
            if precision is not None and recall is not None and precision + recall > 0
            else None
        )
        figures.append(
            ClassFigures(
                label=label,
                predicted=predicted_count[label],
                confirmed=confirmed[label],
                precision=precision,
                actual=actual[label],
                recall=recall,
                f1=f1,
            )
        )
    return figures, {k: dict(v) for k, v in confusion.items()}, labelled, sum(hits.values())


def _regression(pairs: Sequence[tuple[float, VerdictRecord]]) -> RegressionFigures:
    errors = [
        predicted - right
        for predicted, verdict in pairs
        if (right := _right_value(verdict, predicted)) is not None
    ]
    if not errors:
        return RegressionFigures(judged=0)
    return RegressionFigures(
        judged=len(errors),
        mae=sum(abs(e) for e in errors) / len(errors),
        rmse=math.sqrt(sum(e * e for e in errors) / len(errors)),
        bias=sum(errors) / len(errors),
    )


def _inter_evaluator(
    by_row: Mapping[int, list[VerdictRecord]], predicted: Mapping[int, Any], classification: bool
) -> InterEvaluator:
    shared = {row: verdicts for row, verdicts in by_row.items() if len(verdicts) >= 2}
    pairs = agreeing = 0
    for verdicts in shared.values():
        for a, b in combinations(verdicts, 2):
            pairs += 1
            agreeing += a.verdict == b.verdict
    label_alpha = None
    if classification:
        labels = []
        for row, verdicts in shared.items():
            rights = [_right_label(v, str(predicted[row])) for v in verdicts]
            labels.append([right for right in rights if right is not None])
        label_alpha = krippendorff_alpha(labels)
    return InterEvaluator(
        rows=len(shared),
        pairs=pairs,
        pairwise_agreement=_share(agreeing, pairs),
        krippendorff_alpha=krippendorff_alpha(
            [[v.verdict for v in verdicts] for verdicts in shared.values()]
        ),
        label_alpha=label_alpha,
    )


def compute_results(
    *,
    task: str,
    class_labels: Sequence[Any] | None,
    predictions: Mapping[int, Mapping[str, Any]],
    verdicts: Sequence[VerdictRecord],
) -> EvaluationResults:
    """The figures of ``verdicts`` on rows whose predictions are ``predictions`` (row index -> prediction)."""
    classification = task == "classification"
    by_row: dict[int, list[VerdictRecord]] = defaultdict(list)
    for verdict in sorted(verdicts, key=lambda v: (v.row, v.evaluator)):
        by_row[verdict.row].append(verdict)
    correct = sum(v.verdict == "correct" for v in verdicts)
    rows_correct = rows_incorrect = rows_split = 0
    for row_verdicts in by_row.values():
        yes = sum(v.verdict == "correct" for v in row_verdicts)
        no = len(row_verdicts) - yes
        rows_correct += yes > no
        rows_incorrect += no > yes
        rows_split += yes == no
    per_evaluator: dict[str, list[VerdictRecord]] = defaultdict(list)
    for verdict in verdicts:
        per_evaluator[verdict.evaluator].append(verdict)
    evaluators = [
        EvaluatorFigures(
            name=name,
            verdicts=len(theirs),
            correct=(yes := sum(v.verdict == "correct" for v in theirs)),
            agreement=_share(yes, len(theirs)),
        )
        for name, theirs in sorted(per_evaluator.items())
    ]
    with_comments = sorted((v for v in verdicts if v.comment), key=lambda v: (v.at, v.row), reverse=True)
    results = EvaluationResults(
        rows=len(predictions),
        rows_judged=len(by_row),
        coverage=len(by_row) / len(predictions) if predictions else 0.0,
        verdicts=len(verdicts),
        correct=correct,
        agreement=_share(correct, len(verdicts)),
        rows_correct=rows_correct,
        rows_incorrect=rows_incorrect,
        rows_split=rows_split,
        inter_evaluator=_inter_evaluator(
            by_row, {row: p.get("label") for row, p in predictions.items()}, classification
        ),
        evaluators=evaluators,
        comments=[
            Comment(row=v.row, evaluator=v.evaluator, verdict=v.verdict, comment=v.comment or "", at=v.at)
            for v in with_comments[:MAX_COMMENTS_SHOWN]
        ],
        comments_total=len(with_comments),
    )
    if classification:
        pairs = [(str(predictions[v.row]["label"]), v) for v in verdicts]
        per_class, confusion, labelled, hits = _per_class(class_labels, pairs)
        results.per_class = per_class
        results.confusion = confusion
        results.labelled_verdicts = labelled
        results.accuracy = _share(hits, labelled)
    else:
        results.regression = _regression([(float(predictions[v.row]["value"]), v) for v in verdicts])
    return results
