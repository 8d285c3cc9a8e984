"""The interfaces services need from storage and messaging; adapters implement them."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    import numpy as np
    import pandas

    from mlambda.schemas.batch import ChunkRecord, ChunkResult, ChunkStatus, Job
    from mlambda.schemas.keys import ApiKeyRecord
    from mlambda.schemas.registry import (
        Alias,
        EndpointConfig,
        HistoryEntry,
        ModelVersion,
        RegisteredModel,
        Signature,
    )
    from mlambda.schemas.registry_api import ModelDetails


class ApiKeyStore(Protocol):
    """Where hashed API keys live."""

    def get(self, key_id: str) -> ApiKeyRecord | None:
        """The key with ``key_id``, or None."""
        ...

    def add(self, record: ApiKeyRecord) -> None:
        """Store a new key; ConflictError when the id is taken."""
        ...

    def all(self) -> Iterable[ApiKeyRecord]:
        """Every key, revoked ones included."""
        ...

    def revoke(self, key_id: str, at: datetime) -> ApiKeyRecord:
        """Mark the key revoked (idempotent); NotFoundError when absent."""
        ...


class ModelCatalog(Protocol):
    """The registry's read side: what predict, batch and monitor ask it."""

    def get_version(self, model: str, version: int) -> ModelVersion:
        """One version; NotFoundError when the model or version does not exist."""
        ...

    def resolve(self, model: str, ref: str) -> ModelVersion:
        """The version an alias (``production``) or version ref (``v3``, ``3``) names; NotFoundError otherwise."""
        ...

    def endpoint_config(self, model: str) -> EndpointConfig | None:
        """The model's endpoint config, or None when it has none (serve ``production``)."""
        ...

    def models_with_alias(self, alias: str) -> list[ModelVersion]:
        """The version each model's ``alias`` points at, for every model that has it."""
        ...


class ArtifactStore(Protocol):
    """Where model files, profiles and reports live (the artifacts bucket)."""

    def get(self, key: str) -> bytes:
        """The object at ``key``; NotFoundError when absent."""
        ...

    def put(self, key: str, body: bytes, *, content_type: str = "application/octet-stream") -> None:
        """Write ``body`` at ``key``."""
        ...


# >>> registry (issue 3)
class RegistryStore(ModelCatalog, Protocol):
    """The registry's own read/write side: every write appends its HistoryEntry in the same transaction."""

    def create_model(self, model: RegisteredModel, entry: HistoryEntry) -> None:
        """Store a new model; ConflictError when the name is taken."""
        ...

    def get_model(self, name: str) -> ModelDetails | None:
        """The model with its alias map, or None."""
        ...

    def list_models(
        self, *, limit: int, token: str | None, owner: str | None, tag: tuple[str, str] | None
    ) -> tuple[list[ModelDetails], str | None]:
        """One page of models by name (filtered by owner / tag), and the token of the next page."""
        ...

    def update_model(self, model: RegisteredModel, entry: HistoryEntry) -> None:
        """Replace description/owner/tags; NotFoundError when the model is gone."""
        ...

    def delete_model(self, name: str, entry: HistoryEntry) -> None:
        """Delete the model, its versions and endpoint (history stays); ConflictError while an alias exists."""
        ...

    def latest_version(self, name: str) -> int:
        """The highest version number (strongly consistent); NotFoundError when there is no model."""
        ...

    def add_version(self, version: ModelVersion, entry: HistoryEntry) -> None:
        """Store version N only if N-1 is the latest; ConflictError when another registration won."""
        ...

    def list_versions(
        self, name: str, *, limit: int, token: str | None
    ) -> tuple[list[ModelVersion], str | None]:
        """One page of versions, newest first."""
        ...

    def get_alias(self, name: str, alias: str) -> Alias | None:
        """The alias, or None."""
        ...

    def move_alias(
        self, alias: Alias, target: ModelVersion, expected: int | None, entry: HistoryEntry
    ) -> None:
        """Point ``alias`` at ``target`` only if it still points at ``expected`` (None: absent); else ConflictError."""
        ...

    def delete_alias(self, name: str, alias: str, expected: int, entry: HistoryEntry) -> None:
        """Remove the alias only if it still points at ``expected``; else ConflictError."""
        ...

    def put_endpoint(self, config: EndpointConfig, targets: list[str], entry: HistoryEntry) -> None:
        """Store the config only if every alias name in ``targets`` still exists; else ConflictError."""
        ...

    def history(
        self, name: str, *, limit: int, token: str | None, alias: str | None
    ) -> tuple[list[HistoryEntry], str | None]:
        """One page of the model's history, newest first (only ``alias``'s moves when given)."""
        ...

    def alias_entry_at(self, name: str, alias: str, at: datetime) -> HistoryEntry | None:
        """The last move or removal of ``alias`` at or before ``at``, or None."""
        ...


