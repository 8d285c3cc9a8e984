"""Reference profiles (what "normal" looked like at registration) and monitoring reports.

The registry computes a ``ReferenceProfile`` from the reference sample when a version is
registered and stores it as JSON at ``models/<name>/v<N>/reference_profile.json`` in the
artifacts bucket (``ModelVersion.reference_profile_key``). Monitoring compares each window of
served traffic with it, so the profile holds sufficient statistics for every test it runs:

- numeric features: PSI bins on the reference deciles (``bin_edges`` are the finite inner edges;
  the first bin is ``(-inf, e0]``, the last ``(e_k, +inf)``, bins closed on the right so that a
  discrete value equal to an edge falls in one bin), the reference share per bin, a compact
  equal-width histogram for plots, and a quantile sketch (``sketch``: order statistics at evenly
  spaced ranks, min and max included; every value when there are fewer than the sketch size)
  for KS and Wasserstein against windows of any size, within 1/len(sketch) of the full sample;
- categorical features (string, bool): the top-K categories with their shares plus an "other"
  share and the number of distinct values.

Prediction outputs are profiled the same way under their archive column names
(``prediction.label``, ``prediction.value``, ``prediction.probabilities.<class>``), so output
drift reuses the feature tests. Kept small (tens of KB) by bounding the sketch, bins and top-K.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

PROFILE_FORMAT = 1
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


class ReferenceProfile(BaseModel):
    """What the reference data and the model's outputs on it looked like."""

    model_config = ConfigDict(frozen=True)

    format: int = PROFILE_FORMAT
    created_at: datetime
    row_count: int
    settings: ProfileSettings = Field(default_factory=ProfileSettings)
    features: list[FeatureProfile]
    predictions: list[FeatureProfile] = Field(
        default_factory=list, description="output columns named as in the archive ('prediction.label'...)"
    )
    target: FeatureProfile | None = Field(
        None, description="the reference's target column (true labels or values), named as in the sample"
    )
    baseline: ModelQualitySection | None = Field(
        None,
        description="the model's quality on the reference's labelled rows (held-out data), with intervals",
    )

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
DriftTest = Literal["psi", "ks", "chi_square", "jensen_shannon"]
DriftMethod = Literal["distance", "p_value"]
ColumnSource = Literal["feature", "prediction"]
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
    """The thresholds one feature (or output column) is judged by."""

    model_config = ConfigDict(frozen=True)

    psi: float = Field(0.2, gt=0, description="numeric, >= large_sample rows: drift when PSI reaches it")
    jensen_shannon: float = Field(0.1, gt=0, le=1, description="categorical, >= large_sample rows")
    alpha: float = Field(0.01, gt=0, lt=1, description="below large_sample rows: BH-adjusted p-value level")


class ColumnDrift(BaseModel):
    """One feature's or output's drift verdict with every statistic computed for it."""

    name: str
    source: ColumnSource = "feature"
    kind: FeatureKind
    status: Status
    reason: str = ""
    method: DriftMethod | None = None
    test: DriftTest | None = None
    score: float | None = Field(None, description="the statistic the verdict is based on (or adjusted p)")
    distance: float | None = Field(None, description="PSI (numeric) or JS (categorical), whatever the test")
    threshold: float | None = None
    drifted: bool = False
    count: int = Field(0, description="window rows with a usable value")
    psi: float | None = None
    ks: float | None = None
    ks_p_value: float | None = None
    wasserstein: float | None = Field(None, description="W1 over the reference standard deviation")
    jensen_shannon: float | None = None
    chi_square: float | None = None
    chi_square_p_value: float | None = None
    p_value_adjusted: float | None = None
    unseen: list[str] = Field(default_factory=list, description="window categories absent from the reference")
    unseen_share: float | None = None
    reference_hist: list[float] = Field(default_factory=list, description="shares, plotting")
    current_hist: list[float] = Field(default_factory=list)
    hist_edges: list[float] = Field(default_factory=list, description="numeric: reference histogram edges")
    hist_labels: list[str] = Field(default_factory=list, description="categorical: category per bar")


