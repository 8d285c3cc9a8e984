"""The archiving service on in-memory objects: exactly one row per envelope whatever fails."""

from __future__ import annotations

import json
import random
from datetime import timedelta
from typing import Any

from mlambda.services.inference.prediction_log import LoggedRequest, PredictionLog, Scored
from mlambda.services.ingestion.archiving import ArchiveMessage, ArchivingService
from tests.unit.fakes_ingest import (
    NOW,
    InMemoryBucket,
    InMemoryObjects,
    InMemoryPurgeLog,
    InMemoryServed,
    at,
)


def envelope(
    envelope_id: str, kind: str = "interaction", minutes: float = 0, entity: str = "u1"
) -> dict[str, object]:
    return {
        "id": envelope_id,
        "type": kind,
        "timestamp": at(minutes).isoformat(),
        "entity_id": entity,
        "payload": {"kind": "click", "item_id": "i1"}
        if kind == "interaction"
        else {"request_id": "r", "value": 1},
    }


def message(message_id: str, *envelopes: dict[str, object]) -> ArchiveMessage:
    return ArchiveMessage(message_id=message_id, body=json.dumps(list(envelopes)))


def test_a_batch_becomes_one_object_per_partition() -> None:
    # Given envelopes of two types and two hours in three messages
    objects = InMemoryObjects()
    service = ArchivingService(objects, InMemoryPurgeLog())
    batch = [
        message("m1", envelope("a"), envelope("b", minutes=61)),
        message("m2", envelope("c"), envelope("l", "label")),
        ArchiveMessage("m3", json.dumps(envelope("d"))),
    ]
    # When
    outcome = service.archive(batch)
    # Then
    assert outcome.failed == set()
    prefixes = sorted(key.rsplit("/", 1)[0] for key in objects.objects)
    assert prefixes == [
        "type=interaction/date=2026-03-01/hour=12",
        "type=interaction/date=2026-03-01/hour=13",
        "type=label/date=2026-03-01/hour=12",
    ]
    assert sorted(objects.row_ids()) == ["a", "b", "c", "d", "l"]
    row = next(r for rows in objects.objects.values() for r in rows if r["id"] == "l")
    assert (row["request_id"], row["value"], row["timestamp"]) == ("r", 1, NOW)


def test_the_same_batch_delivered_twice_rewrites_the_same_objects() -> None:
    # Given
    objects = InMemoryObjects()
    service = ArchivingService(objects, InMemoryPurgeLog())
    batch = [message("m1", envelope("a"), envelope("a")), message("m2", envelope("b"))]
    # When
    first = service.archive(batch)
    second = service.archive(batch)
    # Then
    assert first.objects == second.objects
    assert sorted(objects.row_ids()) == ["a", "b"]
    assert first.duplicates == 1


def test_a_failed_partition_fails_its_messages_and_undoes_their_other_rows() -> None:
    # Given m1 spans the failing label partition and an interaction partition shared with m2
    objects = InMemoryObjects()
    objects.fail_prefixes = {"type=label/"}
    service = ArchivingService(objects, InMemoryPurgeLog())
    batch = [
        message("m1", envelope("a"), envelope("l", "label")),
        message("m2", envelope("b")),
        message("m3", envelope("c", minutes=61)),
    ]
    # When
    outcome = service.archive(batch)
    # Then the object holding m1's row is deleted, which fails m2 too; m3 is untouched
    assert outcome.failed == {"m1", "m2"}
    assert objects.row_ids() == ["c"]
    retry = service.archive([batch[0], batch[1]])
    assert retry.failed == set()
    assert sorted(objects.row_ids()) == ["a", "b", "c", "l"]


def test_a_message_that_is_not_envelopes_fails_alone() -> None:
    # Given
    objects = InMemoryObjects()
    service = ArchivingService(objects, InMemoryPurgeLog())
    # When
    outcome = service.archive(
        [
            ArchiveMessage("bad", "{not json"),
            ArchiveMessage("worse", '[{"id": "x"}]'),
            message("ok", envelope("a")),
        ]
    )
    # Then
    assert outcome.failed == {"bad", "worse"}
    assert objects.row_ids() == ["a"]


