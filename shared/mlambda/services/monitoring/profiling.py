"""Reference profiles from numpy columns: the statistics monitoring compares every window with.

``reference_profile`` is the entry point the registry's validator calls when a version is
registered: the reference's feature columns, and optionally its target column and the model's
outputs on its rows (which must be held out from training). Monitoring calls ``numeric_values``
/ ``category_counts`` on served windows so that both sides are read the same way. Vectorised
numpy; one sort per numeric column; no pandas.
"""

from __future__ import annotations

import hashlib
import math
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from mlambda.schemas.monitoring import (
    PREDICTION_PREFIX,
    CategoricalProfile,
    FeatureKind,
    FeatureProfile,
    Histogram,
    MetricEstimate,
    ModelBaseline,
    NumericProfile,
    ProfileSettings,
    ReferenceProfile,
)
from mlambda.schemas.registry import FeatureSchema
from mlambda.services.monitoring import model_quality as mq
from mlambda.services.monitoring import performance

FloatArray = npt.NDArray[np.float64]
Task = Literal["classification", "regression"]
QUANTILES = {"p01": 0.01, "p05": 0.05, "p25": 0.25, "p50": 0.5, "p75": 0.75, "p95": 0.95, "p99": 0.99}
SIGNIFICANT_DIGITS = 7
LABEL_COLUMN = f"{PREDICTION_PREFIX}label"
VALUE_COLUMN = f"{PREDICTION_PREFIX}value"
PROBABILITY_PREFIX = f"{PREDICTION_PREFIX}probabilities."
TARGET_COLUMN = "target"
MIN_BASELINE_ROWS = 30
# A model scored on its own training rows looks near perfect: these say "held-out data, please".
TRAINING_LIKE = {"accuracy": 0.99, "auc": 0.999, "r2": 0.99}
BEATS_REGISTERED_BY = 0.01
"""A reference score whose whole interval beats the registered held-out score by more than this
(absolute for scores, relative for errors) also looks like training data."""


@dataclass(frozen=True)
class ProfileNote:
    """Something a registrant should read about their reference (the registry shows it as a warning).

    ``code``: ``no_baseline`` (why there is no quality baseline) or
    ``reference_looks_like_training_data``.
    """

    code: str
    message: str


def kind_of(dtype: str) -> FeatureKind:
    """Numbers are numeric; strings and bools are categorical."""
    return "numeric" if dtype in ("float", "int", "float32", "float64", "int32", "int64") else "categorical"


def output_kind(column: str) -> FeatureKind:
    """The predicted label is categorical; values and probabilities are numeric."""
    return "categorical" if column == LABEL_COLUMN else "numeric"


def is_missing(value: Any) -> bool:
    """None, NaN and NaT: the values no category is made of."""
    if value is None:
        return True
    if isinstance(value, float | np.floating):
        return bool(np.isnan(value))
    return isinstance(value, np.datetime64) and bool(np.isnat(value))


def present(values: np.ndarray) -> npt.NDArray[np.bool_]:
    """Which cells of a column hold a value (not None, NaN or NaT)."""
    if values.dtype.kind == "f":
        given: npt.NDArray[np.bool_] = ~np.isnan(values)
    elif values.dtype.kind == "M":
        given = ~np.isnat(values)
    elif values.dtype == object:
        given = np.fromiter((not is_missing(v) for v in values.tolist()), dtype=bool, count=len(values))
    else:
        given = np.ones(len(values), dtype=bool)
    return given


def cell_number(value: Any) -> tuple[float, bool]:
    """A cell of a text column as a number, and whether it was refused (a value, not a number)."""
    if value is None:
        return math.nan, False
    if isinstance(value, bool | int | float | np.number | np.bool_):
        return float(value), False
    if isinstance(value, str | bytes):
        text = value.decode("utf-8", "replace") if isinstance(value, bytes) else value
        if "_" in text:  # float() reads "1_000"; a number column does not
            return math.nan, True
        try:
            number = float(text.strip())
        except ValueError:
            return math.nan, True
        return number, math.isnan(number)
    return math.nan, True


