"""Scheduled monitoring of every production model: drift, data quality, model quality, A/B readout.

For each model with a ``production`` alias, one run reads the window's prediction logs (and
labels) from the archive, compares the rows served by the production version with the version's
reference profile, writes ``monitoring/<model>/<iso>/report.{json,html}`` to the artifacts
bucket and a summary row to the registry table, emits EMF metrics, and publishes one SNS alert
for the thresholds newly crossed, each (model, check, column) at most once per cooldown.

A model's failure (missing or corrupt profile, unreadable window, a bug) becomes that model's
report with status ``error`` and the reason; the other models are still monitored.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

import numpy as np
from pydantic import ValidationError

from mlambda.adapters import tabular
from mlambda.config import MonitorSettings
from mlambda.errors import InvalidInputError, MlambdaError, NotFoundError
from mlambda.observability import logger
from mlambda.ports import ArtifactStore, ModelCatalog
from mlambda.schemas.batch import Job
from mlambda.schemas.monitoring import (
    PREDICTION_PREFIX,
    AbSection,
    Alert,
    MonitoringReport,
    MonitoringSummary,
    MonitoringView,
    ReferenceProfile,
    Status,
    Thresholds,
    iso,
)
from mlambda.schemas.registry import PRODUCTION, ModelVersion
from mlambda.services.monitoring import analysis
from mlambda.services.monitoring.ab_readout import AbSettings, ServedRows, ab_readout
from mlambda.services.monitoring.budget import DEFAULT_Q, settle
from mlambda.services.monitoring.data_quality import QualityConfig
from mlambda.services.monitoring.drift import DriftConfig
from mlambda.services.monitoring.model_quality import QualitySettings
from mlambda.services.monitoring.ports import AlertPublisher, ArchiveReader, BatchResults, MonitoringStore
from mlambda.services.monitoring.profiling import VALUE_COLUMN, canonical_labels, cell_number, present
from mlambda.services.monitoring.report_html import render_report

FEATURE_PREFIX = "features."
LABEL_COLUMN = f"{PREDICTION_PREFIX}label"
FALLBACK_COLUMN = "fallback"
TAG_PREFIX = "monitor:"
THRESHOLD_NAMES = ("wasserstein", "total_variation", "psi")


class MetricsRecorder(Protocol):
    """Where per-model monitoring metrics go (EMF on stdout in Lambda)."""

    def record(self, model: str, values: Mapping[str, float]) -> None:
        """Record ``values`` (name -> number) with the model as dimension."""
        ...


class EmfMetrics:
    """One EMF document per model, so each model's metrics carry its own dimension."""

    def record(self, model: str, values: Mapping[str, float]) -> None:
        """Flush ``values`` as CloudWatch metrics in namespace ``mlambda`` (or the configured one)."""
        from aws_lambda_powertools.metrics import EphemeralMetrics, MetricUnit

        from mlambda.observability import metrics

        emf = EphemeralMetrics(namespace=metrics.namespace or "mlambda", service="monitor")
        emf.add_dimension(name="model", value=model)
        for name, value in values.items():
            if math.isfinite(value):
                emf.add_metric(
                    name=name,
                    unit=MetricUnit.Count if name.endswith("Rows") else MetricUnit.NoUnit,
                    value=value,
                )
        emf.flush_metrics()


@dataclass(frozen=True)
class MonitorConfig:
    """Everything a run is configured by (built from ``MonitorSettings``)."""

    window: timedelta = timedelta(hours=24)
    q: float = DEFAULT_Q
    drift: DriftConfig = field(default_factory=DriftConfig)
    quality: QualityConfig = field(default_factory=QualityConfig)
    model_quality: QualitySettings = field(default_factory=QualitySettings)
    ab: AbSettings = field(default_factory=AbSettings)
    column_thresholds: Mapping[str, Mapping[str, float]] = field(default_factory=dict)
    alert_cooldown: timedelta = timedelta(hours=24)
    history: int = 48
    max_rows: int = 2_000_000

    @classmethod
    def from_settings(cls, settings: MonitorSettings) -> MonitorConfig:
        """From a ``mlambda.config.MonitorSettings``."""
        try:
            overrides = json.loads(settings.column_thresholds or "{}")
        except json.JSONDecodeError as exc:
            raise InvalidInputError(f"MONITOR_COLUMN_THRESHOLDS is not JSON: {exc}") from exc
        if not isinstance(overrides, dict):
            raise InvalidInputError("MONITOR_COLUMN_THRESHOLDS must be a JSON object")
        return cls(
            window=timedelta(hours=settings.window_hours),
            q=settings.fdr_q,
            drift=DriftConfig(
                min_rows=settings.min_rows,
                drift_share=settings.drift_share,
                defaults=Thresholds(
                    wasserstein=settings.wasserstein_floor,
                    total_variation=settings.total_variation_floor,
                    psi=settings.psi_floor,
                ),
            ),
            quality=QualityConfig(
                min_rows=settings.min_rows,
                max_missing_increase=settings.max_missing_increase,
                max_out_of_range=settings.max_out_of_range,
                max_new_category=settings.max_new_category,
            ),
            model_quality=QualitySettings(
                min_labels=settings.min_labels,
                resamples=settings.bootstrap_resamples,
                tolerance=settings.quality_tolerance,
            ),
            ab=AbSettings(min_rows=settings.min_rows),
            column_thresholds=overrides,
            alert_cooldown=timedelta(hours=settings.alert_cooldown_hours),
            history=settings.history,
            max_rows=settings.max_rows,
        )


