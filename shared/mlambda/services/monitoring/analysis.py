"""The checks of one window, on numpy columns: drift, data quality, model quality, estimated performance.

The service reads a window (served traffic from the archive, or a batch job's scored rows),
turns it into a ``WindowColumns`` and calls these; the calibration benchmark calls them the
same way. Verdicts are left to ``budget.settle``, which sees every p-value of the run.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from mlambda.schemas.monitoring import (
    ColumnDrift,
    ColumnSummary,
    DataQualitySection,
    DriftSection,
    EstimatedPerformanceSection,
    FeatureProfile,
    ModelBaseline,
    ModelQualitySection,
    ReferenceProfile,
)
from mlambda.services.monitoring import model_quality as mq
from mlambda.services.monitoring import performance
from mlambda.services.monitoring.data_quality import QualityConfig, data_quality
from mlambda.services.monitoring.drift import ColumnWindow, DriftConfig, column_drift, drift_section, finite
from mlambda.services.monitoring.profiling import (
    LABEL_COLUMN,
    PROBABILITY_PREFIX,
    VALUE_COLUMN,
    canonical,
    canonical_labels,
    is_missing,
)

TOP_VALUES = 5


@dataclass
class WindowColumns:
    """One window as numpy columns, rows aligned.

    ``outputs`` are named as in the archive (``prediction.label``, ``prediction.value``,
    ``prediction.probabilities.<class>``); ``truth`` holds each row's label (None where none
    arrived); ``extra_columns`` are logged features the schema does not have.
    """

    rows: int
    features: Mapping[str, npt.ArrayLike]
    outputs: Mapping[str, npt.ArrayLike] = field(default_factory=dict)
    truth: npt.NDArray[Any] | None = None
    extra_columns: Sequence[str] = ()

    @property
    def labelled(self) -> npt.NDArray[np.bool_]:
        """Rows with a label."""
        if self.truth is None:
            return np.zeros(self.rows, dtype=bool)
        return np.asarray([not is_missing(v) for v in self.truth.tolist()], dtype=bool)


@dataclass
class DriftAndQuality:
    """The drift sections, data quality and the per-column summary of one window (not yet settled)."""

    features: DriftSection
    predictions: DriftSection | None
    labels: DriftSection | None
    quality: DataQualitySection
    columns: list[ColumnSummary]


def _summary(profile: FeatureProfile, window: ColumnWindow, source: str) -> ColumnSummary:
    summary: dict[str, Any] = {
        "name": profile.name,
        "source": source,
        "kind": profile.kind,
        "rows": window.rows,
        "missing": window.missing,
        "missing_rate": round(window.missing_rate, 6),
        "reference_missing_rate": round(profile.missing_rate, 6),
    }
    if window.sorted_values is not None and window.sorted_values.size:
        values = window.sorted_values
        summary.update(
            mean=finite(float(values.mean())),
            std=finite(float(values.std())),
            min=finite(float(values[0])),
            max=finite(float(values[-1])),
            unique=int(np.count_nonzero(np.diff(values)) + 1),
        )
    if profile.numeric is not None:
        summary["reference_mean"] = finite(profile.numeric.mean)
    if window.categories:
        total = sum(window.categories.values())
        top = sorted(window.categories.items(), key=lambda item: -item[1])[:TOP_VALUES]
        summary.update(unique=len(window.categories), top=[(name, round(n / total, 6)) for name, n in top])
    return ColumnSummary.model_validate(summary)


def drift_and_quality(
    profile: ReferenceProfile, window: WindowColumns, drift: DriftConfig, quality: QualityConfig
) -> DriftAndQuality:
    """Feature, prediction and label drift tests, data-quality rules and column summaries."""
    windows = [
        ColumnWindow.read(p.name, p, window.features.get(p.name), window.rows) for p in profile.features
    ]
    features = drift_section(
        [column_drift(p, w, drift) for p, w in zip(profile.features, windows, strict=True)], drift
    )
    summaries = [_summary(p, w, "feature") for p, w in zip(profile.features, windows, strict=True)]
    predictions = None
    if profile.predictions:
        outputs: list[ColumnDrift] = []
        for p in profile.predictions:
            output_window = ColumnWindow.read(p.name, p, window.outputs.get(p.name), window.rows)
            outputs.append(column_drift(p, output_window, drift, "prediction"))
            summaries.append(_summary(p, output_window, "prediction"))
        predictions = drift_section(outputs, drift)
    labels = None
    if profile.target is not None and window.truth is not None:
        labelled = window.labelled
        target_window = ColumnWindow.read(
            profile.target.name, profile.target, window.truth[labelled], int(labelled.sum())
        )
        labels = drift_section([column_drift(profile.target, target_window, drift, "label")], drift)
    section = data_quality(profile.features, windows, list(window.extra_columns), window.rows, quality)
    return DriftAndQuality(features, predictions, labels, section, summaries)


# ------------------------------------------------------------------ model quality


def class_names(baseline: ModelBaseline | None, class_labels: Sequence[int | str] | None) -> list[str]:
    """The model's classes as canonical strings: the baseline's, else the signature's."""
    if baseline is not None and baseline.classes:
        return list(baseline.classes)
    return [canonical(c) for c in class_labels or []]


