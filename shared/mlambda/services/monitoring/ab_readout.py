"""A/B readout: per variant of the endpoint config (and the shadow), the quality on labelled rows,
the significance of each variant's difference from the control, and a sample-ratio-mismatch check.

The control is the variant with the largest configured weight. Classifiers are compared on
accuracy with a two-proportion z-test, regressors on mean absolute error with a Welch z-test.
Sample-ratio mismatch is a chi-square of served requests (the unit the router assigns; a
50-row request is one assignment, not 50) against the configured weights (a specification, not a
sample: the one goodness-of-fit test against fixed shares); its p-value joins the run's alarm
budget. Rows for unconfigured or zero-weight variants are a mismatch outright. Each comparison
says which way a significant difference goes (``better``/``worse`` than the control, by the
metric's direction), so a report never shows a significantly worse variant as fine.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from mlambda.schemas.monitoring import AbSection, VariantComparison, VariantReadout
from mlambda.schemas.registry import EndpointConfig
from mlambda.services.monitoring import statistics as st
from mlambda.services.monitoring.drift import finite
from mlambda.services.monitoring.profiling import FloatArray

SHADOW = "shadow"


@dataclass(frozen=True)
class AbSettings:
    """Minimum rows, and the significance levels of the comparison and of the SRM check."""

    min_rows: int = 100
    alpha: float = 0.05


@dataclass(frozen=True)
class ServedRows:
    """The window's rows as the readout needs them, aligned by position."""

    variants: npt.NDArray[np.object_]
    shadow: npt.NDArray[np.bool_]
    versions: npt.NDArray[np.int64]
    outcome: FloatArray  # classifiers: 1.0 correct / 0.0 wrong; regressors: |error|; NaN unlabelled
    requests: npt.NDArray[np.object_] | None = None  # request id per row; None: each row its own


def assignments(rows: ServedRows, mask: npt.NDArray[np.bool_]) -> int:
    """How many routing decisions the ``mask``ed rows came from (distinct requests)."""
    if rows.requests is None:
        return int(mask.sum())
    return len(set(rows.requests[mask].tolist()))


def _readout(
    name: str, mask: npt.NDArray[np.bool_], rows: ServedRows, task: str, total: int
) -> VariantReadout:
    outcome = rows.outcome[mask]
    labelled = outcome[np.isfinite(outcome)]
    metrics: dict[str, float] = {}
    if labelled.size:
        metrics["accuracy" if task == "classification" else "mae"] = round(float(labelled.mean()), 6)
    return VariantReadout(
        variant=name,
        versions=sorted(int(v) for v in np.unique(rows.versions[mask]) if v >= 0),
        rows=int(mask.sum()),
        share=round(float(mask.sum()) / total, 6) if total else 0.0,
        labelled=int(labelled.size),
        metrics=metrics,
    )


def _compare(
    name: str, control: str, a: FloatArray, b: FloatArray, *, task: str, alpha: float
) -> VariantComparison:
    metric = "accuracy" if task == "classification" else "mae"
    if a.size == 0 or b.size == 0:
        return VariantComparison(variant=name, control=control, metric=metric, test="no labelled rows")
    if task == "classification":
        z, p = st.two_proportion_z(int(a.sum()), a.size, int(b.sum()), b.size)
        test = "two-proportion z"
    else:
        z, p = st.welch_z(a, b)
        test = "welch z"
    p_value = finite(p)
    difference = finite(float(b.mean() - a.mean()))
    significant = p_value is not None and p_value < alpha
    direction = "none"
    if significant and difference is not None and difference != 0:
        higher_better = task == "classification"  # accuracy up is better; mean absolute error down is
        direction = "better" if (difference > 0) == higher_better else "worse"
    return VariantComparison(
        variant=name,
        control=control,
        metric=metric,
        difference=difference,
        statistic=finite(z),
        p_value=p_value,
        significant=significant,
        direction=direction,
        test=test,
    )


def ab_readout(
    rows: ServedRows, config: EndpointConfig | None, task: str, settings: AbSettings
) -> AbSection | None:
    """The readout, or None when the window has a single arm and no endpoint splits traffic."""
    served = ~rows.shadow
    names = sorted({str(v) for v in rows.variants[served].tolist()})
    configured = {v.name: v for v in config.variants} if config else {}
    arms = sorted(set(names) | set(configured))
    has_shadow = bool(rows.shadow.any())
    if len(arms) < 2 and not has_shadow:
        return None
    total = int(served.sum())
    readouts = []
    for name in arms:
        readout = _readout(name, served & (rows.variants == name), rows, task, total)
        if name in configured:
            readout = readout.model_copy(
                update={"target": configured[name].target, "weight": configured[name].weight}
            )
        readouts.append(readout)
    if has_shadow:
        shadow = _readout(SHADOW, rows.shadow, rows, task, int(rows.shadow.sum()))
        readouts.append(
            shadow.model_copy(update={"target": config.shadow.target if config and config.shadow else None})
        )
    if total < settings.min_rows:
        return AbSection(
            status="not_enough_data",
            reason=f"{total} served rows, fewer than {settings.min_rows}",
            variants=readouts,
        )
    control = max(arms, key=lambda n: (configured[n].weight if n in configured else -1, -arms.index(n)))
    outcome_of = {name: rows.outcome[served & (rows.variants == name)] for name in arms}
    outcome_of[SHADOW] = rows.outcome[rows.shadow]
    control_outcome = outcome_of[control][np.isfinite(outcome_of[control])]
    comparisons = [
        _compare(
            name,
            control,
            control_outcome,
            outcome_of[name][np.isfinite(outcome_of[name])],
            task=task,
            alpha=settings.alpha,
        )
        for name in [*arms, *([SHADOW] if has_shadow else [])]
        if name != control
    ]
    srm_chi = srm_p = None
    mismatch = False
    reasons: list[str] = []
    if configured:
        counts = np.asarray(
            [
                assignments(rows, served & (rows.variants == r.variant))
                for r in readouts
                if r.variant in configured
            ],
            dtype=np.float64,
        )
        weights = np.asarray(
            [configured[r.variant].weight for r in readouts if r.variant in configured], dtype=np.float64
        )
        unexpected = [
            r.variant for r in readouts if r.variant not in configured and r.variant != SHADOW and r.rows
        ]
        starved = counts[weights == 0].sum()
        statistic, _, p = st.chi_square(counts[weights > 0], weights[weights > 0], min_expected=0.0)
        srm_chi, srm_p = finite(statistic), finite(p)
        mismatch = bool(unexpected) or starved > 0
        if mismatch:
            reasons.append(
                "sample ratio mismatch ("
                + ", ".join(
                    ([f"rows for unconfigured variants {unexpected}"] if unexpected else [])
                    + ([f"{int(starved)} requests for zero-weight variants"] if starved else [])
                )
                + ")"
            )
    significant = [f"{c.variant} ({c.direction})" for c in comparisons if c.significant]
    if significant:
        reasons.append(f"significant differences from {control}: {', '.join(significant)}")
    return AbSection(
        status="drift" if mismatch else "ok",
        reason="; ".join(reasons) or f"{len(arms)} variants, no mismatch",
        variants=readouts,
        comparisons=comparisons,
        srm_chi_square=srm_chi,
        srm_p_value=srm_p,
        sample_ratio_mismatch=mismatch,
    )
