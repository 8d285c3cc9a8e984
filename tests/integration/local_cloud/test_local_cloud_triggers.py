"""The fixture template running on a real moto server: every trigger kind, driven as AWS would."""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
import requests

from mlambda_local.cloud import ControlClient, LocalCloud, MlambdaLocalError

from .support import FIXTURE_TEMPLATE, FakeClock, wait_for

GOOD = {"x-api-key": "good"}


@pytest.fixture(scope="module")
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture(scope="module")
def cloud(tmp_path_factory: pytest.TempPathFactory, clock: FakeClock) -> Iterator[LocalCloud]:
    data_dir = tmp_path_factory.mktemp("cloud")
    with LocalCloud(
        FIXTURE_TEMPLATE,
        data_dir,
        stack_name="fx",
        clock=clock,
        schedule_check_interval=0.05,
        mode="in-process",
    ) as running:
        yield running


@pytest.fixture(scope="module")
def table(cloud: LocalCloud) -> Any:
    resource = boto3.resource("dynamodb", endpoint_url=cloud.endpoint_url, region_name="us-east-1")
    return resource.Table(cloud.outputs["RecordsTableName"])


@pytest.fixture(scope="module")
def sqs(cloud: LocalCloud) -> Any:
    return boto3.client("sqs", endpoint_url=cloud.endpoint_url, region_name="us-east-1")


def _item(table: Any, key: str) -> dict[str, Any]:
    """The item with ``key``, or ``{}`` if there is none."""
    item: dict[str, Any] = table.get_item(Key={"id": key}, ConsistentRead=True).get("Item", {})
    return item


# -- API Gateway ----------------------------------------------------------------------------------


def test_api_allowed_key_reaches_function_with_route_params_query_and_authorizer_context(
    cloud: LocalCloud,
) -> None:
    # When
    response = requests.get(f"{cloud.api_url}/items/blue%20shoe?size=9&tag=a&tag=b", headers=GOOD, timeout=10)
    # Then
    assert response.status_code == 200
    body = response.json()
    assert body["resource"] == "/items/{name}"
    assert body["path"] == "/items/blue shoe"
    assert body["path_parameters"] == {"name": "blue shoe"}
    assert body["query"] == {"size": "9", "tag": "b"}
    assert body["multi_query"] == {"size": ["9"], "tag": ["a", "b"]}
    assert body["stage"] == "v1"
    assert body["authorizer"]["principalId"] == "user-good"
    assert body["authorizer"]["scopes"] == "models:read models:write"
    assert body["authorizer"]["tier"] == "2"
    assert response.headers["X-Function"] == "fx-ApiFunction"
    assert response.headers["X-Multi"] == "one, two"


def test_api_function_sees_its_own_environment_with_resolved_refs(cloud: LocalCloud) -> None:
    # When
    body = requests.get(f"{cloud.api_url}/items/x", headers=GOOD, timeout=10).json()
    # Then: function-level and Globals variables, Refs resolved to local names
    assert body["greeting"] == "hello"
    assert body["records_table"] == "fx-records"
    assert 0 < body["remaining_ms"] <= 5000


def test_api_missing_identity_header_is_401_without_calling_the_authorizer(cloud: LocalCloud) -> None:
    # Given
    calls_before = cloud.status()["functions"]["AuthorizerFunction"]["invocations"]
    # When
    response = requests.get(f"{cloud.api_url}/items/x", timeout=10)
    # Then: the template's UNAUTHORIZED gateway response
    assert response.status_code == 401
    assert response.json() == {"code": "unauthorized", "message": "Unauthorized", "details": None}
    assert cloud.status()["functions"]["AuthorizerFunction"]["invocations"] == calls_before


def test_api_authorizer_raising_unauthorized_is_401(cloud: LocalCloud) -> None:
    # When
    response = requests.get(f"{cloud.api_url}/items/x", headers={"x-api-key": "stranger"}, timeout=10)
    # Then
    assert response.status_code == 401
    assert response.json()["code"] == "unauthorized"