class RegistryArtifacts(ArtifactStore, Protocol):
    """The artifacts bucket as the registry uses it: uploads, artifacts, reference samples."""

    def size(self, key: str) -> int:
        """Size in bytes of ``key``; NotFoundError when absent."""
        ...

    def upload_url(self, key: str, *, expires_in: int) -> str:
        """A presigned URL that lets its holder PUT ``key``."""
        ...

    def read_table(self, key: str) -> pandas.DataFrame:
        """A CSV or Parquet object as a DataFrame; InvalidInputError when it is neither."""
        ...

    def delete_prefix(self, prefix: str) -> None:
        """Remove every object under ``prefix``."""
        ...


class ModelRuntime(Protocol):
    """Validates ONNX artifacts and runs them (onnxruntime behind it)."""

    def inspect(self, data: bytes, *, max_bytes: int) -> Signature:
        """The artifact's signature; InvalidInputError / PayloadTooLargeError when it is unusable."""
        ...

    def run(self, data: bytes, feed: Mapping[str, np.ndarray]) -> dict[str, Any]:
        """Every output of the artifact for ``feed``."""
        ...


class EventPublisher(Protocol):
    """Domain events (EventBridge): the hook for CI/CD and notifications."""

    def emit(self, detail_type: str, details: Sequence[Mapping[str, Any]]) -> None:
        """Publish one event per detail."""
        ...


# --- batch prediction (issue 6) -------------------------------------------------------------


class ObjectHead(Protocol):
    """What HEAD says about an object (``mlambda.adapters.s3.ObjectInfo`` fits)."""

    @property
    def key(self) -> str: ...

    @property
    def size(self) -> int: ...

    @property
    def etag(self) -> str: ...

    @property
    def metadata(self) -> dict[str, str]: ...


class BatchObjects(Protocol):
    """The batch bucket as batch planning and scoring see it: ranged reads, never whole inputs."""

    def head(self, key: str) -> ObjectHead:
        """Size, etag and metadata; NotFoundError when absent."""
        ...

    def get_range(self, key: str, start: int, end: int, *, etag: str | None = None) -> bytes:
        """Bytes ``start``..``end`` inclusive (fewer at EOF); ConflictError when the etag no longer matches."""
        ...

    def put(self, key: str, body: bytes, *, content_type: str = "application/octet-stream") -> None:
        """Write ``body`` at ``key``, replacing what was there."""
        ...


class ChunkQueue(Protocol):
    """Where chunk messages go, one per chunk."""

    def send_batch(self, bodies: Sequence[str]) -> None:
        """Send every body; raises rather than drop one."""
        ...


class ChunkRetries(Protocol):
    """Bring a failed chunk message back sooner than the queue's long visibility timeout."""

    def retry_later(self, receipt_handle: str, seconds: int) -> None:
        """Make the received message visible again after ``seconds``."""
        ...


class Scorer(Protocol):
    """A loaded model (``mlambda.adapters.onnx.OnnxModel`` fits)."""

    def run(self, feed: Mapping[str, np.ndarray], outputs: Sequence[str] | None = None) -> dict[str, Any]:
        """Score ``feed``; each requested output by name."""
        ...


class ModelLoader(Protocol):
    """Loads a version's artifact, checked against its recorded sha256, cached while warm."""

    def load(self, version: ModelVersion) -> Scorer:
        """The scorer for ``version``; UpstreamError when the artifact is missing or altered."""
        ...


