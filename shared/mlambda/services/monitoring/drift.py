"""Per-column drift of a window against a reference profile: a two-sample test plus an effect size.

- numeric: two-sample Kolmogorov-Smirnov against the reference's sketch (a lower bound of the
  statistic, so the p-value is never too small), its p-value scaled by the effective size
  nm/(n+m) (exact for small samples); the effect is W1 over the reference standard deviation
  (a shift of 0.1 sd reads 0.1), PSI reported beside it;
- categorical (features, predicted labels, labels): the 2 x k table of reference and window
  counts, chi-square with rare columns pooled, Fisher's exact test when it comes down to a
  small 2 x 2; the effect is the total variation distance of the shares. Categories never seen
  in the reference are their own columns of the table and are listed.

A column's verdict is settled by the run's alarm budget (``budget.settle``): drifted when its
p-value survives the false-discovery control *and* the effect reaches the column's floor, so
large windows do not flag immaterial shifts and small windows do not flag noise.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from mlambda.schemas.monitoring import (
    ColumnDrift,
    ColumnSource,
    DriftSection,
    FeatureProfile,
    Thresholds,
)
from mlambda.services.monitoring import statistics as st
from mlambda.services.monitoring.profiling import FloatArray, bin_counts, category_counts, numeric_values

MAX_UNSEEN_LISTED = 20
MAX_PLOTTED_CATEGORIES = 12


def finite(value: float | None) -> float | None:
    """``value`` when it is a finite number, else None (JSON and DynamoDB refuse NaN)."""
    if value is None or not math.isfinite(value):
        return None
    return float(value)


def histogram_sorted(sorted_values: FloatArray, edges: FloatArray) -> npt.NDArray[np.int64]:
    """``np.histogram`` counts for sorted values (last bin closed), by binary search: no pass over the data."""
    positions = np.searchsorted(sorted_values, edges, side="left")
    positions[-1] = np.searchsorted(sorted_values, edges[-1], side="right")
    return np.diff(positions).astype(np.int64)


@dataclass
class ColumnWindow:
    """One column of the window, read once and shared by drift and data quality."""

    name: str
    rows: int
    present: bool = True
    missing: int = 0
    mismatched: int = 0
    sorted_values: FloatArray | None = None
    categories: dict[str, int] = field(default_factory=dict)

    @property
    def count(self) -> int:
        """Rows with a usable value."""
        if self.sorted_values is not None:
            return int(self.sorted_values.size)
        return sum(self.categories.values())

    @property
    def missing_rate(self) -> float:
        """Share of rows without a usable value (1.0 when the column is absent)."""
        return self.missing / self.rows if self.rows else 0.0

    @classmethod
    def read(
        cls, name: str, profile: FeatureProfile, column: npt.ArrayLike | None, rows: int
    ) -> ColumnWindow:
        """Read ``column`` the way the reference was read; None means the column is absent."""
        if column is None:
            return cls(name=name, rows=rows, present=False, missing=rows)
        if profile.kind == "numeric":
            values, missing, mismatched = numeric_values(column)
            return cls(
                name=name, rows=rows, missing=missing, mismatched=mismatched, sorted_values=np.sort(values)
            )
        counts, missing = category_counts(column)
        return cls(name=name, rows=rows, missing=missing, categories=counts)


@dataclass(frozen=True)
class DriftConfig:
    """Sample-size rule and effect-size floors (defaults plus per-column overrides)."""

    min_rows: int = 100
    drift_share: float = 0.5
    defaults: Thresholds = field(default_factory=Thresholds)
    overrides: Mapping[str, Thresholds] = field(default_factory=dict)

    def thresholds(self, column: str) -> Thresholds:
        """The floors ``column`` is judged by."""
        return self.overrides.get(column, self.defaults)


def _not_enough(profile: FeatureProfile, source: ColumnSource, reason: str, count: int = 0) -> ColumnDrift:
    return ColumnDrift(
        name=profile.name,
        source=source,
        kind=profile.kind,
        status="not_enough_data",
        reason=reason,
        count=count,
    )


def window_wasserstein(sketch: FloatArray, values: FloatArray) -> float:
    """W1 = integral of |Q_ref(u) - Q_window(u)| on the sketch's evenly spaced ranks."""
    if sketch.size == 0 or values.size == 0:
        return math.nan
    if sketch.size == 1:
        return float(np.mean(np.abs(values - sketch[0])))
    ranks = np.round(np.linspace(0, values.size - 1, sketch.size)).astype(np.int64)
    gaps = np.abs(sketch - values[ranks])
    return float(np.mean((gaps[1:] + gaps[:-1]) / 2))


def _material(thresholds: Thresholds, effect: float | None, floor: float, psi: float | None) -> bool:
    if effect is None or effect < floor:
        return False
    return thresholds.psi is None or (psi is not None and psi >= thresholds.psi)