def test_api_explicit_deny_is_403(cloud: LocalCloud) -> None:
    # When
    response = requests.get(f"{cloud.api_url}/items/x", headers={"x-api-key": "denied"}, timeout=10)
    # Then
    assert response.status_code == 403
    assert response.json() == {
        "code": "forbidden",
        "message": "User is not authorized to access this resource with an explicit deny",
        "details": None,
    }


def test_api_unknown_route_is_404_through_the_gateway_responses(cloud: LocalCloud) -> None:
    # When
    wrong_path = requests.get(f"{cloud.api_url}/nothing/here", headers=GOOD, timeout=10)
    wrong_method = requests.delete(f"{cloud.api_url}/items/x", headers=GOOD, timeout=10)
    # Then
    assert wrong_path.status_code == 404
    assert wrong_path.json()["code"] == "not_found"
    assert wrong_method.status_code == 404


def test_api_route_without_authorizer_is_public(cloud: LocalCloud) -> None:
    response = requests.get(f"{cloud.api_url}/health", timeout=10)
    assert response.status_code == 200
    assert response.json() == {"ok": True}


def test_api_authorizer_result_is_cached_per_identity_for_its_ttl(cloud: LocalCloud) -> None:
    # Given: a key the authorizer has not seen (it denies it explicitly)
    key = {"x-api-key": "denied"}
    requests.get(f"{cloud.api_url}/items/a", headers=key, timeout=10)
    calls = cloud.status()["functions"]["AuthorizerFunction"]["invocations"]
    # When: the same identity calls other routes
    second = requests.get(f"{cloud.api_url}/files/some/file.txt", headers=key, timeout=10)
    # Then: the cached policy is evaluated again, the authorizer is not
    assert second.status_code == 403
    assert cloud.status()["functions"]["AuthorizerFunction"]["invocations"] == calls


def test_api_any_method_greedy_route_passes_body_and_binary_round_trips(cloud: LocalCloud) -> None:
    # When: bytes sent and accepted as the API's binary media type (BinaryMediaTypes)
    octets = {**GOOD, "Content-Type": "application/octet-stream", "Accept": "application/octet-stream"}
    text = requests.post(f"{cloud.api_url}/files/a/b.txt", headers=GOOD, data="hello", timeout=10)
    binary = requests.put(f"{cloud.api_url}/files/echo.bin", headers=octets, data=b"\xff\x00\xfe", timeout=10)
    # Then
    assert text.status_code == 200
    assert text.json()["path_parameters"] == {"proxy": "a/b.txt"}
    assert text.json()["method"] == "POST"
    assert text.json()["body"] == "hello"
    assert binary.status_code == 200
    assert binary.content == b"\xff\x00\xfe"


def test_api_bytes_outside_the_binary_media_types_arrive_as_text_and_base64_answers_stay_text(
    cloud: LocalCloud,
) -> None:
    # When: the same bytes without the binary media type, as API Gateway treats them
    sent = requests.put(f"{cloud.api_url}/files/echo.bin", headers=GOOD, data=b"\xff\x00\xfe", timeout=10)
    accepted = requests.put(
        f"{cloud.api_url}/files/echo.bin",
        headers={**GOOD, "Content-Type": "application/octet-stream"},
        data=b"\xff\x00\xfe",
        timeout=10,
    )
    # Then: the body reached the function as UTF-8 text (the bytes did not survive), and a base64
    # answer is decoded only for a caller whose first Accept type is binary
    assert sent.status_code == 200
    assert base64.b64decode(sent.content) == "\ufffd\x00\ufffd".encode()
    assert accepted.status_code == 200 and base64.b64decode(accepted.content) == b"\xff\x00\xfe"


def test_api_function_error_is_502_upstream_error(cloud: LocalCloud) -> None:
    response = requests.get(f"{cloud.api_url}/files/boom", headers=GOOD, timeout=10)
    assert response.status_code == 502
    assert response.json() == {"code": "upstream_error", "message": "Internal server error", "details": None}


