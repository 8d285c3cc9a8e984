"""Model quality on labelled rows: classifier and regressor metrics in numpy, with intervals.

No sklearn in a Lambda: the metrics are written here and checked against sklearn in the tests.
Intervals are percentile bootstraps. For confusion-matrix metrics (accuracy, precision, recall,
F1) resampling rows is the same as drawing the confusion matrix from a multinomial, so the
bootstrap costs O(resamples x classes^2) whatever the row count; AUC uses the Hanley-McNeil
standard error; regression metrics resample error vectors in chunks.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from mlambda.schemas.monitoring import MetricEstimate, ModelQualitySection
from mlambda.services.monitoring.profiling import FloatArray

IntArray = npt.NDArray[np.int64]
LOWER_IS_BETTER = frozenset({"mae", "rmse"})
METRIC_ALIASES = {
    "acc": "accuracy",
    "roc_auc": "auc",
    "auc_roc": "auc",
    "f1_score": "f1",
    "precision_score": "precision",
    "recall_score": "recall",
    "mean_absolute_error": "mae",
    "root_mean_squared_error": "rmse",
    "r2_score": "r2",
    "r_squared": "r2",
}
METRIC_PREFIXES = ("test_", "val_", "validation_", "holdout_", "eval_")
Z_95 = 1.959963984540054


@dataclass(frozen=True)
class QualitySettings:
    """Minimum labels, bootstrap size and the tolerated drop against registered metrics."""

    min_labels: int = 100
    resamples: int = 200
    tolerance: float = 0.05
    seed: int = 7


def canonical_metric(name: str) -> str:
    """``test_roc_auc`` -> ``auc``: registered metric names vary, ours do not."""
    key = name.strip().lower()
    for prefix in METRIC_PREFIXES:
        if key.startswith(prefix):
            key = key[len(prefix) :]
    return METRIC_ALIASES.get(key, key)


def confusion_matrix(y_true: IntArray, y_pred: IntArray, classes: int) -> IntArray:
    """Counts[true, predicted] for class indices in ``range(classes)``."""
    flat = np.bincount(y_true * classes + y_pred, minlength=classes * classes)
    return flat.reshape(classes, classes).astype(np.int64)


def _safe_divide(numerator: FloatArray, denominator: FloatArray) -> FloatArray:
    result: FloatArray = np.divide(
        numerator, denominator, out=np.zeros_like(numerator, dtype=np.float64), where=denominator > 0
    )
    return result


def confusion_metrics(matrices: npt.NDArray[np.float64]) -> dict[str, FloatArray]:
    """Accuracy, precision, recall, F1 from one or many ``[..., K, K]`` confusion matrices.

    Binary: of the second class (the positive one, as sklearn's ``pos_label`` default for 0/1);
    multiclass: macro averages.
    """
    cells = np.asarray(matrices, dtype=np.float64)
    total = cells.sum(axis=(-2, -1))
    true_positive = np.diagonal(cells, axis1=-2, axis2=-1)
    predicted = cells.sum(axis=-2)
    actual = cells.sum(axis=-1)
    precision = _safe_divide(true_positive, predicted)
    recall = _safe_divide(true_positive, actual)
    f1 = _safe_divide(2 * precision * recall, precision + recall)
    accuracy = _safe_divide(true_positive.sum(axis=-1), total)
    if cells.shape[-1] == 2:
        return {
            "accuracy": accuracy,
            "precision": precision[..., 1],
            "recall": recall[..., 1],
            "f1": f1[..., 1],
        }
    return {
        "accuracy": accuracy,
        "precision": precision.mean(axis=-1),
        "recall": recall.mean(axis=-1),
        "f1": f1.mean(axis=-1),
    }


def average_ranks(values: FloatArray) -> FloatArray:
    """1-based ranks with ties sharing their average rank."""
    order = np.argsort(values, kind="mergesort")
    ordered = values[order]
    starts = np.flatnonzero(np.concatenate(([True], ordered[1:] != ordered[:-1])))
    ends = np.append(starts[1:], ordered.size)
    averages = (starts + ends + 1) / 2.0
    ranks = np.empty(values.size, dtype=np.float64)
    ranks[order] = np.repeat(averages, ends - starts)
    return ranks


def roc_auc(positive: npt.NDArray[np.bool_], scores: FloatArray) -> float:
    """Area under the ROC curve (Mann-Whitney U over n_pos x n_neg); NaN with one class only."""
    n_pos = int(positive.sum())
    n_neg = int(positive.size - n_pos)
    if n_pos == 0 or n_neg == 0:
        return math.nan
    ranks = average_ranks(scores)
    return float((ranks[positive].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def hanley_mcneil_se(auc: float, n_pos: int, n_neg: int) -> float:
    """Standard error of an AUC (Hanley & McNeil, 1982)."""
    q1 = auc / (2 - auc)
    q2 = 2 * auc * auc / (1 + auc)
    variance = (auc * (1 - auc) + (n_pos - 1) * (q1 - auc * auc) + (n_neg - 1) * (q2 - auc * auc)) / (
        n_pos * n_neg
    )
    return math.sqrt(max(variance, 0.0))


def regression_metrics(y_true: FloatArray, y_pred: FloatArray) -> dict[str, float]:
    """MAE, RMSE and R2 (NaN R2 when the truth is constant)."""
    errors = y_true - y_pred
    ss_tot = float(np.sum((y_true - y_true.mean()) ** 2))
    return {
        "mae": float(np.mean(np.abs(errors))),
        "rmse": float(math.sqrt(np.mean(errors**2))),
        "r2": 1 - float(np.sum(errors**2)) / ss_tot if ss_tot > 0 else math.nan,
    }


def _interval(samples: FloatArray) -> tuple[float | None, float | None]:
    finite = samples[np.isfinite(samples)]
    if finite.size == 0:
        return None, None
    low, high = np.percentile(finite, [2.5, 97.5])
    return float(low), float(high)


def classification_estimates(
    y_true: IntArray,
    y_pred: IntArray,
    classes: int,
    probabilities: FloatArray | None,
    settings: QualitySettings,
) -> dict[str, tuple[float, float | None, float | None]]:
    """(value, low, high) per metric; class indices in ``range(classes)``."""
    matrix = confusion_matrix(y_true, y_pred, classes)
    point = confusion_metrics(matrix.astype(np.float64))
    rng = np.random.default_rng(settings.seed)
    n = int(matrix.sum())
    draws = rng.multinomial(n, (matrix / n).ravel(), size=settings.resamples).reshape(-1, classes, classes)
    boot = confusion_metrics(draws.astype(np.float64))
    estimates: dict[str, tuple[float, float | None, float | None]] = {
        name: (float(point[name]), *_interval(boot[name])) for name in point
    }
    if probabilities is not None and probabilities.shape[1] == classes:
        aucs: list[float] = []
        ses: list[float] = []
        for index in range(1 if classes == 2 else 0, classes):
            positive = y_true == index
            auc = roc_auc(positive, probabilities[:, index])
            if math.isfinite(auc):
                aucs.append(auc)
                ses.append(hanley_mcneil_se(auc, int(positive.sum()), int(positive.size - positive.sum())))
        if aucs:
            auc_mean = float(np.mean(aucs))
            se = float(np.mean(ses))
            estimates["auc"] = (auc_mean, max(0.0, auc_mean - Z_95 * se), min(1.0, auc_mean + Z_95 * se))
    return estimates


def regression_estimates(
    y_true: FloatArray, y_pred: FloatArray, settings: QualitySettings
) -> dict[str, tuple[float, float | None, float | None]]:
    """(value, low, high) for MAE, RMSE, R2."""
    point = regression_metrics(y_true, y_pred)
    rng = np.random.default_rng(settings.seed)
    n = y_true.size
    chunk = max(1, min(settings.resamples, 2_000_000 // max(n, 1)))
    samples: dict[str, list[float]] = {name: [] for name in point}
    done = 0
    while done < settings.resamples:
        size = min(chunk, settings.resamples - done)
        index = rng.integers(0, n, size=(size, n))
        truth, predicted = y_true[index], y_pred[index]
        errors = truth - predicted
        ss_res = np.sum(errors**2, axis=1)
        ss_tot = np.sum((truth - truth.mean(axis=1, keepdims=True)) ** 2, axis=1)
        samples["mae"].extend(np.mean(np.abs(errors), axis=1).tolist())
        samples["rmse"].extend(np.sqrt(ss_res / n).tolist())
        samples["r2"].extend(_safe_divide(ss_tot - ss_res, ss_tot).tolist())
        done += size
    return {name: (point[name], *_interval(np.asarray(samples[name]))) for name in point}


def compare(
    estimates: Mapping[str, tuple[float, float | None, float | None]],
    registered: Mapping[str, float],
    tolerance: float,
) -> tuple[dict[str, MetricEstimate], list[str]]:
    """Each estimate with its registered value; degraded when worse by more than ``tolerance``
    (absolute for scores, relative for errors) and the interval excludes the registered value."""
    known = {canonical_metric(name): float(value) for name, value in registered.items()}
    results: dict[str, MetricEstimate] = {}
    degraded: list[str] = []
    for name, (value, low, high) in estimates.items():
        if not math.isfinite(value):
            continue
        higher = name not in LOWER_IS_BETTER
        reference = known.get(name)
        worse = False
        if reference is not None and math.isfinite(reference):
            if higher:
                worse = value < reference - tolerance and (high is None or high < reference)
            else:
                worse = value > reference * (1 + tolerance) and (low is None or low > reference)
        if worse:
            degraded.append(name)
        results[name] = MetricEstimate(
            value=round(value, 6),
            low=None if low is None else round(low, 6),
            high=None if high is None else round(high, 6),
            registered=reference,
            higher_is_better=higher,
            degraded=worse,
        )
    return results, degraded


def quality_section(
    task: str,
    labelled: int,
    estimates: Mapping[str, tuple[float, float | None, float | None]],
    registered: Mapping[str, float],
    settings: QualitySettings,
) -> ModelQualitySection:
    """The model-quality section of a report from computed estimates."""
    metrics, degraded = compare(estimates, registered, settings.tolerance)
    if degraded:
        status, reason = "drift", f"below the registered metrics: {', '.join(degraded)}"
    else:
        status, reason = "ok", f"{labelled} labelled rows, no metric degraded"
    return ModelQualitySection(
        status=status, reason=reason, task=task, labelled=labelled, metrics=metrics, degraded=degraded
    )


def class_indices(values: Sequence[str], classes: Sequence[str]) -> IntArray:
    """Positions of canonical label strings in ``classes`` (-1 for a label the model does not know)."""
    lookup = {name: index for index, name in enumerate(classes)}
    return np.asarray([lookup.get(v, -1) for v in values], dtype=np.int64)