def numeric_values(column: npt.ArrayLike) -> tuple[FloatArray, int, int]:
    """(finite values as float64, rows without a usable value, rows whose value is not a number).

    Nulls, NaN and infinities count as missing; strings that do not parse as numbers count as
    missing *and* as type mismatches (data quality reports both); numeric strings are numbers.
    """
    array = np.asarray(column)
    mismatched = 0
    if array.dtype.kind in "biuf":
        raw = array.astype(np.float64, copy=False)
    else:
        raw = np.empty(array.size, dtype=np.float64)
        for index, value in enumerate(array.astype(object).ravel().tolist()):
            number, refused = cell_number(value)
            raw[index] = number
            mismatched += refused
    finite = np.isfinite(raw)
    values = raw if finite.all() else raw[finite]
    return values, int(raw.size - values.size), mismatched


def canonical(value: Any) -> str:
    """One spelling per category: bools 'true'/'false', whole floats as ints (1.0 -> '1')."""
    if isinstance(value, bool | np.bool_):
        return "true" if value else "false"
    if isinstance(value, float | np.floating) and float(value).is_integer():
        return str(int(value))
    return str(value)


def category_counts(column: npt.ArrayLike | Sequence[Any]) -> tuple[dict[str, int], int]:
    """(count per canonical category, missing rows); counts the raw values once, canonicalises the distinct ones."""
    array = np.asarray(column)
    missing = 0
    pairs: Sequence[tuple[Any, int]]
    if array.dtype.kind in "biuf":
        given = array[~np.isnan(array)] if array.dtype.kind == "f" else array
        uniques, tallies = np.unique(given, return_counts=True)
        pairs = list(zip(uniques.tolist(), tallies.tolist(), strict=True))
        missing = int(array.size - given.size)
    else:
        pairs = list(Counter(array.tolist()).items())
    counts: dict[str, int] = {}
    for value, tally in pairs:
        if is_missing(value) or (isinstance(value, float) and not math.isfinite(value)):
            missing += tally
            continue
        key = canonical(value)
        counts[key] = counts.get(key, 0) + tally
    return counts, missing


def canonical_labels(column: npt.ArrayLike | Sequence[Any]) -> npt.NDArray[np.object_]:
    """Each value's canonical category string ("" for a missing one): labels logged as 1, 1.0 or "1" agree."""
    values = column.tolist() if isinstance(column, np.ndarray) else list(column)  # type: ignore[arg-type]
    spelled: dict[Any, str] = {}
    out = np.empty(len(values), dtype=object)
    for index, value in enumerate(values):
        if is_missing(value):
            out[index] = ""
            continue
        key = spelled.get(value)
        if key is None:
            key = spelled[value] = canonical(value)
        out[index] = key
    return out


def _round(values: FloatArray) -> list[float]:
    """Values to SIGNIFICANT_DIGITS digits: halves the JSON, far below any drift that matters."""
    return [float(f"{v:.{SIGNIFICANT_DIGITS}g}") for v in values.tolist()]


def bin_counts(edges: FloatArray, values: FloatArray, *, is_sorted: bool = False) -> npt.NDArray[np.int64]:
    """Counts per PSI bin ``(-inf, e0], (e0, e1], ..., (e_k, +inf)`` (right-closed)."""
    if is_sorted:
        at_or_below = np.searchsorted(values, edges, side="right")
        return np.diff(np.concatenate(([0], at_or_below, [values.size]))).astype(np.int64)
    return np.bincount(np.searchsorted(edges, values, side="left"), minlength=edges.size + 1).astype(np.int64)