class JobStore(Protocol):
    """Batch jobs and their chunk counters (the jobs table)."""

    def create(self, job: Job) -> bool:
        """Store a new job; False when a job with its id already exists (nothing written)."""
        ...

    def get(self, job_id: str) -> Job | None:
        """The job, read consistently, or None."""
        ...

    def list_by_model(self, model: str, *, limit: int, after: str | None) -> tuple[list[Job], str | None]:
        """A page of the model's jobs, newest first, and the token of the next page."""
        ...

    def update(
        self, job_id: str, fields: Mapping[str, Any], *, when_status: Iterable[str] | None = None
    ) -> bool:
        """Set ``fields`` on the job; False when ``when_status`` is given and the status is not in it."""
        ...

    def add_chunks(self, chunks: Sequence[ChunkRecord], *, fresh: bool) -> None:
        """Store planned chunks; an existing chunk is left as it is (re-planning is safe).

        ``fresh``: the job was created by this call, so no chunk can exist yet (batch writes).
        """
        ...

    def get_chunk(self, job_id: str, index: int) -> ChunkRecord | None:
        """One chunk, read consistently, or None."""
        ...

    def chunks(self, job_id: str) -> list[ChunkRecord]:
        """Every chunk of the job, in order."""
        ...

    def record_attempt(self, job_id: str, index: int, attempt: int, at: datetime) -> None:
        """Note that delivery ``attempt`` of the chunk started (visible even if the worker dies)."""
        ...

    def complete_chunk(self, job_id: str, index: int, result: ChunkResult, *, was: ChunkStatus) -> bool:
        """Atomically mark the chunk done and add its counts to the job, if its status is still ``was``.

        False (nothing written) when it changed: another delivery already counted it.
        """
        ...

    def fail_chunk(self, job_id: str, index: int, error: str, *, final: bool) -> bool:
        """Record a failed attempt; when ``final``, mark a pending chunk failed and count it (True if so)."""
        ...

    def reset_chunk(self, job_id: str, index: int) -> bool:
        """Atomically return a failed chunk to pending and uncount it; False when it was not failed."""
        ...


# ---------------------------------------------------------------- monitoring (issue 7)

if TYPE_CHECKING:
    from datetime import timedelta

    import pandas

    from mlambda.schemas.monitoring import MonitoringSummary


class ArchiveWindow(Protocol):
    """Rows read from the archive for a time window, and what could not be read."""

    @property
    def frame(self) -> pandas.DataFrame:
        """The rows (flattened payload columns), timestamps inside the window."""
        ...

    @property
    def objects(self) -> int:
        """Parquet objects read."""
        ...

    @property
    def corrupt(self) -> list[str]:
        """Keys of objects that could not be read (skipped, reported)."""
        ...

    @property
    def truncated(self) -> bool:
        """True when the row cap stopped the read early."""
        ...


class ArchiveReader(Protocol):
    """The offline store's prediction logs and labels, by time window."""

    def predictions(self, model: str, start: datetime, end: datetime) -> ArchiveWindow:
        """Prediction rows of ``model`` with ``start <= timestamp < end``."""
        ...

    def labels(self, start: datetime, end: datetime) -> ArchiveWindow:
        """Label rows with ``start <= timestamp < end``."""
        ...


class MonitoringStore(Protocol):
    """Monitoring summaries and alert de-duplication state (the registry table)."""

    def put_summary(self, summary: MonitoringSummary) -> None:
        """Store one run's summary."""
        ...

    def summaries(self, model: str, limit: int) -> list[MonitoringSummary]:
        """The latest ``limit`` summaries of ``model``, newest first."""
        ...

    def claim_alert(self, model: str, check: str, feature: str, at: datetime, cooldown: timedelta) -> bool:
        """Atomically record an alert unless one was recorded within ``cooldown``; True when claimed."""
        ...

    def release_alert(self, model: str, check: str, feature: str, at: datetime) -> None:
        """Undo a claim made at ``at`` (the alert could not be sent: let the next run retry)."""
        ...