def probability_matrix(
    outputs: Mapping[str, npt.ArrayLike], classes: Sequence[str]
) -> npt.NDArray[np.float64] | None:
    """Rows x classes probabilities from the archive's columns (binary: the positive one suffices)."""
    columns = [f"{PROBABILITY_PREFIX}{c}" for c in classes]
    if all(c in outputs for c in columns):
        return np.column_stack([numeric_column(outputs[c]) for c in columns])
    if len(classes) == 2 and columns[1] in outputs:
        positive = numeric_column(outputs[columns[1]])
        return np.column_stack((1 - positive, positive))
    return None


def numeric_column(column: npt.ArrayLike) -> npt.NDArray[np.float64]:
    """Every row as a float (NaN where not a number), aligned with the input."""
    array = np.asarray(column)
    if array.dtype.kind in "biuf":
        return array.astype(np.float64)
    out = np.empty(array.size)
    for index, value in enumerate(array.tolist()):
        try:
            out[index] = float(value) if value is not None else math.nan
        except (TypeError, ValueError):
            out[index] = math.nan
    return out


def model_quality(  # noqa: PLR0917 - one call site, each argument named there
    task: str,
    window: WindowColumns,
    baseline: ModelBaseline | None,
    registered: Mapping[str, float],
    class_labels: Sequence[int | str] | None,
    settings: mq.QualitySettings,
    rng: np.random.Generator,
    notes: list[str],
) -> ModelQualitySection:
    """Quality on the window's labelled rows against the reference baseline (else the registered metrics)."""
    labelled = window.labelled
    count = int(labelled.sum())
    if count < settings.min_labels or window.truth is None:
        return ModelQualitySection(
            status="not_enough_data",
            reason=f"{count} labelled rows, fewer than {settings.min_labels}",
            task=task,
            labelled=count,
        )
    reference = baseline.metrics if baseline is not None else None
    if task == "regression":
        if VALUE_COLUMN not in window.outputs:
            return ModelQualitySection(
                status="error", reason=f"the log has no {VALUE_COLUMN} column", task=task
            )
        truth_values = numeric_column(window.truth[labelled])
        predicted_values = numeric_column(np.asarray(window.outputs[VALUE_COLUMN])[labelled])
        usable = np.isfinite(truth_values) & np.isfinite(predicted_values)
        if (~usable).any():
            notes.append(f"{int((~usable).sum())} labelled rows without a numeric label or prediction")
        if usable.sum() < settings.min_labels:
            return ModelQualitySection(
                status="not_enough_data",
                reason="too few numeric labels",
                task=task,
                labelled=int(usable.sum()),
            )
        estimates = mq.regression_estimates(truth_values[usable], predicted_values[usable], settings, rng)
        metrics, source = mq.with_baseline(estimates, reference, registered)
        return ModelQualitySection(
            status="ok",
            reason=f"{int(usable.sum())} labelled rows",
            task=task,
            labelled=int(usable.sum()),
            baseline=source,
            metrics=metrics,
        )
    if LABEL_COLUMN not in window.outputs:
        return ModelQualitySection(status="error", reason=f"the log has no {LABEL_COLUMN} column", task=task)
    true_labels = canonical_labels(window.truth[labelled])
    predicted = canonical_labels(np.asarray(window.outputs[LABEL_COLUMN])[labelled])
    classes = class_names(baseline, class_labels) or sorted(
        {*true_labels.tolist(), *predicted.tolist()} - {""}
    )
    y_true = mq.class_indices(true_labels, classes)
    y_pred = mq.class_indices(predicted, classes)
    usable = (y_true >= 0) & (y_pred >= 0)
    if (~usable).any():
        notes.append(f"{int((~usable).sum())} labelled rows with a label the model does not know")
    if usable.sum() < settings.min_labels:
        return ModelQualitySection(
            status="not_enough_data", reason="too few usable labels", task=task, labelled=int(usable.sum())
        )
    matrix = probability_matrix(window.outputs, classes)
    probabilities = None
    if matrix is not None:
        rows = matrix[labelled][usable]
        if np.isfinite(rows).all():
            probabilities = rows
    y_true, y_pred = y_true[usable], y_pred[usable]
    estimates = mq.classification_estimates(y_true, y_pred, len(classes), probabilities, settings, rng)
    metrics, source = mq.with_baseline(estimates, reference, registered)
    confusion = mq.confusion_matrix(y_true, y_pred, len(classes))
    return ModelQualitySection(
        status="ok",
        reason=f"{int(usable.sum())} labelled rows",
        task=task,
        labelled=int(usable.sum()),
        baseline=source,
        metrics=metrics,
        classes=list(classes),
        confusion=confusion.tolist(),
        per_class=mq.per_class_metrics(confusion, classes),
        curves=mq.curves(y_true, probabilities, classes) if probabilities is not None else [],
        probability_histograms=mq.probability_histograms(y_true, probabilities, classes)
        if probabilities is not None
        else [],
    )