def numeric_drift(
    profile: FeatureProfile, window: ColumnWindow, config: DriftConfig, source: ColumnSource = "feature"
) -> ColumnDrift:
    """KS p-value against the sketch, W1/sd (the effect), PSI; the verdict waits for the run's budget."""
    reference = profile.numeric
    values = window.sorted_values
    if reference is None:
        return _not_enough(profile, source, "the reference has no usable value for this column")
    if not window.present or values is None:
        return _not_enough(profile, source, "the column is absent from the window")
    n = values.size
    if n < config.min_rows:
        return _not_enough(profile, source, f"{n} usable values, fewer than {config.min_rows}", n)
    thresholds = config.thresholds(profile.name)
    sketch = np.asarray(reference.sketch, dtype=np.float64)
    statistic = st.ks_sketch_statistic(sketch, profile.present, values)
    p_value = st.ks_pvalue(statistic, profile.present, n)
    edges = np.asarray(reference.bin_edges, dtype=np.float64)
    psi = finite(st.psi(reference.bin_shares, bin_counts(edges, values, is_sorted=True)))
    wasserstein = window_wasserstein(sketch, values)
    if reference.std > 0:
        normalised = finite(wasserstein / reference.std)
    else:
        normalised = 0.0 if wasserstein == 0 else math.inf
    hist_edges = np.asarray(reference.histogram.edges, dtype=np.float64)
    current = histogram_sorted(values, hist_edges)
    ref_counts = np.asarray(reference.histogram.counts, dtype=np.float64)
    effect = normalised if normalised is None or math.isfinite(normalised) else 1e9
    return ColumnDrift(
        name=profile.name,
        source=source,
        kind="numeric",
        status="ok",
        test="ks",
        statistic=finite(statistic),
        p_value=finite(p_value),
        effect=effect,
        effect_measure="wasserstein",
        effect_floor=thresholds.wasserstein,
        material=_material(thresholds, effect, thresholds.wasserstein, psi),
        count=n,
        psi=psi,
        wasserstein=effect,
        reference_hist=[round(float(c), 6) for c in ref_counts / max(ref_counts.sum(), 1)],
        current_hist=[round(float(c), 6) for c in current / n],
        hist_edges=reference.histogram.edges,
    )


def categorical_drift(
    profile: FeatureProfile, window: ColumnWindow, config: DriftConfig, source: ColumnSource = "feature"
) -> ColumnDrift:
    """The 2 x k test of reference and window counts, total variation as the effect."""
    reference = profile.categorical
    if reference is None:
        return _not_enough(profile, source, "the reference has no usable value for this column")
    if not window.present:
        return _not_enough(profile, source, "the column is absent from the window")
    n = window.count
    if n < config.min_rows:
        return _not_enough(profile, source, f"{n} usable values, fewer than {config.min_rows}", n)
    thresholds = config.thresholds(profile.name)
    rows = profile.present
    names = list(reference.shares)
    ref_counts = [reference.count_of(c, rows) for c in names]
    win_counts = [window.categories.get(c, 0) for c in names]
    unseen = sorted(
        (c for c in window.categories if c not in reference.shares), key=lambda c: -window.categories[c]
    )
    if reference.complete:
        ref_counts += [0] * len(unseen)
        win_counts += [window.categories[c] for c in unseen]
    else:
        ref_counts.append(reference.other_rows(rows))
        win_counts.append(sum(window.categories[c] for c in unseen))
    statistic, _, p_value, test = st.contingency_test(ref_counts, win_counts)
    tv = finite(st.total_variation(ref_counts, win_counts))
    ref_shares = np.asarray(ref_counts, dtype=np.float64) / max(sum(ref_counts), 1)
    win_shares = np.maximum(np.asarray(win_counts, dtype=np.float64) / n, st.PSI_FLOOR)
    psi = finite(
        float(
            np.sum(
                (win_shares - np.maximum(ref_shares, st.PSI_FLOOR))
                * np.log(win_shares / np.maximum(ref_shares, st.PSI_FLOOR))
            )
        )
    )
    plotted = names[:MAX_PLOTTED_CATEGORIES]
    rest_ref = 1.0 - sum(reference.shares[c] for c in plotted)
    rest_cur = 1.0 - sum(window.categories.get(c, 0) for c in plotted) / n
    return ColumnDrift(
        name=profile.name,
        source=source,
        kind="categorical",
        status="ok",
        test=test,
        statistic=finite(statistic),
        p_value=finite(p_value),
        effect=tv,
        effect_measure="total_variation",
        effect_floor=thresholds.total_variation,
        material=_material(thresholds, tv, thresholds.total_variation, psi),
        count=n,
        psi=psi,
        total_variation=tv,
        jensen_shannon=finite(st.jensen_shannon(ref_counts, win_counts)),
        unseen=unseen[:MAX_UNSEEN_LISTED] if reference.complete else [],
        unseen_share=round(sum(window.categories[c] for c in unseen) / n, 6) if reference.complete else None,
        reference_hist=[*(reference.shares[c] for c in plotted), round(max(rest_ref, 0.0), 6)],
        current_hist=[
            *(round(window.categories.get(c, 0) / n, 6) for c in plotted),
            round(max(rest_cur, 0.0), 6),
        ],
        hist_labels=[*plotted, "other"],
    )


def column_drift(
    profile: FeatureProfile, window: ColumnWindow, config: DriftConfig, source: ColumnSource = "feature"
) -> ColumnDrift:
    """The drift test of one column (its verdict is settled with the run's other p-values)."""
    if profile.kind == "numeric":
        return numeric_drift(profile, window, config, source)
    return categorical_drift(profile, window, config, source)


def drift_section(columns: list[ColumnDrift], config: DriftConfig) -> DriftSection:
    """The section of settled columns: which drifted, their share, dataset-level drift."""
    evaluated = [c for c in columns if c.status in ("ok", "drift")]
    drifted = [c.name for c in columns if c.drifted]
    share = len(drifted) / len(evaluated) if evaluated else 0.0
    if not evaluated:
        status, reason = "not_enough_data", "no column had enough usable values"
    elif drifted:
        status = "drift"
        reason = f"{len(drifted)} of {len(evaluated)} columns drifted: {', '.join(drifted[:10])}"
    else:
        status, reason = "ok", f"no drift in {len(evaluated)} columns"
    return DriftSection(
        status=status,
        reason=reason,
        columns=columns,
        drifted=drifted,
        share=round(share, 6),
        dataset_drift=bool(evaluated) and share >= config.drift_share,
        drift_share_threshold=config.drift_share,
    )
