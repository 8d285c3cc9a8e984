"""Per-column drift of a window against a reference profile, the test chosen by type and size.

- numeric, >= ``large_sample`` usable rows: PSI on the reference's decile bins (distance;
  p-values flag everything at large n);
- numeric, fewer rows (but >= ``min_rows``): Kolmogorov-Smirnov against the reference sketch,
  p-value adjusted with Benjamini-Hochberg across the columns of the section;
- categorical: Jensen-Shannon distance (large) or chi-square goodness of fit (small), with
  categories never seen in the reference reported (and kept out of the chi-square, so a stray
  new value is a data-quality finding, not a drift verdict).

KS, normalised Wasserstein, PSI and JS are reported whatever the verdict's test.
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

WINDOW_SKETCH = 2000
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
    """Sample-size rules and thresholds (defaults plus per-column overrides)."""

    min_rows: int = 100
    large_sample: int = 1000
    drift_share: float = 0.5
    defaults: Thresholds = field(default_factory=Thresholds)
    overrides: Mapping[str, Thresholds] = field(default_factory=dict)

    def thresholds(self, column: str) -> Thresholds:
        """The thresholds ``column`` is judged by."""
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


def numeric_drift(
    profile: FeatureProfile, window: ColumnWindow, config: DriftConfig, source: ColumnSource = "feature"
) -> ColumnDrift:
    """PSI, KS (+ raw p-value), normalised Wasserstein; the verdict by sample size."""
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
    edges = np.asarray(reference.bin_edges, dtype=np.float64)
    psi = st.psi(reference.bin_shares, bin_counts(edges, values, is_sorted=True))
    sketch = np.asarray(reference.sketch, dtype=np.float64)
    ks = st.ks_statistic(sketch, values)
    ks_p = st.ks_pvalue(ks, profile.present, n)
    ranks = np.round(np.linspace(0, n - 1, min(n, WINDOW_SKETCH))).astype(np.int64)
    wasserstein = st.wasserstein_distance(sketch, values[ranks])
    normalised = wasserstein / reference.std if reference.std > 0 else None
    hist_edges = np.asarray(reference.histogram.edges, dtype=np.float64)
    current = histogram_sorted(values, hist_edges)
    ref_counts = np.asarray(reference.histogram.counts, dtype=np.float64)
    large = n >= config.large_sample
    drifted = large and psi >= thresholds.psi
    return ColumnDrift(
        name=profile.name,
        source=source,
        kind="numeric",
        status="drift" if drifted else "ok",
        method="distance" if large else "p_value",
        test="psi" if large else "ks",
        score=finite(psi) if large else finite(ks_p),
        distance=finite(psi),
        threshold=thresholds.psi if large else thresholds.alpha,
        drifted=drifted,
        count=n,
        psi=finite(psi),
        ks=finite(ks),
        ks_p_value=finite(ks_p),
        wasserstein=finite(normalised),
        reference_hist=[round(float(c), 6) for c in ref_counts / max(ref_counts.sum(), 1)],
        current_hist=[round(float(c), 6) for c in current / n],
        hist_edges=reference.histogram.edges,
    )


def categorical_drift(
    profile: FeatureProfile, window: ColumnWindow, config: DriftConfig, source: ColumnSource = "feature"
) -> ColumnDrift:
    """Jensen-Shannon and chi-square over the reference's top categories plus 'other'."""
    reference = profile.categorical
    if reference is None:
        return _not_enough(profile, source, "the reference has no usable value for this column")
    if not window.present:
        return _not_enough(profile, source, "the column is absent from the window")
    n = window.count
    if n < config.min_rows:
        return _not_enough(profile, source, f"{n} usable values, fewer than {config.min_rows}", n)
    thresholds = config.thresholds(profile.name)
    names = list(reference.shares)
    known = np.asarray([window.categories.get(c, 0) for c in names], dtype=np.float64)
    outside = float(n - known.sum())
    expected = np.asarray([reference.shares[c] for c in names], dtype=np.float64)
    unseen = sorted(
        (c for c in window.categories if c not in reference.shares), key=lambda c: -window.categories[c]
    )
    complete = reference.cardinality <= len(names)
    js = st.jensen_shannon(np.append(expected, reference.other_share), np.append(known, outside))
    if reference.other_share > 0:
        chi, _, chi_p = st.chi_square(np.append(known, outside), np.append(expected, reference.other_share))
    else:
        chi, _, chi_p = st.chi_square(known, expected)
    large = n >= config.large_sample
    drifted = large and js >= thresholds.jensen_shannon
    plotted = names[:MAX_PLOTTED_CATEGORIES]
    rest_ref = 1.0 - sum(reference.shares[c] for c in plotted)
    rest_cur = 1.0 - sum(window.categories.get(c, 0) for c in plotted) / n
    return ColumnDrift(
        name=profile.name,
        source=source,
        kind="categorical",
        status="drift" if drifted else "ok",
        method="distance" if large else "p_value",
        test="jensen_shannon" if large else "chi_square",
        score=finite(js) if large else finite(chi_p),
        distance=finite(js),
        threshold=thresholds.jensen_shannon if large else thresholds.alpha,
        drifted=drifted,
        count=n,
        jensen_shannon=finite(js),
        chi_square=finite(chi),
        chi_square_p_value=finite(chi_p),
        unseen=unseen[:MAX_UNSEEN_LISTED] if complete else [],
        unseen_share=round(sum(window.categories[c] for c in unseen) / n, 6) if complete else None,
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
    """The drift verdict of one column (p-value verdicts are settled by ``drift_section``)."""
    if profile.kind == "numeric":
        return numeric_drift(profile, window, config, source)
    return categorical_drift(profile, window, config, source)


def drift_section(columns: list[ColumnDrift], config: DriftConfig) -> DriftSection:
    """Adjust the p-value verdicts across columns (BH) and decide dataset-level drift."""
    tested = [c for c in columns if c.method == "p_value"]
    raw = [c.ks_p_value if c.kind == "numeric" else c.chi_square_p_value for c in tested]
    adjusted = st.benjamini_hochberg([math.nan if p is None else p for p in raw])
    settled: dict[str, ColumnDrift] = {}
    for column, p_adj in zip(tested, adjusted, strict=True):
        alpha = config.thresholds(column.name).alpha
        drifted = math.isfinite(p_adj) and p_adj < alpha
        settled[column.name] = column.model_copy(
            update={
                "p_value_adjusted": finite(p_adj),
                "score": finite(p_adj),
                "drifted": drifted,
                "status": "drift" if drifted else "ok",
            }
        )
    final = [settled.get(c.name, c) for c in columns]
    evaluated = [c for c in final if c.status in ("ok", "drift")]
    drifted_names = [c.name for c in final if c.drifted]
    share = len(drifted_names) / len(evaluated) if evaluated else 0.0
    methods = {c.method for c in evaluated}
    if not evaluated:
        status, reason = "not_enough_data", "no column had enough usable values"
    elif drifted_names:
        status = "drift"
        reason = f"{len(drifted_names)} of {len(evaluated)} columns drifted: {', '.join(drifted_names[:10])}"
    else:
        status, reason = "ok", f"no drift in {len(evaluated)} columns"
    return DriftSection(
        status=status,
        reason=reason,
        method=methods.pop() if len(methods) == 1 else None,
        columns=final,
        drifted=drifted_names,
        share=round(share, 6),
        dataset_drift=bool(evaluated) and share >= config.drift_share,
        drift_share_threshold=config.drift_share,
    )
