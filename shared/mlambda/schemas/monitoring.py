"""Reference profiles (what "normal" looked like at registration) and monitoring reports.

The registry computes a ``ReferenceProfile`` from the reference sample when a version is
registered and stores it as JSON at ``models/<name>/v<N>/reference_profile.json`` in the
artifacts bucket (``ModelVersion.reference_profile_key``). Monitoring compares each window of
served traffic (and each completed batch job) with it, so the profile holds sufficient
statistics for every test it runs:

- numeric features: PSI bins on the reference deciles (``bin_edges`` are the finite inner edges;
  the first bin is ``(-inf, e0]``, the last ``(e_k, +inf)``, bins closed on the right so that a
  discrete value equal to an edge falls in one bin), the reference share per bin, a compact
  equal-width histogram for plots, and a quantile sketch (``sketch``: order statistics at evenly
  spaced ranks, min and max included; every value when there are fewer than the sketch size).
  The sketch bounds the reference CDF between its points, which is what the two-sample KS test
  and W1 need against windows of any size;
- categorical features (string, bool): the top-K categories with their counts and shares plus
  an "other" share and the number of distinct values.

Prediction outputs are profiled the same way under their archive column names
(``prediction.label``, ``prediction.value``, ``prediction.probabilities.<class>``), so output
drift reuses the feature tests; they are the model's outputs on the reference rows, which must
be held out from training (in-sample outputs are more confident than anything served). With the
reference's target column (format 2) the profile also holds the target's distribution (label
drift), the model-quality baseline on the reference (metrics with intervals) and, for
classifiers with probabilities, the isotonic calibration maps that performance estimation
without labels (CBPE) applies to served probabilities. Kept small (tens of KB) by bounding the
sketch, bins, top-K and calibration breakpoints.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

PROFILE_FORMAT = 2
PREDICTION_PREFIX = "prediction."
OTHER_CATEGORY = "__other__"

FeatureKind = Literal["numeric", "categorical"]


def iso(at: datetime) -> str:
    """UTC second-precision ISO time, as report keys and summary sort keys spell it (sorts as text)."""
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class Histogram(BaseModel):
    """Equal-width counts for plotting: ``len(edges) == len(counts) + 1``."""

    model_config = ConfigDict(frozen=True)

    edges: list[float]
    counts: list[int]


class NumericProfile(BaseModel):
    """Distribution of a numeric column's finite values."""

    model_config = ConfigDict(frozen=True)

    min: float
    max: float
    mean: float
    std: float
    quantiles: dict[str, float] = Field(description="'p01', 'p05', 'p25', 'p50', 'p75', 'p95', 'p99'")
    bin_edges: list[float] = Field(description="finite inner PSI edges (unique reference deciles)")
    bin_shares: list[float] = Field(description="reference share per PSI bin; len(bin_edges) + 1 entries")
    histogram: Histogram
    sketch: list[float] = Field(description="sorted order statistics at evenly spaced ranks, min..max")
    integral: bool = Field(False, description="every value is a whole number (ints stored as floats)")


class CategoricalProfile(BaseModel):
    """Top categories of a string/bool column (values as strings, bools as 'true'/'false')."""

    model_config = ConfigDict(frozen=True)

    shares: dict[str, float] = Field(description="share of non-missing rows per top-K category")
    other_share: float = Field(0.0, description="share of non-missing rows outside the top K")
    cardinality: int = Field(description="distinct non-missing values in the reference")
    counts: dict[str, int] | None = Field(
        None, description="rows per top-K category (format 2; older profiles: shares x rows)"
    )
    other_count: int | None = Field(None, description="rows outside the top K (format 2)")

    @property
    def complete(self) -> bool:
        """Every category of the reference is listed (so a category outside the list is new)."""
        return self.cardinality <= len(self.shares)

    def count_of(self, category: str, rows: int) -> int:
        """Reference rows of ``category`` (0 when not listed)."""
        if self.counts is not None:
            return self.counts.get(category, 0)
        return round(self.shares.get(category, 0.0) * rows)

    def other_rows(self, rows: int) -> int:
        """Reference rows outside the listed categories."""
        if self.other_count is not None:
            return self.other_count
        return round(self.other_share * rows)


