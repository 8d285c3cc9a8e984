"""The tracking store and the purge log on DynamoDB (the tracking table).

====================  ======================================  ===================================
pk                    sk                                      item
====================  ======================================  ===================================
``entity#<id>``       ``ts#<utc time>#<kind>#<event id>``     an interaction (click/view/render/
                                                              opt_in/opt_out): item_id,
                                                              request_id, ``expires_at``
``entity#<id>``       ``ts#<utc time>#prediction#<request>``  what predict served (first rows)
``entity#<id>``       ``consent``                             opted_out, at/at_us, event_id (kept)
``purge#<id>``        ``purge``                               purged_at/purged_us, by (kept)
====================  ======================================  ===================================

Sort keys start with a fixed-width UTC time, so "what did the entity do in the last N hours"
is one range query; expired items are dropped on read (moto never expires TTL items).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from mlambda.adapters.dynamodb import DynamoTable
from mlambda.adapters.features import (
    NEWER_WINS,
    delete_partition,
    entity_pk,
    epoch_seconds,
    live,
    micros,
    parallel,
    stamp,
)
from mlambda.errors import ConflictError
from mlambda.schemas.events import ConsentWrite, TrackingWrite

CONSENT_SK = "consent"
PURGE_SK = "purge"
MAX_RECORDED_ROWS = 20  # a served request keeps its first rows: DynamoDB items are capped at 400 KB


def purge_pk(entity_id: str) -> str:
    """Partition of an entity's purge request (outside the entity's own, which a purge deletes)."""
    return f"purge#{entity_id}"


class DynamoTrackingStore:
    """``TrackingStore`` for ingest, ``EntityTracking`` for predict, ``ServedPredictions`` for the archiver."""

    def __init__(
        self,
        table: DynamoTable,
        *,
        ttl: timedelta = timedelta(days=30),
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._table = table
        self._ttl = ttl
        self._clock = clock

    def record(self, writes: Sequence[TrackingWrite]) -> None:
        """Batch puts: the sort key holds the event id, so a resend lands on the same item."""
        self._table.batch_put(
            [
                {
                    "pk": entity_pk(w.entity_id),
                    "sk": f"ts#{stamp(w.at)}#{w.kind}#{w.event_id}",
                    "kind": w.kind,
                    "item_id": w.item_id,
                    "request_id": w.request_id,
                    "event_id": w.event_id,
                    "expires_at": epoch_seconds(w.expires_at),
                }
                for w in writes
            ]
        )

    def set_consent(self, writes: Sequence[ConsentWrite]) -> None:
        """A conditional put per entity: the newest consent event wins whatever the arrival order."""
        parallel(self._consent_one, writes)

    def _consent_one(self, write: ConsentWrite) -> None:
        us = micros(write.at)
        try:
            self._table.put(
                {
                    "pk": entity_pk(write.entity_id),
                    "sk": CONSENT_SK,
                    "opted_out": write.opted_out,
                    "at": write.at.isoformat(),
                    "at_us": us,
                    "event_id": write.event_id,
                },
                condition=NEWER_WINS,
                values={":us": us, ":id": write.event_id},
            )
        except ConflictError:
            return

    def purge(self, entity_id: str) -> int:
        """The entity's interactions and served predictions; the consent record stays."""
        return delete_partition(self._table, entity_pk(entity_id), keep=[CONSENT_SK])

    # ---- predict's EntityTracking

    def is_opted_out(self, entity_id: str) -> bool:
        """The consent record, read strongly consistent: an opt-out applies from the next request."""
        item = self._table.get({"pk": entity_pk(entity_id), "sk": CONSENT_SK}, consistent=True)
        return bool(item and item.get("opted_out"))

    def seen_items(self, entity_id: str, hours: float, kinds: Sequence[str]) -> set[str]:
        """Item ids of the entity's ``kinds`` interactions in the last ``hours``: one range query."""
        if not kinds:
            return set()
        now = self._clock()
        since = datetime.fromtimestamp(now - hours * 3600, UTC)
        names = {f":k{i}": kind for i, kind in enumerate(kinds)}
        items = self._table.query_all(
            "pk = :pk AND sk BETWEEN :from AND :to",
            {":pk": entity_pk(entity_id), ":from": f"ts#{stamp(since)}", ":to": "ts#~", **names},
            filter_expression=f"kind IN ({', '.join(names)})",
        )
        return {str(i["item_id"]) for i in items if i.get("item_id") and live(i, now)}

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
        """One item per served request (its first rows), keyed by its serving time: a redelivery overwrites it."""
        self._table.put(
            {
                "pk": entity_pk(entity_id),
                "sk": f"ts#{stamp(at)}#prediction#{request_id}",
                "kind": "prediction",
                "request_id": request_id,
                "model": model,
                "version": version,
                "variant": variant,
                "rows": rows,
                "predictions": [dict(p) for p in predictions[:MAX_RECORDED_ROWS]],
                "expires_at": epoch_seconds(at + self._ttl),
            }
        )


class DynamoPurgeLog:
    """``ports.PurgeLog`` in the tracking table."""

    def __init__(self, table: DynamoTable) -> None:
        self._table = table

    def record(self, entity_id: str, at: datetime, by: str) -> None:
        """Overwrite: the latest purge is the one that counts."""
        self._table.put(
            {
                "pk": purge_pk(entity_id),
                "sk": PURGE_SK,
                "purged_at": at.isoformat(),
                "purged_us": micros(at),
                "by": by,
            }
        )

    def purged_at(self, entity_ids: Sequence[str]) -> dict[str, datetime]:
        """One BatchGetItem per 100 entities."""
        unique = list(dict.fromkeys(entity_ids))
        if not unique:
            return {}
        items = self._table.batch_get([{"pk": purge_pk(e), "sk": PURGE_SK} for e in unique])
        return {
            str(i["pk"]).removeprefix("purge#"): datetime.fromisoformat(str(i["purged_at"])) for i in items
        }
