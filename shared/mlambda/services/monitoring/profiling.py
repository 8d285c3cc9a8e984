"""Reference profiles from numpy columns: the statistics monitoring compares every window with.

The registry calls ``compute_profile`` on the reference sample (and the model's outputs on it)
when a version is registered; monitoring calls ``numeric_values`` / ``category_counts`` on the
served window so that both sides are read the same way. Vectorised numpy; one sort per numeric
column.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import numpy as np
import numpy.typing as npt

from mlambda.schemas.monitoring import (
    PREDICTION_PREFIX,
    CategoricalProfile,
    FeatureKind,
    FeatureProfile,
    Histogram,
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


def numeric_values(column: npt.ArrayLike) -> tuple[FloatArray, int, int]:
    """(finite values as float64, rows without a usable value, rows whose value is not a number).

    Nulls, NaN and infinities count as missing; strings that do not parse as numbers count as
    missing *and* as type mismatches (data quality reports both).
    """
    array = np.asarray(column)
    mismatched = 0
    if array.dtype == object:
        raw = np.empty(array.size, dtype=np.float64)
        for index, value in enumerate(array.tolist()):
            number, refused = cell_number(value)
            raw[index] = number
            mismatched += refused
    else:
        raw = array.astype(np.float64, copy=False)
    finite = np.isfinite(raw)
    values = raw if finite.all() else raw[finite]
    return values, int(raw.size - values.size), mismatched


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


def _canonical(value: Any) -> str:
    """One spelling per category: bools 'true'/'false', whole floats as ints (1.0 -> '1')."""
    if isinstance(value, bool | np.bool_):
        return "true" if value else "false"
    if isinstance(value, float | np.floating) and float(value).is_integer():
        return str(int(value))
    return str(value)


def category_counts(column: npt.ArrayLike) -> tuple[dict[str, int], int]:
    """(count per canonical category, missing rows); counts each distinct value once, canonicalises it."""
    array = np.asarray(column)
    if array.dtype.kind in "biuf":
        present = array[~np.isnan(array)] if array.dtype.kind == "f" else array
        uniques, tallies = np.unique(present, return_counts=True)
        pairs: Sequence[tuple[Any, int]] = list(zip(uniques.tolist(), tallies.tolist(), strict=True))
        missing = int(array.size - present.size)
    else:
        pairs = list(Counter(array.tolist()).items())
        missing = 0
    counts: dict[str, int] = {}
    for unique, tally in pairs:
        if is_missing(unique) or (isinstance(unique, float) and not math.isfinite(unique)):
            missing += int(tally)
            continue
        key = _canonical(unique)
        counts[key] = counts.get(key, 0) + int(tally)
    return counts, missing


def canonical_labels(column: npt.ArrayLike) -> list[str]:
    """Each value's canonical category string, "" for a missing one (labels logged as 1, 1.0 or "1" agree)."""
    names: dict[Any, str] = {}
    labels: list[str] = []
    for value in np.asarray(column, dtype=object).tolist():
        name = names.get(value)
        if name is None:
            name = "" if is_missing(value) else _canonical(value)
            names[value] = name
        labels.append(name)
    return labels


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
    name: str, dtype: str, kind: FeatureKind, column: npt.ArrayLike, settings: ProfileSettings
) -> FeatureProfile:
    """One column's profile; a column with no usable value gets counts only."""
    array = np.asarray(column)
    if kind == "numeric":
        values, missing, _ = numeric_values(array)
        numeric = profile_numeric(values, settings) if values.size else None
        return FeatureProfile(
            name=name, kind=kind, dtype=dtype, count=len(array), missing=missing, numeric=numeric
        )
    counts, missing = category_counts(array)
    categorical = profile_categorical(counts, settings) if counts else None
    return FeatureProfile(
        name=name, kind=kind, dtype=dtype, count=len(array), missing=missing, categorical=categorical
    )


def prediction_columns(
    *,
    labels: npt.ArrayLike | None = None,
    probabilities: npt.ArrayLike | None = None,
    class_labels: Sequence[int | str] | None = None,
    values: npt.ArrayLike | None = None,
) -> dict[str, np.ndarray]:
    """Model outputs as the archive names them: ``label``, ``probabilities.<class>``, ``value``.

    A binary classifier keeps only the positive (second) class's probability: the other is its
    complement and would double every output-drift verdict and alert.
    """
    columns: dict[str, np.ndarray] = {}
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
    return columns


def compute_profile(
    columns: Mapping[str, npt.ArrayLike],
    schema: FeatureSchema,
    predictions: Mapping[str, npt.ArrayLike] | None = None,
    *,
    settings: ProfileSettings | None = None,
    now: datetime | None = None,
) -> ReferenceProfile:
    """The reference profile of the schema's feature ``columns`` and, optionally, the model's outputs.

    ``predictions`` columns: ``label``, ``value``, ``probabilities.<class>`` (as made by
    ``prediction_columns``), with or without the ``prediction.`` prefix. A feature absent from
    ``columns`` is profiled as entirely missing, so monitoring reports it rather than crashing.
    """
    settings = settings or ProfileSettings()
    rows = len(np.asarray(columns[next(iter(columns))])) if len(columns) else 0
    features = []
    for spec in schema.features:
        column = columns[spec.name] if spec.name in columns else np.full(rows, None, dtype=object)
        features.append(profile_column(spec.name, spec.dtype, kind_of(spec.dtype), column, settings))
    outputs = []
    if predictions is not None:
        for key in predictions:
            name = str(key) if str(key).startswith(PREDICTION_PREFIX) else f"{PREDICTION_PREFIX}{key}"
            kind = output_kind(name)
            dtype = "string" if kind == "categorical" else "float"
            outputs.append(profile_column(name, dtype, kind, predictions[key], settings))
    return ReferenceProfile(
        created_at=now or datetime.now(UTC),
        row_count=rows,
        settings=settings,
        features=features,
        predictions=outputs,
    )
