"""Reference profiles from a DataFrame: the statistics monitoring compares every window with.

The registry calls ``compute_profile`` on the reference sample (and the model's outputs on it)
when a version is registered; monitoring calls ``numeric_values`` / ``category_counts`` on the
served window so that both sides are read the same way. Vectorised numpy; one sort per numeric
column.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from mlambda.schemas.monitoring import (
    PREDICTION_PREFIX,
    CategoricalProfile,
    FeatureKind,
    FeatureProfile,
    Histogram,
    ModelQualitySection,
    NumericProfile,
    ProfileSettings,
    ReferenceProfile,
)
from mlambda.schemas.registry import FeatureSchema

FloatArray = npt.NDArray[np.float64]
QUANTILES = {"p01": 0.01, "p05": 0.05, "p25": 0.25, "p50": 0.5, "p75": 0.75, "p95": 0.95, "p99": 0.99}
SIGNIFICANT_DIGITS = 7
LABEL_COLUMN = f"{PREDICTION_PREFIX}label"
VALUE_COLUMN = f"{PREDICTION_PREFIX}value"
PROBABILITY_PREFIX = f"{PREDICTION_PREFIX}probabilities."


def kind_of(dtype: str) -> FeatureKind:
    """Numbers are numeric; strings and bools are categorical."""
    return "numeric" if dtype in ("float", "int", "float32", "float64", "int32", "int64") else "categorical"


def output_kind(column: str) -> FeatureKind:
    """The predicted label is categorical; values and probabilities are numeric."""
    return "categorical" if column == LABEL_COLUMN else "numeric"


def numeric_values(series: pd.Series[Any] | npt.ArrayLike) -> tuple[FloatArray, int, int]:
    """(finite values as float64, rows without a usable value, rows whose value is not a number).

    Nulls, NaN and infinities count as missing; strings that do not parse as numbers count as
    missing *and* as type mismatches (data quality reports both).
    """
    if isinstance(series, pd.Series) and series.dtype == object:
        coerced = pd.to_numeric(series, errors="coerce")
        mismatched = int((coerced.isna() & series.notna()).sum())
        raw = coerced.to_numpy(dtype=np.float64, na_value=np.nan)
    elif isinstance(series, pd.Series):
        if pd.api.types.is_bool_dtype(series.dtype):
            raw = series.astype("float64").to_numpy()
        else:
            raw = series.to_numpy(dtype=np.float64, na_value=np.nan)
        mismatched = 0
    else:
        raw = np.asarray(series, dtype=np.float64)
        mismatched = 0
    finite = np.isfinite(raw)
    values = raw if finite.all() else raw[finite]
    return values, int(raw.size - values.size), mismatched


def _canonical(value: Any) -> str:
    """One spelling per category: bools 'true'/'false', whole floats as ints (1.0 -> '1')."""
    if isinstance(value, bool | np.bool_):
        return "true" if value else "false"
    if isinstance(value, float | np.floating) and float(value).is_integer():
        return str(int(value))
    return str(value)


def category_counts(series: pd.Series[Any] | Sequence[Any]) -> tuple[dict[str, int], int]:
    """(count per canonical category, missing rows); factorises once, canonicalises the uniques."""
    column = series if isinstance(series, pd.Series) else pd.Series(list(series), dtype=object)
    codes, uniques = pd.factorize(column, use_na_sentinel=True)
    missing = int((codes < 0).sum())
    tallies = np.bincount(codes[codes >= 0], minlength=len(uniques))
    counts: dict[str, int] = {}
    for unique, tally in zip(uniques, tallies, strict=True):
        if isinstance(unique, float) and not np.isfinite(unique):
            missing += int(tally)
            continue
        key = _canonical(unique)
        counts[key] = counts.get(key, 0) + int(tally)
    return counts, missing


def canonical_labels(series: pd.Series[Any]) -> list[str]:
    """Each non-missing value's canonical category string (labels logged as 1, 1.0 or "1" agree)."""
    codes, uniques = pd.factorize(series, use_na_sentinel=True)
    names = np.asarray([*(_canonical(u) for u in uniques), ""], dtype=object)
    return [str(v) for v in names[codes]]


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


