"""The local moto server: S3 ranged GETs by seeking (headers and errors intact); DynamoDB atomic under concurrency."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError

from mlambda_local.cloud.moto_server import MotoServer

# Over moto's 16 MB in-memory buffer, so the object lives in a temporary file as large ones do.
BODY = os.urandom(17 * 1024 * 1024)


@pytest.fixture(scope="module")
def moto_url() -> Iterator[str]:
    server = MotoServer()
    try:
        yield server.start()
    finally:
        server.stop()


def aws(service: str, url: str) -> Any:
    return boto3.client(
        service, endpoint_url=url, region_name="us-east-1", aws_access_key_id="t", aws_secret_access_key="t"
    )


@pytest.fixture(scope="module")
def s3(moto_url: str) -> Iterator[Any]:
    client = aws("s3", moto_url)
    client.create_bucket(Bucket="data")
    client.put_object(
        Bucket="data",
        Key="in/file one.csv",
        Body=BODY,
        Metadata={"chunk-rows": "5000"},
        ContentType="text/csv",
    )
    yield client


@pytest.mark.parametrize(("begin", "end"), [(0, 0), (10, 1_000_009), (len(BODY) - 5, len(BODY) + 100)])
def test_a_byte_range_returns_exactly_those_bytes_with_s3_headers(s3: Any, begin: int, end: int) -> None:
    response = s3.get_object(Bucket="data", Key="in/file one.csv", Range=f"bytes={begin}-{end}")
    last = min(end, len(BODY) - 1)
    assert response["Body"].read() == BODY[begin : last + 1]
    assert response["ContentRange"] == f"bytes {begin}-{last}/{len(BODY)}"
    assert response["ContentLength"] == last - begin + 1
    assert response["Metadata"] == {"chunk-rows": "5000"}
    assert response["ContentType"] == "text/csv"
    assert response["ETag"] == s3.head_object(Bucket="data", Key="in/file one.csv")["ETag"]


def test_open_ended_and_suffix_ranges_still_work(s3: Any) -> None:
    tail = s3.get_object(Bucket="data", Key="in/file one.csv", Range=f"bytes={len(BODY) - 3}-")
    assert tail["Body"].read() == BODY[-3:]
    suffix = s3.get_object(Bucket="data", Key="in/file one.csv", Range="bytes=-7")
    assert suffix["Body"].read() == BODY[-7:]


def test_errors_are_moto_s(s3: Any) -> None:
    with pytest.raises(ClientError) as past_end:
        s3.get_object(Bucket="data", Key="in/file one.csv", Range=f"bytes={len(BODY)}-")
    assert past_end.value.response["Error"]["Code"] == "InvalidRange"
    with pytest.raises(ClientError) as missing:
        s3.get_object(Bucket="data", Key="in/nothing.csv", Range="bytes=0-10")
    assert missing.value.response["Error"]["Code"] == "NoSuchKey"
    with pytest.raises(ClientError) as no_bucket:
        s3.get_object(Bucket="nowhere", Key="in/file one.csv", Range="bytes=0-10")
    assert no_bucket.value.response["Error"]["Code"] == "NoSuchBucket"


def test_concurrent_conditional_writes_and_counters_stay_atomic(moto_url: str) -> None:
    ddb = aws("dynamodb", moto_url)
    ddb.create_table(
        TableName="claims",
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    ddb.put_item(TableName="claims", Item={"pk": {"S": "counter"}, "n": {"N": "0"}})

    def work(worker: int) -> int:
        client = aws("dynamodb", moto_url)
        won = 0
        for key in range(40):
            client.update_item(
                TableName="claims",
                Key={"pk": {"S": "counter"}},
                UpdateExpression="ADD n :one",
                ExpressionAttributeValues={":one": {"N": "1"}},
            )
            try:
                client.put_item(
                    TableName="claims",
                    Item={"pk": {"S": f"chunk-{key}"}, "by": {"N": str(worker)}},
                    ConditionExpression="attribute_not_exists(pk)",
                )
                won += 1
            except client.exceptions.ConditionalCheckFailedException:
                pass
        return won

    with ThreadPoolExecutor(6) as pool:
        wins = list(pool.map(work, range(6)))
    assert sum(wins) == 40  # each chunk claimed exactly once
    counter = ddb.get_item(TableName="claims", Key={"pk": {"S": "counter"}})["Item"]["n"]["N"]
    assert counter == str(6 * 40)


def test_concurrent_consumers_get_each_message_exactly_once(moto_url: str) -> None:
    # Given: 200 messages with a short visibility timeout, so a message whose delete was lost
    # (or that two receives both got) would come back within the test
    sqs = aws("sqs", moto_url)
    queue = sqs.create_queue(QueueName="once", Attributes={"VisibilityTimeout": "2"})["QueueUrl"]
    for start in range(0, 200, 10):
        sqs.send_message_batch(
            QueueUrl=queue, Entries=[{"Id": str(i), "MessageBody": str(start + i)} for i in range(10)]
        )
    deliveries: list[str] = []

    def consume() -> None:
        client, idle = aws("sqs", moto_url), 0
        while idle < 4:  # four empty long polls in a row: nothing came back after a visibility timeout
            messages = client.receive_message(QueueUrl=queue, MaxNumberOfMessages=10, WaitTimeSeconds=1).get(
                "Messages", []
            )
            idle = 0 if messages else idle + 1
            deliveries.extend(message["Body"] for message in messages)
            if messages:
                client.delete_message_batch(
                    QueueUrl=queue,
                    Entries=[
                        {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(messages)
                    ],
                )

    # When: four consumers receive and delete at the same time, as the pollers' threads do
    with ThreadPoolExecutor(4) as pool:
        list(pool.map(lambda _: consume(), range(4)))
    # Then
    assert sorted(deliveries, key=int) == [str(n) for n in range(200)]


def test_a_send_does_not_scan_the_queue(moto_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    # Given: a queue holding 1,000 messages, and every visibility check counted
    from moto.sqs.models import Message

    sqs = aws("sqs", moto_url)
    queue = sqs.create_queue(QueueName="deep")["QueueUrl"]
    for _ in range(100):
        sqs.send_message_batch(
            QueueUrl=queue, Entries=[{"Id": str(i), "MessageBody": "x"} for i in range(10)]
        )
    checks: list[int] = []
    visible, delayed = Message.visible.fget, Message.delayed.fget  # type: ignore[attr-defined]
    monkeypatch.setattr(Message, "visible", property(lambda m: checks.append(1) or visible(m)))
    monkeypatch.setattr(Message, "delayed", property(lambda m: checks.append(1) or delayed(m)))
    # When
    sqs.send_message(QueueUrl=queue, MessageBody="one more")
    sqs.send_message_batch(
        QueueUrl=queue, Entries=[{"Id": "a", "MessageBody": "and"}, {"Id": "b", "MessageBody": "two"}]
    )
    # Then: no message of the queue was looked at
    assert checks == []


def _counted_receives(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Every run of moto's own ReceiveMessage, counted."""
    from moto.sqs.models import SQSBackend

    runs: list[int] = []
    receive = SQSBackend.receive_message
    monkeypatch.setattr(
        SQSBackend, "receive_message", lambda self, *a, **k: runs.append(1) or receive(self, *a, **k)
    )
    return runs