class AlertPublisher(Protocol):
    """Where alerts go (the SNS alerts topic)."""

    def publish(self, subject: str, message: Mapping[str, Any]) -> str:
        """Publish ``message`` as JSON; the message id."""
        ...


# ---- ingestion (issue 5)

if TYPE_CHECKING:
    from mlambda.schemas.events import (
        AggregateDelta,
        ClaimState,
        ConsentWrite,
        EntityFeatures,
        FeatureGroupView,
        FeatureWrite,
        ItemRecord,
        TrackingWrite,
    )


class FeatureStore(Protocol):
    """The online feature store: latest values per (entity, feature group), and aggregates."""

    def write_latest(self, writes: Sequence[FeatureWrite]) -> int:
        """Write each group unless the stored one is newer (event time, then event id); how many won."""
        ...

    def add_aggregates(self, deltas: Sequence[AggregateDelta]) -> set[str]:
        """Apply each entity's increments atomically, moving last-seen forward only; the event ids applied."""
        ...

    def entity(self, entity_id: str) -> EntityFeatures:
        """Every live group and the aggregates of the entity (empty for an unknown one)."""
        ...

    def groups(self, keys: Sequence[tuple[str, str]]) -> list[FeatureGroupView]:
        """The live groups among ``(entity_id, group)`` keys, read in batches (absent/expired left out)."""
        ...

    def purge(self, entity_id: str) -> int:
        """Delete every feature item of the entity; how many."""
        ...


class ItemStore(Protocol):
    """Item metadata (the metadata store), kept current by its source's webhook."""

    def upsert(self, items: Sequence[ItemRecord]) -> int:
        """Write each item unless the stored one changed later; how many were written."""
        ...

    def delete(self, item_id: str) -> bool:
        """Remove the item; False when there was none."""
        ...


class TrackingStore(Protocol):
    """Interactions, consent and served predictions per entity, time-ordered, TTL-bounded."""

    def record(self, writes: Sequence[TrackingWrite]) -> None:
        """Append interactions (idempotent: the same event lands on the same item)."""
        ...

    def set_consent(self, writes: Sequence[ConsentWrite]) -> None:
        """Record opt-outs/opt-ins; an older change never overrides a newer one."""
        ...

    def purge(self, entity_id: str) -> int:
        """Delete the entity's history (its consent stays, so an opt-out keeps being honoured); how many."""
        ...


class PurgeLog(Protocol):
    """Purge requests, read by ingest and the archiver so purged data does not come back."""

    def record(self, entity_id: str, at: datetime, by: str) -> None:
        """Remember that the entity was purged at ``at``."""
        ...

    def purged_at(self, entity_ids: Sequence[str]) -> dict[str, datetime]:
        """When each of ``entity_ids`` was last purged (entities never purged are left out)."""
        ...


class EventLedger(Protocol):
    """Dedupe of event ids: claim before applying, complete after, release on failure."""

    def claim(self, event_ids: Sequence[str], *, token: str, now: datetime) -> dict[str, ClaimState]:
        """Claim each id for ``token``: ``claimed``, or ``completed`` / ``in_progress`` by an earlier call."""
        ...

    def release(self, event_ids: Sequence[str], *, token: str) -> None:
        """Give up claims still held by ``token`` so the events can be sent again."""
        ...

    def complete(self, event_ids: Sequence[str], *, token: str, now: datetime) -> None:
        """Mark the events applied: a resend is a duplicate from now on."""
        ...


class ArchiveObjects(Protocol):
    """The data bucket as the archiver writes it: Parquet objects of flattened rows."""

    def put_rows(self, key: str, rows: Sequence[Mapping[str, Any]]) -> None:
        """Write ``rows`` as one Parquet object at ``key`` (replacing it: names are content-derived)."""
        ...

    def delete(self, key: str) -> None:
        """Remove ``key`` (no error when absent)."""
        ...


class ArchiveEvents(Protocol):
    """Archived rows of any type by time window (``mlambda.adapters.archive.ArchiveFrames``)."""

    def events(self, archive_type: str, start: datetime, end: datetime) -> ArchiveWindow:
        """Rows of ``archive_type`` with ``start <= timestamp < end``, deduplicated by id."""
        ...