def profile_categorical(counts: dict[str, int], settings: ProfileSettings) -> CategoricalProfile:
    """Top-K shares plus the rest as 'other'."""
    total = sum(counts.values())
    top = sorted(counts.items(), key=lambda item: (-item[1], item[0]))[: settings.top_k]
    shares = {name: round(count / total, 6) for name, count in top} if total else {}
    other = (total - sum(count for _, count in top)) / total if total else 0.0
    return CategoricalProfile(shares=shares, other_share=round(other, 6), cardinality=len(counts))


def profile_column(
    name: str, dtype: str, kind: FeatureKind, series: pd.Series[Any], settings: ProfileSettings
) -> FeatureProfile:
    """One column's profile; a column with no usable value gets counts only."""
    if kind == "numeric":
        values, missing, _ = numeric_values(series)
        numeric = profile_numeric(values, settings) if values.size else None
        return FeatureProfile(
            name=name, kind=kind, dtype=dtype, count=len(series), missing=missing, numeric=numeric
        )
    counts, missing = category_counts(series)
    categorical = profile_categorical(counts, settings) if counts else None
    return FeatureProfile(
        name=name, kind=kind, dtype=dtype, count=len(series), missing=missing, categorical=categorical
    )


def prediction_columns(
    *,
    labels: npt.ArrayLike | None = None,
    probabilities: npt.ArrayLike | None = None,
    class_labels: Sequence[int | str] | None = None,
    values: npt.ArrayLike | None = None,
) -> pd.DataFrame:
    """Model outputs as the archive names them: ``label``, ``probabilities.<class>``, ``value``.

    A binary classifier keeps only the positive (second) class's probability: the other is its
    complement and would double every output-drift verdict and alert.
    """
    columns: dict[str, Any] = {}
    if labels is not None:
        columns["label"] = np.asarray(labels).ravel()
    if probabilities is not None:
        matrix = np.asarray(probabilities, dtype=np.float64)
        matrix = matrix.reshape(matrix.shape[0], -1)
        names = list(class_labels) if class_labels is not None else list(range(matrix.shape[1]))
        kept = range(1, 2) if matrix.shape[1] == 2 else range(matrix.shape[1])
        for index in kept:
            columns[f"probabilities.{names[index]}"] = matrix[:, index]
    if values is not None:
        columns["value"] = np.asarray(values, dtype=np.float64).ravel()
    return pd.DataFrame(columns)


def compute_profile(
    frame: pd.DataFrame,
    schema: FeatureSchema,
    predictions: pd.DataFrame | None = None,
    *,
    target: pd.Series[Any] | None = None,
    target_kind: FeatureKind = "categorical",
    baseline: ModelQualitySection | None = None,
    settings: ProfileSettings | None = None,
    now: datetime | None = None,
) -> ReferenceProfile:
    """The reference profile of ``frame``'s schema features and, optionally, the model's outputs,
    the target column (``categorical`` for classifiers' labels, ``numeric`` for regressors'
    values) and the quality baseline measured on it.

    ``predictions`` columns: ``label``, ``value``, ``probabilities.<class>`` (as made by
    ``prediction_columns``), with or without the ``prediction.`` prefix. A feature absent from
    ``frame`` is profiled as entirely missing, so monitoring reports it rather than crashing.
    """
    settings = settings or ProfileSettings()
    rows = len(frame)
    features = []
    for spec in schema.features:
        series = frame[spec.name] if spec.name in frame.columns else pd.Series([None] * rows, dtype=object)
        features.append(profile_column(spec.name, spec.dtype, kind_of(spec.dtype), series, settings))
    outputs = []
    if predictions is not None:
        for column in predictions.columns:
            name = (
                str(column) if str(column).startswith(PREDICTION_PREFIX) else f"{PREDICTION_PREFIX}{column}"
            )
            kind = output_kind(name)
            series = predictions[column]
            dtype = "string" if kind == "categorical" else "float"
            outputs.append(profile_column(name, dtype, kind, series, settings))
    target_profile = None
    if target is not None:
        dtype = "string" if target_kind == "categorical" else "float"
        target_profile = profile_column(str(target.name), dtype, target_kind, target, settings)
    return ReferenceProfile(
        created_at=now or datetime.now(UTC),
        row_count=rows,
        settings=settings,
        features=features,
        predictions=outputs,
        target=target_profile,
        baseline=baseline,
    )
