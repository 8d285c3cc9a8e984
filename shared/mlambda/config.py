"""Settings for each function, read once from the environment template.yaml gives it.

This is the only module that reads the process environment. Each function has its own
settings model; handlers build it once (``Settings.load()``) and pass it to services.

``function_environment`` lets a host that runs several functions in one process (the local
cloud) give each invocation its own variables, as Lambda does by giving each its own process.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Self

from pydantic import BaseModel, ConfigDict, Field

_function_environment: ContextVar[Mapping[str, str] | None] = ContextVar(
    "mlambda_function_environment", default=None
)


@contextmanager
def function_environment(variables: Mapping[str, str]) -> Iterator[None]:
    """Overlay ``variables`` on the process environment for the current context (thread/task)."""
    token = _function_environment.set(dict(variables))
    try:
        yield
    finally:
        _function_environment.reset(token)


def environment() -> dict[str, str]:
    """The environment a function sees: the process's, with the invocation's overlay on top."""
    merged = dict(os.environ)
    overlay = _function_environment.get()
    if overlay:
        merged.update(overlay)
    return merged


class FunctionSettings(BaseModel):
    """What every function needs to reach AWS (or the local cloud, or LocalStack)."""

    model_config = ConfigDict(frozen=True, populate_by_name=True, extra="ignore")

    region: str = Field("us-east-1", alias="AWS_REGION", description="AWS region of every client.")
    endpoint_url: str | None = Field(
        None,
        alias="AWS_ENDPOINT_URL",
        description="Endpoint for every AWS client: the local cloud's moto server, LocalStack, or unset for AWS.",
    )

    @classmethod
    def load(cls, variables: Mapping[str, str] | None = None) -> Self:
        """Validate the settings from ``variables`` (default: this function's environment)."""
        values = environment() if variables is None else dict(variables)
        if not values.get("AWS_REGION") and values.get("AWS_DEFAULT_REGION"):
            values["AWS_REGION"] = values["AWS_DEFAULT_REGION"]
        return cls.model_validate(values)


class AuthorizerSettings(FunctionSettings):
    """The API Gateway authorizer: looks keys up in the API keys table."""

    api_keys_table: str = Field(alias="API_KEYS_TABLE", description="DynamoDB table of hashed API keys.")


class KeysSettings(FunctionSettings):
    """The key-management API (`/me`, `/keys`)."""

    api_keys_table: str = Field(alias="API_KEYS_TABLE", description="DynamoDB table of hashed API keys.")
    usage_plans: str = Field(
        "",
        alias="USAGE_PLANS",
        description="Comma-separated plan names (template.yaml's usage plans); empty: keys get no API Gateway key.",
    )
    usage_plan_prefix: str = Field(
        "",
        alias="USAGE_PLAN_PREFIX",
        description="A plan's API Gateway usage plan is named <prefix><plan> (the stack's name and a dash).",
    )

    @property
    def plan_names(self) -> frozenset[str]:
        """The plans keys can be given."""
        return frozenset(name.strip() for name in self.usage_plans.split(",") if name.strip())


# >>> registry settings (issue 3)
class RegistrySettings(FunctionSettings):
    """The model registry API (`/models...`)."""

    registry_table: str = Field(
        alias="REGISTRY_TABLE", description="DynamoDB table of models, versions, aliases, endpoints, history."
    )
    artifacts_bucket: str = Field(
        alias="ARTIFACTS_BUCKET", description="S3 bucket of uploads, model artifacts and reference profiles."
    )
    event_bus_name: str = Field(
        "default",
        alias="EVENT_BUS_NAME",
        description="EventBridge bus that receives mlambda.registry events.",
    )
    max_model_bytes: int = Field(
        100 * 1024 * 1024,
        alias="MAX_MODEL_BYTES",
        ge=1,
        description="Largest ONNX artifact accepted on register (the function holds it in memory).",
    )
    max_reference_bytes: int = Field(
        64 * 1024 * 1024,
        alias="MAX_REFERENCE_BYTES",
        ge=1,
        description="Largest reference sample (Parquet/CSV) accepted on register.",
    )
    upload_url_ttl_seconds: int = Field(
        900,
        alias="UPLOAD_URL_TTL_SECONDS",
        ge=60,
        le=3600,
        description="Lifetime of the presigned PUT URLs handed out for uploads.",
    )
    validation_queue_url: str = Field(
        alias="VALIDATION_QUEUE_URL",
        description="SQS queue of the validator function: registration queues each new version there.",
    )
    smoke_tolerance: float = Field(
        1e-4,
        alias="SMOKE_TOLERANCE",
        gt=0,
        description="Absolute tolerance of smoke-case outputs when the gate reproduces them.",
    )


class ValidatorSettings(FunctionSettings):
    """The validator: turns PENDING_VALIDATION versions READY or FAILED (SQS-triggered)."""

    registry_table: str = Field(alias="REGISTRY_TABLE", description="DynamoDB table of the registry.")
    artifacts_bucket: str = Field(
        alias="ARTIFACTS_BUCKET", description="S3 bucket of uploads, model artifacts and reference profiles."
    )
    event_bus_name: str = Field(
        "default",
        alias="EVENT_BUS_NAME",
        description="EventBridge bus that receives Model Version Ready / Failed.",
    )
    max_model_bytes: int = Field(
        100 * 1024 * 1024,
        alias="MAX_MODEL_BYTES",
        ge=1,
        description="Largest ONNX artifact validated (the function holds it in memory).",
    )
    max_reference_bytes: int = Field(
        64 * 1024 * 1024,
        alias="MAX_REFERENCE_BYTES",
        ge=1,
        description="Largest reference sample (Parquet/CSV) validated.",
    )
    smoke_rows: int = Field(
        20, alias="SMOKE_ROWS", ge=0, le=50, description="Reference rows kept as smoke cases per version."
    )
    max_attempts: int = Field(
        3,
        alias="VALIDATION_MAX_ATTEMPTS",
        ge=1,
        le=10,
        description="Deliveries that may try to validate a version; the next one (the queue's "
        "maxReceiveCount is one more) records it FAILED instead of leaving it pending.",
    )


# >>> predict settings (issue 4)
class PredictSettings(FunctionSettings):
    """Online inference (`POST /models/{name}/predict`)."""

    registry_table: str = Field(
        alias="REGISTRY_TABLE", description="DynamoDB table of models, aliases, endpoints."
    )
    artifacts_bucket: str = Field(
        alias="ARTIFACTS_BUCKET", description="S3 bucket holding the ONNX artifacts."
    )
    features_table: str = Field(
        alias="FEATURES_TABLE", description="Online feature store (latest values per entity)."
    )
    tracking_table: str = Field(
        alias="TRACKING_TABLE", description="Interactions, opt-outs and served predictions."
    )
    prediction_cache_table: str = Field(
        alias="PREDICTION_CACHE_TABLE", description="Cached predictions keyed by (model, version, features)."
    )
    data_bucket: str = Field(
        alias="DATA_BUCKET",
        description="The offline store: where a prediction-log row too large for one log event is kept.",
    )
    max_instances: int = Field(
        1000,
        alias="MAX_INSTANCES",
        ge=1,
        le=10_000,
        description="Most rows one request may carry (413 above).",
    )
    max_body_bytes: int = Field(
        6 * 1024 * 1024,
        alias="MAX_BODY_BYTES",
        ge=1024,
        description="Largest request body accepted (413 above); Lambda's synchronous payload cap is 6 MB.",
    )
    config_ttl_seconds: float = Field(
        10.0,
        alias="CONFIG_TTL_SECONDS",
        ge=0,
        le=300,
        description="How long endpoint configs and alias resolutions are cached in memory per instance.",
    )
    model_cache_max_models: int = Field(
        8, alias="MODEL_CACHE_MAX_MODELS", ge=1, description="Loaded sessions kept per instance (LRU)."
    )
    model_cache_max_bytes: int = Field(
        512 * 1024 * 1024,
        alias="MODEL_CACHE_MAX_BYTES",
        ge=1,
        description="Total artifact bytes of the loaded sessions kept per instance (LRU).",
    )
    intra_op_threads: int = Field(
        1, alias="INTRA_OP_THREADS", ge=1, le=16, description="onnxruntime intra-op threads per session."
    )
    metrics_namespace: str = Field(
        "mlambda",
        alias="POWERTOOLS_METRICS_NAMESPACE",
        description="CloudWatch namespace of the EMF metrics.",
    )
    service_name: str = Field(
        "predict", alias="POWERTOOLS_SERVICE_NAME", description="The service dimension of logs and metrics."
    )


# >>> ingest and archiver settings (issue 5)
class IngestSettings(FunctionSettings):
    """The Event API: ``POST /events``, ``/items``, ``GET /entities/{id}/features``, ``DELETE /entities/{id}``."""

    features_table: str = Field(
        alias="FEATURES_TABLE", description="Online feature store: latest groups, aggregates, item metadata."
    )
    tracking_table: str = Field(
        alias="TRACKING_TABLE", description="Interactions, consent, served predictions and purge requests."
    )
    idempotency_table: str = Field(
        alias="IDEMPOTENCY_TABLE", description="Claims and completions of event ids (dedupe)."
    )
    archive_queue_url: str = Field(alias="ARCHIVE_QUEUE_URL", description="SQS queue raw events go to.")
    max_events: int = Field(
        500, alias="MAX_EVENTS", ge=1, le=500, description="Events per request at most (413 above)."
    )
    max_body_bytes: int = Field(
        6 * 1024 * 1024,
        alias="MAX_BODY_BYTES",
        ge=1024,
        description="Largest request body (413 above); Lambda's synchronous payload cap is 6 MB.",
    )
    max_event_bytes: int = Field(
        16 * 1024,
        alias="MAX_EVENT_BYTES",
        ge=256,
        le=200 * 1024,
        description="Largest single event as JSON; a larger one is rejected alone.",
    )
    max_future_seconds: int = Field(
        300,
        alias="MAX_FUTURE_SECONDS",
        ge=0,
        description="Clock skew tolerated: events stamped further in the future are rejected.",
    )
    tracking_ttl_days: float = Field(
        30.0,
        alias="TRACKING_TTL_DAYS",
        gt=0,
        le=3660,
        description="Interactions are kept this long after they happened.",
    )
    dedupe_hours: float = Field(
        48.0,
        alias="DEDUPE_HOURS",
        gt=0,
        le=24 * 30,
        description="An event id is remembered this long: a resend within it is a duplicate.",
    )
    claim_lease_seconds: int = Field(
        60,
        alias="CLAIM_LEASE_SECONDS",
        ge=5,
        description="A claim not committed within this long (a crashed call) may be taken over.",
    )


class ArchiverSettings(FunctionSettings):
    """The archiver: archive queue and predict's log subscription -> partitioned Parquet in the data bucket."""

    data_bucket: str = Field(alias="DATA_BUCKET", description="The offline store (Parquet partitions).")
    tracking_table: str = Field(
        alias="TRACKING_TABLE",
        description="Purge requests (read per batch), and what predict served each entity (written).",
    )


# >>> batch settings (issue 6)
class BatchSettings(FunctionSettings):
    """What the three batch functions (fanout, worker, Job API) share: stores and the chunking rules."""

    jobs_table: str = Field(
        alias="JOBS_TABLE", description="DynamoDB table of batch jobs and chunk counters."
    )
    batch_bucket: str = Field(alias="BATCH_BUCKET", description="S3 bucket of inputs, outputs and rejects.")
    registry_table: str = Field(
        alias="REGISTRY_TABLE", description="The registry table, read to resolve models."
    )
    chunk_queue_url: str = Field(alias="CHUNK_QUEUE_URL", description="SQS queue of chunk messages.")
    artifacts_bucket: str = Field(
        alias="ARTIFACTS_BUCKET",
        description="S3 bucket of model artifacts and explainers (read to plan and score explained jobs).",
    )
    chunk_rows: int = Field(
        100_000,
        alias="BATCH_CHUNK_ROWS",
        ge=100,
        le=1_000_000,
        description="Target rows per chunk (a job may ask for another value within the same bounds).",
    )
    max_attempts: int = Field(
        3,
        alias="BATCH_MAX_ATTEMPTS",
        ge=1,
        description="Deliveries before a chunk counts as failed: the chunk queue's maxReceiveCount.",
    )
    worker_timeout_seconds: int = Field(
        300,
        alias="BATCH_WORKER_TIMEOUT",
        ge=1,
        description="The worker's Timeout: a last attempt silent for longer than this has died.",
    )
    csv_sample_bytes: int = Field(
        1024 * 1024,
        alias="BATCH_CSV_SAMPLE_BYTES",
        ge=4096,
        description="Head of a CSV read to find the header and estimate bytes per row.",
    )
    max_line_bytes: int = Field(
        1024 * 1024,
        alias="BATCH_MAX_LINE_BYTES",
        ge=1024,
        description="Longest CSV line accepted (boundary probes grow up to this size).",
    )
    max_chunks: int = Field(
        10_000,
        alias="BATCH_MAX_CHUNKS",
        ge=1,
        description="Most chunks per job; larger files get larger chunks, up to 1,000,000 rows each.",
    )


class BatchFanoutSettings(BatchSettings):
    """The batch fanout: S3 ObjectCreated under input/ -> job record + one message per chunk."""


class JobsSettings(BatchSettings):
    """The Job API (`/jobs...`): read jobs, submit an object, retry unfinished chunks."""


class BatchWorkerSettings(BatchSettings):
    """The batch worker: scores one chunk per message and finalises the job after the last one."""

    event_bus_name: str = Field(
        "default", alias="EVENT_BUS_NAME", description="EventBridge bus of the job-completed event."
    )
    score_batch_rows: int = Field(
        65_536,
        alias="BATCH_SCORE_ROWS",
        ge=1,
        description="Rows per onnxruntime call: vectorised, with bounded intermediate arrays.",
    )
    intra_op_threads: int = Field(
        1,
        alias="BATCH_INTRA_OP_THREADS",
        ge=1,
        description="onnxruntime threads per worker (workers run side by side; one each avoids oversubscription).",
    )
    retry_backoff_seconds: int = Field(
        10,
        alias="BATCH_RETRY_BACKOFF_SECONDS",
        ge=0,
        le=900,
        description="A failed chunk returns after this many seconds x 2^(attempt-1), not the queue's 30 minutes.",
    )


class EvaluationsSettings(FunctionSettings):
    """Human evaluations (``/models/{name}/evaluations``, ``/evaluations/{id}...``)."""

    evaluations_table: str = Field(
        alias="EVALUATIONS_TABLE", description="DynamoDB table of evaluations, their rows and verdicts."
    )
    registry_table: str = Field(
        alias="REGISTRY_TABLE",
        description="The registry table: versions are read from it, completed evaluations published to it.",
    )
    artifacts_bucket: str = Field(
        alias="ARTIFACTS_BUCKET",
        description="S3 bucket of model artifacts, explainers, reference samples and uploads.",
    )
    data_bucket: str = Field(alias="DATA_BUCKET", description="The archive: traffic evaluations sample from.")
    event_bus_name: str = Field(
        "default", alias="EVENT_BUS_NAME", description="EventBridge bus of 'Model Evaluation Completed'."
    )
    max_upload_bytes: int = Field(
        20 * 1024 * 1024,
        alias="EVALUATION_MAX_UPLOAD_BYTES",
        ge=1,
        description="Largest uploaded CSV/Parquet an evaluation samples from.",
    )
    max_traffic_rows: int = Field(
        200_000,
        alias="EVALUATION_MAX_TRAFFIC_ROWS",
        ge=1,
        description="Archived rows read at most from a traffic window (the sample is drawn from them).",
    )


# >>> monitor settings (issue 7)


class MonitorSettings(FunctionSettings):
    """Scheduled monitoring and ``GET /models/{name}/monitoring``.

    Effect-size floors here are the defaults; a version's tags override them per model or per
    column: ``monitor:wasserstein``, ``monitor:total_variation``, ``monitor:psi`` (every column)
    and ``monitor:wasserstein:<column>``... (one feature or output column, e.g.
    ``monitor:wasserstein:age`` or ``monitor:total_variation:prediction.label``).
    ``MONITOR_COLUMN_THRESHOLDS`` does the same for every model: JSON ``{"age": {"wasserstein": 0.1}}``.
    The significance level is not per column: ``MONITOR_FDR_Q`` is the run's one budget.
    """

    registry_table: str = Field(
        alias="REGISTRY_TABLE", description="Registry table: catalog, summaries, alerts."
    )
    artifacts_bucket: str = Field(alias="ARTIFACTS_BUCKET", description="Profiles in, reports out.")
    data_bucket: str = Field(
        alias="DATA_BUCKET", description="Archived prediction logs and labels (Parquet)."
    )
    alerts_topic_arn: str = Field(alias="ALERTS_TOPIC_ARN", description="SNS topic alerts are published to.")
    jobs_table: str | None = Field(
        None,
        alias="JOBS_TABLE",
        description="Batch jobs: completed ones are monitored too (unset: traffic only).",
    )
    batch_bucket: str | None = Field(None, alias="BATCH_BUCKET", description="Batch inputs and scored parts.")
    window_hours: float = Field(
        24.0,
        gt=0,
        le=24 * 31,
        alias="MONITOR_WINDOW_HOURS",
        description="Length of the window each run reads.",
    )
    min_rows: int = Field(
        100,
        ge=10,
        alias="MONITOR_MIN_ROWS",
        description="Below this many rows (per column): not_enough_data.",
    )
    fdr_q: float = Field(
        0.01,
        gt=0,
        le=0.05,
        alias="MONITOR_FDR_Q",
        description=(
            "One alarm budget per run: every p-value (drift, data quality, model quality, estimated "
            "performance, traffic split) in one Benjamini-Hochberg at this q; on unchanged data a run "
            "alarms at most this often."
        ),
    )
    wasserstein_floor: float = Field(
        0.05, ge=0, alias="MONITOR_WASSERSTEIN_FLOOR", description="Numeric drift needs W1/sd at least this."
    )
    total_variation_floor: float = Field(
        0.05,
        ge=0,
        le=1,
        alias="MONITOR_TOTAL_VARIATION_FLOOR",
        description="Categorical drift needs this total variation distance of the shares.",
    )
    psi_floor: float | None = Field(
        None, gt=0, alias="MONITOR_PSI_FLOOR", description="Optional: drift also needs PSI at least this."
    )
    drift_share: float = Field(
        0.5,
        gt=0,
        le=1,
        alias="MONITOR_DRIFT_SHARE",
        description="Dataset drift when this share of features drift.",
    )
    column_thresholds: str = Field(
        "{}",
        alias="MONITOR_COLUMN_THRESHOLDS",
        description='JSON per-column floors: {"age": {"wasserstein": 0.1}}.',
    )
    max_missing_increase: float = Field(
        0.01,
        ge=0,
        le=1,
        alias="MONITOR_MAX_MISSING_INCREASE",
        description="Completeness: a significant rise of the missing share must also reach this.",
    )
    max_out_of_range: float = Field(
        0.001,
        ge=0,
        le=1,
        alias="MONITOR_MAX_OUT_OF_RANGE",
        description="Values outside the reference range: beyond chance and at least this share.",
    )
    max_new_category: float = Field(
        0.001,
        ge=0,
        le=1,
        alias="MONITOR_MAX_NEW_CATEGORY",
        description="Never-seen categories: beyond chance and at least this share.",
    )
    min_labels: int = Field(
        100, ge=1, alias="MONITOR_MIN_LABELS", description="Labelled rows needed for model quality."
    )
    quality_tolerance: float = Field(
        0.02,
        ge=0,
        alias="MONITOR_QUALITY_TOLERANCE",
        description=(
            "A significant drop from the baseline must also exceed this (absolute for scores, relative "
            "for errors) to count as degraded."
        ),
    )
    bootstrap_resamples: int = Field(2000, ge=2000, le=20000, alias="MONITOR_BOOTSTRAP_RESAMPLES")
    alert_cooldown_hours: float = Field(
        24.0,
        ge=0,
        alias="MONITOR_ALERT_COOLDOWN_HOURS",
        description="One alert per (model, check, column) per cooldown.",
    )
    max_rows: int = Field(
        2_000_000,
        ge=1000,
        alias="MONITOR_MAX_ROWS",
        description="Rows read per window at most (memory bound).",
    )
    history: int = Field(
        48, ge=1, le=500, alias="MONITOR_HISTORY", description="Past runs plotted in reports."
    )
