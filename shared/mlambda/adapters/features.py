"""The online feature store, item metadata and the event ledger on DynamoDB.

Features table layout:

====================  ===============  ==========================================================
pk                    sk               item
====================  ===============  ==========================================================
``entity#<id>``       ``fg#<group>``   ``values`` (map), ``at``/``at_us`` (event time), ``event_id``,
                                       ``expires_at`` (epoch s, when the group has a TTL)
``entity#<id>``       ``agg``          ``count_<kind>``, ``sum_<name>`` (ADD), ``last_seen_at``/``_us``
``item#<id>``         ``meta``         ``attributes`` (map), ``updated_at``/``updated_us``
``featuregroups``     ``<group>``      ``features`` (string set, at most 500), ``first_seen_at``,
                                       ``last_event_at`` (ISO): the groups the store was ever sent
====================  ===============  ==========================================================

The group catalogue lives in one partition, so each function instance records a group at most
once every ``GROUP_RECORD_SECONDS`` (or at once when a feature name it has not recorded appears):
a busy ingest stream costs a handful of catalogue writes a minute, not one per event.

Event-time ordering is a condition on the write: a group is replaced only by a newer event (ties
broken by event id, so replays and reorderings converge). moto never expires TTL items and AWS
deletes them up to days late, so every read drops items whose ``expires_at`` has passed.

The ledger (idempotency table, ``id = event#<event_id>``, TTL ``expiration`` as powertools
uses it) claims event ids with a conditional update and a lease, and marks them completed once
applied. A claim given back after its event reached the archive keeps the item with an expired
lease and ``archived = true``, which the next claimer reads back from its own update. Aggregates are one ``ADD`` update per entity and batch, not a transaction with the
completions: moto's TransactWriteItems deep-copies every table it touches (slow, and not
thread-safe under concurrent requests), and the local cloud is where most runs happen.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from mlambda.adapters.dynamodb import DynamoTable
from mlambda.adapters.paging import PageTokens, listing
from mlambda.errors import ConflictError, MlambdaError
from mlambda.observability import logger
from mlambda.schemas.events import (
    AggregateDelta,
    ClaimState,
    EntityFeatures,
    FeatureGroupSummary,
    FeatureGroupView,
    FeatureWrite,
    ItemRecord,
)

T = TypeVar("T")
R = TypeVar("R")
THREADS = 8
AGGREGATE_SK = "agg"
GROUP_PREFIX = "fg#"
NEWER_WINS = "attribute_not_exists(pk) OR at_us < :us OR (at_us = :us AND event_id < :id)"
GROUPS_PK = "featuregroups"
GROUP_RECORD_SECONDS = 300.0
MAX_GROUP_FEATURES = 500


def entity_pk(entity_id: str) -> str:
    """Partition key of everything stored about an entity (features and tracking tables)."""
    return f"entity#{entity_id}"


def micros(at: datetime) -> int:
    """Event time as integer microseconds since the epoch: exact ordering in conditions."""
    return int(at.timestamp() * 1_000_000)


def stamp(at: datetime) -> str:
    """Fixed-width UTC ISO time: sorts as the time does (sort keys)."""
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def epoch_seconds(at: datetime) -> int:
    """A TTL attribute value."""
    return int(at.timestamp())


def parallel(call: Callable[[T], R], items: Sequence[T], threads: int = THREADS) -> list[R]:
    """``call`` over ``items`` on a few threads (boto3 clients are thread-safe; calls are I/O)."""
    if len(items) <= 1:
        return [call(item) for item in items]
    with ThreadPoolExecutor(max_workers=min(threads, len(items))) as pool:
        return list(pool.map(call, items))


def live(item: Mapping[str, Any], now: float) -> bool:
    """False once the item's TTL has passed (DynamoDB deletes late; moto never does)."""
    expires = item.get("expires_at")
    return expires is None or float(expires) > now


def delete_partition(table: DynamoTable, pk: str, *, keep: Iterable[str] = ()) -> int:
    """Delete every item under ``pk`` except the sort keys in ``keep``, 25 a call; how many."""
    kept = set(keep)
    keys = [
        {"pk": item["pk"], "sk": item["sk"]}
        for item in table.query_all("pk = :pk", {":pk": pk}, consistent=True)
        if item["sk"] not in kept
    ]
    table.batch_delete(keys)
    return len(keys)