def drift_config_for(
    config: MonitorConfig, version: ModelVersion, columns: Sequence[str], notes: list[str]
) -> DriftConfig:
    """Defaults, then model-wide tags, then per-column settings, then per-column tags."""
    base = config.drift.defaults.model_dump()
    tags = {k[len(TAG_PREFIX) :]: v for k, v in version.tags.items() if k.startswith(TAG_PREFIX)}

    def number(key: str, value: Any) -> float | None:
        try:
            return float(value)
        except (TypeError, ValueError):
            notes.append(f"ignored threshold {key}={value!r}: not a number")
            return None

    for name in THRESHOLD_NAMES:
        if name in tags and (value := number(f"{TAG_PREFIX}{name}", tags[name])) is not None:
            base[name] = value
    try:
        defaults = Thresholds.model_validate(base)
    except ValidationError as exc:
        notes.append(f"ignored model-wide threshold tags: {exc.errors()[0]['msg']}")
        defaults = config.drift.defaults
    overrides: dict[str, Thresholds] = {}
    for column in columns:
        values = defaults.model_dump()
        for name, value in (config.column_thresholds.get(column) or {}).items():
            if name in THRESHOLD_NAMES and (parsed := number(f"{column}.{name}", value)) is not None:
                values[name] = parsed
        for name in THRESHOLD_NAMES:
            key = f"{name}:{column}"
            if key in tags and (parsed := number(f"{TAG_PREFIX}{key}", tags[key])) is not None:
                values[name] = parsed
        if values != defaults.model_dump():
            try:
                overrides[column] = Thresholds.model_validate(values)
            except ValidationError as exc:
                notes.append(f"ignored thresholds of {column}: {exc.errors()[0]['msg']}")
    return DriftConfig(
        min_rows=config.drift.min_rows,
        drift_share=config.drift.drift_share,
        defaults=defaults,
        overrides=overrides,
    )


Columns = dict[str, np.ndarray]


def _rows(columns: Columns) -> int:
    return len(next(iter(columns.values()))) if columns else 0


def _select(columns: Columns, keep: np.ndarray) -> Columns:
    return columns if keep.all() else {name: values[keep] for name, values in columns.items()}


def _floats(values: np.ndarray) -> np.ndarray[Any, np.dtype[np.float64]]:
    """Cells as numbers, NaN where a cell is missing or not a number (row-aligned)."""
    if values.dtype != object:
        return values.astype(np.float64)
    return np.fromiter((cell_number(v)[0] for v in values.tolist()), dtype=np.float64, count=len(values))


def _texts(values: np.ndarray, missing: str) -> np.ndarray:
    """Cells as text, ``missing`` where a cell is missing."""
    given = present(values).tolist()
    return np.array(
        [str(v) if keep else missing for v, keep in zip(values.tolist(), given, strict=True)], dtype=object
    )


def _bool_column(columns: Columns, name: str) -> np.ndarray[Any, np.dtype[np.bool_]]:
    rows = _rows(columns)
    if name not in columns:
        return np.zeros(rows, dtype=bool)
    values = columns[name]
    if values.dtype == bool:
        flags: np.ndarray[Any, np.dtype[np.bool_]] = values
        return flags
    if values.dtype == object:
        return np.fromiter(
            (str(v).lower() in ("true", "1") if v is not None else False for v in values.tolist()),
            dtype=bool,
            count=rows,
        )
    numbers = values.astype(np.float64)
    truthy: np.ndarray[Any, np.dtype[np.bool_]] = ~np.isnan(numbers) & (numbers != 0)
    return truthy