def test_rows_of_a_purged_entity_from_before_the_purge_are_dropped() -> None:
    # Given u1 was purged at NOW
    purges = InMemoryPurgeLog()
    purges.record("u1", NOW, "admin")
    objects = InMemoryObjects()
    # When
    outcome = ArchivingService(objects, purges).archive(
        [
            message(
                "m",
                envelope("before", minutes=-1),
                envelope("after", minutes=1),
                envelope("other", entity="u2"),
            )
        ]
    )
    # Then
    assert outcome.purged == 1
    assert sorted(objects.row_ids()) == ["after", "other"]


def test_every_envelope_lands_exactly_once_under_random_failures_and_redelivery() -> None:
    # Given 300 envelopes in 60 messages over 4 partitions, and S3 failing in half the batches
    rng = random.Random(11)
    envelopes = [
        envelope(f"e{i}", rng.choice(["interaction", "label"]), minutes=rng.choice([0, 70]))
        for i in range(300)
    ]
    pending = [message(f"m{i}", *envelopes[i * 5 : i * 5 + 5]) for i in range(60)]
    objects = InMemoryObjects()
    service = ArchivingService(objects, InMemoryPurgeLog())
    rounds = failures = 0
    # When batches of up to 20 (reshuffled, as SQS does) are archived until none fails
    while pending:
        rounds += 1
        failing = rng.choice(["type=label/", "type=interaction/date=2026-03-01/hour=13", None, None])
        objects.fail_prefixes = {failing} if failing else set()
        rng.shuffle(pending)
        batch, rest = pending[:20], pending[20:]
        outcome = service.archive(batch)
        failures += len(outcome.failed)
        pending = rest + [m for m in batch if m.message_id in outcome.failed]
    # Then every id is in exactly one row
    ids = objects.row_ids()
    assert failures > 0
    assert len(ids) == 300
    assert sorted(set(ids)) == sorted(f"e{i}" for i in range(300))


def test_partition_hours_follow_event_time_not_arrival() -> None:
    # When
    objects = InMemoryObjects()
    ArchivingService(objects, InMemoryPurgeLog()).archive(
        [message("m", envelope("late", minutes=-(24 * 60)))]
    )
    # Then
    (key,) = objects.objects
    assert key.startswith(f"type=interaction/date={(NOW - timedelta(days=1)):%Y-%m-%d}/hour=12/part-")


# ---------------------------------------------------------------- the prediction log (log subscription input)


def log_lines(
    rows: int, *, entity: str | None = "u1", request_id: str = "req", width: int = 1, overflow: Any = None
) -> list[str]:
    """What predict writes for one request of ``rows`` rows (its log record, in pieces when large)."""
    out: list[str] = []
    answers = [{"label": i % 2} for i in range(rows)]
    PredictionLog(lambda text: out.extend(text.splitlines()), overflow=overflow).publish(
        LoggedRequest(
            request_id=request_id,
            model="churn",
            timestamp=at(0).isoformat(),
            entity_id=entity,
            positions=list(range(rows)),
            inputs=[{"f0": float(i), "f1": "x" * width} for i in range(rows)],
            served=Scored(3, "main", 0.5, answers),
            shadow=Scored(4, "shadow:staging", 0.7, answers),
        )
    )
    return out


def log_messages(lines: list[str]) -> list[ArchiveMessage]:
    return [ArchiveMessage(f"event-{i}", line, kind="prediction_log") for i, line in enumerate(lines)]


