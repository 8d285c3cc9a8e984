"""In-memory ports and a small synthetic world (a classifier, its reference, served windows) for monitoring tests."""

from __future__ import annotations

import hashlib
import io
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from mlambda.adapters import tabular
from mlambda.errors import NotFoundError, UpstreamError
from mlambda.schemas.batch import Job, JobInput
from mlambda.schemas.monitoring import PREDICTION_PREFIX, MonitoringSummary, ProfileSettings, ReferenceProfile
from mlambda.schemas.registry import (
    EndpointConfig,
    FeatureSchema,
    FeatureSpec,
    ModelVersion,
    Signature,
    TensorSpec,
)
from mlambda.services.monitoring.profiling import (
    ReferenceOutputs,
    output_kind,
    profile_column,
    reference_profile,
)

NOW = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
NUMERIC = ["f0", "f1", "f2", "f3"]
SCHEMA = FeatureSchema(
    mode="tensor",
    features=[
        *(FeatureSpec(name=n, dtype="float") for n in NUMERIC),
        FeatureSpec(name="visits", dtype="int"),
        FeatureSpec(name="city", dtype="string"),
    ],
    tensor_input="input",
)
CITIES = ["paris", "lyon", "nice", "lille"]
CITY_SHARES = [0.4, 0.3, 0.2, 0.1]


def columns_of(frame: pd.DataFrame) -> dict[str, np.ndarray[Any, Any]]:
    """A frame as the archive reader returns it: written as Parquet, read back through tabular."""
    if frame.empty:
        return {}
    buffer = io.BytesIO()
    frame.to_parquet(buffer, index=False)
    return tabular.read_parquet_table(buffer.getvalue()).to_columns()


@dataclass
class FakeWindow:
    columns: dict[str, np.ndarray[Any, Any]]
    objects: int = 1
    corrupt: list[str] = field(default_factory=list)
    truncated: bool = False

    @property
    def rows(self) -> int:
        return len(next(iter(self.columns.values()))) if self.columns else 0


class FakeCatalog:
    """ModelCatalog over dicts."""

    def __init__(self) -> None:
        self.production: dict[str, ModelVersion] = {}
        self.endpoints: dict[str, EndpointConfig] = {}

    def get_version(self, model: str, version: int) -> ModelVersion:
        found = self.production.get(model)
        if found is None or found.version != version:
            raise NotFoundError(f"{model} v{version} not found")
        return found

    def resolve(self, model: str, ref: str) -> ModelVersion:
        if model not in self.production:
            raise NotFoundError(f"{model} not found")
        return self.production[model]

    def endpoint_config(self, model: str) -> EndpointConfig | None:
        return self.endpoints.get(model)

    def models_with_alias(self, alias: str) -> list[ModelVersion]:
        return list(self.production.values())


class FakeArchive:
    """ArchiveReader returning prepared frames; ``broken`` models raise."""

    def __init__(self) -> None:
        self.predictions_by_model: dict[str, pd.DataFrame] = {}
        self.label_frame = pd.DataFrame()
        self.corrupt: list[str] = []
        self.broken: set[str] = set()

    def predictions(self, model: str, start: datetime, end: datetime) -> FakeWindow:
        if model in self.broken:
            raise UpstreamError("s3 is down")
        frame = self.predictions_by_model.get(model, pd.DataFrame())
        return FakeWindow(columns=columns_of(frame), corrupt=list(self.corrupt))

    def labels(self, start: datetime, end: datetime) -> FakeWindow:
        return FakeWindow(columns=columns_of(self.label_frame))


class FakeMonitoringStore:
    """Summaries and alert claims in dicts, with the adapter's cooldown rule."""

    def __init__(self) -> None:
        self.rows: dict[str, list[MonitoringSummary]] = {}
        self.alerts: dict[tuple[str, str, str], datetime] = {}
        self.jobs_claimed: set[tuple[str, str]] = set()

    def put_summary(self, summary: MonitoringSummary) -> None:
        self.rows.setdefault(summary.model, []).append(summary)

    def summaries(self, model: str, limit: int) -> list[MonitoringSummary]:
        return sorted(self.rows.get(model, []), key=lambda s: s.at, reverse=True)[:limit]

    def claim_alert(self, model: str, check: str, feature: str, at: datetime, cooldown: timedelta) -> bool:
        last = self.alerts.get((model, check, feature))
        if last is not None and last > at - cooldown:
            return False
        self.alerts[(model, check, feature)] = at
        return True

    def release_alert(self, model: str, check: str, feature: str, at: datetime) -> None:
        if self.alerts.get((model, check, feature)) == at:
            del self.alerts[(model, check, feature)]

    def claim_job(self, model: str, job_id: str, at: datetime) -> bool:
        if (model, job_id) in self.jobs_claimed:
            return False
        self.jobs_claimed.add((model, job_id))
        return True

    def release_job(self, model: str, job_id: str) -> None:
        self.jobs_claimed.discard((model, job_id))


