"""Data-quality rules of a window against the reference, named after SageMaker Model Monitor's
violation types: missing/extra columns, completeness, data type, out-of-range values, new
categories, cardinality. Reads the same ``ColumnWindow`` objects as drift (no second pass).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from mlambda.schemas.monitoring import DataQualitySection, FeatureProfile, QualityViolation
from mlambda.services.monitoring.drift import ColumnWindow


@dataclass(frozen=True)
class QualityConfig:
    """Tolerances; each is a share of rows unless named otherwise."""

    min_rows: int = 100
    max_missing_increase: float = 0.05
    max_type_mismatch: float = 0.0
    max_out_of_range: float = 0.01
    max_new_category: float = 0.01
    max_cardinality_ratio: float = 2.0


def _column_violations(
    profile: FeatureProfile, window: ColumnWindow, config: QualityConfig
) -> list[QualityViolation]:
    name = profile.name
    if not window.present:
        return [
            QualityViolation(
                check="missing_column", feature=name, message=f"{name} is absent from the window"
            )
        ]
    if window.rows and window.missing == window.rows and profile.missing_rate < 1.0:
        return [
            QualityViolation(
                check="missing_column", feature=name, message=f"{name} is null in every row", value=1.0
            )
        ]
    found: list[QualityViolation] = []
    increase = window.missing_rate - profile.missing_rate
    if increase > config.max_missing_increase:
        found.append(
            QualityViolation(
                check="completeness",
                feature=name,
                message=f"{name}: {window.missing_rate:.1%} missing vs {profile.missing_rate:.1%} in the reference",
                value=round(window.missing_rate, 6),
                threshold=round(profile.missing_rate + config.max_missing_increase, 6),
            )
        )
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
    count = window.count
    if count == 0:
        return found
    if profile.numeric is not None and window.sorted_values is not None:
        values = window.sorted_values
        below = int(np.searchsorted(values, profile.numeric.min, side="left"))
        above = int(values.size - np.searchsorted(values, profile.numeric.max, side="right"))
        share = (below + above) / count
        if share > config.max_out_of_range:
            found.append(
                QualityViolation(
                    check="out_of_range",
                    feature=name,
                    message=(
                        f"{name}: {share:.1%} of values outside the reference range "
                        f"[{profile.numeric.min:g}, {profile.numeric.max:g}] ({below} below, {above} above)"
                    ),
                    value=round(share, 6),
                    threshold=config.max_out_of_range,
                )
            )
    reference = profile.categorical
    if reference is not None:
        complete = reference.cardinality <= len(reference.shares)
        if complete:
            new = {c: n for c, n in window.categories.items() if c not in reference.shares}
            share = sum(new.values()) / count
            if share > config.max_new_category:
                listed = ", ".join(sorted(new, key=lambda c: -new[c])[:5])
                found.append(
                    QualityViolation(
                        check="new_category",
                        feature=name,
                        message=f"{name}: {share:.1%} of values are categories the reference never had ({listed})",
                        value=round(share, 6),
                        threshold=config.max_new_category,
                    )
                )
        cardinality = len(window.categories)
        limit = max(reference.cardinality * config.max_cardinality_ratio, reference.cardinality + 5)
        if cardinality > limit:
            found.append(
                QualityViolation(
                    check="cardinality",
                    feature=name,
                    message=f"{name}: {cardinality} distinct values vs {reference.cardinality} in the reference",
                    value=float(cardinality),
                    threshold=float(limit),
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
    """Every violation of the window; ``not_enough_data`` under ``min_rows`` rows."""
    if rows < config.min_rows:
        return DataQualitySection(
            status="not_enough_data", reason=f"{rows} rows, fewer than {config.min_rows}"
        )
    violations = [
        QualityViolation(
            check="extra_column", feature=name, message=f"{name} is logged but not in the model's schema"
        )
        for name in extra_columns
    ]
    for profile, window in zip(profiles, windows, strict=True):
        violations.extend(_column_violations(profile, window, config))
    missing_rates = {w.name: round(w.missing_rate, 6) for w in windows}
    if violations:
        checks = sorted({v.check for v in violations})
        reason = f"{len(violations)} violations ({', '.join(checks)})"
        return DataQualitySection(
            status="drift", reason=reason, violations=violations, missing_rates=missing_rates
        )
    return DataQualitySection(status="ok", reason="no violation", missing_rates=missing_rates)