def _int_column(columns: Columns, name: str, default: int) -> np.ndarray[Any, np.dtype[np.int64]]:
    rows = _rows(columns)
    if name not in columns:
        return np.full(rows, default, dtype=np.int64)
    values = columns[name]
    if values.dtype.kind in "iu":
        return values.astype(np.int64)
    numbers = _floats(values)
    numbers[~np.isfinite(numbers)] = default
    return numbers.astype(np.int64)


@dataclass
class Labelled:
    """Window rows joined with their labels."""

    truth: np.ndarray  # object, aligned with the window's rows; None when unlabelled
    mask: np.ndarray[Any, np.dtype[np.bool_]]  # rows with a label
    count: int


def join_labels(columns: Columns, labels: Columns) -> Labelled:
    """Each prediction row's label, by ``request_id`` (+ ``row``; labels without a row label row 0).

    The latest label (by ``timestamp``) of a (request, row) wins; labels without a value are ignored.
    """
    rows = _rows(columns)
    empty = Labelled(truth=np.full(rows, None, dtype=object), mask=np.zeros(rows, dtype=bool), count=0)
    if (
        not _rows(labels)
        or "request_id" not in labels
        or "value" not in labels
        or "request_id" not in columns
    ):
        return empty
    label_ids = labels["request_id"].astype(str)
    label_rows = _int_column(labels, "row", 0)
    values = labels["value"]
    given = present(values)
    order = np.arange(len(values))
    if "timestamp" in labels:
        order = np.argsort(tabular.timestamps(labels["timestamp"]), kind="stable")
    latest: dict[tuple[str, int], Any] = {}
    for index in order[given[order]].tolist():
        latest[(label_ids[index], int(label_rows[index]))] = values[index]
    requests = {request for request, _ in latest}
    request_ids = columns["request_id"].astype(str)
    candidates = [index for index, request in enumerate(request_ids.tolist()) if request in requests]
    truth = np.full(rows, None, dtype=object)
    mask = np.zeros(rows, dtype=bool)
    if candidates:
        row_numbers = _int_column(columns, "row", 0)
        for index in candidates:
            value = latest.get((request_ids[index], int(row_numbers[index])))
            if value is not None:
                truth[index] = value
                mask[index] = True
    return Labelled(truth=truth, mask=mask, count=int(mask.sum()))


def fallback_rows(columns: Columns) -> np.ndarray[Any, np.dtype[np.bool_]]:
    """Rows answered by the endpoint's fallback rather than a model: marked in the log's envelope
    (``fallback``, the reason) and, in logs written before that, in the answer itself."""
    marked = np.zeros(_rows(columns), dtype=bool)
    for name in (FALLBACK_COLUMN, f"{PREDICTION_PREFIX}{FALLBACK_COLUMN}"):
        if name in columns:
            values = columns[name]
            given = present(values)
            if values.dtype == object:
                given &= np.fromiter(
                    (str(v).lower() != "false" for v in values.tolist()), dtype=bool, count=len(values)
                )
            elif values.dtype == bool:
                given &= values
            marked |= given
    return marked


def window_columns(
    columns: Columns, profile: ReferenceProfile, truth: np.ndarray | None
) -> analysis.WindowColumns:
    """The archive's flattened columns as the checks read them: features, outputs, labels."""
    known = set(profile.feature_names)
    features = {
        name: columns[f"{FEATURE_PREFIX}{name}"]
        for name in profile.feature_names
        if f"{FEATURE_PREFIX}{name}" in columns
    }
    extra = [
        c[len(FEATURE_PREFIX) :]
        for c in columns
        if c.startswith(FEATURE_PREFIX)
        and c[len(FEATURE_PREFIX) :] not in known
        and present(columns[c]).any()
    ]
    outputs = {c: values for c, values in columns.items() if c.startswith(PREDICTION_PREFIX)}
    return analysis.WindowColumns(
        rows=_rows(columns), features=features, outputs=outputs, truth=truth, extra_columns=extra
    )