class FakeBatch:
    """BatchResults over prepared jobs: job id -> (job, input rows, scored rows)."""

    def __init__(self) -> None:
        self.jobs: dict[str, tuple[Job, pd.DataFrame, pd.DataFrame]] = {}

    def completed_jobs(self, model: str, since: datetime) -> list[Job]:
        return [
            job
            for job, _, _ in self.jobs.values()
            if job.model == model and job.completed_at is not None and job.completed_at >= since
        ]

    def job_rows(
        self, job: Job, max_rows: int
    ) -> tuple[dict[str, np.ndarray[Any, Any]], dict[str, np.ndarray[Any, Any]]]:
        _, inputs, scored = self.jobs[job.job_id]
        return columns_of(inputs.head(max_rows)), columns_of(scored.head(max_rows))


def batch_job(
    job_id: str, frame: pd.DataFrame, *, model: str = "churn", version_number: int = 1
) -> tuple[Job, pd.DataFrame, pd.DataFrame]:
    """A completed job over ``frame`` as the batch worker leaves it: the input file and scored parts."""
    labels, probability = score(frame)
    job = Job(
        job_id=job_id,
        status="completed",
        model=model,
        alias="production",
        model_version=version_number,
        input=JobInput(bucket="batch", key=f"input/{model}/{job_id}.csv", etag="e", size=1, format="csv"),
        submitted_by="tests",
        chunk_rows=100_000,
        rows_in=len(frame),
        rows_scored=len(frame),
        created_at=NOW - timedelta(hours=2),
        completed_at=NOW - timedelta(hours=1),
    )
    scored = pd.DataFrame(
        {
            "customer": np.arange(len(frame)),
            "label": labels,
            "proba_0": 1 - probability,
            "proba_1": probability,
        }
    )
    return job, frame.assign(customer=np.arange(len(frame))), scored


class FakeArtifacts:
    """ArtifactStore in a dict."""

    def __init__(self) -> None:
        self.objects: dict[str, bytes] = {}

    def get(self, key: str) -> bytes:
        if key not in self.objects:
            raise NotFoundError(f"{key} not found")
        return self.objects[key]

    def put(self, key: str, body: bytes, *, content_type: str = "application/octet-stream") -> None:
        self.objects[key] = body


class FakeTopic:
    """AlertPublisher recording messages; ``failing`` makes publish raise."""

    def __init__(self) -> None:
        self.messages: list[tuple[str, Mapping[str, Any]]] = []
        self.failing = False

    def publish(self, subject: str, message: Mapping[str, Any]) -> str:
        if self.failing:
            raise UpstreamError("sns is down")
        self.messages.append((subject, dict(message)))
        return f"m-{len(self.messages)}"


class FakeRecorder:
    """MetricsRecorder keeping what was recorded."""

    def __init__(self) -> None:
        self.records: list[tuple[str, dict[str, float]]] = []

    def record(self, model: str, values: Mapping[str, float]) -> None:
        self.records.append((model, dict(values)))


# ---------------------------------------------------------------- the synthetic world


def features(
    rng: np.random.Generator, n: int, *, shift: float = 0.0, city_shares: list[float] | None = None
) -> pd.DataFrame:
    """Reference-like features; ``shift`` moves f0 and f1 by that many standard deviations."""
    return pd.DataFrame(
        {
            "f0": rng.normal(shift, 1.0, n),
            "f1": rng.normal(5.0 + shift * 2.0, 2.0, n),
            "f2": rng.exponential(1.0, n),
            "f3": rng.uniform(-1, 1, n),
            "visits": rng.poisson(3, n),
            "city": rng.choice(CITIES, n, p=city_shares or CITY_SHARES),
        }
    )


def score(frame: pd.DataFrame) -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]:
    """The 'model': (labels, positive-class probability)."""
    logit = frame["f0"].to_numpy() + 0.5 * (frame["f1"].to_numpy() - 5.0) / 2.0
    probability = 1 / (1 + np.exp(-logit))
    return (probability > 0.5).astype(np.int64), probability


def version(
    name: str = "churn",
    number: int = 1,
    *,
    metrics: dict[str, float] | None = None,
    tags: dict[str, str] | None = None,
) -> ModelVersion:
    """A production version whose profile lives at the conventional key."""
    return ModelVersion(
        model=name,
        version=number,
        artifact_key=f"models/{name}/v{number}/model.onnx",
        artifact_sha256=hashlib.sha256(name.encode()).hexdigest(),
        size_bytes=100,
        signature=Signature(
            inputs=[TensorSpec(name="input", dtype="float32", shape=[None, 6])],
            outputs=[
                TensorSpec(name="label", dtype="int64"),
                TensorSpec(name="probabilities", dtype="float32"),
            ],
            task="classification",
            class_labels=[0, 1],
            label_output="label",
            probability_output="probabilities",
        ),
        feature_schema=SCHEMA,
        metrics=metrics or {},
        tags=tags or {},
        reference_profile_key=f"models/{name}/v{number}/reference_profile.json",
        created_at=NOW - timedelta(days=30),
        created_by="tests",
    )