def profile_numeric(values: FloatArray, settings: ProfileSettings) -> NumericProfile:
    """Statistics of finite ``values`` (at least one)."""
    ordered = np.sort(values)
    n = ordered.size
    edges = np.unique(
        np.asarray(
            _round(np.quantile(ordered, np.linspace(0, 1, settings.bins + 1)[1:-1], method="inverted_cdf"))
        )
    )
    shares = bin_counts(edges, ordered, is_sorted=True) / n
    counts, hist_edges = np.histogram(ordered, bins=settings.histogram_bins)
    m = min(settings.sketch_size, n)
    sketch = ordered[np.round(np.linspace(0, n - 1, m)).astype(np.int64)]
    quantiles = np.quantile(ordered, list(QUANTILES.values()))
    return NumericProfile(
        min=float(ordered[0]),
        max=float(ordered[-1]),
        mean=float(ordered.mean()),
        std=float(ordered.std()),
        quantiles=dict(zip(QUANTILES, _round(quantiles), strict=True)),
        bin_edges=edges.tolist(),
        bin_shares=[round(float(s), 6) for s in shares],
        histogram=Histogram(edges=_round(hist_edges), counts=[int(c) for c in counts]),
        sketch=_round(sketch),
        integral=bool(np.all(ordered == np.round(ordered))),
    )


def profile_categorical(counts: Mapping[str, int], settings: ProfileSettings) -> CategoricalProfile:
    """Top-K counts and shares plus the rest as 'other'."""
    total = sum(counts.values())
    top = sorted(counts.items(), key=lambda item: (-item[1], item[0]))[: settings.top_k]
    listed = sum(count for _, count in top)
    return CategoricalProfile(
        shares={name: round(count / total, 6) for name, count in top} if total else {},
        other_share=round((total - listed) / total, 6) if total else 0.0,
        cardinality=len(counts),
        counts=dict(top),
        other_count=total - listed,
    )


def profile_column(
    name: str, dtype: str, kind: FeatureKind, column: npt.ArrayLike, settings: ProfileSettings
) -> FeatureProfile:
    """One column's profile; a column with no usable value gets counts only."""
    rows = len(np.asarray(column))
    if kind == "numeric":
        values, missing, _ = numeric_values(column)
        numeric = profile_numeric(values, settings) if values.size else None
        return FeatureProfile(name=name, kind=kind, dtype=dtype, count=rows, missing=missing, numeric=numeric)
    counts, missing = category_counts(column)
    categorical = profile_categorical(counts, settings) if counts else None
    return FeatureProfile(
        name=name, kind=kind, dtype=dtype, count=rows, missing=missing, categorical=categorical
    )


@dataclass(frozen=True)
class ReferenceOutputs:
    """The model's outputs on reference rows that were held out from training.

    ``rows``: positions in the reference of the scored rows (None: every row, in order), so a
    caller that scores only complete rows says which; ``probabilities`` has one column per class
    in ``class_labels`` order.
    """

    labels: npt.ArrayLike | None = None
    probabilities: npt.ArrayLike | None = None
    class_labels: Sequence[int | str] | None = None
    values: npt.ArrayLike | None = None
    rows: npt.ArrayLike | None = None

    def columns(self) -> dict[str, npt.NDArray[Any]]:
        """The outputs as the archive names them: ``prediction.label``, ``prediction.probabilities.<class>``,
        ``prediction.value``. A binary classifier keeps only the positive (second) class's probability:
        the other is its complement and would double every output-drift verdict and alert."""
        columns: dict[str, npt.NDArray[Any]] = {}
        if self.labels is not None:
            columns[LABEL_COLUMN] = np.asarray(self.labels).ravel()
        matrix = self.probability_matrix()
        if matrix is not None:
            names = self.class_names(matrix.shape[1])
            kept = range(1, 2) if matrix.shape[1] == 2 else range(matrix.shape[1])
            for index in kept:
                columns[f"{PROBABILITY_PREFIX}{names[index]}"] = matrix[:, index]
        if self.values is not None:
            columns[VALUE_COLUMN] = np.asarray(self.values, dtype=np.float64).ravel()
        return columns

    def probability_matrix(self) -> FloatArray | None:
        """Probabilities as a rows x classes float matrix."""
        if self.probabilities is None:
            return None
        matrix = np.asarray(self.probabilities, dtype=np.float64)
        return matrix.reshape(matrix.shape[0], -1)

    def class_names(self, count: int) -> list[str]:
        """Canonical class labels (indices when none were given)."""
        labels = list(self.class_labels) if self.class_labels is not None else list(range(count))
        return [canonical(label) for label in labels]


