"""One alarm budget per run: every p-value of a run in one Benjamini-Hochberg procedure at ``q``.

A run asks dozens of questions at once (each feature, each output, the labels, each chance
data-quality rule, each model-quality and estimated metric, the traffic split). Tested one by
one at 1% each, a run on unchanged data would alarm most of the time; corrected per section, the
small sections (two prediction columns, a handful of quality rules) would get no protection.
So all of them go through one false-discovery control at ``q``: on unchanged data every p-value
is (at least) uniform, every null is true, and BH then alarms with probability at most ``q``
(exactly its false-discovery rate, for independent or positively dependent tests). With real
changes it keeps the expected share of false alarms among the alarms at or below ``q``.

A test alarms when its adjusted p-value is at most ``q`` *and* its effect reaches its floor
(``material``): significance says the change is real, the floor that it matters.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

from mlambda.schemas.monitoring import (
    AlarmBudget,
    ColumnDrift,
    DriftSection,
    MetricEstimate,
    MonitoringReport,
    PerformanceEstimate,
    QualityViolation,
)
from mlambda.services.monitoring import statistics as st
from mlambda.services.monitoring.data_quality import quality_section
from mlambda.services.monitoring.drift import DriftConfig, drift_section
from mlambda.services.monitoring.model_quality import materially_worse

DEFAULT_Q = 0.01


@dataclass
class _Test:
    p_value: float
    material: bool
    settle: Callable[[float, bool], None]


def _drift_tests(section: DriftSection | None, tests: list[_Test]) -> list[ColumnDrift] | None:
    if section is None:
        return None
    settled = list(section.columns)
    for index, column in enumerate(settled):
        if column.p_value is None:
            continue

        def settle(adjusted: float, alarm: bool, index: int = index) -> None:
            column = settled[index]
            settled[index] = column.model_copy(
                update={"p_value_adjusted": adjusted, "drifted": alarm, "status": "drift" if alarm else "ok"}
            )

        tests.append(_Test(column.p_value, column.material, settle))
    return settled


def settle(report: MonitoringReport, q: float, drift: DriftConfig, tolerance: float) -> MonitoringReport:
    """``report`` with every verdict decided by one BH at ``q`` over all its p-values."""
    tests: list[_Test] = []
    features = _drift_tests(report.feature_drift, tests)
    outputs = _drift_tests(report.prediction_drift, tests)
    labels = _drift_tests(report.label_drift, tests)

    findings: list[QualityViolation] = list(report.data_quality.findings) if report.data_quality else []
    for index, finding in enumerate(findings):
        if finding.p_value is None:
            continue
        material = (
            finding.value is not None and finding.threshold is not None and finding.value >= finding.threshold
        )

        def settle_finding(adjusted: float, alarm: bool, index: int = index) -> None:
            findings[index] = findings[index].model_copy(
                update={"p_value_adjusted": adjusted, "violated": alarm}
            )

        tests.append(_Test(finding.p_value, material, settle_finding))

    quality: dict[str, MetricEstimate] = dict(report.model_quality.metrics) if report.model_quality else {}
    for name, metric in quality.items():
        if metric.p_value is None:
            continue
        baseline = metric.reference if metric.reference is not None else metric.registered

        def settle_metric(adjusted: float, alarm: bool, name: str = name) -> None:
            quality[name] = quality[name].model_copy(update={"p_value_adjusted": adjusted, "degraded": alarm})

        tests.append(_Test(metric.p_value, materially_worse(metric, baseline, tolerance), settle_metric))

    estimated: dict[str, PerformanceEstimate] = (
        dict(report.estimated_performance.metrics) if report.estimated_performance else {}
    )
    for name, estimate in estimated.items():
        if estimate.p_value is None:
            continue
        material = estimate.reference is not None and estimate.value < estimate.reference - tolerance

        def settle_estimate(adjusted: float, alarm: bool, name: str = name) -> None:
            estimated[name] = estimated[name].model_copy(
                update={"p_value_adjusted": adjusted, "degraded": alarm}
            )

        tests.append(_Test(estimate.p_value, material, settle_estimate))

    ab = report.ab
    srm: dict[str, object] = {}
    if ab is not None and ab.srm_p_value is not None:

        def settle_srm(adjusted: float, alarm: bool) -> None:
            srm["srm_p_value_adjusted"] = adjusted
            srm["sample_ratio_mismatch"] = ab.sample_ratio_mismatch or alarm

        tests.append(_Test(ab.srm_p_value, True, settle_srm))

    adjusted = st.benjamini_hochberg([t.p_value for t in tests])
    significant = alarms = 0
    for test, p_adjusted in zip(tests, adjusted, strict=True):
        hit = math.isfinite(p_adjusted) and p_adjusted <= q
        alarm = hit and test.material
        significant += hit
        alarms += alarm
        test.settle(round(p_adjusted, 8) if math.isfinite(p_adjusted) else 1.0, alarm)

    update: dict[str, object] = {
        "budget": AlarmBudget(
            q=q, tests=sum(1 for p in adjusted if math.isfinite(p)), significant=significant, alarms=alarms
        )
    }
    if features is not None:
        update["feature_drift"] = drift_section(features, drift)
    if outputs is not None:
        update["prediction_drift"] = drift_section(outputs, drift)
    if labels is not None:
        update["label_drift"] = drift_section(labels, drift)
    if report.data_quality is not None and report.data_quality.status != "not_enough_data":
        structural = [v for v in report.data_quality.violations if v.p_value is None]
        update["data_quality"] = quality_section(structural, findings, report.data_quality.missing_rates)
    if report.model_quality is not None and quality:
        degraded = [n for n, m in quality.items() if m.degraded]
        section = report.model_quality
        reason = section.reason
        if degraded:
            reason = f"worse than the {section.baseline or 'baseline'}: {', '.join(degraded)}"
        update["model_quality"] = section.model_copy(
            update={
                "metrics": quality,
                "degraded": degraded,
                "status": "drift" if degraded else section.status,
                "reason": reason,
            }
        )
    if report.estimated_performance is not None and estimated:
        degraded = [n for n, m in estimated.items() if m.degraded]
        section_e = report.estimated_performance
        update["estimated_performance"] = section_e.model_copy(
            update={
                "metrics": estimated,
                "degraded": degraded,
                "status": "drift" if degraded else section_e.status,
                "reason": f"estimated worse than on the reference: {', '.join(degraded)}"
                if degraded
                else section_e.reason,
            }
        )
    if ab is not None and srm:
        mismatch = bool(srm.get("sample_ratio_mismatch"))
        reason = ab.reason
        if mismatch and not ab.sample_ratio_mismatch:
            reason = f"sample ratio mismatch (p={ab.srm_p_value:.2g}); {reason}"
        update["ab"] = ab.model_copy(
            update={**srm, "status": "drift" if mismatch else ab.status, "reason": reason}
        )
    return report.model_copy(update=update)