def batch_columns(inputs: Columns, scored: Columns, profile: ReferenceProfile) -> analysis.WindowColumns:
    """A batch job as a window: features from its input file, outputs from its scored parts
    (``label``, ``proba_<class>``, ``value`` named as the prediction log names them)."""
    features = {name: inputs[name] for name in profile.feature_names if name in inputs}
    outputs: Columns = {}
    if "label" in scored:
        outputs[f"{PREDICTION_PREFIX}label"] = scored["label"]
    if "value" in scored:
        outputs[VALUE_COLUMN] = scored["value"]
    for column, values in scored.items():
        if column.startswith("proba_"):
            outputs[f"{PREDICTION_PREFIX}probabilities.{column[len('proba_') :]}"] = values
    return analysis.WindowColumns(rows=_rows(inputs), features=features, outputs=outputs)


def run_seed(version: ModelVersion, at: datetime, job: str = "") -> int:
    """The run's own seed: a retried run draws the same resamples, two runs never share them."""
    digest = hashlib.sha256(f"{version.model}:{version.version}:{iso(at)}:{job}".encode()).digest()
    return int.from_bytes(digest[:8], "big")


def _combine(report: MonitoringReport) -> tuple[Status, str]:
    """The run's status: ``drift`` when any check alarmed."""
    crossed: list[str] = []
    if report.feature_drift and report.feature_drift.drifted:
        prefix = "dataset drift: " if report.feature_drift.dataset_drift else ""
        crossed.append(prefix + report.feature_drift.reason)
    if report.prediction_drift and report.prediction_drift.drifted:
        crossed.append("prediction drift: " + ", ".join(report.prediction_drift.drifted))
    if report.label_drift and report.label_drift.drifted:
        crossed.append("label drift")
    if report.data_quality and report.data_quality.violations:
        crossed.append("data quality: " + report.data_quality.reason)
    if report.model_quality and report.model_quality.degraded:
        crossed.append("model quality " + report.model_quality.reason)
    if report.estimated_performance and report.estimated_performance.degraded:
        crossed.append("estimated performance " + report.estimated_performance.reason)
    if report.ab and report.ab.sample_ratio_mismatch:
        crossed.append("A/B: " + report.ab.reason)
    if crossed:
        return "drift", "; ".join(crossed)
    if report.feature_drift and report.feature_drift.status == "not_enough_data":
        return "not_enough_data", report.feature_drift.reason
    return "ok", "no alarm"


def evaluate_window(
    config: MonitorConfig,
    version: ModelVersion,
    profile: ReferenceProfile,
    window: analysis.WindowColumns,
    report: MonitoringReport,
    *,
    seed: int,
) -> MonitoringReport:
    """Every check of one window, settled by the run's one alarm budget, on top of ``report``.

    What a scheduled run, a batch job's run and the calibration benchmark all call.
    """
    notes = list(report.notes)
    columns = [*profile.feature_names, *(p.name for p in profile.predictions)]
    drift = drift_config_for(config, version, columns, notes)
    checks = analysis.drift_and_quality(profile, window, drift, config.quality)
    if not profile.predictions:
        notes.append("the reference profile has no prediction outputs: no prediction drift")
    if profile.target is None:
        notes.append("the reference profile has no target: no label drift and no reference baseline")
    rng = np.random.default_rng(seed)
    settings = config.model_quality
    quality = analysis.model_quality(
        version.signature.task,
        window,
        profile.baseline,
        version.metrics,
        version.signature.class_labels,
        settings,
        rng,
        notes,
    )
    estimated = analysis.estimated_performance(window, profile.baseline, settings, rng)
    report = report.model_copy(
        update={
            "labelled": quality.labelled,
            "feature_drift": checks.features,
            "prediction_drift": checks.predictions,
            "label_drift": checks.labels,
            "data_quality": checks.quality,
            "model_quality": quality,
            "estimated_performance": estimated,
            "columns": checks.columns,
            "notes": notes,
        }
    )
    report = settle(report, config.q, drift, settings.tolerance)
    status, reason = _combine(report)
    return report.model_copy(update={"status": status, "reason": reason})