def content_seed(*arrays: npt.ArrayLike | None) -> int:
    """A seed from the data itself: the same reference always gets the same intervals."""
    digest = hashlib.sha256()
    for array in arrays:
        if array is not None:
            digest.update(
                np.ascontiguousarray(np.asarray(array, dtype=object).astype(str)).tobytes()[:1_000_000]
            )
    return int.from_bytes(digest.digest()[:8], "big")


def model_baseline(
    task: Task,
    target: npt.ArrayLike,
    outputs: ReferenceOutputs,
    *,
    registered: Mapping[str, float] | None = None,
    resamples: int = mq.MIN_RESAMPLES,
) -> tuple[ModelBaseline | None, str | None]:
    """Quality of the model on the reference's labelled rows, or why there is none.

    ``registered``: the metrics registered with the version (any usual spelling: ``test_roc_auc``),
    kept beside the measured ones so monitoring and the registrant see both.
    """
    truth = np.asarray(target, dtype=object).ravel()
    if outputs.rows is not None:
        truth = truth[np.asarray(outputs.rows, dtype=np.int64)]
    settings = mq.QualitySettings(resamples=resamples)
    rng = np.random.default_rng(content_seed(truth, outputs.labels, outputs.values))
    if task == "regression":
        if outputs.values is None:
            return None, "no regression output to compare the target with"
        truth_values = np.asarray([_as_float(v) for v in truth], dtype=np.float64)
        predicted = np.asarray(outputs.values, dtype=np.float64).ravel()
        both = np.isfinite(truth_values) & np.isfinite(predicted)
        if both.sum() < MIN_BASELINE_ROWS:
            return (
                None,
                f"{int(both.sum())} reference rows with a numeric target, fewer than {MIN_BASELINE_ROWS}",
            )
        estimates = mq.regression_estimates(truth_values[both], predicted[both], settings, rng)
        return ModelBaseline(
            task=task, rows=int(both.sum()), metrics=_with_registered(estimates, registered)
        ), None
    if outputs.labels is None:
        return None, "no predicted label to compare the target with"
    matrix = outputs.probability_matrix()
    classes = outputs.class_names(matrix.shape[1] if matrix is not None else 0)
    true_labels = canonical_labels(truth)
    predicted_labels = canonical_labels(outputs.labels)
    if not classes:
        classes = sorted({str(v) for v in true_labels if v} | {str(v) for v in predicted_labels if v})
    y_true = mq.class_indices(true_labels, classes)
    y_pred = mq.class_indices(predicted_labels, classes)
    usable = (y_true >= 0) & (y_pred >= 0)
    if matrix is not None:
        usable &= np.isfinite(matrix).all(axis=1)
    if usable.sum() < MIN_BASELINE_ROWS:
        return None, f"{int(usable.sum())} reference rows with a known class, fewer than {MIN_BASELINE_ROWS}"
    probabilities = matrix[usable] if matrix is not None else None
    estimates = mq.classification_estimates(
        y_true[usable], y_pred[usable], len(classes), probabilities, settings, rng
    )
    maps = {}
    estimated = {}
    if probabilities is not None and probabilities.shape[1] == len(classes):
        maps = performance.calibration_maps(y_true[usable], probabilities, classes)
        estimated = performance.estimate(
            probabilities, y_pred[usable], classes, maps, resamples=resamples, rng=rng
        )
    return (
        ModelBaseline(
            task=task,
            rows=int(usable.sum()),
            classes=classes,
            metrics=_with_registered(estimates, registered),
            calibration=maps,
            estimated=estimated,
        ),
        None,
    )


def _with_registered(
    estimates: Mapping[str, MetricEstimate], registered: Mapping[str, float] | None
) -> dict[str, MetricEstimate]:
    claimed = {mq.canonical_metric(name): float(value) for name, value in (registered or {}).items()}
    return {
        name: estimate.model_copy(update={"registered": claimed[name]}) if name in claimed else estimate
        for name, estimate in estimates.items()
    }


