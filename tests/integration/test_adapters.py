"""The adapters on moto: plain values in and out, AWS errors as mlambda errors."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import boto3
import pytest
import requests
from moto import mock_aws

from mlambda.adapters.dynamodb import DynamoTable
from mlambda.adapters.messaging import EventBus, Queue, Topic
from mlambda.adapters.paging import SECRET_KEY, PageTokens, listing
from mlambda.adapters.s3 import ObjectStore
from mlambda.config import FunctionSettings
from mlambda.errors import ConflictError, InvalidInputError, NotFoundError, PayloadTooLargeError

SETTINGS = FunctionSettings.load({"AWS_REGION": "us-east-1"})


@pytest.fixture
def aws() -> Iterator[None]:
    with mock_aws():
        yield


@pytest.fixture
def table(aws: None) -> DynamoTable:
    boto3.client("dynamodb").create_table(
        TableName="things",
        BillingMode="PAY_PER_REQUEST",
        AttributeDefinitions=[
            {"AttributeName": "pk", "AttributeType": "S"},
            {"AttributeName": "sk", "AttributeType": "S"},
        ],
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
    )
    return DynamoTable("things", SETTINGS)


@pytest.fixture
def store(aws: None) -> ObjectStore:
    boto3.client("s3").create_bucket(Bucket="artifacts")
    return ObjectStore("artifacts", SETTINGS)


def test_items_round_trip_numbers_as_int_and_float(table: DynamoTable) -> None:
    # Given
    item: dict[str, Any] = {"pk": "m", "sk": "v1", "count": 3, "auc": 0.1 + 0.2, "tags": {"a": [1, 2.5]}}
    # When
    table.put(item)
    # Then
    assert table.get({"pk": "m", "sk": "v1"}) == item


def test_non_finite_numbers_are_refused(table: DynamoTable) -> None:
    with pytest.raises(InvalidInputError):
        table.put({"pk": "m", "sk": "v1", "score": float("nan")})


@pytest.mark.parametrize(
    ("item", "field"),
    [
        ({"pk": "m", "sk": "v1", "sum": 1e300}, "sum"),
        ({"pk": "m", "sk": "v1", "id": 10**40}, "id"),
        ({"pk": "m", "sk": "v1", "tags": {"a": [1, 1e-200]}}, "tags.a[1]"),
        ({"pk": "m", "sk": "v1", "n": float("inf")}, "n"),
    ],
)
def test_numbers_dynamodb_cannot_hold_are_refused_before_the_call_naming_the_attribute(
    table: DynamoTable, item: dict[str, Any], field: str
) -> None:
    # When
    with pytest.raises(InvalidInputError) as refused:
        table.put(item)
    # Then
    assert (refused.value.code, refused.value.details) == ("unstorable_number", {"field": field})
    assert table.get({"pk": "m", "sk": "v1"}) is None


def test_an_item_over_400_kb_is_refused_before_the_call(table: DynamoTable) -> None:
    # When
    with pytest.raises(PayloadTooLargeError) as refused:
        table.put({"pk": "m", "sk": "v1", "a": "x" * 300_000, "b": "y" * 120_000})
    # Then
    assert refused.value.code == "item_too_large"
    assert refused.value.details["largest"][:2] == ["a", "b"]


def test_page_tokens_verify_across_instances_and_stop_when_the_secret_rotates(table: DynamoTable) -> None:
    # Given two instances' token issuers on one table, the second created before any secret exists
    first, second = PageTokens(table), PageTokens(table)
    key = {"pk": "m", "sk": "v2"}
    token = first.issue(listing("versions", "m"), key)
    # When
    read = second.read(token, listing("versions", "m"), equal={"pk": "m"}, prefixed={"sk": "v"})
    elsewhere = [
        lambda: second.read(token, listing("versions", "n"), equal={"pk": "m"}, prefixed={"sk": "v"}),
        lambda: second.read(token, listing("versions", "m"), equal={"pk": "n"}, prefixed={"sk": "v"}),
        lambda: second.read(token, listing("versions", "m"), equal={"pk": "m"}, prefixed={"sk": "w"}),
    ]
    # Then
    assert read == key
    for attempt in elsewhere:
        with pytest.raises(InvalidInputError) as refused:
            attempt()
        assert refused.value.code == "invalid_token"
    # And once the secret is deleted, a new instance's new secret refuses the old tokens
    table.delete(SECRET_KEY)
    with pytest.raises(InvalidInputError):
        PageTokens(table).read(token, listing("versions", "m"), equal={"pk": "m"}, prefixed={"sk": "v"})


def test_failed_condition_is_a_conflict(table: DynamoTable) -> None:
    # Given
    table.put({"pk": "m", "sk": "v1"}, condition="attribute_not_exists(pk)")
    # When / Then
    with pytest.raises(ConflictError):
        table.put({"pk": "m", "sk": "v1"}, condition="attribute_not_exists(pk)")


def test_update_returns_the_new_item(table: DynamoTable) -> None:
    table.put({"pk": "c", "sk": "n", "value": 1})
    after = table.update({"pk": "c", "sk": "n"}, "ADD #v :one", names={"#v": "value"}, values={":one": 1})
    assert after["value"] == 2


def test_batch_get_reads_more_than_100_keys_and_skips_absent_ones(table: DynamoTable) -> None:
    # Given
    table.batch_put([{"pk": f"e{i}", "sk": "f"} for i in range(150)])
    keys = [{"pk": f"e{i}", "sk": "f"} for i in range(160)]
    # When
    found = table.batch_get(keys)
    # Then
    assert sorted(item["pk"] for item in found) == sorted(f"e{i}" for i in range(150))


def test_query_pages_until_done(table: DynamoTable) -> None:
    table.batch_put([{"pk": "m", "sk": f"v{i:03d}"} for i in range(30)])
    items, more = table.query("pk = :pk", {":pk": "m"}, limit=10)
    assert len(items) == 10
    assert more is not None
    assert [i["sk"] for i in table.query_all("pk = :pk", {":pk": "m"}, limit=7)] == [
        f"v{i:03d}" for i in range(30)
    ]


def test_missing_object_is_not_found(store: ObjectStore) -> None:
    with pytest.raises(NotFoundError, match="s3://artifacts/nope"):
        store.get("nope")


def test_ranged_reads_and_head(store: ObjectStore) -> None:
    store.put("data.csv", b"0123456789", metadata={"model": "m"})
    assert store.get_range("data.csv", 2, 5) == b"2345"
    info = store.head("data.csv")
    assert info.size == 10
    assert info.metadata == {"model": "m"}
    assert store.exists("data.csv")
    assert not store.exists("other.csv")


def test_presigned_put_url_uploads_the_object(store: ObjectStore) -> None:
    # Given
    url = store.presigned_put("uploads/model.onnx")
    # When
    response = requests.put(url, data=b"onnx-bytes", timeout=5)
    # Then
    assert response.status_code == 200
    assert store.get("uploads/model.onnx") == b"onnx-bytes"


def test_list_keys_under_a_prefix(store: ObjectStore) -> None:
    for key in ("a/1", "a/2", "b/1"):
        store.put(key, b"x")
    assert list(store.list_keys("a/")) == ["a/1", "a/2"]


def test_queue_sends_batches_of_any_size(aws: None) -> None:
    # Given
    sqs = boto3.client("sqs")
    url = sqs.create_queue(QueueName="chunks")["QueueUrl"]
    # When
    Queue(url, SETTINGS).send_batch([f"m{i}" for i in range(23)])
    # Then
    attributes = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages"])
    assert attributes["Attributes"]["ApproximateNumberOfMessages"] == "23"


def test_queue_splits_batches_under_sqs_byte_limit(aws: None) -> None:
    # Given six bodies of 240 KiB: 1.4 MiB, over SendMessageBatch's 1 MiB (defect 8: it jammed)
    sqs = boto3.client("sqs")
    url = sqs.create_queue(QueueName="big")["QueueUrl"]
    bodies = [f"{i}" + "x" * (240 * 1024) for i in range(6)]
    # When
    Queue(url, SETTINGS).send_batch(bodies)
    # Then every one arrived
    received = []
    while got := sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", []):
        received += [m["Body"][0] for m in got]
    assert sorted(received) == [str(i) for i in range(6)]


def test_missing_queue_is_not_found(aws: None) -> None:
    with pytest.raises(NotFoundError):
        Queue("https://sqs.us-east-1.amazonaws.com/123456789012/nope", SETTINGS).send("x")


def test_topic_publishes_json(aws: None) -> None:
    arn = boto3.client("sns").create_topic(Name="alerts")["TopicArn"]
    assert Topic(arn, SETTINGS).publish("drift", {"feature": "age"})


def test_event_bus_emits_batches(aws: None) -> None:
    EventBus(SETTINGS).emit("mlambda.test", [{"n": i} for i in range(12)])
