"""The ingest function on moto, through the template's tables and queue, with API Gateway events."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest

from mlambda.adapters.dynamodb import DynamoTable
from mlambda.adapters.registry import DynamoRegistryStore
from mlambda.adapters.s3 import ObjectStore
from mlambda.config import PredictSettings
from mlambda.schemas.archive import ArchiveEnvelope
from mlambda.schemas.events import event_body
from mlambda.schemas.prediction_log import PredictionLogRecord
from mlambda.schemas.registry import (
    EndpointConfig,
    EnrichItems,
    HistoryEntry,
    ServingRules,
    Variant,
)
from tests.conftest import load_event
from tests.integration.conftest import Stack
from tests.registry_support import publish
from tests.unit.fakes_predict import FEATURES, classifier, version_of

NOW = datetime.now(UTC).replace(microsecond=0)


def api(
    stack: Stack,
    method: str,
    path: str,
    body: Any = None,
    *,
    scopes: str = "ingest",
    raw: str | None = None,
    query: dict[str, list[str]] | None = None,
    function: str = "IngestFunction",
    resource: str | None = None,
    path_parameters: dict[str, str] | None = None,
) -> tuple[int, Any]:
    """Call a function as API Gateway does after the authorizer allowed a key with ``scopes``."""
    event = load_event(
        "apigw_rest",
        path=path,
        resource=resource or path,
        pathParameters=path_parameters,
        httpMethod=method,
        body=raw if raw is not None else (json.dumps(body) if body is not None else None),
        multiValueQueryStringParameters=query,
        queryStringParameters={k: v[-1] for k, v in query.items()} if query else None,
    )
    event["requestContext"]["authorizer"] = {
        "principalId": "k1",
        "key_id": "k1",
        "name": "app",
        "scopes": scopes,
    }
    response = stack.invoke(function, event)
    return response["statusCode"], json.loads(response["body"])


def event(
    event_id: str, event_type: str, entity: str = "u1", at: datetime = NOW, **payload: Any
) -> dict[str, Any]:
    return event_body(event_id, event_type, entity, at, **payload)


def click(event_id: str, entity: str = "u1", at: datetime = NOW, item: str = "i1") -> dict[str, Any]:
    return event(event_id, "interaction", entity, at, kind="click", item_id=item)


def archived(stack: Stack) -> list[ArchiveEnvelope]:
    sqs = boto3.client("sqs")
    url = stack.outputs["ArchiveQueueUrl"]
    envelopes: list[ArchiveEnvelope] = []
    while True:
        messages = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", [])
        if not messages:
            return envelopes
        for message in messages:
            envelopes.extend(ArchiveEnvelope.model_validate(e) for e in json.loads(message["Body"]))
            sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])


def test_a_batch_rejects_bad_events_by_index_and_applies_the_good_ones(stack: Stack) -> None:
    # Given a batch with one good event and one of each kind of bad one
    batch = [
        event("e1", "feature_update", group="profile", values={"f0": 1.5}),
        event("e2", "purchase", amount=3),
        {"event_id": "e3", "type": "label", "entity_id": "u1", "payload": {"request_id": "r1", "value": 1}},
        event("e4", "feature_update", at=NOW + timedelta(days=2), group="profile", values={"f0": 9.0}),
        event("e5", "feature_update", group="profile", values={f"f{i}": "x" * 1000 for i in range(40)}),
        event("e6", "interaction", kind="click"),
    ]
    # When
    status, body = api(stack, "POST", "/events", {"events": batch})
    # Then the good one is accepted and each bad one is named with its index and reason
    assert status == 207
    assert (body["accepted"], body["duplicates"], body["rejected"]) == (1, 0, 5)
    codes = {r["index"]: (r["status"], r.get("code")) for r in body["results"]}
    assert codes == {
        0: ("accepted", None),
        1: ("rejected", "invalid_event"),
        2: ("rejected", "invalid_event"),
        3: ("rejected", "timestamp_in_future"),
        4: ("rejected", "event_too_large"),
        5: ("rejected", "invalid_event"),
    }
    reasons = {r["index"]: r.get("reason", "") for r in body["results"]}
    assert "unknown event type 'purchase'" in reasons[1]
    assert reasons[2].startswith("timestamp:")
    assert "needs item_id" in reasons[5]
    status, features = api(stack, "GET", "/entities/u1/features")
    assert status == 200
    assert [(g["group"], g["values"]) for g in features["groups"]] == [("profile", {"f0": 1.5})]
    assert [e.id for e in archived(stack)] == ["e1"]


@pytest.mark.parametrize(
    ("raw", "status", "code"),
    [
        ("{not json", 400, "malformed_json"),
        ('{"events": []}', 400, "validation_error"),
        (json.dumps({"events": [click(f"c{i}") for i in range(501)]}), 413, "too_many_events"),
    ],
)
def test_a_malformed_or_oversized_request_is_refused_whole(
    stack: Stack, raw: str, status: int, code: str
) -> None:
    # When
    got, body = api(stack, "POST", "/events", raw=raw)
    # Then
    assert (got, body["code"]) == (status, code)


def test_keys_without_the_scope_are_refused(stack: Stack) -> None:
    # When a predict-only key sends events, and an ingest key purges an entity
    sent, _ = api(stack, "POST", "/events", {"events": [click("c1")]}, scopes="predict")
    purged, body = api(stack, "DELETE", "/entities/u1")
    # Then
    assert (sent, purged) == (403, 403)
    assert body["details"] == {"required": "admin"}


def test_a_resent_batch_is_applied_once(stack: Stack) -> None:
    # Given a batch of clicks (one event id twice) with a sum increment
    batch = [click(f"c{i}") for i in range(5)] + [click("c0")]
    batch.append(event("s1", "feature_update", group="orders", values={"open": 1}, add={"spend": 12.5}))
    # When it is sent twice
    first = api(stack, "POST", "/events", {"events": batch})[1]
    second = api(stack, "POST", "/events", {"events": batch})[1]
    # Then the first applies six events once, the resend is all duplicates
    assert (first["accepted"], first["duplicates"], first["rejected"]) == (6, 1, 0)
    assert (second["accepted"], second["duplicates"]) == (0, 7)
    aggregates = api(stack, "GET", "/entities/u1/features")[1]["aggregates"]
    assert aggregates["count_click"] == 5
    assert aggregates["sum_spend"] == 12.5
    assert sorted(e.id for e in archived(stack)) == ["c0", "c1", "c2", "c3", "c4", "s1"]


def test_a_number_the_stores_cannot_hold_rejects_its_event_alone_and_a_resend_applies_once(
    stack: Stack,
) -> None:
    # Given a batch whose third event adds 1e300 to a running sum (DynamoDB holds below 1e126)
    batch = [
        click("c1"),
        click("c2"),
        event("s1", "feature_update", group="orders", values={"open": 1}, add={"spend": 1e300}),
    ]
    # When it is sent, then sent again
    status, first = api(stack, "POST", "/events", {"events": batch})
    again, second = api(stack, "POST", "/events", {"events": batch})
    # Then the bad event alone is rejected, naming its field, before anything of it was written,
    # and the others are applied and archived exactly once
    assert (status, again) == (207, 207)
    assert [(r["status"], r.get("code")) for r in first["results"]] == [
        ("accepted", None),
        ("accepted", None),
        ("rejected", "invalid_event"),
    ]
    assert first["results"][2]["reason"].startswith("payload.add.spend: 1e+300")
    assert first["results"][2]["retryable"] is False
    assert (second["accepted"], second["duplicates"], second["rejected"]) == (0, 2, 1)
    features = api(stack, "GET", "/entities/u1/features")[1]
    assert features["aggregates"]["count_click"] == 2
    assert "sum_spend" not in features["aggregates"]
    assert features["groups"] == []
    assert sorted(e.id for e in archived(stack)) == ["c1", "c2"]


@pytest.mark.parametrize(
    ("literal", "field"),
    [
        ("1e200", "payload.values.v"),
        ("123456789012345678901234567890123456789012", "payload.values.v"),
        ("9223372036854775808", "payload.values.v"),
        ("NaN", "payload.values.v"),
        ("1e999", "payload.values.v"),
        ("-1e999", "payload.add.v"),
        ("1e-200", "payload.add.v"),
        ("12345678901234567890123", "payload.value"),
    ],
)
def test_a_value_out_of_what_the_stores_hold_is_rejected_alone_naming_the_field(
    stack: Stack, literal: str, field: str
) -> None:
    # Given a good event and one carrying the literal where the field is, as a client would write it
    where = field.removeprefix("payload.").split(".")
    payload: dict[str, Any] = (
        {"request_id": "r1", "value": "X"}
        if where == ["value"]
        else {"group": "g", "values": {"v": 1}, where[0]: {"v": "X"}}
    )
    kind = "label" if where == ["value"] else "feature_update"
    body = json.dumps({"events": [click("ok"), event("bad", kind, **payload)]}).replace('"X"', literal)
    # When
    status, result = api(stack, "POST", "/events", raw=body)
    # Then
    assert status == 207
    assert [(r["status"], r.get("code")) for r in result["results"]] == [
        ("accepted", None),
        ("rejected", "invalid_event"),
    ]
    assert result["results"][1]["reason"].startswith(f"{field}: ")


def test_an_older_feature_update_never_overwrites_a_newer_one(stack: Stack) -> None:
    # Given the newer value (and a click) arrive first
    newer = event("n", "feature_update", at=NOW, group="profile", values={"f0": 2.0})
    api(stack, "POST", "/events", {"events": [click("now", at=NOW)]})
    older = event("o", "feature_update", at=NOW - timedelta(hours=1), group="profile", values={"f0": 1.0})
    # When
    api(stack, "POST", "/events", {"events": [newer]})
    api(stack, "POST", "/events", {"events": [older]})
    api(stack, "POST", "/events", {"events": [click("late", at=NOW - timedelta(hours=2))]})
    # Then neither the group nor last-seen went back in time
    features = api(stack, "GET", "/entities/u1/features")[1]
    assert [(g["event_id"], g["values"]) for g in features["groups"]] == [("n", {"f0": 2.0})]
    assert features["aggregates"]["last_seen_at"] == NOW.isoformat()
    assert features["aggregates"]["count_click"] == 2


def test_aggregates_are_exact_under_concurrent_batches(stack: Stack) -> None:
    # Given 8 clients sending 20 clicks each for the same entity at once (each batch sent twice)
    batches = [[click(f"w{w}-{i}") for i in range(20)] for w in range(8)]

    def send(batch: list[dict[str, Any]]) -> int:
        accepted = 0
        for _ in range(2):
            status, body = api(stack, "POST", "/events", {"events": batch})
            assert status in (200, 207), body
            accepted += body["accepted"]
        return accepted

    # When
    with ThreadPoolExecutor(max_workers=8) as pool:
        accepted = sum(pool.map(send, batches))
    # Then every click counted exactly once
    aggregates = api(stack, "GET", "/entities/u1/features")[1]["aggregates"]
    assert accepted == 160
    assert aggregates["count_click"] == 160


def test_feature_reads_pick_groups_and_skip_expired_ones(stack: Stack) -> None:
    # Given a group that expired already and two live ones
    batch = [
        event(
            "a",
            "feature_update",
            at=NOW - timedelta(hours=2),
            group="session",
            values={"f1": 1},
            ttl_seconds=60,
        ),
        event("b", "feature_update", group="profile", values={"f0": 3}),
        event("c", "feature_update", group="device", values={"f2": 4}),
    ]
    api(stack, "POST", "/events", {"events": batch})
    # When
    everything = api(stack, "GET", "/entities/u1/features")[1]
    picked = api(stack, "GET", "/entities/u1/features", query={"group": ["device", "session"]})[1]
    # Then
    assert sorted(g["group"] for g in everything["groups"]) == ["device", "profile"]
    assert [g["group"] for g in picked["groups"]] == ["device"]


def test_the_feature_groups_seen_are_listed_with_their_feature_names(stack: Stack) -> None:
    # Given two entities writing "profile" with different names, then an older "profile" event
    api(
        stack,
        "POST",
        "/events",
        {
            "events": [
                event("p1", "feature_update", "u1", group="profile", values={"age": 30}),
                event("p2", "feature_update", "u2", group="profile", values={"city": "x"}),
                event("d1", "feature_update", "u1", group="device", values={"os": "ios"}),
            ]
        },
    )
    api(
        stack,
        "POST",
        "/events",
        {
            "events": [
                event(
                    "p0", "feature_update", "u3", NOW - timedelta(days=1), group="profile", values={"age": 1}
                )
            ]
        },
    )
    # When
    status, listed = api(stack, "GET", "/feature-groups")
    first = api(stack, "GET", "/feature-groups", query={"limit": ["1"]})[1]
    second = api(
        stack, "GET", "/feature-groups", query={"limit": ["1"], "next_token": [first["next_token"]]}
    )[1]
    # Then
    assert status == 200
    by_group = {g["group"]: g for g in listed["groups"]}
    assert sorted(by_group) == ["device", "profile"]
    assert by_group["profile"]["features"] == ["age", "city"]
    assert by_group["profile"]["last_event_at"].startswith(NOW.strftime("%Y-%m-%dT%H:%M:%S"))
    assert by_group["profile"]["first_seen_at"] <= by_group["profile"]["last_event_at"]
    assert [g["group"] for g in first["groups"] + second["groups"]] == ["device", "profile"]
    # And the route's guards: the scope, bounds, forged tokens (a group name, a tampered token)
    assert api(stack, "GET", "/feature-groups", scopes="predict")[0] == 403
    assert api(stack, "GET", "/feature-groups", query={"limit": ["0"]})[0] == 422
    tampered = ("A" if first["next_token"][0] != "A" else "B") + first["next_token"][1:]
    for forged in ("entity#u1", "device", "a", tampered):
        status, error = api(stack, "GET", "/feature-groups", query={"next_token": [forged]})
        assert (status, error["code"]) == (400, "invalid_token"), forged


def test_items_are_upserted_in_change_order_and_deleted(stack: Stack) -> None:
    # Given
    newer = {"item_id": "sku-1", "attributes": {"title": "B"}, "updated_at": NOW.isoformat()}
    older = {"item_id": "sku-1", "attributes": {"title": "A"}, "updated_at": (NOW - timedelta(1)).isoformat()}
    # When
    first = api(stack, "POST", "/items", {"items": [newer]})
    stale = api(stack, "POST", "/items", {"items": [older]})
    deleted = api(stack, "DELETE", "/items/sku-1")
    again = api(stack, "DELETE", "/items/sku-1")
    # Then
    assert first == (200, {"upserted": 1, "stale": 0})
    assert stale == (200, {"upserted": 0, "stale": 1})
    assert deleted[1]["deleted"] is True
    assert again[1]["deleted"] is False
    invalid = api(stack, "POST", "/items", {"items": [{"item_id": "sku-2"}]})
    assert invalid[0] == 422


@pytest.mark.parametrize(
    ("attributes", "field"),
    [
        ({"price": 10**40}, "body.items.0.attributes.price"),
        ({f"a{i}": "x" * 6000 for i in range(100)}, "body.items.0.attributes.a"),
        ({f"a{i}": ["x" * 1000] * 20 for i in range(100)}, "body.items.0.attributes"),
        ({"sizes": list(range(101))}, "body.items.0.attributes.sizes"),
        ({"k" * 200: 1}, "body.items.0.attributes"),
        ({"nested": {"a": 1}}, "body.items.0.attributes.nested"),
    ],
    ids=["40-digit", "100x6000-chars", "item-too-large", "long-list", "long-name", "nested"],
)
def test_item_attributes_beyond_what_the_store_holds_are_422_naming_the_field(
    stack: Stack, attributes: dict[str, Any], field: str
) -> None:
    # When
    status, body = api(
        stack,
        "POST",
        "/items",
        {"items": [{"item_id": "sku-1", "attributes": attributes, "updated_at": NOW.isoformat()}]},
    )
    # Then
    assert (status, body["code"]) == (422, "validation_error")
    assert body["details"][0]["field"].startswith(field)


@pytest.mark.parametrize(
    ("method", "path", "query"),
    [
        ("DELETE", "/items/" + "i" * 3000, None),
        ("GET", "/entities/u1/features", {"group": ["g" * 2000]}),
        ("GET", "/entities/u1/features", {"group": ["has space"]}),
        ("GET", "/entities/" + "u" * 3000 + "/features", None),
    ],
    ids=["item-id", "group-length", "group-pattern", "entity-id"],
)
def test_path_and_query_parameters_are_bounded(
    stack: Stack, method: str, path: str, query: dict[str, list[str]] | None
) -> None:
    # When
    status, body = api(stack, method, path, query=query)
    # Then
    assert status in (400, 422), body
    assert body["code"] in ("validation_error", "invalid_item_id", "invalid_entity_id")


def test_purge_erases_the_entity_and_refuses_its_older_events(stack: Stack) -> None:
    # Given an entity with features, interactions and an opt-out
    api(
        stack,
        "POST",
        "/events",
        {
            "events": [
                event(
                    "f", "feature_update", at=NOW - timedelta(minutes=5), group="profile", values={"f0": 1}
                ),
                click("c", at=NOW - timedelta(minutes=5)),
                event("o", "interaction", at=NOW - timedelta(minutes=5), kind="opt_out"),
            ]
        },
    )
    # When an admin purges it
    status, purge = api(stack, "DELETE", "/entities/u1", scopes="admin")
    # Then the stores are empty but the opt-out stays, and a late pre-purge event is refused
    assert status == 200
    assert (purge["features_deleted"], purge["tracking_deleted"]) == (2, 1)
    features = api(stack, "GET", "/entities/u1/features")[1]
    assert (features["groups"], features["aggregates"]) == ([], {})
    late = api(stack, "POST", "/events", {"events": [click("late", at=NOW - timedelta(minutes=1))]})[1]
    assert late["results"][0]["code"] == "entity_purged"
    settings = PredictSettings.load(stack.env("PredictFunction"))
    consent = DynamoTable(settings.tracking_table, settings).get({"pk": "entity#u1", "sk": "consent"})
    assert consent is not None
    assert consent["opted_out"] is True


# ---------------------------------------------------------------- predict reads what ingest wrote


@pytest.fixture
def churn(stack: Stack) -> None:
    """Model ``churn`` (4 float features) in production, as the registry writes it."""
    settings = PredictSettings.load(stack.env("PredictFunction"))
    data, _, _ = classifier(0)
    version = version_of("churn", 1, data)
    ObjectStore(settings.artifacts_bucket, settings).put(version.artifact_key, data)
    publish(DynamoRegistryStore(DynamoTable(settings.registry_table, settings)), version)


def predict(stack: Stack, body: dict[str, Any]) -> tuple[int, Any]:
    return api(
        stack,
        "POST",
        "/models/churn/predict",
        body,
        scopes="predict",
        function="PredictFunction",
        resource="/models/{name}/predict",
        path_parameters={"name": "churn"},
    )


def test_predict_merges_features_written_through_events(
    stack: Stack, churn: None, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given the entity's features sent in two groups, f3 also in the request
    api(
        stack,
        "POST",
        "/events",
        {
            "events": [
                event("g1", "feature_update", group="profile", values={"f0": 0.5, "f1": -1.0}),
                event("g2", "feature_update", group="activity", values={"f2": 2.0, "f3": 7.0}),
            ]
        },
    )
    # When
    status, body = predict(stack, {"entity_id": "u1", "features": {"f3": 0.25}})
    missing, error = predict(stack, {"entity_id": "stranger", "features": {"f3": 0.25}})
    # Then the stored values filled the gaps and the request's value won
    assert status == 200
    (record,) = [
        PredictionLogRecord.model_validate_json(line)
        for line in capsys.readouterr().out.splitlines()
        if line.startswith('{"mlambda_log":')
    ]
    assert record.features == [{"f0": 0.5, "f1": -1.0, "f2": 2.0, "f3": 0.25}]
    assert set(body["predictions"][0]) == {"label", "probabilities"}
    assert (missing, error["code"]) == (422, "invalid_features")
    assert sorted(FEATURES) == ["f0", "f1", "f2", "f3"]


def test_predict_honours_an_opt_out_sent_as_an_event(stack: Stack, churn: None) -> None:
    # Given the entity opted out, then an older opt-in arrives late
    row = {"f0": 0.1, "f1": 0.2, "f2": 0.3, "f3": 0.4}
    served, _ = predict(stack, {"entity_id": "u1", "features": row})
    api(stack, "POST", "/events", {"events": [event("out", "interaction", kind="opt_out")]})
    late = event("in", "interaction", at=NOW - timedelta(minutes=1), kind="opt_in")
    api(stack, "POST", "/events", {"events": [late]})
    # When
    status, body = predict(stack, {"entity_id": "u1", "features": row})
    # Then
    assert served == 200
    assert (status, body["code"]) == (403, "opted_out")
    api(
        stack,
        "POST",
        "/events",
        {"events": [event("in2", "interaction", at=NOW + timedelta(seconds=1), kind="opt_in")]},
    )
    assert predict(stack, {"entity_id": "u1", "features": row})[0] == 200


def test_predict_enriches_predictions_with_items_posted_to_the_metadata_store(
    stack: Stack, churn: None
) -> None:
    # Given an item from the metadata webhook and an endpoint whose rules enrich by item_id
    item = {"item_id": "sku-9", "attributes": {"title": "Boots", "price": 80}, "updated_at": NOW.isoformat()}
    assert api(stack, "POST", "/items", {"items": [item]})[0] == 200
    settings = PredictSettings.load(stack.env("PredictFunction"))
    config = EndpointConfig(
        model="churn",
        variants=[Variant(name="main", target="production", weight=100)],
        rules=ServingRules(enrich_items=EnrichItems(item_field="item_id", attributes=["title"])),
    )
    DynamoRegistryStore(DynamoTable(settings.registry_table, settings)).put_endpoint(
        config, ["production"], HistoryEntry(model="churn", at=NOW, actor="t", action="endpoint_changed")
    )
    row = {"f0": 0.1, "f1": 0.2, "f2": 0.3, "f3": 0.4}
    # When
    status, body = predict(stack, {"instances": [{**row, "item_id": "sku-9"}, {**row, "item_id": "sku-0"}]})
    # Then
    assert status == 200, body
    known, unknown = body["predictions"]
    assert known["item"] == {"title": "Boots"} and "label" in known
    assert unknown["item"] is None