def training_like(baseline: ModelBaseline) -> list[ProfileNote]:
    """Notes when the reference's quality looks like training quality: near perfect, or better than
    the registered held-out metric beyond its own interval."""
    advice = (
        "that looks like rows it was trained on; pass held-out rows, or monitoring will compare "
        "served traffic with an optimistic baseline and in-sample outputs"
    )
    perfect = [
        f"{name} {baseline.metrics[name].value:.4g}"
        for name, limit in TRAINING_LIKE.items()
        if name in baseline.metrics and baseline.metrics[name].value >= limit
    ]
    if perfect:
        return [
            ProfileNote(
                "reference_looks_like_training_data",
                f"the model's {', '.join(perfect)} on the reference: {advice}",
            )
        ]
    notes: list[ProfileNote] = []
    for name, estimate in baseline.metrics.items():
        claimed, low, high = estimate.registered, estimate.low, estimate.high
        if claimed is None or not math.isfinite(claimed) or low is None or high is None:
            continue
        if name in mq.LOWER_IS_BETTER:
            better = high < claimed * (1 - BEATS_REGISTERED_BY)
        else:
            better = low > claimed + BEATS_REGISTERED_BY
        if better:
            notes.append(
                ProfileNote(
                    "reference_looks_like_training_data",
                    f"the model's {name} on the reference is {estimate.value:.4g} [{low:.4g}, {high:.4g}], "
                    f"better than the registered {claimed:.4g}: {advice}",
                )
            )
            break
    return notes


def _as_float(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def reference_profile(
    features: Mapping[str, npt.ArrayLike],
    schema: FeatureSchema,
    *,
    task: Task | None = None,
    target: npt.ArrayLike | None = None,
    outputs: ReferenceOutputs | None = None,
    registered: Mapping[str, float] | None = None,
    settings: ProfileSettings | None = None,
    now: datetime | None = None,
) -> tuple[ReferenceProfile, list[ProfileNote]]:
    """The reference profile and the notes a registrant should see (why no baseline, for instance).

    ``features``: one array per schema feature (numbers, or strings/bools; None/NaN missing); a
    feature absent from the mapping is profiled as entirely missing, so monitoring reports it
    rather than crashing. ``target``: the reference's labels (classification) or values
    (regression), one per reference row. ``outputs``: the model's outputs on the reference rows
    (held out from training). With both and ``task``, the profile carries the quality baseline
    and the calibration CBPE uses; ``registered`` metrics are kept beside the measured ones.
    """
    settings = settings or ProfileSettings()
    rows = max((len(np.asarray(v)) for v in features.values()), default=0)
    notes: list[ProfileNote] = []
    profiles = []
    for spec in schema.features:
        column = features.get(spec.name)
        if column is None:
            column = np.full(rows, None, dtype=object)
        profiles.append(profile_column(spec.name, spec.dtype, kind_of(spec.dtype), column, settings))
    outputs_profiles = []
    if outputs is not None:
        for name, column in outputs.columns().items():
            kind = output_kind(name)
            outputs_profiles.append(
                profile_column(name, "string" if kind == "categorical" else "float", kind, column, settings)
            )
    target_profile = baseline = None
    if target is not None:
        target_kind: FeatureKind = "numeric" if task == "regression" else "categorical"
        target_profile = profile_column(
            TARGET_COLUMN, "float" if target_kind == "numeric" else "string", target_kind, target, settings
        )
        if outputs is not None and task is not None:
            baseline, why = model_baseline(task, target, outputs, registered=registered)
            if why:
                notes.append(ProfileNote("no_baseline", f"no model-quality baseline: {why}"))
            if baseline is not None:
                notes.extend(training_like(baseline))
        elif task is None:
            notes.append(
                ProfileNote(
                    "no_baseline",
                    "no model-quality baseline: the task (classification or regression) was not given",
                )
            )
    profile = ReferenceProfile(
        created_at=now or datetime.now(UTC),
        row_count=rows,
        settings=settings,
        features=profiles,
        predictions=outputs_profiles,
        target=target_profile,
        baseline=baseline,
    )
    return profile, notes
