"""The Event API's logic: validate a batch event by event, apply each new event exactly once.

One ``POST /events`` batch goes through these steps:

1. every event is checked alone (shape, size, not in the future, not before its entity's purge,
   and every value within what the stores hold: ``mlambda.schemas.events``); a bad one is
   rejected with its index and a reason naming the field, the others go on. Nothing is written
   before this step is over;
2. event ids are claimed in the ledger (a conditional write with a lease): an id already
   completed is a duplicate (accepted, not applied again), one still in progress elsewhere is
   rejected as retryable;
3. idempotent writes: latest feature groups (only if newer, by event time), interactions
   (keyed by event id) and consent (only if newer);
4. the raw events go to the archive queue (JSON lists under SQS's 256 KB cap), one message
   body at a time;
5. aggregates (counts per interaction kind, sums, and last-seen, which only moves forward) get
   one atomic update per entity, then the claims are marked completed.

A failure in 3-5, whatever a store raises, releases the claims of the events involved and
reports them as rejected with ``retryable: true`` (an unexpected error is still a 500, with
its claims released): the client sends them again and, the writes of 3 being idempotent,
nothing is applied twice. Events already sent to the archive are released with a note
(``archived``), so the call that claims them next skips step 4 for them: the archive gets each
event once. What is left: an ``ADD`` that failed ambiguously (timed out after applying) counts
twice on the resend; a call that dies (a timeout, a crash) between steps leaves its claims to
expire with their lease, after which a resend applies them again (the archive's readers,
monitoring and the point-in-time helper, drop duplicate ids). A completion that cannot be
written leaves the claim in progress: resends are refused as retryable until its lease ends.
"""

from __future__ import annotations

import json
import re
import uuid
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import orjson

from mlambda.errors import InvalidInputError, MlambdaError, PayloadTooLargeError
from mlambda.http import require_body_within
from mlambda.observability import MetricUnit, logger, metrics
from mlambda.schemas.archive import pack
from mlambda.schemas.events import (
    CONSENT_KINDS,
    ITEM_KINDS,
    AggregateDelta,
    AnyEvent,
    ConsentWrite,
    EntityFeatures,
    EventResult,
    FeatureGroupPage,
    FeatureUpdateEvent,
    FeatureWrite,
    IngestResponse,
    InteractionEvent,
    ItemsRequest,
    ItemsResponse,
    PurgeResult,
    TrackingWrite,
    event_json,
    validate_event,
)
from mlambda.services.ingestion.ports import (
    EventLedger,
    FeatureStore,
    ItemStore,
    MessageSink,
    PurgeLog,
    TrackingStore,
)

if TYPE_CHECKING:
    from mlambda.config import IngestSettings

MAX_GROUPS_PAGE = 500
ARCHIVE_PURGE_NOTE = (
    "already-archived Parquet is not rewritten by this call: rows of this entity stay in "
    "objects written before purged_at until the archive is compacted (see the README); rows "
    "still in the archive queue are dropped by the archiver"
)


_LONG_INTEGER = re.compile(rb"(?<![\d.eE+-])-?\d{20,}(?![\d.eE])")
"""A JSON integer literal of 20 digits or more: orjson would read it as a float (silently)."""


def parse_events(body: bytes | str, *, max_bytes: int, max_events: int) -> list[Any]:
    """The ``events`` list of a request body: 413 when too large or too many, 400/422 when malformed.

    orjson reads the body, except where it would change a value: an integer of 20 digits or more
    (orjson reads it as a float) or a number that overflows (``1e999``, which orjson refuses for
    the whole body). The standard parser reads those exactly, so the event holding such a value
    is rejected alone, naming the field, instead of being stored rounded or failing its batch.
    """
    require_body_within(body, max_bytes)
    raw = body.encode() if isinstance(body, str) else body
    try:
        document = orjson.loads(raw or b"")
        if _LONG_INTEGER.search(raw):
            document = json.loads(raw)
    except orjson.JSONDecodeError as exc:
        try:
            document = json.loads(raw)
        except ValueError:
            raise InvalidInputError(f"body is not valid JSON: {exc}", code="malformed_json") from exc
    events = document.get("events") if isinstance(document, dict) else None
    if not isinstance(events, list) or not events:
        raise InvalidInputError(
            'the body must be {"events": [...]} with at least one event', code="validation_error"
        )
    if len(events) > max_events:
        raise PayloadTooLargeError(
            f"{len(events)} events, over the limit of {max_events} per request",
            code="too_many_events",
            details={"events": len(events), "limit": max_events},
        )
    return events