class FeatureProfile(BaseModel):
    """One column's reference statistics."""

    model_config = ConfigDict(frozen=True)

    name: str
    kind: FeatureKind
    dtype: str = Field(description="declared feature type ('float', 'int', 'string', 'bool') or output type")
    count: int = Field(description="rows, missing ones included")
    missing: int = Field(description="rows with no usable value (null, NaN, infinity)")
    numeric: NumericProfile | None = None
    categorical: CategoricalProfile | None = None

    @property
    def missing_rate(self) -> float:
        """Share of rows with no usable value."""
        return self.missing / self.count if self.count else 0.0

    @property
    def present(self) -> int:
        """Rows with a usable value."""
        return self.count - self.missing


class ProfileSettings(BaseModel):
    """How the profile was computed (monitoring reuses the bin count and top-K)."""

    model_config = ConfigDict(frozen=True)

    bins: int = Field(10, ge=2, le=50, description="PSI bins on reference quantiles")
    histogram_bins: int = Field(20, ge=2, le=100)
    sketch_size: int = Field(500, ge=10, le=5000)
    top_k: int = Field(20, ge=1, le=200)


class MetricEstimate(BaseModel):
    """A quality metric with its 95% interval, and what it is compared with."""

    value: float
    low: float | None = None
    high: float | None = None
    se: float | None = Field(None, description="standard error (two-sample comparisons use it)")
    method: str = Field("", description="how the interval was made: bca, delong, studentized...")
    reference: float | None = Field(None, description="the same metric on the reference (baseline)")
    registered: float | None = Field(None, description="the value registered with the version")
    higher_is_better: bool = True
    p_value: float | None = Field(None, description="one-sided: worse than the baseline by chance")
    p_value_adjusted: float | None = None
    degraded: bool = False


class ProbabilityCalibration(BaseModel):
    """Isotonic map of one class's predicted probability to its observed frequency on the reference.

    Step function: a probability p maps to ``values[i]`` for the first ``i`` with p <= ``upper[i]``
    (the last value beyond the last bound).
    """

    model_config = ConfigDict(frozen=True)

    upper: list[float]
    values: list[float]
    counts: list[int] = Field(
        default_factory=list,
        description=(
            "reference rows behind each value: the map's own uncertainty, which CBPE's intervals carry "
            "(empty in profiles made before it was recorded: their intervals omit it)"
        ),
    )


class ModelBaseline(BaseModel):
    """Model quality on the reference rows (held out from training): what served quality is compared with."""

    model_config = ConfigDict(frozen=True)

    task: str
    rows: int = Field(description="reference rows with a target and a prediction")
    classes: list[str] = Field(default_factory=list, description="canonical class labels, model order")
    metrics: dict[str, MetricEstimate] = Field(default_factory=dict)
    calibration: dict[str, ProbabilityCalibration] = Field(
        default_factory=dict, description="per class (binary: the positive class only), for CBPE"
    )
    estimated: dict[str, MetricEstimate] = Field(
        default_factory=dict,
        description="CBPE's estimates on the reference itself (the estimator's baseline)",
    )


class ReferenceProfile(BaseModel):
    """What the reference data, its target and the model's outputs on it looked like."""

    model_config = ConfigDict(frozen=True)

    format: int = PROFILE_FORMAT
    created_at: datetime
    row_count: int
    settings: ProfileSettings = Field(default_factory=ProfileSettings)
    features: list[FeatureProfile]
    predictions: list[FeatureProfile] = Field(
        default_factory=list, description="output columns named as in the archive ('prediction.label'...)"
    )
    target: FeatureProfile | None = Field(None, description="the reference's target column (labels)")
    baseline: ModelBaseline | None = None

    @property
    def feature_names(self) -> list[str]:
        """Profiled features, in schema order."""
        return [f.name for f in self.features]

    def feature(self, name: str) -> FeatureProfile | None:
        """The profile of feature or output column ``name``, or None."""
        for profile in (*self.features, *self.predictions):
            if profile.name == name:
                return profile
        return None

    def to_json(self) -> bytes:
        """Compact JSON for the artifacts bucket."""
        return self.model_dump_json(exclude_none=True).encode()

    @classmethod
    def from_json(cls, body: bytes | str) -> ReferenceProfile:
        """Parse a stored profile (pydantic ValidationError when it is not one)."""
        return cls.model_validate_json(body)