def test_an_idle_long_poll_runs_moto_s_receive_once_not_on_a_timer(
    moto_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given: an empty queue and moto's receive counted
    sqs = aws("sqs", moto_url)
    queue = sqs.create_queue(QueueName="quiet")["QueueUrl"]
    runs = _counted_receives(monkeypatch)
    # When: a two-second long poll finds nothing
    answer = sqs.receive_message(QueueUrl=queue, WaitTimeSeconds=2)
    # Then: nothing, after one receive (it slept until the wait was over)
    assert answer.get("Messages", []) == []
    assert len(runs) == 1


def test_a_long_poll_wakes_for_a_message_whose_visibility_timeout_ends(
    moto_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given: a message received with a one-second visibility timeout and never deleted
    sqs = aws("sqs", moto_url)
    queue = sqs.create_queue(QueueName="comeback")["QueueUrl"]
    sqs.send_message(QueueUrl=queue, MessageBody="again")
    first = sqs.receive_message(QueueUrl=queue, VisibilityTimeout=1)["Messages"][0]
    runs = _counted_receives(monkeypatch)
    # When: a long poll waits while nothing is sent
    again = sqs.receive_message(QueueUrl=queue, WaitTimeSeconds=10).get("Messages", [])
    # Then: the message comes back when its timeout ends, from a receive run for it
    assert [m["MessageId"] for m in again] == [first["MessageId"]]
    assert len(runs) <= 3


def test_a_long_poll_returns_a_message_sent_while_it_waits(moto_url: str) -> None:
    # Given: a long poll on an empty queue, and a message sent while it waits
    sqs = aws("sqs", moto_url)
    queue = sqs.create_queue(QueueName="arrivals")["QueueUrl"]
    sender = aws("sqs", moto_url)
    with ThreadPoolExecutor(1) as pool:
        polled = pool.submit(sqs.receive_message, QueueUrl=queue, WaitTimeSeconds=20)
        time.sleep(0.3)
        sender.send_message(QueueUrl=queue, MessageBody="hello")
        # When / Then: the poll answers with it, long before its 20 seconds are over
        messages = polled.result(timeout=10).get("Messages", [])
    assert [m["Body"] for m in messages] == ["hello"]


def test_a_completed_multipart_upload_is_s3s_whole_body_etag_and_checksum(s3: Any) -> None:
    # Given: two parts with SHA-256 checksums (the first at S3's 5 MB minimum)
    import base64
    import hashlib

    parts = [BODY[: 5 * 1024 * 1024], BODY[5 * 1024 * 1024 : 5 * 1024 * 1024 + 1000]]
    upload = s3.create_multipart_upload(Bucket="data", Key="in/parts.csv", ChecksumAlgorithm="SHA256")
    sent = [
        s3.upload_part(
            Bucket="data",
            Key="in/parts.csv",
            UploadId=upload["UploadId"],
            PartNumber=number,
            Body=body,
            ChecksumAlgorithm="SHA256",
        )
        for number, body in enumerate(parts, start=1)
    ]
    listed = [
        {"PartNumber": n, "ETag": p["ETag"], "ChecksumSHA256": p["ChecksumSHA256"]}
        for n, p in enumerate(sent, start=1)
    ]
    # When
    completed = s3.complete_multipart_upload(
        Bucket="data", Key="in/parts.csv", UploadId=upload["UploadId"], MultipartUpload={"Parts": listed}
    )
    # Then: the body is the parts in order, the etag and checksum are S3's composite ones
    got = s3.get_object(Bucket="data", Key="in/parts.csv", ChecksumMode="ENABLED")
    assert got["Body"].read() == b"".join(parts)
    md5s = b"".join(hashlib.md5(body).digest() for body in parts)
    assert completed["ETag"].strip('"') == got["ETag"].strip('"') == f"{hashlib.md5(md5s).hexdigest()}-2"
    digests = b"".join(hashlib.sha256(body).digest() for body in parts)
    assert got["ChecksumSHA256"].split("-")[0] == base64.b64encode(hashlib.sha256(digests).digest()).decode()


def test_a_multipart_upload_with_a_wrong_or_small_part_is_refused_as_s3_refuses_it(s3: Any) -> None:
    # Given: an upload whose first part is under 5 MB
    upload = s3.create_multipart_upload(Bucket="data", Key="in/bad.csv")
    etags = [
        s3.upload_part(
            Bucket="data", Key="in/bad.csv", UploadId=upload["UploadId"], PartNumber=n, Body=b"x" * 100
        )["ETag"]
        for n in (1, 2)
    ]
    # When / Then: a wrong etag is InvalidPart, a small part before the last EntityTooSmall
    for listed, code in (
        ([{"PartNumber": 1, "ETag": '"0123"'}], "InvalidPart"),
        ([{"PartNumber": n, "ETag": e} for n, e in zip((1, 2), etags, strict=True)], "EntityTooSmall"),
    ):
        with pytest.raises(ClientError) as error:
            s3.complete_multipart_upload(
                Bucket="data",
                Key="in/bad.csv",
                UploadId=upload["UploadId"],
                MultipartUpload={"Parts": listed},
            )
        assert error.value.response["Error"]["Code"] == code


def test_a_client_s_calls_share_one_connection(moto_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    # Given: every TCP connection a client opens, counted
    import urllib3.connection

    opened: list[int] = []
    new_conn = urllib3.connection.HTTPConnection._new_conn
    monkeypatch.setattr(
        urllib3.connection.HTTPConnection, "_new_conn", lambda self: opened.append(1) or new_conn(self)
    )
    sqs = aws("sqs", moto_url)
    # When: five calls, one after the other
    queue = sqs.create_queue(QueueName="kept")["QueueUrl"]
    for number in range(4):
        sqs.send_message(QueueUrl=queue, MessageBody=str(number))
    # Then: over one kept-alive connection (moto's werkzeug server closed each after one answer)
    assert len(opened) == 1
    assert sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["ApproximateNumberOfMessages"])[
        "Attributes"
    ] == {"ApproximateNumberOfMessages": "4"}


def test_s3_metadata_keeps_underscores_and_a_chunked_body_arrives_whole(moto_url: str) -> None:
    # Given: metadata keys with an underscore and with a dash, and an upload of unknown length (chunked)
    s3 = aws("s3", moto_url)
    s3.create_bucket(Bucket="meta")
    body = os.urandom(300_000)

    def parts() -> Iterator[bytes]:
        for start in range(0, len(body), 65_536):
            yield body[start : start + 65_536]

    import requests

    url = s3.generate_presigned_url("put_object", Params={"Bucket": "meta", "Key": "streamed"})
    requests.put(url, data=parts(), timeout=30).raise_for_status()
    s3.put_object(Bucket="meta", Key="tagged", Body=b"x", Metadata={"my_key": "under", "other-key": "dash"})
    # When
    streamed = s3.get_object(Bucket="meta", Key="streamed")["Body"].read()
    head = s3.head_object(Bucket="meta", Key="tagged")
    # Then
    assert streamed == body
    assert head["Metadata"] == {"my_key": "under", "other-key": "dash"}


def test_a_request_does_not_list_its_handler_s_methods_again(
    moto_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given: a DynamoDB call made once, then every method listing counted
    import inspect

    ddb = aws("dynamodb", moto_url)
    ddb.list_tables()
    listings: list[int] = []
    getmembers = inspect.getmembers
    monkeypatch.setattr(inspect, "getmembers", lambda *a, **k: listings.append(1) or getmembers(*a, **k))
    # When
    for _ in range(3):
        ddb.list_tables()
    # Then: moto found the action without inspecting the class again
    assert listings == []


def test_bytes_that_are_not_http_get_a_400_and_the_connection_is_closed(moto_url: str) -> None:
    # Given: a raw connection to the moto server
    import socket

    host, port = moto_url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as raw:
        # When
        raw.sendall(b"NOT HTTP AT ALL\r\n\r\n")
        answer = b""
        while chunk := raw.recv(4096):
            answer += chunk
    # Then
    assert answer.startswith(b"HTTP/1.1 400 Bad Request\r\n")
    assert b"Connection: close" in answer