@dataclass(frozen=True)
class IngestLimits:
    """Per-event bounds and lifetimes (from IngestSettings)."""

    max_event_bytes: int = 16 * 1024
    max_future: timedelta = timedelta(minutes=5)
    tracking_ttl: timedelta = timedelta(days=30)


def _rejected(index: int, event_id: str | None, code: str, reason: str, *, retryable: bool) -> EventResult:
    return EventResult(
        index=index, event_id=event_id, status="rejected", code=code, reason=reason, retryable=retryable
    )


def _store_refused(index: int, event_id: str, exc: MlambdaError) -> EventResult:
    """An event a store failed to take: retryable when the store failed, else the store's reason."""
    if exc.status >= 500:
        return _rejected(index, event_id, "unavailable", "a store failed; send it again", retryable=True)
    return _rejected(index, event_id, exc.code, exc.message, retryable=False)


def envelope(event: AnyEvent) -> dict[str, Any]:
    """The event as an ``ArchiveEnvelope`` (JSON-ready): its id is the event id."""
    return {
        "id": event.event_id,
        "type": event.type,
        "timestamp": event.timestamp.isoformat(),
        "entity_id": event.entity_id,
        "payload": event.payload.model_dump(mode="json", exclude_none=True),
    }


class IngestionService:
    """``POST /events``, items, feature reads and purges, over the ports."""

    def __init__(
        self,
        *,
        ledger: EventLedger,
        features: FeatureStore,
        items: ItemStore,
        tracking: TrackingStore,
        purges: PurgeLog,
        archive: MessageSink,
        limits: IngestLimits | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._ledger = ledger
        self._features = features
        self._items = items
        self._tracking = tracking
        self._purges = purges
        self._archive = archive
        self._limits = limits or IngestLimits()
        self._clock = clock

    @classmethod
    def from_settings(cls, settings: IngestSettings) -> IngestionService:
        """The service on the tables and queue template.yaml gives the ingest function."""
        from mlambda.adapters.dynamodb import DynamoTable
        from mlambda.adapters.features import DynamoEventLedger, DynamoFeatureStore, DynamoItemStore
        from mlambda.adapters.messaging import Queue
        from mlambda.adapters.tracking import DynamoPurgeLog, DynamoTrackingStore

        features = DynamoTable(settings.features_table, settings)
        tracking = DynamoTable(settings.tracking_table, settings)
        ttl = timedelta(days=settings.tracking_ttl_days)
        return cls(
            ledger=DynamoEventLedger(
                DynamoTable(settings.idempotency_table, settings),
                lease=timedelta(seconds=settings.claim_lease_seconds),
                keep=timedelta(hours=settings.dedupe_hours),
            ),
            features=DynamoFeatureStore(features),
            items=DynamoItemStore(features),
            tracking=DynamoTrackingStore(tracking, ttl=ttl),
            purges=DynamoPurgeLog(tracking),
            archive=Queue(settings.archive_queue_url, settings),
            limits=IngestLimits(
                max_event_bytes=settings.max_event_bytes,
                max_future=timedelta(seconds=settings.max_future_seconds),
                tracking_ttl=ttl,
            ),
        )

    # ------------------------------------------------------------------ events

    def ingest(self, raw_events: Sequence[Any]) -> IngestResponse:
        """Validate, dedupe and apply a batch; every event gets a result, in request order."""
        now = self._clock()
        results: dict[int, EventResult] = {}
        valid = self._validate(raw_events, now, results)
        valid = self._drop_purged(valid, results)
        token = uuid.uuid4().hex  # per call: the service is shared by concurrent invocations
        claimed = self._claim(valid, token, now, results)
        if claimed:
            self._apply(claimed, token, now, results)
        ordered = [results[i] for i in range(len(raw_events))]
        response = IngestResponse(
            accepted=sum(r.status == "accepted" for r in ordered),
            duplicates=sum(r.status == "duplicate" for r in ordered),
            rejected=sum(r.status == "rejected" for r in ordered),
            results=ordered,
        )
        for name, value in (
            ("EventsAccepted", response.accepted),
            ("EventsDuplicate", response.duplicates),
            ("EventsRejected", response.rejected),
        ):
            if value:
                metrics.add_metric(name=name, unit=MetricUnit.Count, value=value)
        return response

    def _validate(
        self, raw_events: Sequence[Any], now: datetime, results: dict[int, EventResult]
    ) -> list[tuple[int, AnyEvent]]:
        valid: list[tuple[int, AnyEvent]] = []
        first_index: dict[str, int] = {}
        latest = now + self._limits.max_future
        for index, raw in enumerate(raw_events):
            raw_id = raw.get("event_id") if isinstance(raw, dict) else None
            event_id = raw_id if isinstance(raw_id, str) else None
            text = event_json(raw)
            size = len(text)
            if size > self._limits.max_event_bytes:
                results[index] = _rejected(
                    index,
                    event_id,
                    "event_too_large",
                    f"event is {size} bytes, over the {self._limits.max_event_bytes}-byte limit",
                    retryable=False,
                )
                continue
            event = validate_event(raw, text)
            if isinstance(event, str):
                results[index] = _rejected(index, event_id, "invalid_event", event, retryable=False)
                continue
            if event.timestamp > latest:
                results[index] = _rejected(
                    index,
                    event.event_id,
                    "timestamp_in_future",
                    f"timestamp {event.timestamp.isoformat()} is more than "
                    f"{int(self._limits.max_future.total_seconds())} s ahead of the server clock",
                    retryable=False,
                )
                continue
            if event.event_id in first_index:
                # The same id twice in one request: applied once, like a resend.
                results[index] = EventResult(index=index, event_id=event.event_id, status="duplicate")
                continue
            first_index[event.event_id] = index
            valid.append((index, event))
        return valid

    def _drop_purged(
        self, valid: list[tuple[int, AnyEvent]], results: dict[int, EventResult]
    ) -> list[tuple[int, AnyEvent]]:
        """Events from before their entity's purge would bring erased data back: refused."""
        if not valid:
            return valid
        purged = self._purges.purged_at([event.entity_id for _, event in valid])
        if not purged:
            return valid
        kept: list[tuple[int, AnyEvent]] = []
        for index, event in valid:
            at = purged.get(event.entity_id)
            if at is not None and event.timestamp <= at:
                results[index] = _rejected(
                    index,
                    event.event_id,
                    "entity_purged",
                    f"entity was purged at {at.isoformat()}; events up to then are not accepted",
                    retryable=False,
                )
            else:
                kept.append((index, event))
        return kept

    def _claim(
        self,
        valid: list[tuple[int, AnyEvent]],
        token: str,
        now: datetime,
        results: dict[int, EventResult],
    ) -> list[tuple[int, AnyEvent, bool]]:
        """The events this call applies, each with whether an earlier call archived it already."""
        if not valid:
            return []
        states = self._ledger.claim([event.event_id for _, event in valid], token=token, now=now)
        claimed: list[tuple[int, AnyEvent, bool]] = []
        for index, event in valid:
            state = states[event.event_id]
            if state in ("claimed", "archived"):
                claimed.append((index, event, state == "archived"))
            elif state == "completed":
                results[index] = EventResult(index=index, event_id=event.event_id, status="duplicate")
            else:
                results[index] = _rejected(
                    index,
                    event.event_id,
                    "in_progress",
                    "another request is applying this event_id; send it again shortly",
                    retryable=True,
                )
        return claimed

    def _apply(
        self,
        claimed: list[tuple[int, AnyEvent, bool]],
        token: str,
        now: datetime,
        results: dict[int, EventResult],
    ) -> None:
        """Write, archive, add; on a failure give every claim back (noting what reached the archive).

        A store raising anything, not only an MlambdaError, releases the claims: an error the
        caller sees as a 500 must not leave its events in progress until their leases end.
        """
        events = [event for _, event, _ in claimed]
        archived = {event.event_id for _, event, done in claimed if done}
        committed: set[str] = set()
        try:
            self._write_online(events, now)
            self._send_to_archive([e for e in events if e.event_id not in archived], archived)
            committed = self._features.add_aggregates(aggregate_deltas(events))
        except Exception as exc:
            self._give_back([e.event_id for e in events], archived, token)
            if not isinstance(exc, MlambdaError):
                raise
            logger.warning("events could not be applied; released", extra={"error": exc.message})
            for index, event, _ in claimed:
                results[index] = _store_refused(index, event.event_id, exc)
            return
        lost = [e.event_id for e in events if e.event_id not in committed]
        if lost:
            self._give_back(lost, archived, token)
        try:
            self._ledger.complete(
                [e.event_id for e in events if e.event_id in committed], token=token, now=now
            )
        except MlambdaError as exc:
            # Applied and archived: accepted. The claims stay in progress until their lease ends.
            metrics.add_metric(name="EventCompletionFailures", unit=MetricUnit.Count, value=1)
            logger.error("events applied but not marked completed", extra={"error": exc.message})
        for index, event, _ in claimed:
            if event.event_id in committed:
                results[index] = EventResult(index=index, event_id=event.event_id, status="accepted")
            else:
                results[index] = _rejected(
                    index,
                    event.event_id,
                    "unavailable",
                    "aggregates not updated; send it again",
                    retryable=True,
                )

    def _send_to_archive(self, events: Sequence[AnyEvent], archived: set[str]) -> None:
        """One message body at a time, adding each body's event ids to ``archived`` once sent.

        A batch is usually one body; sent body by body, a failure part-way leaves exactly the
        events of the bodies already sent marked, and a resend archives only the others.
        """
        records = [orjson.dumps(envelope(event)) for event in events]
        for positions, body in pack(records):
            self._archive.send_batch([body])
            archived.update(events[i].event_id for i in positions)

    def _give_back(self, event_ids: Sequence[str], archived: set[str], token: str) -> None:
        """Release the claims on ``event_ids``, those already archived with a note saying so."""
        fresh = [event_id for event_id in event_ids if event_id not in archived]
        sent = [event_id for event_id in event_ids if event_id in archived]
        if fresh:
            self._ledger.release(fresh, token=token)
        if sent:
            self._ledger.release(sent, token=token, archived=True)

    def _write_online(self, events: Sequence[AnyEvent], now: datetime) -> None:
        """The idempotent writes: safe to repeat when the batch is resent."""
        groups: dict[tuple[str, str], FeatureWrite] = {}
        consent: dict[str, ConsentWrite] = {}
        interactions: list[TrackingWrite] = []
        for event in events:
            if isinstance(event, FeatureUpdateEvent):
                update = event.payload
                write = FeatureWrite(
                    entity_id=event.entity_id,
                    group=update.group,
                    values=dict(update.values),
                    at=event.timestamp,
                    event_id=event.event_id,
                    expires_at=event.timestamp + timedelta(seconds=update.ttl_seconds)
                    if update.ttl_seconds
                    else None,
                )
                key = (event.entity_id, update.group)
                if key not in groups or _newer(
                    write.at, write.event_id, groups[key].at, groups[key].event_id
                ):
                    groups[key] = write
            elif isinstance(event, InteractionEvent):
                kind = event.payload.kind
                expires = event.timestamp + self._limits.tracking_ttl
                if kind in ITEM_KINDS and expires > now:
                    interactions.append(
                        TrackingWrite(
                            entity_id=event.entity_id,
                            at=event.timestamp,
                            event_id=event.event_id,
                            kind=kind,
                            expires_at=expires,
                            item_id=event.payload.item_id,
                            request_id=event.payload.request_id,
                        )
                    )
                elif kind in CONSENT_KINDS:
                    write_consent = ConsentWrite(
                        entity_id=event.entity_id,
                        opted_out=kind == "opt_out",
                        at=event.timestamp,
                        event_id=event.event_id,
                    )
                    held = consent.get(event.entity_id)
                    if held is None or _newer(
                        write_consent.at, write_consent.event_id, held.at, held.event_id
                    ):
                        consent[event.entity_id] = write_consent
        if groups:
            self._features.write_latest(list(groups.values()))
        if interactions:
            self._tracking.record(interactions)
        if consent:
            self._tracking.set_consent(list(consent.values()))

    # ------------------------------------------------------------------ items, reads, purge

    def upsert_items(self, request: ItemsRequest) -> ItemsResponse:
        """Write the items; those older than what is stored are counted as stale."""
        written = self._items.upsert(request.items)
        return ItemsResponse(upserted=written, stale=len(request.items) - written)

    def delete_item(self, item_id: str) -> dict[str, Any]:
        """Remove one item's metadata."""
        return {"item_id": item_id, "deleted": self._items.delete(item_id)}

    def entity_features(self, entity_id: str, groups: Sequence[str] = ()) -> EntityFeatures:
        """The entity's live groups (only ``groups`` when given: one batched read) and aggregates."""
        features = self._features.entity(entity_id)
        if groups:
            wanted = self._features.groups([(entity_id, g) for g in groups])
            return features.model_copy(update={"groups": wanted})
        return features

    def feature_groups(self, *, limit: int = 100, token: str | None = None) -> FeatureGroupPage:
        """The feature groups the store has been sent, by name, with the feature names seen."""
        if not 1 <= limit <= MAX_GROUPS_PAGE:
            raise InvalidInputError(f"limit must be 1-{MAX_GROUPS_PAGE}", code="invalid_limit")
        groups, last = self._features.groups_seen(limit=limit, after=token)
        return FeatureGroupPage(groups=groups, next_token=last)

    def purge(self, entity_id: str, by: str) -> PurgeResult:
        """Erase the entity from the online stores and record the purge for the archiver.

        The purge request is recorded first, so that an event racing the purge is either refused
        by ingest or dropped by the archiver.
        """
        at = self._clock()
        self._purges.record(entity_id, at, by)
        features = self._features.purge(entity_id)
        tracking = self._tracking.purge(entity_id)
        logger.info("entity purged", extra={"entity_id": entity_id, "by": by})
        return PurgeResult(
            entity_id=entity_id,
            features_deleted=features,
            tracking_deleted=tracking,
            purged_at=at,
            archive=ARCHIVE_PURGE_NOTE,
        )


def _newer(at: datetime, event_id: str, than_at: datetime, than_id: str) -> bool:
    """Event-time order with the event id as tie-breaker (the same order the stores apply)."""
    return (at, event_id) > (than_at, than_id)


def aggregate_deltas(events: Sequence[AnyEvent]) -> list[AggregateDelta]:
    """Per entity: the batch's events, their increments (``count_<kind>``, ``sum_<name>``) and last-seen."""
    by_entity: dict[str, list[AnyEvent]] = defaultdict(list)
    for event in events:
        by_entity[event.entity_id].append(event)
    deltas: list[AggregateDelta] = []
    for entity_id, entity_events in by_entity.items():
        add: dict[str, float] = defaultdict(float)
        for event in entity_events:
            for name, value in _increments(event).items():
                add[name] += value
        seen = [e.timestamp for e in entity_events if isinstance(e, InteractionEvent)]
        deltas.append(
            AggregateDelta(
                entity_id=entity_id,
                event_ids=tuple(e.event_id for e in entity_events),
                add={k: (int(v) if float(v).is_integer() else v) for k, v in add.items() if v},
                last_seen=max(seen) if seen else None,
            )
        )
    return deltas


def _increments(event: AnyEvent) -> Mapping[str, float]:
    if isinstance(event, InteractionEvent):
        return {f"count_{event.payload.kind}": 1}
    if isinstance(event, FeatureUpdateEvent):
        return {f"sum_{name}": value for name, value in event.payload.add.items()}
    return {}