# ---------------------------------------------------------------- monitoring reports

Status = Literal["ok", "drift", "not_enough_data", "error"]
DriftTest = Literal["ks", "chi_square", "fisher_exact"]
EffectMeasure = Literal["wasserstein", "total_variation", "psi"]
ColumnSource = Literal["feature", "prediction", "label"]
ReportSource = Literal["traffic", "batch"]
QualityCheck = Literal[
    "missing_column",
    "extra_column",
    "completeness",
    "data_type",
    "out_of_range",
    "new_category",
    "cardinality",
]


class Thresholds(BaseModel):
    """Effect-size floors of one column: drift needs a significant test *and* a material change.

    The significance level is not per column: every p-value of a run shares one false-discovery
    budget (``MONITOR_FDR_Q``). The floors keep large windows from flagging shifts too small to
    matter; small windows rarely reach them by noise alone and are held by the test.
    """

    model_config = ConfigDict(frozen=True)

    wasserstein: float = Field(
        0.05, ge=0, description="numeric: W1 / reference standard deviation (a shift of 0.1 sd is 0.1)"
    )
    total_variation: float = Field(
        0.05, ge=0, le=1, description="categorical: half the L1 distance of the shares (20% -> 30%: 0.10)"
    )
    psi: float | None = Field(None, gt=0, description="optional: PSI must also reach this (either kind)")


class ColumnDrift(BaseModel):
    """One feature's, output's or label's drift verdict with every statistic computed for it."""

    name: str
    source: ColumnSource = "feature"
    kind: FeatureKind
    status: Status
    reason: str = ""
    test: DriftTest | None = None
    statistic: float | None = Field(None, description="KS D (lower bound from the sketch) or chi-square")
    p_value: float | None = Field(None, description="two-sample test, before the run's FDR control")
    p_value_adjusted: float | None = Field(
        None, description="Benjamini-Hochberg over every p-value of the run"
    )
    effect: float | None = Field(None, description="the floor's measure (W1/sd, total variation or PSI)")
    effect_measure: EffectMeasure | None = None
    effect_floor: float | None = None
    material: bool = Field(False, description="the effect reaches its floor (and PSI its floor, when set)")
    drifted: bool = Field(False, description="significant within the run's budget and material")
    count: int = Field(0, description="window rows with a usable value")
    psi: float | None = None
    wasserstein: float | None = Field(None, description="W1 over the reference standard deviation")
    total_variation: float | None = None
    jensen_shannon: float | None = None
    unseen: list[str] = Field(default_factory=list, description="window categories absent from the reference")
    unseen_share: float | None = None
    reference_hist: list[float] = Field(default_factory=list, description="shares, plotting")
    current_hist: list[float] = Field(default_factory=list)
    hist_edges: list[float] = Field(default_factory=list, description="numeric: reference histogram edges")
    hist_labels: list[str] = Field(default_factory=list, description="categorical: category per bar")


class DriftSection(BaseModel):
    """Drift of every column of one source (features, predictions or labels)."""

    status: Status
    reason: str = ""
    columns: list[ColumnDrift] = Field(default_factory=list)
    drifted: list[str] = Field(default_factory=list)
    share: float = 0.0
    dataset_drift: bool = False
    drift_share_threshold: float = 0.5


class QualityViolation(BaseModel):
    """One data-quality rule checked (the violation types SageMaker Model Monitor names).

    Chance findings (completeness, out of range, new categories) carry a p-value and are
    violations only when significant within the run's budget and beyond the rule's floor;
    structural ones (a column missing, extra or of the wrong type) have no p-value.
    """

    check: QualityCheck
    feature: str
    message: str
    value: float | None = None
    threshold: float | None = Field(None, description="the floor the value must reach")
    p_value: float | None = None
    p_value_adjusted: float | None = None
    violated: bool = True


class DataQualitySection(BaseModel):
    """Data-quality violations of the window (``findings``: every chance check, violated or not)."""

    status: Status
    reason: str = ""
    violations: list[QualityViolation] = Field(default_factory=list)
    findings: list[QualityViolation] = Field(default_factory=list)
    missing_rates: dict[str, float] = Field(default_factory=dict)


