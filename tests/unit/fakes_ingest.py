"""In-memory ports of the ingestion and archiving services, with switches to make them fail."""

from __future__ import annotations

import json
import threading
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from mlambda.errors import UpstreamError
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
    event_body,
)

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


class InMemoryLedger:
    """EventLedger in a dict: id -> (status, token); a claim released as archived is ("archived", "")."""

    def __init__(self) -> None:
        self.records: dict[str, tuple[str, str]] = {}
        self.fail_complete = False

    def claim(self, event_ids: Sequence[str], *, token: str, now: datetime) -> dict[str, ClaimState]:
        states: dict[str, ClaimState] = {}
        for event_id in event_ids:
            held = self.records.get(event_id)
            if held is None or held[0] == "archived":
                states[event_id] = "archived" if held is not None else "claimed"
                self.records[event_id] = ("in_progress", token)
            else:
                states[event_id] = "completed" if held[0] == "completed" else "in_progress"
        return states

    def release(self, event_ids: Sequence[str], *, token: str, archived: bool = False) -> None:
        for event_id in event_ids:
            if self.records.get(event_id, ("", ""))[1] == token:
                if archived:
                    self.records[event_id] = ("archived", "")
                else:
                    del self.records[event_id]

    def complete(self, event_ids: Sequence[str], *, token: str, now: datetime) -> None:
        if self.fail_complete:
            raise UpstreamError("ledger unavailable")
        for event_id in event_ids:
            self.records[event_id] = ("completed", token)


class InMemoryFeatureStore:
    """FeatureStore with the adapter's ordering rule; ``fail_writes`` / ``fail_aggregates_for`` inject
    faults, ``raise_on_writes`` / ``raise_on_aggregates`` make those calls raise what they hold."""

    def __init__(self) -> None:
        self.groups_by_key: dict[tuple[str, str], FeatureWrite] = {}
        self.aggregates: dict[str, dict[str, Any]] = {}
        self.fail_writes = False
        self.fail_aggregates_for: set[str] = set()
        self.raise_on_writes: Exception | None = None
        self.raise_on_aggregates: Exception | None = None
        self.catalogue: dict[str, FeatureGroupSummary] = {}
        self._lock = threading.Lock()

    def write_latest(self, writes: Sequence[FeatureWrite]) -> int:
        if self.fail_writes:
            raise UpstreamError("features table unavailable")
        if self.raise_on_writes is not None:
            raise self.raise_on_writes
        won = 0
        for write in writes:
            seen = self.catalogue.get(write.group)
            self.catalogue[write.group] = FeatureGroupSummary(
                group=write.group,
                features=sorted(set(seen.features if seen else ()) | set(write.values)),
                first_seen_at=min(seen.first_seen_at, write.at) if seen else write.at,
                last_event_at=max(seen.last_event_at, write.at) if seen else write.at,
            )
            key = (write.entity_id, write.group)
            held = self.groups_by_key.get(key)
            if held is None or (write.at, write.event_id) > (held.at, held.event_id):
                self.groups_by_key[key] = write
                won += 1
        return won

    def groups_seen(self, *, limit: int, after: str | None) -> tuple[list[FeatureGroupSummary], str | None]:
        names = sorted(name for name in self.catalogue if after is None or name > after)
        page = [self.catalogue[name] for name in names[:limit]]
        return page, (page[-1].group if len(names) > limit else None)

    def add_aggregates(self, deltas: Sequence[AggregateDelta]) -> set[str]:
        if self.raise_on_aggregates is not None:
            raise self.raise_on_aggregates
        applied: set[str] = set()
        for delta in deltas:
            if delta.entity_id in self.fail_aggregates_for:
                continue
            with self._lock:
                counters = self.aggregates.setdefault(delta.entity_id, {})
                for name, value in delta.add.items():
                    counters[name] = counters.get(name, 0) + value
                seen = delta.last_seen
                if seen is not None and ("last_seen_at" not in counters or counters["last_seen_at"] < seen):
                    counters["last_seen_at"] = seen
            applied.update(delta.event_ids)
        return applied

    def _view(self, write: FeatureWrite) -> FeatureGroupView:
        return FeatureGroupView(
            group=write.group,
            values=dict(write.values),
            event_time=write.at,
            event_id=write.event_id,
            expires_at=write.expires_at,
        )

    def entity(self, entity_id: str) -> EntityFeatures:
        groups = [self._view(w) for (e, _), w in self.groups_by_key.items() if e == entity_id]
        return EntityFeatures(
            entity_id=entity_id,
            groups=sorted(groups, key=lambda g: g.event_time),
            aggregates=dict(self.aggregates.get(entity_id, {})),
        )

    def groups(self, keys: Sequence[tuple[str, str]]) -> list[FeatureGroupView]:
        return [self._view(self.groups_by_key[k]) for k in keys if k in self.groups_by_key]

    def purge(self, entity_id: str) -> int:
        keys = [k for k in self.groups_by_key if k[0] == entity_id]
        for key in keys:
            del self.groups_by_key[key]
        return len(keys) + (1 if self.aggregates.pop(entity_id, None) is not None else 0)