def _group_view(item: Mapping[str, Any]) -> FeatureGroupView:
    expires = item.get("expires_at")
    return FeatureGroupView(
        group=str(item["sk"]).removeprefix(GROUP_PREFIX),
        values=dict(item.get("values") or {}),
        event_time=datetime.fromisoformat(str(item["at"])),
        event_id=str(item["event_id"]),
        expires_at=datetime.fromtimestamp(float(expires), UTC) if expires is not None else None,
    )


def _aggregates(item: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in item.items() if k not in ("pk", "sk", "last_seen_us")}


class DynamoFeatureStore:
    """``ports.FeatureStore`` and predict's ``OnlineFeatureSource`` on the features table."""

    def __init__(self, table: DynamoTable, clock: Callable[[], float] = time.time) -> None:
        self._table = table
        self._clock = clock
        self._pages = PageTokens(table)
        # group -> (feature names recorded, when): what this instance already told the catalogue.
        self._recorded: dict[str, tuple[frozenset[str], float]] = {}
        self._recorded_lock = threading.Lock()

    def write_latest(self, writes: Sequence[FeatureWrite]) -> int:
        """One conditional put per group; a losing (older) write is not an error."""
        won = sum(parallel(self._write_one, writes))
        self._record_groups(writes)
        return won

    def _record_groups(self, writes: Sequence[FeatureWrite]) -> None:
        """Tell the group catalogue about groups and names it may not know (best effort)."""
        now = self._clock()
        latest: dict[str, tuple[set[str], datetime]] = {}
        for write in writes:
            names, at = latest.setdefault(write.group, (set(), write.at))
            names.update(write.values)
            latest[write.group] = (names, max(at, write.at))
        for group, (names, at) in latest.items():
            with self._recorded_lock:
                known, when = self._recorded.get(group, (frozenset(), -GROUP_RECORD_SECONDS))
            if names <= known and now - when < GROUP_RECORD_SECONDS:
                continue
            try:
                self._record_group(group, names, at)
            except MlambdaError as exc:
                logger.warning(
                    "feature group catalogue not updated", extra={"group": group, "error": exc.message}
                )
                continue
            with self._recorded_lock:
                self._recorded[group] = (frozenset(known | names), now)

    def _record_group(self, group: str, names: set[str], at: datetime) -> None:
        key = {"pk": GROUPS_PK, "sk": group}
        # A ConflictError below is an older event (the catalogue holds a later time already) or a
        # group listing MAX_GROUP_FEATURES names already: nothing to record.
        with contextlib.suppress(ConflictError):
            self._table.update(
                key,
                "SET first_seen_at = if_not_exists(first_seen_at, :at), last_event_at = :at",
                condition="attribute_not_exists(last_event_at) OR last_event_at < :at",
                # Fixed-width UTC text, so that text order is time order.
                values={":at": at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")},
            )
        with contextlib.suppress(ConflictError):
            self._table.update(
                key,
                "ADD features :names",
                condition="attribute_not_exists(features) OR size(features) < :cap",
                values={":names": set(names), ":cap": MAX_GROUP_FEATURES},
            )

    def groups_seen(self, *, limit: int, after: str | None) -> tuple[list[FeatureGroupSummary], str | None]:
        """Groups by name after ``after``, a page token this listing issued (``mlambda.adapters.paging``)."""
        pages = listing("feature-groups")
        start = self._pages.read(after, pages, equal={"pk": GROUPS_PK}, prefixed={"sk": ""})
        items, last = self._table.query("pk = :pk", {":pk": GROUPS_PK}, limit=limit, start_key=start)
        groups = [
            FeatureGroupSummary(
                group=str(item["sk"]),
                features=sorted(str(name) for name in item.get("features") or ()),
                first_seen_at=datetime.fromisoformat(str(item["first_seen_at"])),
                last_event_at=datetime.fromisoformat(str(item.get("last_event_at") or item["first_seen_at"])),
            )
            for item in items
        ]
        return groups, self._pages.issue(pages, last)

    def _write_one(self, write: FeatureWrite) -> int:
        item: dict[str, Any] = {
            "pk": entity_pk(write.entity_id),
            "sk": f"{GROUP_PREFIX}{write.group}",
            "values": write.values,
            "at": write.at.isoformat(),
            "at_us": micros(write.at),
            "event_id": write.event_id,
        }
        if write.expires_at is not None:
            item["expires_at"] = epoch_seconds(write.expires_at)
        try:
            self._table.put(item, condition=NEWER_WINS, values={":us": item["at_us"], ":id": write.event_id})
        except ConflictError:
            return 0
        return 1

    def add_aggregates(self, deltas: Sequence[AggregateDelta]) -> set[str]:
        """One ``ADD`` update per entity (atomic under concurrency); a failed one is left out."""
        applied = parallel(self._add_one, deltas)
        return {
            event_id for delta, ok in zip(deltas, applied, strict=True) if ok for event_id in delta.event_ids
        }

    def _add_one(self, delta: AggregateDelta) -> bool:
        """``ADD`` the increments and ``SET`` last-seen in one update when it moves forward (in-order
        traffic: one call); when the stored last-seen is newer, the increments alone."""
        key = {"pk": entity_pk(delta.entity_id), "sk": AGGREGATE_SK}
        ordered = sorted(delta.add)
        names = {f"#a{i}": name for i, name in enumerate(ordered)}
        values: dict[str, Any] = {f":a{i}": delta.add[name] for i, name in enumerate(ordered)}
        add = "ADD " + ", ".join(f"#a{i} :a{i}" for i in range(len(ordered))) if ordered else ""
        try:
            if delta.last_seen is not None:
                try:
                    self._table.update(
                        key,
                        f"SET last_seen_us = :us, last_seen_at = :at {add}".strip(),
                        condition="attribute_not_exists(last_seen_us) OR last_seen_us < :us",
                        names=names or None,
                        values={**values, ":us": micros(delta.last_seen), ":at": delta.last_seen.isoformat()},
                    )
                    return True
                except ConflictError:
                    pass  # an out-of-order batch: last-seen is already later
            if add:
                self._table.update(key, add, names=names, values=values)
        except MlambdaError as exc:
            logger.warning(
                "aggregate update failed", extra={"entity_id": delta.entity_id, "error": exc.message}
            )
            return False
        return True

    def _partition(self, entity_id: str) -> list[dict[str, Any]]:
        return list(self._table.query_all("pk = :pk", {":pk": entity_pk(entity_id)}))

    def entity(self, entity_id: str) -> EntityFeatures:
        """One query of the entity's partition: its live groups (oldest first) and aggregates."""
        now = self._clock()
        items = self._partition(entity_id)
        groups = sorted(
            (_group_view(i) for i in items if str(i["sk"]).startswith(GROUP_PREFIX) and live(i, now)),
            key=lambda g: g.event_time,
        )
        aggregate = next((i for i in items if i["sk"] == AGGREGATE_SK), None)
        return EntityFeatures(
            entity_id=entity_id, groups=groups, aggregates=_aggregates(aggregate) if aggregate else {}
        )

    def latest(self, entity_id: str, names: Sequence[str]) -> dict[str, Any]:
        """Predict's read: the entity's live values among ``names`` (newest group wins a shared name)."""
        features = self.entity(entity_id)
        merged: dict[str, Any] = dict(features.aggregates)
        for group in features.groups:
            merged.update(group.values)
        return {name: merged[name] for name in names if name in merged and merged[name] is not None}

    def groups(self, keys: Sequence[tuple[str, str]]) -> list[FeatureGroupView]:
        """BatchGetItem, 100 keys a call, unprocessed keys retried (``DynamoTable.batch_get``)."""
        now = self._clock()
        unique = list(dict.fromkeys(keys))
        items = self._table.batch_get(
            [{"pk": entity_pk(entity), "sk": f"{GROUP_PREFIX}{group}"} for entity, group in unique]
        )
        return [_group_view(i) for i in items if live(i, now)]

    def purge(self, entity_id: str) -> int:
        """Every group and the aggregates of the entity."""
        return delete_partition(self._table, entity_pk(entity_id))


class DynamoItemStore:
    """``ports.ItemStore``: item metadata next to the features."""

    def __init__(self, table: DynamoTable) -> None:
        self._table = table

    def upsert(self, items: Sequence[ItemRecord]) -> int:
        """Conditional put per item: an older webhook delivery never overwrites a newer one."""
        return sum(parallel(self._upsert_one, items))

    def _upsert_one(self, record: ItemRecord) -> int:
        us = micros(record.updated_at)
        try:
            self._table.put(
                {
                    "pk": f"item#{record.item_id}",
                    "sk": "meta",
                    "attributes": record.attributes,
                    "updated_at": record.updated_at.isoformat(),
                    "updated_us": us,
                },
                condition="attribute_not_exists(pk) OR updated_us <= :us",
                values={":us": us},
            )
        except ConflictError:
            return 0
        return 1

    def get_many(self, item_ids: Sequence[str]) -> dict[str, dict[str, Any]]:
        """Attributes of the known items (BatchGetItem, 100 keys a call)."""
        found = self._table.batch_get([{"pk": f"item#{item_id}", "sk": "meta"} for item_id in item_ids])
        return {str(item["pk"]).removeprefix("item#"): dict(item.get("attributes") or {}) for item in found}

    def delete(self, item_id: str) -> bool:
        """Delete the item; False when it did not exist."""
        try:
            self._table.delete({"pk": f"item#{item_id}", "sk": "meta"}, condition="attribute_exists(pk)")
        except ConflictError:
            return False
        return True


class DynamoEventLedger:
    """``ports.EventLedger``: claims and completions in the idempotency table."""

    def __init__(self, ledger: DynamoTable, *, lease: timedelta, keep: timedelta) -> None:
        self._ledger = ledger
        self._lease = lease
        self._keep = keep

    def claim(self, event_ids: Sequence[str], *, token: str, now: datetime) -> dict[str, ClaimState]:
        """A conditional put per id: free, expired, or an in-progress claim whose lease ran out."""
        states = parallel(lambda event_id: self._claim_one(event_id, token, now), event_ids)
        return dict(zip(event_ids, states, strict=True))

    def _claim_one(self, event_id: str, token: str, now: datetime) -> ClaimState:
        key = {"id": f"event#{event_id}"}
        try:
            # An update, not a put: a claim taken over keeps the ``archived`` note of the call
            # that released it, and the new holder reads it in the item as written.
            held = self._ledger.update(
                key,
                "SET #status = :progress, claim = :token, lease_until = :lease, expiration = :expiration",
                condition=(
                    "attribute_not_exists(id) OR expiration < :now"
                    " OR (#status = :progress AND lease_until < :now)"
                ),
                names={"#status": "status"},
                values={
                    ":now": epoch_seconds(now),
                    ":progress": "in_progress",
                    ":token": token,
                    ":lease": epoch_seconds(now + self._lease),
                    ":expiration": epoch_seconds(now + self._keep),
                },
            )
        except ConflictError:
            found = self._ledger.get(key, consistent=True)
            # Absent again: released by a failing call a moment ago; the resend will claim it.
            return "completed" if found is not None and found.get("status") == "completed" else "in_progress"
        return "archived" if held.get("archived") else "claimed"

    def release(self, event_ids: Sequence[str], *, token: str, archived: bool = False) -> None:
        """Conditional deletes (or, for archived events, an expired lease with a note): a claim
        another call took over is left alone."""
        parallel(lambda event_id: self._release_one(event_id, token, archived=archived), event_ids)

    def _release_one(self, event_id: str, token: str, *, archived: bool) -> None:
        key = {"id": f"event#{event_id}"}
        try:
            if archived:
                self._ledger.update(
                    key,
                    "SET lease_until = :gone, archived = :yes",
                    condition="claim = :token",
                    values={":gone": 0, ":yes": True, ":token": token},
                )
            else:
                self._ledger.delete(key, condition="claim = :token", values={":token": token})
        except ConflictError:
            return
        except MlambdaError as exc:
            # The lease expires on its own; the client's resend then takes the claim over.
            logger.warning("could not release a claim", extra={"event_id": event_id, "error": exc.message})

    def complete(self, event_ids: Sequence[str], *, token: str, now: datetime) -> None:
        """Batch puts (25 a call): the claim is ours (the lease outlives the function), no condition needed."""
        expiration = epoch_seconds(now + self._keep)
        self._ledger.batch_put(
            [
                {"id": f"event#{event_id}", "status": "completed", "claim": token, "expiration": expiration}
                for event_id in event_ids
            ]
        )
