"""Model quality on labelled rows: classifier and regressor metrics in numpy, with honest intervals.

No sklearn in a Lambda: the metrics are written here and checked against sklearn in the tests;
the intervals' coverage is checked in simulation (``make bench-monitor-calibration``).

- Confusion-matrix metrics (accuracy, precision, recall, F1): resampling rows is drawing the
  confusion matrix from a multinomial, so the bootstrap costs O(resamples x classes^2) whatever
  the row count; the interval is BCa (bias-corrected and accelerated), the acceleration from the
  jackknife, which for a confusion matrix is one value per cell weighted by its count.
- AUC (binary, and one-vs-rest macro): DeLong's variance, from each row's placement values (the
  influence function, which also gives the macro average's variance across classes), with the
  interval on the logit scale so it stays in (0, 1) and follows the skew near 1.
- MAE and RMSE: studentized (bootstrap-t) intervals, RMSE's on the log scale of the mean
  squared error: the bootstrap of a mean of heavy-tailed values is skewed and percentile
  intervals under-cover. Up to ``BOOTSTRAP_ROWS`` rows; above that the same pivots are normal.
  Either way the pivots are widened by Student's quantile at the standard error's own degrees
  of freedom (``heavy_tail_widening``): with heavy-tailed errors the bootstrap-t alone covers 90%.

Every bootstrap draws at least 2,000 resamples from a generator the caller seeds per run.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from mlambda.schemas.monitoring import ClassMetrics, Curve, MetricEstimate, ProbabilityHistogram
from mlambda.services.monitoring import statistics as st

FloatArray = npt.NDArray[np.float64]
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
CONFIDENCE = 0.95
MIN_RESAMPLES = 2000
BOOTSTRAP_ROWS = 5_000
BOOTSTRAP_CELLS = 4_000_000  # resamples x rows drawn at once
CURVE_POINTS = 200
HISTOGRAM_BINS = 20
MAX_CURVE_CLASSES = 6

Estimates = dict[str, MetricEstimate]


@dataclass(frozen=True)
class QualitySettings:
    """Minimum labels, bootstrap size and the drop that counts as material."""

    min_labels: int = 100
    resamples: int = MIN_RESAMPLES
    tolerance: float = 0.02

    def __post_init__(self) -> None:
        if self.resamples < MIN_RESAMPLES:
            raise ValueError(f"at least {MIN_RESAMPLES} resamples, got {self.resamples}")


def canonical_metric(name: str) -> str:
    """``test_roc_auc`` -> ``auc``: registered metric names vary, ours do not."""
    key = name.strip().lower()
    for prefix in METRIC_PREFIXES:
        if key.startswith(prefix):
            key = key[len(prefix) :]
    return METRIC_ALIASES.get(key, key)


# ------------------------------------------------------------------ point metrics


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


def per_class_metrics(matrix: IntArray, classes: Sequence[str]) -> dict[str, ClassMetrics]:
    """Precision, recall, F1 and support of every class."""
    cells = matrix.astype(np.float64)
    true_positive = np.diagonal(cells)
    precision = _safe_divide(true_positive, cells.sum(axis=0))
    recall = _safe_divide(true_positive, cells.sum(axis=1))
    f1 = _safe_divide(2 * precision * recall, precision + recall)
    return {
        name: ClassMetrics(
            precision=round(float(precision[i]), 6),
            recall=round(float(recall[i]), 6),
            f1=round(float(f1[i]), 6),
            support=int(matrix[i].sum()),
        )
        for i, name in enumerate(classes)
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


def regression_metrics(y_true: FloatArray, y_pred: FloatArray) -> dict[str, float]:
    """MAE, RMSE and R2 (NaN R2 when the truth is constant)."""
    errors = y_true - y_pred
    ss_tot = float(np.sum((y_true - y_true.mean()) ** 2))
    return {
        "mae": float(np.mean(np.abs(errors))),
        "rmse": float(math.sqrt(np.mean(errors**2))),
        "r2": 1 - float(np.sum(errors**2)) / ss_tot if ss_tot > 0 else math.nan,
    }


# ------------------------------------------------------------------ AUC with DeLong's variance


def auc_influence(positive: npt.NDArray[np.bool_], scores: FloatArray) -> tuple[float, FloatArray]:
    """(AUC, each row's contribution to its error) by DeLong's placement values.

    A positive's placement is the share of negatives it outranks (ties half), a negative's the
    share of positives that outrank it; AUC - its mean over positives is estimated by
    sum(influence), so var(AUC) ~ sum(influence^2) (with n/(n-1) per class, DeLong's S10/n1 + S01/n0).
    """
    n_pos = int(positive.sum())
    n_neg = positive.size - n_pos
    influence = np.zeros(positive.size)
    if n_pos == 0 or n_neg == 0:
        return math.nan, influence
    ranks = average_ranks(scores)
    ranks_pos = average_ranks(scores[positive])
    ranks_neg = average_ranks(scores[~positive])
    placement_pos = (ranks[positive] - ranks_pos) / n_neg  # negatives below each positive
    placement_neg = 1.0 - (ranks[~positive] - ranks_neg) / n_pos  # positives above each negative
    auc = float(placement_pos.mean())
    pos_scale = 1.0 / math.sqrt(n_pos * max(n_pos - 1, 1))
    neg_scale = 1.0 / math.sqrt(n_neg * max(n_neg - 1, 1))
    influence[positive] = (placement_pos - auc) * pos_scale
    influence[~positive] = (placement_neg - auc) * neg_scale
    return auc, influence


def auc_estimate(y_true: IntArray, probabilities: FloatArray, classes: int) -> tuple[float, float]:
    """(AUC, its standard error): binary on the positive column, else the one-vs-rest macro mean.

    The macro mean's variance sums each row's averaged influence across classes, so the classes'
    correlation (the same rows in every one-vs-rest split) is accounted for.
    """
    wanted = [1] if classes == 2 else list(range(classes))
    values: list[float] = []
    total = np.zeros(y_true.size)
    for index in wanted:
        auc, influence = auc_influence(y_true == index, probabilities[:, index])
        if not math.isfinite(auc):
            continue
        values.append(auc)
        total += influence
    if not values:
        return math.nan, math.nan
    average = total / len(values)
    return float(np.mean(values)), float(math.sqrt(np.sum(average**2)))


def logit_interval(value: float, se: float, confidence: float = CONFIDENCE) -> tuple[float, float]:
    """A normal interval for a quantity in (0, 1), built on the logit scale."""
    if not (math.isfinite(value) and math.isfinite(se)):
        return math.nan, math.nan
    z = st.normal_ppf(0.5 + confidence / 2)
    clipped = min(max(value, 1e-6), 1 - 1e-6)
    centre = math.log(clipped / (1 - clipped))
    spread = z * max(se, 1e-12) / (clipped * (1 - clipped))
    return 1 / (1 + math.exp(-(centre - spread))), 1 / (1 + math.exp(-(centre + spread)))


# ------------------------------------------------------------------ bootstrap intervals


def bca_interval(
    boot: FloatArray,
    point: float,
    jackknife: FloatArray,
    weights: FloatArray | None = None,
    confidence: float = CONFIDENCE,
) -> tuple[float, float]:
    """Efron's BCa interval from bootstrap replicates and (weighted) jackknife values."""
    finite = boot[np.isfinite(boot)]
    if finite.size == 0 or not math.isfinite(point):
        return math.nan, math.nan
    share = float(np.count_nonzero(finite < point) + 0.5 * np.count_nonzero(finite == point)) / finite.size
    below = min(max(share, 1 / (finite.size + 1)), finite.size / (finite.size + 1))
    z0 = st.normal_ppf(below)
    w = np.ones(jackknife.size) if weights is None else weights
    mean = float(np.sum(w * jackknife) / w.sum())
    spread = mean - jackknife
    denominator = 6 * float(np.sum(w * spread**2)) ** 1.5
    acceleration = float(np.sum(w * spread**3)) / denominator if denominator > 0 else 0.0
    bounds = []
    for tail in ((1 - confidence) / 2, (1 + confidence) / 2):
        z = st.normal_ppf(tail)
        adjusted = st.normal_cdf(z0 + (z0 + z) / (1 - acceleration * (z0 + z)))
        bounds.append(float(np.quantile(finite, min(max(adjusted, 0.0), 1.0))))
    return bounds[0], bounds[1]


def _confusion_jackknife(matrix: IntArray) -> tuple[dict[str, FloatArray], FloatArray]:
    """Each metric with one row of each non-empty cell left out, and how many rows each stands for."""
    k = matrix.shape[0]
    cells = np.flatnonzero(matrix.ravel() > 0)
    reduced = np.repeat(matrix[None].astype(np.float64), cells.size, axis=0).reshape(cells.size, k * k)
    reduced[np.arange(cells.size), cells] -= 1
    values = confusion_metrics(reduced.reshape(cells.size, k, k))
    return values, matrix.ravel()[cells].astype(np.float64)


def classification_estimates(  # noqa: PLR0917 - the data, then how to resample
    y_true: IntArray,
    y_pred: IntArray,
    classes: int,
    probabilities: FloatArray | None,
    settings: QualitySettings,
    rng: np.random.Generator,
) -> Estimates:
    """Every classifier metric with its 95% interval and standard error; class indices in ``range(classes)``."""
    matrix = confusion_matrix(y_true, y_pred, classes)
    n = int(matrix.sum())
    point = confusion_metrics(matrix.astype(np.float64))
    draws = rng.multinomial(n, (matrix / n).ravel(), size=settings.resamples).reshape(-1, classes, classes)
    boot = confusion_metrics(draws.astype(np.float64))
    jackknife, weights = _confusion_jackknife(matrix)
    estimates: Estimates = {}
    for name, value in point.items():
        low, high = bca_interval(boot[name], float(value), jackknife[name], weights)
        estimates[name] = _estimate(float(value), low, high, float(np.std(boot[name], ddof=1)), "bca", name)
    if probabilities is not None and probabilities.shape[1] == classes:
        auc, se = auc_estimate(y_true, probabilities, classes)
        if math.isfinite(auc):
            low, high = logit_interval(auc, se)
            estimates["auc"] = _estimate(auc, low, high, se, "delong", "auc")
    return estimates


def _resample_sums(columns: FloatArray, resamples: int, rng: np.random.Generator) -> FloatArray:
    """Column sums of ``resamples`` bootstrap resamples of the rows, drawn in bounded chunks."""
    n = columns.shape[0]
    chunk = max(1, min(resamples, BOOTSTRAP_CELLS // max(n, 1)))
    sums = np.empty((resamples, columns.shape[1]))
    done = 0
    while done < resamples:
        size = min(chunk, resamples - done)
        index = rng.integers(0, n, size=(size, n)) + (np.arange(size) * n)[:, None]
        weights = np.bincount(index.ravel(), minlength=size * n).reshape(size, n)  # times each row is drawn
        sums[done : done + size] = weights.astype(np.float64) @ columns
        done += size
    return sums


def heavy_tail_widening(values: FloatArray, confidence: float = CONFIDENCE) -> float:
    """How much wider a mean's interval must be because its standard error is itself uncertain.

    The standard error of a mean of ``values`` is known to about Satterthwaite's 2n / (kurtosis - 1)
    degrees of freedom; the ratio of Student's quantile at that many to the normal one widens the
    interval. Squared errors with heavy tails (t5, lognormal) have kurtosis in the tens to hundreds
    at n = 300: 8-15 degrees of freedom, where the bootstrap-t alone covered 90-92% at a nominal 95%
    (its resamples never hold the tail the sample missed); with the widening, 93-94%. Normal
    errors (kurtosis of their squares ~15) hardly move.
    """
    n = values.size
    if n < 3:
        return 1.0
    centred = values - values.mean()
    second = float(np.mean(centred**2))
    if second <= 0:
        return 1.0
    kurtosis = float(np.mean(centred**4)) / second**2
    df = min(max(2 * n / max(kurtosis - 1, 1e-12), 1.0), n - 1.0)
    tail = 0.5 + confidence / 2
    return st.student_t_ppf(tail, df) / st.normal_ppf(tail)


def _studentized(  # noqa: PLR0917 - the estimate, its replicates, then the widening
    mean: float,
    se: float,
    boot_means: FloatArray,
    boot_ses: FloatArray,
    widening: float = 1.0,
    confidence: float = CONFIDENCE,
) -> tuple[float, float]:
    """Bootstrap-t interval of a mean from replicate means and standard errors (pivots times ``widening``)."""
    usable = boot_ses > 0
    t = (boot_means[usable] - mean) / boot_ses[usable]
    if t.size == 0 or se <= 0:
        return mean, mean
    upper_t, lower_t = np.quantile(t, [(1 + confidence) / 2, (1 - confidence) / 2]) * widening
    return mean - float(upper_t) * se, mean - float(lower_t) * se


def regression_estimates(
    y_true: FloatArray, y_pred: FloatArray, settings: QualitySettings, rng: np.random.Generator
) -> Estimates:
    """MAE, RMSE (bootstrap-t) and R2 (BCa) with 95% intervals and standard errors."""
    point = regression_metrics(y_true, y_pred)
    errors = y_true - y_pred
    absolute, squared = np.abs(errors), errors**2
    n = errors.size
    z = st.normal_ppf(0.5 + CONFIDENCE / 2)
    mae, mse = float(absolute.mean()), float(squared.mean())
    mae_se = float(absolute.std(ddof=1)) / math.sqrt(n) if n > 1 else 0.0
    mse_se = float(squared.std(ddof=1)) / math.sqrt(n) if n > 1 else 0.0
    log_mse_se = mse_se / mse if mse > 0 else 0.0
    estimates: Estimates = {}
    mae_widening, mse_widening = heavy_tail_widening(absolute), heavy_tail_widening(squared)
    if n <= BOOTSTRAP_ROWS:
        centred = y_true - y_true.mean()
        columns = np.column_stack((absolute, absolute**2, squared, squared**2, y_true, y_true**2))
        sums = _resample_sums(columns, settings.resamples, rng) / n
        boot_mae = sums[:, 0]
        boot_mae_se = np.sqrt(np.maximum(sums[:, 1] - boot_mae**2, 0.0) / max(n - 1, 1))
        boot_mse = sums[:, 2]
        boot_mse_se = np.sqrt(np.maximum(sums[:, 3] - boot_mse**2, 0.0) / max(n - 1, 1))
        positive = boot_mse > 0
        log_low, log_high = _studentized(
            math.log(mse) if mse > 0 else 0.0,
            log_mse_se,
            np.log(boot_mse[positive]),
            boot_mse_se[positive] / boot_mse[positive],
            mse_widening,
        )
        mae_low, mae_high = _studentized(mae, mae_se, boot_mae, boot_mae_se, mae_widening)
        ss_tot = np.maximum(sums[:, 5] - sums[:, 4] ** 2, 0.0) * n
        boot_r2 = 1 - _safe_divide(sums[:, 2] * n, ss_tot)
        r2_jack = _r2_jackknife(errors, centred) if n <= 5000 else None
        r2_low, r2_high = (
            bca_interval(boot_r2, point["r2"], r2_jack)
            if r2_jack is not None
            else tuple(np.quantile(boot_r2[np.isfinite(boot_r2)], [0.025, 0.975]).tolist())
        )
        method, r2_method = "studentized", "bca" if r2_jack is not None else "percentile"
        r2_se = float(np.std(boot_r2, ddof=1))
    else:
        mae_low, mae_high = mae - z * mae_widening * mae_se, mae + z * mae_widening * mae_se
        centre = math.log(mse) if mse > 0 else 0.0
        spread = z * mse_widening * log_mse_se
        log_low, log_high = centre - spread, centre + spread
        r2_se = _r2_se(errors, y_true)
        r2_low, r2_high = point["r2"] - z * r2_se, point["r2"] + z * r2_se
        method, r2_method = "normal", "normal"
    rmse = point["rmse"]
    estimates["mae"] = _estimate(mae, mae_low, mae_high, mae_se, method, "mae")
    estimates["rmse"] = _estimate(
        rmse,
        math.sqrt(math.exp(log_low)),
        math.sqrt(math.exp(log_high)),
        rmse * log_mse_se / 2,
        method,
        "rmse",
    )
    if math.isfinite(point["r2"]):
        estimates["r2"] = _estimate(point["r2"], float(r2_low), float(r2_high), r2_se, r2_method, "r2")
    return estimates


def _r2_jackknife(errors: FloatArray, centred: FloatArray) -> FloatArray:
    """R2 with each row left out, in closed form (sums minus one term)."""
    n = errors.size
    ss_res = float(np.sum(errors**2)) - errors**2
    total = centred + 0.0
    # leaving row i out moves the mean by -centred_i / (n - 1)
    ss_tot = float(np.sum(total**2)) - total**2 - total**2 / (n - 1)
    result: FloatArray = 1 - _safe_divide(ss_res, ss_tot)
    return result


def _r2_se(errors: FloatArray, y_true: FloatArray) -> float:
    """Delta-method standard error of R2 = 1 - mean(e^2) / var(y)."""
    centred = (y_true - y_true.mean()) ** 2
    var_y, mse = float(centred.mean()), float(np.mean(errors**2))
    if var_y <= 0:
        return math.nan
    influence = (errors**2 - mse) / var_y - mse * (centred - var_y) / var_y**2
    return float(influence.std(ddof=1) / math.sqrt(errors.size))


def _estimate(  # noqa: PLR0917 - an estimate's six fields, in their usual order
    value: float, low: float, high: float, se: float, method: str, name: str
) -> MetricEstimate:
    def rounded(x: float) -> float | None:
        return round(x, 6) if math.isfinite(x) else None

    return MetricEstimate(
        value=round(value, 6),
        low=rounded(low),
        high=rounded(high),
        se=rounded(se),
        method=method,
        higher_is_better=name not in LOWER_IS_BETTER,
    )


# ------------------------------------------------------------------ comparison with the baseline


def worse_pvalue(window: MetricEstimate, reference: MetricEstimate | float) -> float:
    """One-sided p-value that the window's metric is worse than the baseline by chance.

    Against a reference estimate (a sample too): both standard errors; against a registered
    number (no error known): the window's alone.
    """
    if isinstance(reference, MetricEstimate):
        base, base_se = reference.value, reference.se or 0.0
    else:
        base, base_se = float(reference), 0.0
    se = math.sqrt((window.se or 0.0) ** 2 + base_se**2)
    if not (math.isfinite(base) and se > 0):
        return math.nan
    gap = (base - window.value) if window.higher_is_better else (window.value - base)
    return st.normal_sf(gap / se)


def materially_worse(metric: MetricEstimate, baseline: float | None, tolerance: float) -> bool:
    """Worse than ``baseline`` by more than ``tolerance`` (absolute for scores, relative for errors)."""
    if baseline is None or not math.isfinite(baseline):
        return False
    if metric.higher_is_better:
        return metric.value < baseline - tolerance
    return metric.value > baseline * (1 + tolerance)


def with_baseline(
    estimates: Mapping[str, MetricEstimate],
    reference: Mapping[str, MetricEstimate] | None,
    registered: Mapping[str, float],
) -> tuple[dict[str, MetricEstimate], str]:
    """Each estimate with its baseline value and one-sided p-value; which baseline was used.

    The reference's own metrics (held-out rows with their target) when the profile has them,
    else the metrics registered with the version.
    """
    known = {canonical_metric(name): float(value) for name, value in registered.items()}
    source = "reference" if reference else ("registered" if known else "")
    results: dict[str, MetricEstimate] = {}
    for name, estimate in estimates.items():
        update: dict[str, object] = {"registered": known.get(name)}
        base: MetricEstimate | float | None = None
        if reference and name in reference:
            base = reference[name]
            update["reference"] = reference[name].value
        elif not reference and name in known:
            base = known[name]
        if base is not None:
            p = worse_pvalue(estimate, base)
            update["p_value"] = p if math.isfinite(p) else None
        results[name] = estimate.model_copy(update=update)
    return results, source


# ------------------------------------------------------------------ what the report plots


def _thin(x: FloatArray, y: FloatArray, points: int = CURVE_POINTS) -> tuple[list[float], list[float]]:
    if x.size > points:
        keep = np.unique(np.round(np.linspace(0, x.size - 1, points)).astype(np.int64))
        x, y = x[keep], y[keep]
    return [round(float(v), 5) for v in x], [round(float(v), 5) for v in y]


def curves(y_true: IntArray, probabilities: FloatArray, classes: Sequence[str]) -> list[Curve]:
    """ROC and precision-recall curves: the positive class (binary) or each class one-vs-rest."""
    wanted = [1] if len(classes) == 2 else list(range(min(len(classes), MAX_CURVE_CLASSES)))
    found: list[Curve] = []
    for index in wanted:
        positive = y_true == index
        n_pos, n_neg = int(positive.sum()), int(positive.size - positive.sum())
        if n_pos == 0 or n_neg == 0:
            continue
        scores = probabilities[:, index]
        order = np.argsort(-scores, kind="mergesort")
        ordered = scores[order]
        hits = positive[order].astype(np.float64)
        last = np.append(
            np.flatnonzero(ordered[1:] != ordered[:-1]), ordered.size - 1
        )  # one point per threshold
        tp = np.cumsum(hits)[last]
        fp = (last + 1) - tp
        tpr = np.concatenate(([0.0], tp / n_pos))
        fpr = np.concatenate(([0.0], fp / n_neg))
        precision = tp / (tp + fp)
        recall = tp / n_pos
        name = str(classes[index])
        x, y = _thin(fpr, tpr)
        found.append(Curve(name=name, kind="roc", x=x, y=y, area=round(roc_auc(positive, scores), 6)))
        x, y = _thin(np.concatenate(([0.0], recall)), np.concatenate(([precision[0]], precision)))
        average_precision = float(np.sum(np.diff(np.concatenate(([0.0], recall))) * precision))
        found.append(Curve(name=name, kind="pr", x=x, y=y, area=round(average_precision, 6)))
    return found


def probability_histograms(
    y_true: IntArray, probabilities: FloatArray, classes: Sequence[str]
) -> list[ProbabilityHistogram]:
    """Predicted probability of each class (binary: the positive one) among its rows and the others."""
    wanted = [1] if len(classes) == 2 else list(range(min(len(classes), MAX_CURVE_CLASSES)))
    edges = np.linspace(0.0, 1.0, HISTOGRAM_BINS + 1)
    found = []
    for index in wanted:
        positive = y_true == index
        scores = np.clip(probabilities[:, index], 0.0, 1.0)
        found.append(
            ProbabilityHistogram(
                name=str(classes[index]),
                edges=[round(float(e), 4) for e in edges],
                positives=np.histogram(scores[positive], bins=edges)[0].astype(int).tolist(),
                negatives=np.histogram(scores[~positive], bins=edges)[0].astype(int).tolist(),
            )
        )
    return found


def class_indices(values: Sequence[str] | npt.NDArray[np.object_], classes: Sequence[str]) -> IntArray:
    """Positions of canonical label strings in ``classes`` (-1 for a label the model does not know)."""
    lookup = {name: index for index, name in enumerate(classes)}
    return np.asarray([lookup.get(v, -1) for v in values], dtype=np.int64)