class InMemoryItemStore:
    """ItemStore in a dict."""

    def __init__(self) -> None:
        self.items: dict[str, ItemRecord] = {}

    def upsert(self, items: Sequence[ItemRecord]) -> int:
        written = 0
        for item in items:
            held = self.items.get(item.item_id)
            if held is None or held.updated_at <= item.updated_at:
                self.items[item.item_id] = item
                written += 1
        return written

    def delete(self, item_id: str) -> bool:
        return self.items.pop(item_id, None) is not None


class InMemoryTracking:
    """TrackingStore: interactions by (entity, event id), consent by entity."""

    def __init__(self) -> None:
        self.interactions: dict[tuple[str, str], TrackingWrite] = {}
        self.consent: dict[str, ConsentWrite] = {}

    def record(self, writes: Sequence[TrackingWrite]) -> None:
        for write in writes:
            self.interactions[(write.entity_id, write.event_id)] = write

    def set_consent(self, writes: Sequence[ConsentWrite]) -> None:
        for write in writes:
            held = self.consent.get(write.entity_id)
            if held is None or (write.at, write.event_id) > (held.at, held.event_id):
                self.consent[write.entity_id] = write

    def purge(self, entity_id: str) -> int:
        keys = [k for k in self.interactions if k[0] == entity_id]
        for key in keys:
            del self.interactions[key]
        return len(keys)


class InMemoryPurgeLog:
    """PurgeLog in a dict."""

    def __init__(self) -> None:
        self.purges: dict[str, datetime] = {}

    def record(self, entity_id: str, at: datetime, by: str) -> None:
        self.purges[entity_id] = at

    def purged_at(self, entity_ids: Sequence[str]) -> dict[str, datetime]:
        return {e: self.purges[e] for e in entity_ids if e in self.purges}


class RecordingQueue:
    """MessageSink keeping every body; ``fail`` refuses sends, ``accept`` bodies more at most before refusing."""

    def __init__(self) -> None:
        self.bodies: list[str] = []
        self.fail = False
        self.accept: int | None = None

    def send_batch(self, bodies: Sequence[str]) -> None:
        if self.fail:
            raise UpstreamError("queue unavailable")
        for body in bodies:
            if self.accept is not None:
                if self.accept == 0:
                    raise UpstreamError("queue refused the rest of the batch")
                self.accept -= 1
            self.bodies.append(body)

    def envelopes(self) -> list[dict[str, Any]]:
        return [e for body in self.bodies for e in json.loads(body)]


class InMemoryObjects:
    """ArchiveObjects in a dict; ``fail_prefixes`` makes puts under those prefixes fail (each once when ``once``)."""

    def __init__(self) -> None:
        self.objects: dict[str, list[dict[str, Any]]] = {}
        self.fail_prefixes: set[str] = set()
        self.once = True
        self.puts = 0
        self._lock = threading.Lock()

    def put_rows(self, key: str, rows: Sequence[Mapping[str, Any]]) -> None:
        with self._lock:
            self.puts += 1
            failing = next((p for p in self.fail_prefixes if key.startswith(p)), None)
            if failing is not None:
                if self.once:
                    self.fail_prefixes.discard(failing)
                raise UpstreamError(f"s3 refused {key}")
            self.objects[key] = [dict(r) for r in rows]

    def delete(self, key: str) -> None:
        with self._lock:
            self.objects.pop(key, None)

    def row_ids(self) -> list[str]:
        return [str(row["id"]) for rows in self.objects.values() for row in rows]


def at(minutes: float = 0.0) -> datetime:
    """``NOW`` shifted by ``minutes``."""
    return NOW + timedelta(minutes=minutes)


def event(
    event_id: str, event_type: str, entity: str = "u1", when: datetime = NOW, **payload: Any
) -> dict[str, Any]:
    """A raw event as a client sends it (at ``NOW`` for ``u1`` unless told)."""
    return event_body(event_id, event_type, entity, when, **payload)


class InMemoryServed:
    """ServedPredictions: one item per (entity, serving time, request), as the tracking table keys it."""

    def __init__(self) -> None:
        self.items: dict[tuple[str, datetime, str], dict[str, Any]] = {}
        self.fail = False

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
        if self.fail:
            raise UpstreamError("tracking table unavailable")
        self.items[(entity_id, at, request_id)] = {
            "model": model,
            "version": version,
            "variant": variant,
            "predictions": list(predictions),
            "rows": rows,
        }


class InMemoryBucket:
    """ObjectReader over a dict of bytes."""

    def __init__(self) -> None:
        self.objects: dict[str, bytes] = {}

    def get(self, key: str) -> bytes:
        from mlambda.errors import NotFoundError

        if key not in self.objects:
            raise NotFoundError(f"no object {key}")
        return self.objects[key]