def crossings(report: MonitoringReport) -> list[Alert]:
    """Every alarm of ``report`` as an alert candidate."""
    found: list[Alert] = []
    if report.status == "error":
        found.append(Alert(check="monitoring_error", feature="*", message=report.reason))
    sections = (
        (report.feature_drift, "drift"),
        (report.prediction_drift, "prediction_drift"),
        (report.label_drift, "label_drift"),
    )
    for section, check in sections:
        if section is None:
            continue
        for column in section.columns:
            if column.drifted:
                found.append(
                    Alert(
                        check=check,
                        feature=column.name,
                        message=(
                            f"{column.name}: {column.effect_measure} {column.effect:.3g} (floor {column.effect_floor:g}), "
                            f"{column.test} p={column.p_value_adjusted:.2g} adjusted"
                        )
                        if column.effect is not None and column.p_value_adjusted is not None
                        else f"{column.name} drifted",
                        value=column.effect,
                        threshold=column.effect_floor,
                    )
                )
        if check == "drift" and section.dataset_drift:
            found.append(
                Alert(
                    check="dataset_drift",
                    feature="*",
                    message=f"{section.share:.0%} of features drifted",
                    value=section.share,
                    threshold=section.drift_share_threshold,
                )
            )
    if report.data_quality:
        found.extend(
            Alert(check=v.check, feature=v.feature, message=v.message, value=v.value, threshold=v.threshold)
            for v in report.data_quality.violations
        )
    if report.model_quality:
        for name in report.model_quality.degraded:
            metric = report.model_quality.metrics[name]
            baseline = metric.reference if metric.reference is not None else metric.registered
            found.append(
                Alert(
                    check="model_quality",
                    feature=name,
                    message=f"{name} {metric.value:.4g} vs {report.model_quality.baseline} {baseline}",
                    value=metric.value,
                    threshold=baseline,
                )
            )
    if report.estimated_performance:
        for name in report.estimated_performance.degraded:
            estimate = report.estimated_performance.metrics[name]
            found.append(
                Alert(
                    check="estimated_performance",
                    feature=name,
                    message=f"estimated {name} {estimate.value:.4g} vs {estimate.reference} on the reference",
                    value=estimate.value,
                    threshold=estimate.reference,
                )
            )
    if report.ab and report.ab.sample_ratio_mismatch:
        found.append(
            Alert(
                check="sample_ratio_mismatch",
                feature="*",
                message=report.ab.reason,
                value=report.ab.srm_p_value,
            )
        )
    return found


def summary_metrics(report: MonitoringReport) -> dict[str, float]:
    """The CloudWatch metrics of one run."""
    values: dict[str, float] = {
        "MonitoringRuns": 1.0,
        "MonitoringErrors": 1.0 if report.status == "error" else 0.0,
        "WindowRows": float(report.rows),
        "LabelledRows": float(report.labelled),
    }
    if report.feature_drift:
        values["DriftedFeatures"] = float(len(report.feature_drift.drifted))
        values["DriftShare"] = report.feature_drift.share
        values["DatasetDrift"] = 1.0 if report.feature_drift.dataset_drift else 0.0
    if report.prediction_drift:
        values["PredictionDrift"] = 1.0 if report.prediction_drift.drifted else 0.0
    if report.data_quality:
        values["QualityViolations"] = float(len(report.data_quality.violations))
    if report.model_quality:
        for name, metric in report.model_quality.metrics.items():
            values[f"Quality_{name}"] = metric.value
    if report.estimated_performance:
        for name, estimate in report.estimated_performance.metrics.items():
            values[f"Estimated_{name}"] = estimate.value
    values["FallbackRows"] = float(report.fallback_rows)
    if report.ab:
        values["SampleRatioMismatch"] = 1.0 if report.ab.sample_ratio_mismatch else 0.0
    return values