def test_a_prediction_log_record_lands_as_served_and_shadow_rows_and_records_what_was_served() -> None:
    # Given
    objects, served = InMemoryObjects(), InMemoryServed()
    service = ArchivingService(objects, InMemoryPurgeLog(), served=served)
    # When
    outcome = service.archive(log_messages(log_lines(3)))
    # Then
    assert outcome.failed == set()
    assert sorted(objects.row_ids()) == sorted(
        ["req:0", "req:1", "req:2", "req:0:shadow", "req:1:shadow", "req:2:shadow"]
    )
    (key,) = objects.objects
    assert key.startswith("type=prediction/model=churn/date=2026-03-01/hour=12/")
    row = next(r for r in objects.objects[key] if r["id"] == "req:1:shadow")
    assert (row["features.f0"], row["prediction.label"], row["version"], row["shadow"]) == (1.0, 1, 4, True)
    assert served.items == {
        ("u1", at(0), "req"): {
            "model": "churn",
            "version": 3,
            "variant": "main",
            "predictions": [{"label": 0}, {"label": 1}, {"label": 0}],
            "rows": 3,
        }
    }


def test_a_record_in_pieces_lands_once_whatever_the_order_and_redeliveries() -> None:
    # Given: a large request's pieces, delivered shuffled, one of them twice
    lines = log_lines(400, width=2000)
    assert len(lines) > 2
    objects = InMemoryObjects()
    service = ArchivingService(objects, InMemoryPurgeLog(), served=InMemoryServed())
    messages = log_messages(lines)
    shuffled = random.Random(1).sample(messages, len(messages)) + messages[:1]
    # When
    outcome = service.archive(shuffled)
    again = service.archive(shuffled)
    # Then
    assert outcome.failed == again.failed == set()
    assert len(objects.row_ids()) == len(set(objects.row_ids())) == 800


def test_a_piece_stored_by_reference_is_read_from_the_bucket() -> None:
    # Given
    bucket = InMemoryBucket()

    class Overflow:
        def put(self, key: str, body: bytes, *, content_type: str = "") -> None:
            bucket.objects[key] = body

    lines = log_lines(1, width=300_000, overflow=Overflow())
    objects = InMemoryObjects()
    service = ArchivingService(objects, InMemoryPurgeLog(), overflow=bucket)
    # When
    outcome = service.archive(log_messages(lines))
    # Then
    assert outcome.failed == set()
    assert sorted(objects.row_ids()) == ["req:0", "req:0:shadow"]
    assert all(len(r["features.f1"]) == 300_000 for rows in objects.objects.values() for r in rows)


def test_a_record_of_a_purged_entity_is_neither_archived_nor_recorded() -> None:
    # Given
    purges, served, objects = InMemoryPurgeLog(), InMemoryServed(), InMemoryObjects()
    purges.record("u1", at(1), "test")
    service = ArchivingService(objects, purges, served=served)
    # When
    outcome = service.archive(log_messages(log_lines(2)))
    # Then
    assert outcome.purged == 4
    assert objects.objects == {} and served.items == {}


def test_a_failing_tracking_write_fails_the_record_so_it_comes_back() -> None:
    # Given
    served, objects = InMemoryServed(), InMemoryObjects()
    served.fail = True
    service = ArchivingService(objects, InMemoryPurgeLog(), served=served)
    # When
    outcome = service.archive(log_messages(log_lines(2)))
    # Then: nothing of it is left behind, so its redelivery cannot duplicate a row
    assert outcome.failed == {"event-0"}
    assert objects.objects == {}
    # When the table is back
    served.fail = False
    assert service.archive(log_messages(log_lines(2))).failed == set()
    assert len(objects.row_ids()) == 4


def test_a_line_that_is_not_a_record_fails_alone() -> None:
    # Given
    service = ArchivingService(InMemoryObjects(), InMemoryPurgeLog())
    messages = [
        *log_messages(log_lines(1)),
        ArchiveMessage("bad", '{"mlambda_log": "prediction"}', "prediction_log"),
    ]
    # When
    outcome = service.archive(messages)
    # Then
    assert outcome.failed == {"bad"}
    assert outcome.rows == 2