class Curve(BaseModel):
    """A ROC or precision-recall curve (thinned to a few hundred points) of one class."""

    name: str
    kind: Literal["roc", "pr"]
    x: list[float]
    y: list[float]
    area: float | None = None


class ClassMetrics(BaseModel):
    """Precision, recall, F1 and support of one class."""

    precision: float
    recall: float
    f1: float
    support: int


class ProbabilityHistogram(BaseModel):
    """Predicted probability of ``name`` among rows of that true class and among the others."""

    name: str
    edges: list[float]
    positives: list[int]
    negatives: list[int]


class ModelQualitySection(BaseModel):
    """Quality of the version on labelled rows of the window, against the reference baseline."""

    status: Status
    reason: str = ""
    task: str | None = None
    labelled: int = 0
    baseline: str = Field("", description="'reference' (profile baseline), 'registered' metrics, or none")
    metrics: dict[str, MetricEstimate] = Field(default_factory=dict)
    degraded: list[str] = Field(default_factory=list)
    classes: list[str] = Field(default_factory=list)
    confusion: list[list[int]] = Field(default_factory=list, description="[true][predicted] counts")
    per_class: dict[str, ClassMetrics] = Field(default_factory=dict)
    curves: list[Curve] = Field(default_factory=list)
    probability_histograms: list[ProbabilityHistogram] = Field(default_factory=list)


class PerformanceEstimate(BaseModel):
    """A metric estimated without labels (CBPE) and, once labels came, how far off it was."""

    value: float
    low: float | None = Field(None, description="95% interval of the realised metric, given calibration")
    high: float | None = None
    reference: float | None = Field(None, description="the same estimate on the reference")
    p_value: float | None = Field(None, description="one-sided: estimated worse than the reference by chance")
    p_value_adjusted: float | None = None
    degraded: bool = False
    labelled_estimate: float | None = Field(None, description="the estimate on the labelled rows only")
    realised: float | None = Field(None, description="the realised metric on those rows")
    error: float | None = Field(None, description="labelled_estimate - realised")


class EstimatedPerformanceSection(BaseModel):
    """Performance estimated from the model's calibrated confidence, for windows without labels."""

    status: Status
    reason: str = ""
    method: str = "cbpe"
    rows: int = 0
    labelled: int = 0
    metrics: dict[str, PerformanceEstimate] = Field(default_factory=dict)
    degraded: list[str] = Field(default_factory=list)


class ColumnSummary(BaseModel):
    """One column of the window at a glance, beside the reference."""

    name: str
    source: ColumnSource = "feature"
    kind: FeatureKind
    rows: int
    missing: int
    missing_rate: float
    reference_missing_rate: float | None = None
    mean: float | None = None
    reference_mean: float | None = None
    std: float | None = None
    min: float | None = None
    max: float | None = None
    unique: int | None = None
    top: list[tuple[str, float]] = Field(default_factory=list, description="categories and shares")


class AlarmBudget(BaseModel):
    """How the run's p-values were controlled: one Benjamini-Hochberg at ``q`` over all of them."""

    q: float
    tests: int = 0
    significant: int = 0
    alarms: int = Field(0, description="significant and beyond their effect floor")
    method: str = "benjamini_hochberg"


class VariantReadout(BaseModel):
    """One endpoint variant (or the shadow) in the window."""

    variant: str
    target: str | None = None
    versions: list[int] = Field(default_factory=list)
    weight: float | None = Field(None, description="configured traffic share (%)")
    rows: int = 0
    share: float = 0.0
    labelled: int = 0
    metrics: dict[str, float] = Field(default_factory=dict)


class VariantComparison(BaseModel):
    """A variant against the control on the primary metric."""

    variant: str
    control: str
    metric: str
    difference: float | None = None
    statistic: float | None = None
    p_value: float | None = None
    p_value_adjusted: float | None = None
    significant: bool = False
    direction: Literal["better", "worse", "none"] = Field(
        "none", description="the variant against the control, when significant"
    )
    test: str = ""


class AbSection(BaseModel):
    """Per-variant readout, significance of differences, sample-ratio mismatch."""

    status: Status
    reason: str = ""
    variants: list[VariantReadout] = Field(default_factory=list)
    comparisons: list[VariantComparison] = Field(default_factory=list)
    srm_chi_square: float | None = None
    srm_p_value: float | None = None
    srm_p_value_adjusted: float | None = None
    sample_ratio_mismatch: bool = False