class DriftSection(BaseModel):
    """Drift of every column of one source (features or predictions)."""

    status: Status
    reason: str = ""
    method: DriftMethod | None = None
    columns: list[ColumnDrift] = Field(default_factory=list)
    drifted: list[str] = Field(default_factory=list)
    share: float = 0.0
    dataset_drift: bool = False
    drift_share_threshold: float = 0.5


class QualityViolation(BaseModel):
    """One data-quality rule broken (the violation types SageMaker Model Monitor names)."""

    check: QualityCheck
    feature: str
    message: str
    value: float | None = None
    threshold: float | None = None


class DataQualitySection(BaseModel):
    """Data-quality violations of the window."""

    status: Status
    reason: str = ""
    violations: list[QualityViolation] = Field(default_factory=list)
    missing_rates: dict[str, float] = Field(default_factory=dict)


class MetricEstimate(BaseModel):
    """A quality metric with its bootstrap interval and the version's registered value."""

    value: float
    low: float | None = None
    high: float | None = None
    registered: float | None = None
    higher_is_better: bool = True
    degraded: bool = False


class ModelQualitySection(BaseModel):
    """Quality of the production version on labelled rows of the window."""

    status: Status
    reason: str = ""
    task: str | None = None
    labelled: int = 0
    metrics: dict[str, MetricEstimate] = Field(default_factory=dict)
    degraded: list[str] = Field(default_factory=list)


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
    significant: bool = False
    test: str = ""


class AbSection(BaseModel):
    """Per-variant readout, significance of differences, sample-ratio mismatch."""

    status: Status
    reason: str = ""
    variants: list[VariantReadout] = Field(default_factory=list)
    comparisons: list[VariantComparison] = Field(default_factory=list)
    srm_chi_square: float | None = None
    srm_p_value: float | None = None
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
    """Everything one monitoring run found for one model (stored as report.json)."""

    model: str
    version: int | None = None
    at: datetime
    window_start: datetime
    window_end: datetime
    status: Status
    reason: str = ""
    rows: int = 0
    labelled: int = 0
    feature_drift: DriftSection | None = None
    prediction_drift: DriftSection | None = None
    data_quality: DataQualitySection | None = None
    model_quality: ModelQualitySection | None = None
    ab: AbSection | None = None
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
    status: Status
    reason: str = ""
    rows: int = 0
    labelled: int = 0
    drifted_features: list[str] = Field(default_factory=list)
    drift_share: float = 0.0
    dataset_drift: bool = False
    prediction_drift: bool = False
    quality_violations: int = 0
    metrics: dict[str, float] = Field(default_factory=dict)
    feature_scores: dict[str, float] = Field(
        default_factory=dict, description="PSI / JS / adjusted p per column"
    )
    alerts_sent: int = 0
    report_key: str | None = None
    html_key: str | None = None

    @classmethod
    def of(cls, report: MonitoringReport) -> MonitoringSummary:
        """The summary of ``report``."""
        drift = report.feature_drift
        scores = {
            c.name: c.distance
            for section in (drift, report.prediction_drift)
            if section
            for c in section.columns
            if c.distance is not None
        }
        quality = report.model_quality
        return cls(
            model=report.model,
            at=report.at,
            version=report.version,
            status=report.status,
            reason=report.reason,
            rows=report.rows,
            labelled=report.labelled,
            drifted_features=drift.drifted if drift else [],
            drift_share=drift.share if drift else 0.0,
            dataset_drift=bool(drift and drift.dataset_drift),
            prediction_drift=bool(report.prediction_drift and report.prediction_drift.drifted),
            quality_violations=len(report.data_quality.violations) if report.data_quality else 0,
            metrics={n: m.value for n, m in quality.metrics.items() if math.isfinite(m.value)}
            if quality
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