class MonitoringService:
    """Runs monitoring for production models and serves its history."""

    def __init__(
        self,
        catalog: ModelCatalog,
        archive: ArchiveReader,
        store: MonitoringStore,
        artifacts: ArtifactStore,
        alerts: AlertPublisher,
        *,
        config: MonitorConfig | None = None,
        recorder: MetricsRecorder | None = None,
        clock: Callable[[], datetime] | None = None,
        batch: BatchResults | None = None,
    ) -> None:
        self._batch = batch
        self._catalog = catalog
        self._archive = archive
        self._store = store
        self._artifacts = artifacts
        self._alerts = alerts
        self.config = config or MonitorConfig()
        self._recorder = recorder or EmfMetrics()
        self._clock = clock or (lambda: datetime.now(UTC))

    @classmethod
    def from_settings(cls, settings: MonitorSettings) -> MonitoringService:
        """The service on the registry table, the artifacts and data buckets and the alerts topic."""
        from mlambda.adapters.dynamodb import DynamoTable
        from mlambda.adapters.jobs import DynamoJobStore
        from mlambda.adapters.messaging import Topic
        from mlambda.adapters.monitoring_store import DynamoMonitoringStore, S3ArchiveReader, S3BatchResults
        from mlambda.adapters.registry import DynamoModelCatalog
        from mlambda.adapters.s3 import ObjectStore

        registry = DynamoTable(settings.registry_table, settings)
        batch = None
        if settings.jobs_table and settings.batch_bucket:
            batch = S3BatchResults(
                DynamoJobStore(DynamoTable(settings.jobs_table, settings)),
                ObjectStore(settings.batch_bucket, settings),
            )
        return cls(
            DynamoModelCatalog(registry),
            S3ArchiveReader(ObjectStore(settings.data_bucket, settings), max_rows=settings.max_rows),
            DynamoMonitoringStore(registry),
            ObjectStore(settings.artifacts_bucket, settings),
            Topic(settings.alerts_topic_arn, settings),
            config=MonitorConfig.from_settings(settings),
            batch=batch,
        )

    # ------------------------------------------------------------------ the scheduled run

    def run(
        self, models: Sequence[str] | None = None, *, at: datetime | None = None
    ) -> list[MonitoringSummary]:
        """Monitor every production model (or the ones named); one summary each, errors included."""
        moment = (at or self._clock()).astimezone(UTC).replace(microsecond=0)
        versions = {v.model: v for v in self._catalog.models_with_alias(PRODUCTION)}
        names = list(models) if models else sorted(versions)
        summaries: list[MonitoringSummary] = []
        for name in names:
            version = versions.get(name)
            if version is None:
                summaries.append(
                    MonitoringSummary(
                        model=name, at=moment, status="error", reason=f"{name} has no {PRODUCTION} alias"
                    )
                )
                continue
            summaries.append(self.run_model(version, moment))
            summaries.extend(self.run_batches(name, moment))
        return summaries

    def run_batches(self, model: str, at: datetime) -> list[MonitoringSummary]:
        """Monitor the model's batch jobs completed within the window and not monitored yet, one report each."""
        if self._batch is None:
            return []
        try:
            jobs = self._batch.completed_jobs(model, at - self.config.window)
        except MlambdaError as exc:
            logger.warning("batch jobs unreadable", extra={"model": model, "error": exc.message})
            return []
        summaries: list[MonitoringSummary] = []
        for job in jobs:
            if not self._store.claim_job(model, job.job_id, at):
                continue
            try:
                report = self.monitor_job(job)
                summaries.append(self._persist(report))
            except Exception:  # one job's failure must not skip the others; the next run retries it
                logger.exception(
                    "monitoring a batch job failed", extra={"model": model, "job_id": job.job_id}
                )
                self._store.release_job(model, job.job_id)
        return summaries

    def monitor_job(self, job: Job) -> MonitoringReport:
        """One completed batch job's report: its input's features and its scored rows against the
        profile of the version that scored it (nothing written)."""
        assert self._batch is not None and job.completed_at is not None
        version = self._catalog.get_version(job.model, job.model_version or 0)
        report = MonitoringReport(
            model=job.model,
            version=version.version,
            at=job.completed_at,
            window_start=job.created_at,
            window_end=job.completed_at,
            source="batch",
            job_id=job.job_id,
            status="ok",
            rows=job.rows_scored,
        )
        profile = self._profile(version)
        if isinstance(profile, str):
            return report.model_copy(update={"status": "error", "reason": profile})
        inputs, scored = self._batch.job_rows(job, self.config.max_rows)
        notes = []
        if job.rows_rejected:
            notes.append(
                f"{job.rows_rejected} input rows were rejected by the job (their features are still checked)"
            )
        if _rows(scored) < self.config.drift.min_rows:
            return report.model_copy(
                update={
                    "status": "not_enough_data",
                    "reason": f"{_rows(scored)} scored rows, fewer than {self.config.drift.min_rows}",
                }
            )
        columns = batch_columns(inputs, scored, profile)
        report = report.model_copy(update={"rows": _rows(scored), "notes": notes})
        return evaluate_window(
            self.config,
            version,
            profile,
            columns,
            report,
            seed=run_seed(version, job.completed_at, job.job_id),
        )

    def run_model(self, version: ModelVersion, at: datetime) -> MonitoringSummary:
        """Monitor one model and persist the outcome; never raises."""
        try:
            report = self.monitor(version, at)
        except Exception as exc:  # one model's failure must not skip the others
            logger.exception("monitoring failed", extra={"model": version.model})
            reason = exc.message if isinstance(exc, MlambdaError) else f"{type(exc).__name__}: {exc}"
            report = self._bare(version, at, "error", f"monitoring failed: {reason}")
        try:
            return self._persist(report)
        except Exception as exc:
            logger.exception("storing the monitoring report failed", extra={"model": version.model})
            reason = exc.message if isinstance(exc, MlambdaError) else f"{type(exc).__name__}: {exc}"
            summary = MonitoringSummary.of(report)
            return summary.model_copy(update={"reason": f"{summary.reason} (not stored: {reason})"})

    def _bare(
        self, version: ModelVersion, at: datetime, status: Status, reason: str, **extra: Any
    ) -> MonitoringReport:
        return MonitoringReport(
            model=version.model,
            version=version.version,
            at=at,
            window_start=at - self.config.window,
            window_end=at,
            status=status,
            reason=reason,
            **extra,
        )

    def _profile(self, version: ModelVersion) -> ReferenceProfile | str:
        """The version's reference profile, or why it cannot be used."""
        key = version.reference_profile_key
        if not key:
            return f"v{version.version} has no reference profile (registered without a reference sample)"
        try:
            profile = ReferenceProfile.from_json(self._artifacts.get(key))
        except NotFoundError:
            return f"the reference profile of v{version.version} is missing at {key}"
        except ValidationError as exc:
            return f"the reference profile at {key} is not a valid profile: {exc.errors()[0]['msg']}"
        if profile.feature_names != version.feature_schema.names:
            return (
                f"schema mismatch: the reference profile has features {profile.feature_names[:10]}, "
                f"v{version.version} expects {version.feature_schema.names[:10]}"
            )
        return profile

    def monitor(self, version: ModelVersion, at: datetime) -> MonitoringReport:
        """Compute one model's report for the traffic window ending at ``at`` (nothing written)."""
        profile = self._profile(version)
        if isinstance(profile, str):
            return self._bare(version, at, "error", profile)
        start = at - self.config.window
        window = self._archive.predictions(version.model, start, at)
        notes: list[str] = []
        if window.corrupt:
            notes.append(f"{len(window.corrupt)} unreadable log objects skipped")
        if window.truncated:
            notes.append("the window was truncated at the row cap")
        frame = window.columns
        extra: dict[str, Any] = {"corrupt_objects": window.corrupt[:50], "notes": notes}
        if not _rows(frame):
            reason = f"no predictions logged between {start:%Y-%m-%d %H:%M} and {at:%Y-%m-%d %H:%M} UTC"
            if window.corrupt:
                reason += f" ({len(window.corrupt)} log objects unreadable)"
            return self._bare(version, at, "not_enough_data", reason, **extra)
        fallback = fallback_rows(frame)
        if fallback.any():
            frame = _select(frame, ~fallback)
        versions = _int_column(frame, "version", -1)
        shadow = _bool_column(frame, "shadow")
        mine = (versions == version.version) & ~shadow
        fallback_count = int(fallback.sum())
        if fallback_count:
            notes.append(
                f"{fallback_count} answers came from the endpoint's fallback, not a model: "
                "kept out of drift, data quality and model quality"
            )
        production = _select(frame, mine)
        labels = self._archive.labels(start, at)
        if labels.corrupt:
            notes.append(f"{len(labels.corrupt)} unreadable label objects skipped")
        joined = join_labels(frame, labels.columns)
        ab = self._ab(frame, versions, shadow, joined, version)
        rows = _rows(production)
        extra["fallback_rows"] = fallback_count
        if rows < self.config.drift.min_rows:
            seen = sorted({int(v) for v in np.unique(versions) if v >= 0})
            reason = f"{rows} rows served by v{version.version}, fewer than {self.config.drift.min_rows}"
            if seen and version.version not in seen:
                reason += f" (the window has rows of versions {seen})"
            return self._bare(version, at, "not_enough_data", reason, rows=rows, ab=ab, **extra)
        columns = window_columns(production, profile, joined.truth[mine])
        report = self._bare(version, at, "ok", "", rows=rows, ab=ab, **extra)
        return evaluate_window(self.config, version, profile, columns, report, seed=run_seed(version, at))

    def _ab(
        self,
        frame: Columns,
        versions: np.ndarray[Any, np.dtype[np.int64]],
        shadow: np.ndarray[Any, np.dtype[np.bool_]],
        joined: Labelled,
        version: ModelVersion,
    ) -> AbSection | None:
        config = self._catalog.endpoint_config(version.model)
        count = _rows(frame)
        variants = (
            _texts(frame["variant"], "default")
            if "variant" in frame
            else np.full(count, "default", dtype=object)
        )
        outcome = np.full(count, np.nan)
        mask = joined.mask
        if mask.any():
            if version.signature.task == "regression" and VALUE_COLUMN in frame:
                outcome[mask] = np.abs(_floats(joined.truth[mask]) - _floats(frame[VALUE_COLUMN][mask]))
            elif LABEL_COLUMN in frame:
                truth_labels = np.asarray(canonical_labels(joined.truth[mask]))
                predicted_labels = np.asarray(canonical_labels(frame[LABEL_COLUMN][mask]))
                outcome[mask] = (truth_labels == predicted_labels).astype(np.float64)
        requests = frame["request_id"].astype(str).astype(object) if "request_id" in frame else None
        rows = ServedRows(
            variants=variants, shadow=shadow, versions=versions, outcome=outcome, requests=requests
        )
        return ab_readout(rows, config, version.signature.task, self.config.ab)

    # ------------------------------------------------------------------ outputs

    def _persist(self, report: MonitoringReport) -> MonitoringSummary:
        """Alerts, report.json + report.html, the summary row and the metrics of one run."""
        if report.source == "batch":
            prefix = f"monitoring/{report.model}/jobs/{report.job_id}/"
        else:
            prefix = f"monitoring/{report.model}/{iso(report.at)}/"
        report = report.model_copy(
            update={"report_key": f"{prefix}report.json", "html_key": f"{prefix}report.html"}
        )
        report = self._alert(report)
        summary = MonitoringSummary.of(report)
        history = [summary, *self._store.summaries(report.model, max(self.config.history - 1, 1))]
        self._artifacts.put(
            f"{prefix}report.json", report.model_dump_json().encode(), content_type="application/json"
        )
        self._artifacts.put(
            f"{prefix}report.html",
            render_report(report, history).encode(),
            content_type="text/html; charset=utf-8",
        )
        self._store.put_summary(summary)
        self._recorder.record(report.model, summary_metrics(report))
        logger.info(
            "model monitored",
            extra={
                "model": report.model,
                "status": report.status,
                "reason": report.reason,
                "rows": report.rows,
            },
        )
        return summary

    def _alert(self, report: MonitoringReport) -> MonitoringReport:
        """Publish the crossings not alerted within the cooldown, as one message."""
        candidates = crossings(report)
        cooldown = self.config.alert_cooldown
        claimed = {
            (a.check, a.feature)
            for a in candidates
            if self._store.claim_alert(report.model, a.check, a.feature, report.at, cooldown)
        }
        sent = False
        if claimed:
            fresh = [a for a in candidates if (a.check, a.feature) in claimed]
            message = {
                "model": report.model,
                "version": report.version,
                "status": report.status,
                "reason": report.reason,
                "at": iso(report.at),
                "window_start": iso(report.window_start),
                "window_end": iso(report.window_end),
                "alerts": [a.model_dump(exclude={"sent"}) for a in fresh],
                "report_key": report.report_key,
                "html_key": report.html_key,
            }
            subject = f"mlambda monitoring: {report.model} {report.status} ({len(fresh)} new alerts)"
            try:
                self._alerts.publish(subject, message)
                sent = True
            except MlambdaError as exc:
                logger.error("alert publish failed", extra={"model": report.model, "error": exc.message})
                for check, feature in claimed:
                    self._store.release_alert(report.model, check, feature, report.at)
                report = report.model_copy(
                    update={"notes": [*report.notes, f"alert not sent: {exc.message}"]}
                )
        alerts = [a.model_copy(update={"sent": sent and (a.check, a.feature) in claimed}) for a in candidates]
        return report.model_copy(update={"alerts": alerts})

    # ------------------------------------------------------------------ reading

    def view(self, model: str, limit: int = 24) -> MonitoringView:
        """The latest report (from the artifacts bucket) and the last ``limit`` summaries."""
        history = self._store.summaries(model, limit)
        latest = None
        if history and history[0].report_key:
            try:
                latest = MonitoringReport.model_validate_json(self._artifacts.get(history[0].report_key))
            except NotFoundError:
                logger.warning("latest monitoring report missing", extra={"key": history[0].report_key})
        return MonitoringView(model=model, latest=latest, history=history)

    def latest_html(self, model: str) -> str:
        """The latest HTML report; NotFoundError when the model was never monitored."""
        history = self._store.summaries(model, 1)
        if not history or not history[0].html_key:
            raise NotFoundError(f"no monitoring report for {model} yet", code="no_report")
        return self._artifacts.get(history[0].html_key).decode()