class Alert(BaseModel):
    """A crossed threshold, keyed for de-duplication by (model, check, feature)."""

    check: str
    feature: str
    message: str
    value: float | None = None
    threshold: float | None = None
    sent: bool = Field(False, description="published now (False: still within the cooldown)")


class MonitoringReport(BaseModel):
    """Everything one monitoring run found for one model (stored as report.json).

    ``source`` tells served traffic (a time window) from a completed batch job (``job_id``).
    """

    model: str
    version: int | None = None
    at: datetime
    window_start: datetime
    window_end: datetime
    source: ReportSource = "traffic"
    job_id: str | None = None
    status: Status
    reason: str = ""
    rows: int = 0
    labelled: int = 0
    fallback_rows: int = Field(0, description="answers served by the endpoint's fallback, not the model")
    feature_drift: DriftSection | None = None
    prediction_drift: DriftSection | None = None
    label_drift: DriftSection | None = None
    data_quality: DataQualitySection | None = None
    model_quality: ModelQualitySection | None = None
    estimated_performance: EstimatedPerformanceSection | None = None
    ab: AbSection | None = None
    columns: list[ColumnSummary] = Field(default_factory=list)
    budget: AlarmBudget | None = None
    alerts: list[Alert] = Field(default_factory=list)
    corrupt_objects: list[str] = Field(default_factory=list)
    notes: list[str] = Field(default_factory=list)
    report_key: str | None = None
    html_key: str | None = None


class MonitoringSummary(BaseModel):
    """The registry row of one run (pk ``model#<name>``, sk ``monitoring#<iso>``); history and plots."""

    model: str
    at: datetime
    version: int | None = None
    source: ReportSource = "traffic"
    job_id: str | None = None
    status: Status
    reason: str = ""
    rows: int = 0
    labelled: int = 0
    fallback_rows: int = 0
    drifted_features: list[str] = Field(default_factory=list)
    drift_share: float = 0.0
    dataset_drift: bool = False
    prediction_drift: bool = False
    quality_violations: int = 0
    metrics: dict[str, float] = Field(default_factory=dict)
    estimated: dict[str, float] = Field(default_factory=dict, description="CBPE estimates")
    feature_scores: dict[str, float] = Field(
        default_factory=dict,
        description="effect size per column (W1/sd numeric, total variation categorical)",
    )
    alerts_sent: int = 0
    report_key: str | None = None
    html_key: str | None = None

    @classmethod
    def of(cls, report: MonitoringReport) -> MonitoringSummary:
        """The summary of ``report``."""
        drift = report.feature_drift
        scores = {
            c.name: c.effect
            for section in (drift, report.prediction_drift)
            if section
            for c in section.columns
            if c.effect is not None
        }
        quality = report.model_quality
        estimated = report.estimated_performance
        return cls(
            model=report.model,
            at=report.at,
            version=report.version,
            source=report.source,
            job_id=report.job_id,
            status=report.status,
            reason=report.reason,
            rows=report.rows,
            labelled=report.labelled,
            fallback_rows=report.fallback_rows,
            drifted_features=drift.drifted if drift else [],
            drift_share=drift.share if drift else 0.0,
            dataset_drift=bool(drift and drift.dataset_drift),
            prediction_drift=bool(report.prediction_drift and report.prediction_drift.drifted),
            quality_violations=len(report.data_quality.violations) if report.data_quality else 0,
            metrics={n: m.value for n, m in quality.metrics.items() if math.isfinite(m.value)}
            if quality
            else {},
            estimated={n: m.value for n, m in estimated.metrics.items() if math.isfinite(m.value)}
            if estimated
            else {},
            feature_scores={k: v for k, v in scores.items() if v is not None and math.isfinite(v)},
            alerts_sent=sum(1 for a in report.alerts if a.sent),
            report_key=report.report_key,
            html_key=report.html_key,
        )


class MonitoringView(BaseModel):
    """``GET /models/{name}/monitoring``: the latest report and the run history, newest first."""

    model: str
    latest: MonitoringReport | None = None
    history: list[MonitoringSummary] = Field(default_factory=list)
