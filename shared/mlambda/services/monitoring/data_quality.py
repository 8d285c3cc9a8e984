"""Data-quality rules of a window against the reference, named after SageMaker Model Monitor's
violation types. Reads the same ``ColumnWindow`` objects as drift (no second pass).

Two kinds of rule:

- structural, which unchanged data cannot break: a column missing or extra, values that are not
  numbers in a numeric column, a number of distinct values far beyond what a sample of that
  size could show. A violation as soon as seen.
- chance, which unchanged data breaks now and then, and is judged against what chance gives for
  samples of these sizes, with a p-value in the run's alarm budget plus a floor on the share:
  * completeness: more missing values than the reference (Fisher's exact test, one-sided);
  * out of range: values beyond the reference's [min, max]; by chance their count is
    BetaBinomial(m, 2, n - 1) (``statistics.outside_range_pvalue``);
  * new categories: window rows whose category the reference (complete list) never had,
    bounded by relabelling the pooled rows (``statistics.new_category_pvalue``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from mlambda.schemas.monitoring import DataQualitySection, FeatureProfile, QualityViolation
from mlambda.services.monitoring import statistics as st
from mlambda.services.monitoring.drift import ColumnWindow, finite


@dataclass(frozen=True)
class QualityConfig:
    """Floors of the chance rules (shares of rows) and the structural tolerances."""

    min_rows: int = 100
    max_missing_increase: float = 0.01
    max_type_mismatch: float = 0.0
    max_out_of_range: float = 0.001
    max_new_category: float = 0.001
    max_cardinality_ratio: float = 2.0


def _structural(
    profile: FeatureProfile, window: ColumnWindow, config: QualityConfig
) -> list[QualityViolation]:
    name = profile.name
    if not window.present:
        return [
            QualityViolation(
                check="missing_column", feature=name, message=f"{name} is absent from the window"
            )
        ]
    found: list[QualityViolation] = []
    if window.rows and window.mismatched / window.rows > config.max_type_mismatch:
        found.append(
            QualityViolation(
                check="data_type",
                feature=name,
                message=f"{name}: {window.mismatched} values are not numbers",
                value=round(window.mismatched / window.rows, 6),
                threshold=config.max_type_mismatch,
            )
        )
    reference = profile.categorical
    if reference is not None and window.count:
        # distinct values grow at most linearly with the sample: scale the reference's count to the window's size
        scale = max(1.0, window.count / max(profile.present, 1))
        limit = reference.cardinality * config.max_cardinality_ratio * scale + 5
        cardinality = len(window.categories)
        if cardinality > limit:
            found.append(
                QualityViolation(
                    check="cardinality",
                    feature=name,
                    message=f"{name}: {cardinality} distinct values vs {reference.cardinality} in the reference",
                    value=float(cardinality),
                    threshold=round(limit, 3),
                )
            )
    return found


def _chance(profile: FeatureProfile, window: ColumnWindow, config: QualityConfig) -> list[QualityViolation]:
    name = profile.name
    if not window.present:
        return []
    found: list[QualityViolation] = []
    increase = window.missing_rate - profile.missing_rate
    if increase > 0:
        p = st.proportion_increase_test(profile.missing, profile.count, window.missing, window.rows)
        every = window.missing == window.rows
        found.append(
            QualityViolation(
                check="completeness",
                feature=name,
                message=(
                    f"{name} is null in every row"
                    if every
                    else f"{name}: {window.missing_rate:.1%} missing vs {profile.missing_rate:.1%} in the reference"
                ),
                value=round(increase, 6),
                threshold=config.max_missing_increase,
                p_value=finite(p),
                violated=False,
            )
        )
    count = window.count
    if count == 0:
        return found
    if profile.numeric is not None and window.sorted_values is not None:
        values = window.sorted_values
        below = int(np.searchsorted(values, profile.numeric.min, side="left"))
        above = int(values.size - np.searchsorted(values, profile.numeric.max, side="right"))
        if below + above:
            share = (below + above) / count
            found.append(
                QualityViolation(
                    check="out_of_range",
                    feature=name,
                    message=(
                        f"{name}: {share:.2%} of values outside the reference range "
                        f"[{profile.numeric.min:g}, {profile.numeric.max:g}] ({below} below, {above} above)"
                    ),
                    value=round(share, 6),
                    threshold=config.max_out_of_range,
                    p_value=finite(st.outside_range_pvalue(below + above, count, profile.present)),
                    violated=False,
                )
            )
    reference = profile.categorical
    if reference is not None and reference.complete:
        new = {c: n for c, n in window.categories.items() if c not in reference.shares}
        if new:
            rows = profile.present
            names = list(reference.shares)
            ref_counts = [reference.count_of(c, rows) for c in names] + [0] * len(new)
            win_counts = [window.categories.get(c, 0) for c in names] + list(new.values())
            share = sum(new.values()) / count
            listed = ", ".join(sorted(new, key=lambda c: -new[c])[:5])
            found.append(
                QualityViolation(
                    check="new_category",
                    feature=name,
                    message=f"{name}: {share:.2%} of values are categories the reference never had ({listed})",
                    value=round(share, 6),
                    threshold=config.max_new_category,
                    p_value=finite(st.new_category_pvalue(ref_counts, win_counts, sum(new.values()))),
                    violated=False,
                )
            )
    return found


def data_quality(
    profiles: Sequence[FeatureProfile],
    windows: Sequence[ColumnWindow],
    extra_columns: Sequence[str],
    rows: int,
    config: QualityConfig,
) -> DataQualitySection:
    """Structural violations and chance findings (violated once the run's budget settles them)."""
    if rows < config.min_rows:
        return DataQualitySection(
            status="not_enough_data", reason=f"{rows} rows, fewer than {config.min_rows}"
        )
    structural = [
        QualityViolation(
            check="extra_column", feature=name, message=f"{name} is logged but not in the model's schema"
        )
        for name in extra_columns
    ]
    findings: list[QualityViolation] = []
    for profile, window in zip(profiles, windows, strict=True):
        structural.extend(_structural(profile, window, config))
        findings.extend(_chance(profile, window, config))
    missing_rates = {w.name: round(w.missing_rate, 6) for w in windows}
    return quality_section(structural, findings, missing_rates)


def quality_section(
    structural: Sequence[QualityViolation],
    findings: Sequence[QualityViolation],
    missing_rates: dict[str, float],
) -> DataQualitySection:
    """The section from structural violations and (settled) chance findings."""
    violations = [*structural, *(f for f in findings if f.violated)]
    if violations:
        checks = sorted({v.check for v in violations})
        return DataQualitySection(
            status="drift",
            reason=f"{len(violations)} violations ({', '.join(checks)})",
            violations=violations,
            findings=list(findings),
            missing_rates=missing_rates,
        )
    return DataQualitySection(
        status="ok",
        reason=f"no violation ({len(findings)} chance findings within what chance gives)"
        if findings
        else "no violation",
        findings=list(findings),
        missing_rates=missing_rates,
    )