def reference_profile_json(rng: np.random.Generator, n: int = 5000, *, target: bool = False) -> bytes:
    """The profile of a reference sample and the model's outputs on it; with ``target``, the
    reference's labels too (drawn from the model's own probabilities: a calibrated model)."""
    frame = features(rng, n)
    labels, probability = score(frame)
    if target:
        outputs = ReferenceOutputs(
            labels=labels, probabilities=np.c_[1 - probability, probability], class_labels=[0, 1]
        )
        truth = (rng.random(n) < probability).astype(np.int64)
        profile, _ = reference_profile(
            {c: frame[c].to_numpy() for c in frame.columns},
            SCHEMA,
            task="classification",
            target=truth,
            outputs=outputs,
            now=NOW,
        )
        return profile.to_json()
    outputs_columns = prediction_columns(
        labels=labels, probabilities=np.c_[1 - probability, probability], class_labels=[0, 1]
    )
    return compute_profile(frame, SCHEMA, outputs_columns, now=NOW).to_json()


def served(
    frame: pd.DataFrame,
    *,
    model: str = "churn",
    version_number: int = 1,
    variant: str = "main",
    shadow: bool = False,
    prefix: str = "r",
) -> pd.DataFrame:
    """Archive-shaped prediction rows for ``frame``."""
    labels, probability = score(frame)
    n = len(frame)
    ids = [f"{prefix}{i}" for i in range(n)]
    columns: dict[str, Any] = {
        "id": [f"{i}:0" + (":shadow" if shadow else "") for i in ids],
        "type": "prediction",
        "timestamp": [NOW - timedelta(minutes=30)] * n,
        "entity_id": None,
        "model": model,
        "request_id": ids,
        "row": 0,
        "version": version_number,
        "variant": variant,
        "shadow": shadow,
        **{f"features.{c}": frame[c].to_numpy() for c in frame.columns},
        "prediction.label": labels,
        "prediction.probabilities.0": 1 - probability,
        "prediction.probabilities.1": probability,
        "latency_ms": 1.0,
    }
    return pd.DataFrame(columns)


def labels_from_model(rows: pd.DataFrame, rng: np.random.Generator) -> pd.DataFrame:
    """Labels as the reference's were drawn: from the model's own probabilities (nothing changed)."""
    truth = (rng.random(len(rows)) < rows["prediction.probabilities.1"].to_numpy()).astype(int)
    return pd.DataFrame(
        {
            "id": [f"l{i}" for i in range(len(rows))],
            "timestamp": [NOW - timedelta(minutes=10)] * len(rows),
            "entity_id": None,
            "request_id": rows["request_id"].to_numpy(),
            "value": [str(v) for v in truth],
        }
    )


def labels_for(rows: pd.DataFrame, rng: np.random.Generator, *, accuracy: float) -> pd.DataFrame:
    """Labels agreeing with the served prediction with probability ``accuracy`` (as strings, as ingest may store them)."""
    predicted = rows["prediction.label"].to_numpy()
    agree = rng.random(len(rows)) < accuracy
    truth = np.where(agree, predicted, 1 - predicted)
    return pd.DataFrame(
        {
            "id": [f"l{i}" for i in range(len(rows))],
            "timestamp": [NOW - timedelta(minutes=10)] * len(rows),
            "entity_id": None,
            "request_id": rows["request_id"].to_numpy(),
            "value": [str(v) for v in truth],
        }
    )


def prediction_columns(
    *,
    labels: npt.ArrayLike | None = None,
    probabilities: npt.ArrayLike | None = None,
    class_labels: Sequence[int | str] | None = None,
    values: npt.ArrayLike | None = None,
) -> dict[str, npt.NDArray[Any]]:
    """Model outputs as archive columns (see ``ReferenceOutputs.columns``), for tests."""
    outputs = ReferenceOutputs(
        labels=labels, probabilities=probabilities, class_labels=class_labels, values=values
    )
    return outputs.columns()


def compute_profile(
    table: Any,
    schema: FeatureSchema,
    predictions: Mapping[str, npt.ArrayLike] | None = None,
    *,
    settings: ProfileSettings | None = None,
    now: datetime | None = None,
) -> ReferenceProfile:
    """The profile of a table's schema features (a mapping of column arrays, or a DataFrame) and of
    output columns named as ``prediction_columns`` makes them; no target, no baseline.

    A test's shortcut to ``reference_profile`` from a DataFrame and loose output columns.
    """
    names = list(table.keys()) if isinstance(table, Mapping) else list(getattr(table, "columns", []))
    rows = len(np.asarray(table[names[0]])) if names else 0
    columns = {
        spec.name: np.asarray(table[spec.name]) if spec.name in names else np.full(rows, None, dtype=object)
        for spec in schema.features
    }
    profile, _ = reference_profile(columns, schema, settings=settings, now=now)
    if predictions:
        outputs = []
        for column, values in predictions.items():
            name = column if column.startswith(PREDICTION_PREFIX) else f"{PREDICTION_PREFIX}{column}"
            kind = output_kind(name)
            outputs.append(
                profile_column(
                    name, "string" if kind == "categorical" else "float", kind, values, profile.settings
                )
            )
        profile = profile.model_copy(update={"predictions": outputs})
    return profile
