"""The ingestion service on in-memory stores: validation, dedupe, event-time order, failures, purge."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import timedelta

import pytest

from mlambda.errors import InvalidInputError, PayloadTooLargeError, UpstreamError
from mlambda.schemas.events import ItemRecord, ItemsRequest, validate_event
from mlambda.services.ingestion.service import IngestionService, IngestLimits, aggregate_deltas, parse_events
from tests.unit.fakes_ingest import (
    NOW,
    InMemoryFeatureStore,
    InMemoryItemStore,
    InMemoryLedger,
    InMemoryPurgeLog,
    InMemoryTracking,
    RecordingQueue,
    at,
    event,
)


@dataclass
class Harness:
    ledger: InMemoryLedger = field(default_factory=InMemoryLedger)
    features: InMemoryFeatureStore = field(default_factory=InMemoryFeatureStore)
    items: InMemoryItemStore = field(default_factory=InMemoryItemStore)
    tracking: InMemoryTracking = field(default_factory=InMemoryTracking)
    purges: InMemoryPurgeLog = field(default_factory=InMemoryPurgeLog)
    queue: RecordingQueue = field(default_factory=RecordingQueue)

    @property
    def service(self) -> IngestionService:
        return IngestionService(
            ledger=self.ledger,
            features=self.features,
            items=self.items,
            tracking=self.tracking,
            purges=self.purges,
            archive=self.queue,
            limits=IngestLimits(max_event_bytes=2048),
            clock=lambda: NOW,
        )


@pytest.fixture
def h() -> Harness:
    return Harness()


def click(event_id: str, entity: str = "u1", minutes: float = 0, item: str = "i1") -> dict[str, object]:
    return event(event_id, "interaction", entity, at(minutes), kind="click", item_id=item)


def test_each_bad_event_is_named_and_the_good_ones_still_land(h: Harness) -> None:
    # Given
    batch = [
        click("ok"),
        "not an object",
        event("t", "purchase"),
        event("m", "label", value=1),
        event("f", "feature_update", when=at(60), group="g", values={"a": 1}),
        event("big", "feature_update", group="g", values={"a": "x" * 1000, "b": "y" * 1000}),
        event("nan", "feature_update", group="g", values={"a": float("inf")}),
        event("bad-name", "feature_update", group="g", values={"1x": 1}),
    ]
    # When
    result = h.service.ingest(batch)
    # Then
    outcome = [(r.index, r.status, r.code) for r in result.results]
    assert outcome == [
        (0, "accepted", None),
        (1, "rejected", "invalid_event"),
        (2, "rejected", "invalid_event"),
        (3, "rejected", "invalid_event"),
        (4, "rejected", "timestamp_in_future"),
        (5, "rejected", "event_too_large"),
        (6, "rejected", "invalid_event"),
        (7, "rejected", "invalid_event"),
    ]
    assert result.results[3].reason == "payload.request_id: Field required"
    assert [e["id"] for e in h.queue.envelopes()] == ["ok"]


@pytest.mark.parametrize(
    ("event_type", "payload", "field"),
    [
        ("label", {"request_id": "r", "value": 1, "row": True}, "payload.row"),
        ("label", {"request_id": "r", "value": 1, "row": "3"}, "payload.row"),
        ("feature_update", {"group": "g", "values": {"a": 1}, "ttl_seconds": "60"}, "payload.ttl_seconds"),
        ("feature_update", {"group": "g", "values": {"a": 1}, "ttl_seconds": False}, "payload.ttl_seconds"),
    ],
)
def test_a_value_of_the_wrong_json_type_is_rejected_not_coerced(
    h: Harness, event_type: str, payload: dict[str, object], field: str
) -> None:
    # Given an event whose number is a boolean or a string (pydantic's lax mode made True a 1)
    batch = [event("e", event_type, **payload)]
    # When
    result = h.service.ingest(batch)
    # Then
    assert (result.results[0].status, result.results[0].code) == ("rejected", "invalid_event")
    assert (result.results[0].reason or "").startswith(f"{field}: ")
    assert h.queue.envelopes() == []


def test_a_duplicate_event_id_is_accepted_once_within_and_across_batches(h: Harness) -> None:
    # When
    first = h.service.ingest([click("a"), click("a"), click("b")])
    second = h.service.ingest([click("a"), click("c")])
    # Then
    assert (first.accepted, first.duplicates) == (2, 1)
    assert (second.accepted, second.duplicates) == (1, 1)
    assert h.features.aggregates["u1"]["count_click"] == 3
    assert sorted(e["id"] for e in h.queue.envelopes()) == ["a", "b", "c"]


def test_an_event_claimed_by_a_concurrent_request_is_rejected_as_retryable(h: Harness) -> None:
    # Given another request holds the claim
    h.ledger.records["a"] = ("in_progress", "other")
    # When
    result = h.service.ingest([click("a")])
    # Then
    assert (result.results[0].code, result.results[0].retryable) == ("in_progress", True)


def test_out_of_order_feature_updates_keep_the_newest_by_event_time(h: Harness) -> None:
    # Given three updates of one group delivered newest first, one of them in the same batch
    newest = event("n", "feature_update", when=at(-1), group="g", values={"a": 3})
    middle = event("m", "feature_update", when=at(-5), group="g", values={"a": 2})
    oldest = event("o", "feature_update", when=at(-9), group="g", values={"a": 1})
    # When
    h.service.ingest([newest, oldest])
    h.service.ingest([middle])
    # Then
    assert h.features.groups_by_key[("u1", "g")].values == {"a": 3}


def test_the_newest_consent_wins_whatever_the_arrival_order(h: Harness) -> None:
    # When an opt-out arrives after a later opt-in
    h.service.ingest([event("in", "interaction", when=at(-1), kind="opt_in")])
    h.service.ingest([event("out", "interaction", when=at(-2), kind="opt_out")])
    # Then the entity is still opted in
    assert h.tracking.consent["u1"].opted_out is False


def test_a_failing_store_releases_the_claims_so_a_resend_applies_once(h: Harness) -> None:
    # Given the queue fails on the first attempt
    h.queue.fail = True
    batch = [click("a"), click("b")]
    failed = h.service.ingest(batch)
    # When the client resends once the queue is back
    h.queue.fail = False
    resent = h.service.ingest(batch)
    # Then
    assert [(r.code, r.retryable) for r in failed.results] == [("unavailable", True)] * 2
    assert resent.accepted == 2
    assert h.features.aggregates["u1"]["count_click"] == 2
    assert sorted(e["id"] for e in h.queue.envelopes()) == ["a", "b"]


def test_a_failed_aggregate_update_rejects_only_that_entitys_events(h: Harness) -> None:
    # Given
    h.features.fail_aggregates_for = {"u2"}
    # When
    result = h.service.ingest([click("a", "u1"), click("b", "u2")])
    # Then b is released, noted as archived already: the resend counts it and archives it no second time
    assert [r.status for r in result.results] == ["accepted", "rejected"]
    assert h.ledger.records.get("b") == ("archived", "")
    h.features.fail_aggregates_for = set()
    assert h.service.ingest([click("b", "u2")]).accepted == 1
    assert h.features.aggregates["u2"]["count_click"] == 1
    assert sorted(e["id"] for e in h.queue.envelopes()) == ["a", "b"]


def test_an_unstorable_number_rejects_its_event_alone_before_anything_is_written(h: Harness) -> None:
    # Given a batch whose third event adds 1e300 to a sum, and others out of what the stores hold
    batch = [
        click("a"),
        click("b"),
        event("c", "feature_update", group="orders", values={"open": 1}, add={"spend": 1e300}),
        event("d", "feature_update", group="orders", values={"open": 1e200}),
        event("e", "feature_update", group="orders", values={"id": 10**30}),
        event("f", "label", request_id="r1", value=10**40),
    ]
    # When
    result = h.service.ingest(batch)
    resent = h.service.ingest(batch)
    # Then the bad ones are rejected alone, naming the field, and nothing of them was written
    assert [(r.status, r.code) for r in result.results] == [("accepted", None)] * 2 + [
        ("rejected", "invalid_event")
    ] * 4
    reasons = [r.reason or "" for r in result.results[2:]]
    assert reasons[0].startswith("payload.add.spend: 1e+300")
    assert reasons[1].startswith("payload.values.open: 1e+200")
    assert reasons[2].startswith("payload.values.id: 1000000000000000000000000000000 is outside the 64-bit")
    assert reasons[3].startswith("payload.value: ")
    assert (resent.accepted, resent.duplicates, resent.rejected) == (0, 2, 4)
    assert h.features.aggregates["u1"] == {"count_click": 2, "last_seen_at": NOW}
    assert h.features.groups_by_key == {}
    assert sorted(h.ledger.records) == ["a", "b"]
    assert sorted(e["id"] for e in h.queue.envelopes()) == ["a", "b"]


def test_a_store_raising_while_adding_aggregates_releases_the_claims_and_archives_once(h: Harness) -> None:
    # Given the aggregates update raises once the events are written and archived
    h.features.raise_on_aggregates = UpstreamError("features table unavailable")
    batch = [click("a"), click("b", "u2")]
    failed = h.service.ingest(batch)
    # When the client resends once the table is back
    h.features.raise_on_aggregates = None
    resent = h.service.ingest(batch)
    # Then each event counts once and is archived once
    assert [(r.code, r.retryable) for r in failed.results] == [("unavailable", True)] * 2
    assert resent.accepted == 2
    assert (h.features.aggregates["u1"]["count_click"], h.features.aggregates["u2"]["count_click"]) == (1, 1)
    assert sorted(e["id"] for e in h.queue.envelopes()) == ["a", "b"]


def test_an_unexpected_error_in_a_store_still_releases_the_claims(h: Harness) -> None:
    # Given the feature store raises something that is not an mlambda error
    h.features.raise_on_writes = ArithmeticError("decimal.Overflow")
    batch = [event("g", "feature_update", group="orders", values={"open": 1}, add={"spend": 2.5})]
    # When
    with pytest.raises(ArithmeticError):
        h.service.ingest(batch)
    h.features.raise_on_writes = None
    resent = h.service.ingest(batch)
    # Then the claim was given back: the resend applies the event, once
    assert resent.accepted == 1
    assert h.features.aggregates["u1"]["sum_spend"] == 2.5
    assert [e["id"] for e in h.queue.envelopes()] == ["g"]


def test_an_archive_send_failing_part_way_archives_no_event_twice_on_the_resend(h: Harness) -> None:
    # Given a batch that takes two archive messages, and a queue that takes only the first
    batch = [
        event(f"e{i}", "feature_update", group="g", values={"s": f"{i:04d}" + "x" * 1000}) for i in range(300)
    ]
    h.queue.accept = 1
    failed = h.service.ingest(batch)
    # When the client resends the batch once the queue is back
    h.queue.accept = None
    resent = h.service.ingest(batch)
    # Then every event is archived exactly once
    assert failed.rejected == 300
    assert len(h.queue.bodies) >= 2
    assert resent.accepted == 300
    ids = [e["id"] for e in h.queue.envelopes()]
    assert sorted(ids) == sorted(f"e{i}" for i in range(300))


def test_a_completion_that_cannot_be_written_still_accepts_applied_events(h: Harness) -> None:
    # Given
    h.ledger.fail_complete = True
    # When
    result = h.service.ingest([click("a")])
    # Then the event counts once, and a resend is refused while the claim is held
    assert result.accepted == 1
    assert h.service.ingest([click("a")]).results[0].code == "in_progress"
    assert h.features.aggregates["u1"]["count_click"] == 1


def test_aggregates_sum_increments_per_entity() -> None:
    # Given
    events = [
        validate_event(event("a", "feature_update", group="o", values={"n": 1}, add={"spend": 2.5})),
        validate_event(event("b", "feature_update", group="o", values={"n": 2}, add={"spend": 1.5})),
        validate_event(click("c")),
        validate_event(event("d", "label", "u2", request_id="r", value=1)),
    ]
    # When
    deltas = aggregate_deltas([e for e in events if not isinstance(e, str)])
    # Then
    assert [(d.entity_id, d.event_ids, d.add, d.last_seen) for d in deltas] == [
        ("u1", ("a", "b", "c"), {"sum_spend": 4, "count_click": 1}, NOW),
        ("u2", ("d",), {}, None),
    ]


def test_interactions_are_tracked_and_labels_are_archived_only(h: Harness) -> None:
    # When
    h.service.ingest(
        [
            event("v", "interaction", kind="view", item_id="i9", request_id="r1"),
            event("l", "label", request_id="r1", value="yes", row=2),
        ]
    )
    # Then
    tracked = h.tracking.interactions[("u1", "v")]
    assert (tracked.kind, tracked.item_id, tracked.request_id) == ("view", "i9", "r1")
    assert tracked.expires_at == NOW + timedelta(days=30)
    label = next(e for e in h.queue.envelopes() if e["id"] == "l")
    assert label["payload"] == {"request_id": "r1", "value": "yes", "row": 2}


def test_purge_erases_and_refuses_events_from_before_it(h: Harness) -> None:
    # Given
    h.service.ingest(
        [click("a", minutes=-10), event("f", "feature_update", when=at(-10), group="g", values={"x": 1})]
    )
    # When
    result = h.service.purge("u1", "admin")
    late = h.service.ingest([click("old", minutes=-5)])
    # Then
    assert (result.features_deleted, result.tracking_deleted) == (2, 1)
    assert h.features.entity("u1").groups == []
    assert late.results[0].code == "entity_purged"
    assert h.purges.purges["u1"] == NOW


def test_items_older_than_the_stored_change_are_stale(h: Harness) -> None:
    # Given
    newer = ItemRecord(item_id="i1", attributes={"title": "B"}, updated_at=NOW)
    older = ItemRecord(item_id="i1", attributes={"title": "A"}, updated_at=at(-1))
    # When
    first = h.service.upsert_items(ItemsRequest(items=[newer]))
    second = h.service.upsert_items(ItemsRequest(items=[older]))
    # Then
    assert (first.upserted, second.stale) == (1, 1)
    assert h.items.items["i1"].attributes == {"title": "B"}


@pytest.mark.parametrize(
    ("body", "error", "code"),
    [
        (b"{", InvalidInputError, "malformed_json"),
        (b"[]", InvalidInputError, "validation_error"),
        (b'{"events": []}', InvalidInputError, "validation_error"),
        (json.dumps({"events": [{}] * 4}).encode(), PayloadTooLargeError, "too_many_events"),
        (b" " * 200, PayloadTooLargeError, "body_too_large"),
    ],
)
def test_request_bodies_are_bounded_and_well_formed(body: bytes, error: type[Exception], code: str) -> None:
    # When / Then
    with pytest.raises(error) as raised:
        parse_events(body, max_bytes=100, max_events=3)
    assert getattr(raised.value, "code", None) == code
