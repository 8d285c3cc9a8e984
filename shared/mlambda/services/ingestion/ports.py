"""What ingestion needs from the feature, tracking, ledger and archive stores; adapters implement it."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from mlambda.schemas.events import (
        AggregateDelta,
        ClaimState,
        ConsentWrite,
        EntityFeatures,
        FeatureGroupSummary,
        FeatureGroupView,
        FeatureWrite,
        ItemRecord,
        TrackingWrite,
    )
    from mlambda.services.monitoring.ports import ArchiveWindow


class FeatureStore(Protocol):
    """The online feature store: latest values per (entity, feature group), and aggregates."""

    def write_latest(self, writes: Sequence[FeatureWrite]) -> int:
        """Write each group unless the stored one is newer (event time, then event id); how many won.

        The store also remembers every group it was sent and the feature names in it
        (``groups_seen``); that bookkeeping never fails the write."""
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

    def groups_seen(self, *, limit: int, after: str | None) -> tuple[list[FeatureGroupSummary], str | None]:
        """Feature groups ever written, by name after ``after``; and the last name when more follow."""
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
        """Claim each id for ``token``: ``claimed`` (or ``archived``: claimed, and released by an
        earlier call that had archived it), or ``completed`` / ``in_progress`` by an earlier call."""
        ...

    def release(self, event_ids: Sequence[str], *, token: str, archived: bool = False) -> None:
        """Give up claims still held by ``token`` so the events can be sent again; ``archived``
        notes that they reached the archive, so the call that claims them next does not archive
        them again. A release that fails leaves the claim to expire with its lease."""
        ...

    def complete(self, event_ids: Sequence[str], *, token: str, now: datetime) -> None:
        """Mark the events applied: a resend is a duplicate from now on."""
        ...


class ServedPredictions(Protocol):
    """What predict served each entity, recorded by the archiver from the prediction log (the tracking table)."""

    def record_predictions(
        self,
        entity_id: str,
        *,
        model: str,
        version: int,
        variant: str,
        request_id: str,
        predictions: Sequence[Mapping[str, Any]],
        rows: int,
        at: datetime,
    ) -> None:
        """One item per served request (its first rows); the same request lands on the same item."""
        ...


class ObjectReader(Protocol):
    """Objects of the data bucket read by key (prediction-log rows stored by reference)."""

    def get(self, key: str) -> bytes:
        """The object's bytes; NotFoundError when absent."""
        ...


class MessageSink(Protocol):
    """Where archive messages go (the archive queue)."""

    def send_batch(self, bodies: Sequence[str]) -> None:
        """Send every body; raise MlambdaError naming what was refused."""
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