def estimated_performance(
    window: WindowColumns,
    baseline: ModelBaseline | None,
    settings: mq.QualitySettings,
    rng: np.random.Generator,
) -> EstimatedPerformanceSection | None:
    """CBPE estimates for the window (None when the reference gave no calibration to estimate with)."""
    if baseline is None or not baseline.calibration or baseline.task != "classification":
        return None
    classes = baseline.classes
    matrix = probability_matrix(window.outputs, classes)
    if matrix is None or LABEL_COLUMN not in window.outputs:
        return EstimatedPerformanceSection(
            status="error", reason="the window has no predicted label and probabilities to estimate from"
        )
    y_pred = mq.class_indices(canonical_labels(window.outputs[LABEL_COLUMN]), classes)
    usable = (y_pred >= 0) & np.isfinite(matrix).all(axis=1)
    rows = int(usable.sum())
    if rows < settings.min_labels:
        return EstimatedPerformanceSection(
            status="not_enough_data",
            reason=f"{rows} scored rows, fewer than {settings.min_labels}",
            rows=rows,
        )
    estimates = performance.estimate(
        matrix[usable], y_pred[usable], classes, baseline.calibration, resamples=settings.resamples, rng=rng
    )
    labelled_check = None
    labelled_rows = 0
    if window.truth is not None:
        y_true = mq.class_indices(canonical_labels(window.truth), classes)
        both = usable & (y_true >= 0)
        labelled_rows = int(both.sum())
        if labelled_rows >= settings.min_labels:
            on_labelled = performance.estimate(
                matrix[both],
                y_pred[both],
                classes,
                baseline.calibration,
                resamples=settings.resamples,
                rng=rng,
            )
            labelled_check = (
                on_labelled,
                performance.realised(y_true[both], y_pred[both], matrix[both], len(classes)),
            )
    metrics = performance.compared(estimates, baseline.estimated, labelled_check)
    return EstimatedPerformanceSection(
        status="ok",
        reason=f"estimated from {rows} rows' calibrated probabilities",
        rows=rows,
        labelled=labelled_rows,
        metrics=metrics,
    )