def test_api_body_over_10_mb_is_413(cloud: LocalCloud) -> None:
    response = requests.post(
        f"{cloud.api_url}/files/big", headers=GOOD, data=b"x" * (10 * 1024 * 1024 + 1), timeout=30
    )
    assert response.status_code == 413


# -- SQS ------------------------------------------------------------------------------------------


def test_sqs_partial_batch_failure_redelivers_only_failed_messages(
    cloud: LocalCloud, sqs: Any, table: Any
) -> None:
    # Given: two good messages and one the consumer fails, in one batch
    run = uuid.uuid4().hex[:8]
    queue_url = cloud.outputs["WorkQueueUrl"]
    entries = [
        {
            "Id": "ok1",
            "MessageBody": json.dumps({"id": f"{run}-ok1"}),
            "MessageAttributes": {"origin": {"DataType": "String", "StringValue": "test"}},
        },
        {"Id": "ok2", "MessageBody": json.dumps({"id": f"{run}-ok2"})},
        {"Id": "bad", "MessageBody": json.dumps({"id": f"{run}-bad", "fail": True})},
    ]
    # When
    sqs.send_message_batch(QueueUrl=queue_url, Entries=entries)
    # Then: the failing message is retried (attempted twice) ...
    wait_for(lambda: _item(table, f"attempts#{run}-bad").get("attempts", 0) >= 2, timeout=30)
    # ... while the successes were processed once and deleted, with their attributes in Lambda's shape
    assert _item(table, f"attempts#{run}-ok1")["attempts"] == 1
    assert _item(table, f"attempts#{run}-ok2")["attempts"] == 1
    assert _item(table, f"sqs#{run}-ok1")["attribute"] == "test"
    assert _item(table, f"sqs#{run}-ok1")["source"] == "aws:sqs"
    assert _item(table, f"sqs#{run}-bad") == {}


def test_sqs_failing_message_moves_to_dlq_after_max_receive_count(
    cloud: LocalCloud, sqs: Any, table: Any
) -> None:
    # Given
    run = uuid.uuid4().hex[:8]
    dlq_url = cloud.outputs["WorkDeadLetterQueueUrl"]
    # When
    sqs.send_message(
        QueueUrl=cloud.outputs["WorkQueueUrl"], MessageBody=json.dumps({"id": run, "fail": True})
    )

    # Then: after maxReceiveCount (2) failed deliveries moto moves it to the DLQ, where it stays
    def in_dlq() -> list[dict[str, Any]]:
        messages = sqs.receive_message(QueueUrl=dlq_url, MaxNumberOfMessages=10, VisibilityTimeout=0).get(
            "Messages", []
        )
        return [m for m in messages if json.loads(m["Body"]).get("id") == run]

    found = wait_for(in_dlq, timeout=40)
    assert len(found) == 1
    assert _item(table, f"attempts#{run}")["attempts"] == 2


# -- S3 -------------------------------------------------------------------------------------------


def test_s3_key_with_spaces_and_plus_reaches_the_function_url_encoded(cloud: LocalCloud, table: Any) -> None:
    # Given
    s3 = boto3.client("s3", endpoint_url=cloud.endpoint_url, region_name="us-east-1")
    bucket = cloud.outputs["IngestBucketName"]
    key = f"in/{uuid.uuid4().hex[:6]} report+final v2.csv"
    # When
    s3.put_object(Bucket=bucket, Key=key, Body=b"a,b\n")
    # Then: AWS (and moto) URL-encode the key; the function's unquote_plus recovers it
    item = wait_for(lambda: _item(table, f"s3#{key}"))
    assert item["raw_key"] != key
    assert "+" in item["raw_key"]
    assert item["bucket"] == bucket
    assert item["event_name"].startswith("ObjectCreated")


def test_s3_prefix_filter_keeps_other_keys_away_from_the_function(cloud: LocalCloud, table: Any) -> None:
    # Given
    s3 = boto3.client("s3", endpoint_url=cloud.endpoint_url, region_name="us-east-1")
    bucket = cloud.outputs["IngestBucketName"]
    outside, inside = f"out/{uuid.uuid4().hex}.csv", f"in/{uuid.uuid4().hex}.csv"
    # When: an object outside the prefix, then one inside it
    s3.put_object(Bucket=bucket, Key=outside, Body=b"x")
    s3.put_object(Bucket=bucket, Key=inside, Body=b"x")
    # Then: once the inside one arrived, the outside one has not
    wait_for(lambda: _item(table, f"s3#{inside}"))
    assert _item(table, f"s3#{outside}") == {}


# -- Schedules ------------------------------------------------------------------------------------


def test_schedule_fires_on_demand_with_the_scheduled_event_payload(cloud: LocalCloud) -> None:
    # When
    results = cloud.trigger("ScheduledFunction")
    # Then: only the enabled rule fires for a function name
    assert results == [
        {
            "detail_type": "Scheduled Event",
            "resources": ["arn:aws:events:us-east-1:123456789012:rule/fx-ScheduledFunctionEveryMinute"],
            "kind": None,
        }
    ]


def test_disabled_schedule_fires_on_demand_with_its_input(cloud: LocalCloud) -> None:
    results = cloud.trigger("ScheduledFunctionNightly")
    assert results == [{"detail_type": None, "resources": None, "kind": "nightly"}]


def test_schedule_fires_on_its_rate_and_disabled_rules_do_not(cloud: LocalCloud, clock: FakeClock) -> None:
    # Given
    def fired(rule: str) -> int:
        return int(next(s["fired"] for s in cloud.status()["triggers"]["schedules"] if s["rule"] == rule))

    every_minute, nightly = fired("ScheduledFunctionEveryMinute"), fired("ScheduledFunctionNightly")
    # When: a day passes on the scheduler's clock (03:00 included)
    clock.advance(61)
    wait_for(lambda: fired("ScheduledFunctionEveryMinute") > every_minute)
    clock.advance(86400)
    wait_for(lambda: fired("ScheduledFunctionEveryMinute") > every_minute + 1)
    # Then
    assert fired("ScheduledFunctionNightly") == nightly


# -- Control API, status, outputs -----------------------------------------------------------------


def test_control_api_rejects_calls_without_the_token(cloud: LocalCloud) -> None:
    # When
    missing = requests.get(f"{cloud.control_url}/status", timeout=10)
    wrong = requests.post(
        f"{cloud.control_url}/trigger/ScheduledFunction", headers={"x-mlambda-control": "guess"}, timeout=10
    )
    # Then
    assert missing.status_code == 401
    assert wrong.status_code == 401


def test_control_client_triggers_invokes_and_reports_status(cloud: LocalCloud) -> None:
    # Given: a client in "another process", found through state.json
    client = ControlClient.from_data_dir(cloud.data_dir)
    # When
    results = client.trigger("ScheduledFunctionEveryMinute")
    health = client.invoke("ApiFunction", {"resource": "/health"})
    status = client.status()
    # Then
    assert results[0]["detail_type"] == "Scheduled Event"
    assert health["statusCode"] == 200
    assert status["functions"]["ScheduledFunction"]["invocations"] >= 1
    assert status["api_url"] == cloud.api_url
    with pytest.raises(MlambdaLocalError, match="404"):
        client.trigger("NoSuchRule")


def test_state_file_and_outputs_name_local_resources(cloud: LocalCloud) -> None:
    # Given
    state = json.loads((Path(cloud.data_dir) / "state.json").read_text())
    # Then
    assert state["api_url"] == cloud.api_url
    assert state["endpoint_url"] == cloud.endpoint_url
    assert state["outputs"]["RecordsTableName"] == "fx-records"
    assert state["outputs"]["WorkQueueUrl"] == f"{cloud.endpoint_url}/123456789012/fx-work"
    statuses = {item.logical_id: item.status for item in cloud.inventory.items.values()}
    assert statuses["RecordsTable"] == "created"
    assert statuses["ApiFunctionRole"] == "skipped"
    assert statuses["ConsumerFunction"] == "runner"
