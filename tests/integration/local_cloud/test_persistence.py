"""The local moto's state on disk: everything acknowledged comes back after a restart, bodies live as files.

Each test writes through one ``MotoServer`` and reads through a second one on the same data
directory, without stopping the first: what a crash leaves behind (moto's backends are
process-global, so the second server starts from an empty moto and the store alone).
"""

from __future__ import annotations

import json
import os
import stat
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path
from typing import Any

import boto3
import pytest

from mlambda_local.cloud.lifecycle import ExpirationRule, LifecycleSweeper
from mlambda_local.cloud.moto_server import MotoServer

PART = 5 * 1024 * 1024  # S3's smallest part but the last


def aws(service: str, url: str) -> Any:
    return boto3.client(
        service, endpoint_url=url, region_name="us-east-1", aws_access_key_id="t", aws_secret_access_key="t"
    )


@pytest.fixture
def servers() -> Iterator[list[MotoServer]]:
    started: list[MotoServer] = []
    yield started
    for server in reversed(started):
        server.stop()


def start(servers: list[MotoServer], data_dir: Path) -> str:
    server = MotoServer(data_dir)
    servers.append(server)
    return server.start()


def test_multipart_uploads_survive_a_crash_completed_or_in_progress(
    tmp_path: Path, servers: list[MotoServer]
) -> None:
    # Given: one object uploaded in parts, and an upload with one part sent when the cloud dies
    url = start(servers, tmp_path)
    s3 = aws("s3", url)
    s3.create_bucket(Bucket="batch-bucket")
    done = s3.create_multipart_upload(Bucket="batch-bucket", Key="input/m/whole.csv")["UploadId"]
    parts = [
        {
            "PartNumber": n,
            "ETag": s3.upload_part(
                Bucket="batch-bucket", Key="input/m/whole.csv", UploadId=done, PartNumber=n, Body=body
            )["ETag"],
        }
        for n, body in ((1, b"a" * PART), (2, b"b" * 10))
    ]
    s3.complete_multipart_upload(
        Bucket="batch-bucket", Key="input/m/whole.csv", UploadId=done, MultipartUpload={"Parts": parts}
    )
    half = s3.create_multipart_upload(Bucket="batch-bucket", Key="input/m/half.csv")["UploadId"]
    first = s3.upload_part(
        Bucket="batch-bucket", Key="input/m/half.csv", UploadId=half, PartNumber=1, Body=b"c" * PART
    )
    # When: a new server starts on the same data dir
    s3 = aws("s3", start(servers, tmp_path))
    # Then: the object is whole, and the upload goes on where it stopped
    whole = s3.get_object(Bucket="batch-bucket", Key="input/m/whole.csv")["Body"].read()
    assert whole == b"a" * PART + b"b" * 10
    second = s3.upload_part(
        Bucket="batch-bucket", Key="input/m/half.csv", UploadId=half, PartNumber=2, Body=b"d"
    )
    s3.complete_multipart_upload(
        Bucket="batch-bucket",
        Key="input/m/half.csv",
        UploadId=half,
        MultipartUpload={
            "Parts": [{"PartNumber": 1, "ETag": first["ETag"]}, {"PartNumber": 2, "ETag": second["ETag"]}]
        },
    )
    assert s3.get_object(Bucket="batch-bucket", Key="input/m/half.csv")["Body"].read() == b"c" * PART + b"d"
    # and retrying the first completion (its answer lost in the crash) is still accepted
    retried = s3.complete_multipart_upload(
        Bucket="batch-bucket", Key="input/m/whole.csv", UploadId=done, MultipartUpload={"Parts": parts}
    )
    assert retried["ETag"] == s3.head_object(Bucket="batch-bucket", Key="input/m/whole.csv")["ETag"]


def test_objects_versions_tags_and_bucket_settings_survive(tmp_path: Path, servers: list[MotoServer]) -> None:
    # Given
    s3 = aws("s3", start(servers, tmp_path))
    s3.create_bucket(Bucket="models-bucket")
    s3.put_bucket_versioning(Bucket="models-bucket", VersioningConfiguration={"Status": "Enabled"})
    first = s3.put_object(
        Bucket="models-bucket", Key="m/a b+c.onnx", Body=b"\x00v1\xff", Metadata={"sha": "1"}
    )
    s3.put_object(
        Bucket="models-bucket", Key="m/a b+c.onnx", Body=b"v2", ContentType="application/octet-stream"
    )
    s3.put_object_tagging(
        Bucket="models-bucket", Key="m/a b+c.onnx", Tagging={"TagSet": [{"Key": "stage", "Value": "prod"}]}
    )
    s3.put_object(Bucket="models-bucket", Key="gone", Body=b"x")
    s3.delete_object(Bucket="models-bucket", Key="gone")
    # When
    s3 = aws("s3", start(servers, tmp_path))
    # Then
    assert s3.get_bucket_versioning(Bucket="models-bucket")["Status"] == "Enabled"
    assert s3.get_object(Bucket="models-bucket", Key="m/a b+c.onnx")["Body"].read() == b"v2"
    old = s3.get_object(Bucket="models-bucket", Key="m/a b+c.onnx", VersionId=first["VersionId"])
    assert (old["Body"].read(), old["Metadata"]) == (b"\x00v1\xff", {"sha": "1"})
    assert s3.get_object_tagging(Bucket="models-bucket", Key="m/a b+c.onnx")["TagSet"] == [
        {"Key": "stage", "Value": "prod"}
    ]
    versions = s3.list_object_versions(Bucket="models-bucket", Prefix="gone")
    assert len(versions["Versions"]) == 1 and len(versions["DeleteMarkers"]) == 1
    with pytest.raises(s3.exceptions.NoSuchKey):
        s3.get_object(Bucket="models-bucket", Key="gone")


def test_tables_items_ttl_and_indexes_survive(tmp_path: Path, servers: list[MotoServer]) -> None:
    # Given: items put, updated in place, deleted, and written in a transaction
    ddb = aws("dynamodb", start(servers, tmp_path))
    ddb.create_table(
        TableName="jobs",
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
        AttributeDefinitions=[
            {"AttributeName": "pk", "AttributeType": "S"},
            {"AttributeName": "sk", "AttributeType": "N"},
            {"AttributeName": "status", "AttributeType": "S"},
        ],
        BillingMode="PAY_PER_REQUEST",
        GlobalSecondaryIndexes=[
            {
                "IndexName": "by-status",
                "KeySchema": [{"AttributeName": "status", "KeyType": "HASH"}],
                "Projection": {"ProjectionType": "ALL"},
            }
        ],
    )
    ddb.update_time_to_live(
        TableName="jobs", TimeToLiveSpecification={"AttributeName": "expires", "Enabled": True}
    )
    nested = {"M": {"parts": {"L": [{"N": "1"}, {"B": b"\x00\x01"}, {"SS": ["a", "b"]}]}}}
    ddb.put_item(
        TableName="jobs",
        Item={"pk": {"S": "job"}, "sk": {"N": "0"}, "status": {"S": "running"}, "doc": nested},
    )
    ddb.update_item(
        TableName="jobs",
        Key={"pk": {"S": "job"}, "sk": {"N": "0"}},
        UpdateExpression="ADD done_chunks :one",
        ExpressionAttributeValues={":one": {"N": "1"}},
    )
    ddb.transact_write_items(
        TransactItems=[
            {
                "Put": {
                    "TableName": "jobs",
                    "Item": {"pk": {"S": "job"}, "sk": {"N": "1"}, "status": {"S": "done"}},
                }
            },
            {
                "Update": {
                    "TableName": "jobs",
                    "Key": {"pk": {"S": "job"}, "sk": {"N": "0"}},
                    "UpdateExpression": "ADD done_chunks :one",
                    "ExpressionAttributeValues": {":one": {"N": "1"}},
                }
            },
        ]
    )
    ddb.put_item(TableName="jobs", Item={"pk": {"S": "tmp"}, "sk": {"N": "9"}})
    ddb.delete_item(TableName="jobs", Key={"pk": {"S": "tmp"}, "sk": {"N": "9"}})
    # When
    ddb = aws("dynamodb", start(servers, tmp_path))
    # Then
    job = ddb.get_item(TableName="jobs", Key={"pk": {"S": "job"}, "sk": {"N": "0"}})["Item"]
    assert job["done_chunks"] == {"N": "2"} and job["doc"] == nested
    assert ddb.scan(TableName="jobs")["Count"] == 2
    assert (
        ddb.query(
            TableName="jobs",
            IndexName="by-status",
            KeyConditionExpression="#s = :s",
            ExpressionAttributeNames={"#s": "status"},
            ExpressionAttributeValues={":s": {"S": "done"}},
        )["Count"]
        == 1
    )
    assert ddb.describe_time_to_live(TableName="jobs")["TimeToLiveDescription"] == {
        "TimeToLiveStatus": "ENABLED",
        "AttributeName": "expires",
    }


def test_messages_come_back_once_in_flight_ones_visible_with_their_receive_count(
    tmp_path: Path, servers: list[MotoServer]
) -> None:
    # Given: five messages sent, one deleted, one in flight when the cloud dies, a redrive policy, SNS and a rule
    url = start(servers, tmp_path)
    sqs, sns, events = aws("sqs", url), aws("sns", url), aws("events", url)
    dlq = sqs.create_queue(QueueName="work-dlq")["QueueUrl"]
    dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    queue = sqs.create_queue(
        QueueName="work",
        Attributes={
            "VisibilityTimeout": "600",
            "RedrivePolicy": json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": 3}),
        },
    )["QueueUrl"]
    for number in range(5):
        sqs.send_message(
            QueueUrl=queue,
            MessageBody=f"m{number}",
            MessageAttributes={"raw": {"DataType": "Binary", "BinaryValue": b"\x01\x02"}},
        )
    received = sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=2)["Messages"]
    sqs.delete_message(QueueUrl=queue, ReceiptHandle=received[0]["ReceiptHandle"])
    topic = sns.create_topic(Name="alerts")["TopicArn"]
    sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=dlq_arn)
    events.put_rule(Name="nightly", ScheduleExpression="cron(0 3 * * ? *)")
    events.put_targets(Rule="nightly", Targets=[{"Id": "dlq", "Arn": dlq_arn}])
    # When
    url = start(servers, tmp_path)
    sqs, sns, events = aws("sqs", url), aws("sns", url), aws("events", url)
    # Then: four messages, the one in flight visible again and counted as received once
    queue = sqs.get_queue_url(QueueName="work")["QueueUrl"]
    messages = sqs.receive_message(
        QueueUrl=queue, MaxNumberOfMessages=10, AttributeNames=["All"], MessageAttributeNames=["All"]
    )["Messages"]
    counts = {m["Body"]: m["Attributes"]["ApproximateReceiveCount"] for m in messages}
    assert counts == {
        received[1]["Body"]: "2",
        **{f"m{n}": "1" for n in range(5) if f"m{n}" not in {r["Body"] for r in received}},
    }
    assert messages[0]["MessageAttributes"]["raw"]["BinaryValue"] == b"\x01\x02"
    redrive = json.loads(
        sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["RedrivePolicy"])["Attributes"][
            "RedrivePolicy"
        ]
    )
    assert redrive["maxReceiveCount"] == 3
    # and SNS still delivers to its subscriber, and the rule keeps its target
    sns.publish(TopicArn=topic, Message="hello")
    dlq = sqs.get_queue_url(QueueName="work-dlq")["QueueUrl"]
    assert "hello" in sqs.receive_message(QueueUrl=dlq)["Messages"][0]["Body"]
    assert events.list_targets_by_rule(Rule="nightly")["Targets"] == [{"Id": "dlq", "Arn": dlq_arn}]


def test_bodies_are_files_and_the_state_does_not_keep_deleted_payloads(
    tmp_path: Path, servers: list[MotoServer]
) -> None:
    # Given: 24 MB uploaded then deleted, and 2 MB of messages sent and consumed as they come
    url = start(servers, tmp_path)
    s3, sqs = aws("s3", url), aws("sqs", url)
    s3.create_bucket(Bucket="data-bucket")
    s3.put_object(Bucket="data-bucket", Key="kept", Body=b"k" * 1000)
    for number in range(3):
        s3.put_object(Bucket="data-bucket", Key=f"big-{number}", Body=os.urandom(8 * 1024 * 1024))
    s3.delete_objects(Bucket="data-bucket", Delete={"Objects": [{"Key": f"big-{n}"} for n in range(3)]})
    queue = sqs.create_queue(QueueName="archive")["QueueUrl"]
    for _ in range(50):
        sqs.send_message_batch(
            QueueUrl=queue, Entries=[{"Id": str(i), "MessageBody": "x" * 4000} for i in range(10)]
        )
        messages = sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10)["Messages"]
        sqs.delete_message_batch(
            QueueUrl=queue,
            Entries=[{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(messages)],
        )
    # Then: one body file left, the state well under the bytes that went through, owner-only files
    state = tmp_path / "state"
    blobs = [path for path in (state / "blobs").rglob("*") if path.is_file()]
    assert [path.stat().st_size for path in blobs] == [1000]
    assert sum(path.stat().st_size for path in state.rglob("*") if path.is_file()) < 2 * 1024 * 1024
    for path in [state, *state.rglob("*")]:
        assert stat.S_IMODE(path.stat().st_mode) & 0o077 == 0, path
    # and after a restart the kept object is served from its file
    assert (
        aws("s3", start(servers, tmp_path)).get_object(Bucket="data-bucket", Key="kept")["Body"].read()
        == b"k" * 1000
    )


def test_resetting_moto_under_the_cloud_is_refused(tmp_path: Path, servers: list[MotoServer]) -> None:
    import requests

    url = start(servers, tmp_path)
    response = requests.post(f"{url}/moto-api/reset", timeout=10)
    assert response.status_code == 403
    assert "keeps its state" in response.json()["message"]


def test_a_file_uploaded_in_parallel_parts_is_whole_after_a_crash(
    tmp_path: Path, servers: list[MotoServer]
) -> None:
    # Given: six parts sent at once, as boto3's upload_file sends them
    from boto3.s3.transfer import TransferConfig

    source = tmp_path / "input.bin"
    source.write_bytes(os.urandom(6 * PART))
    s3 = aws("s3", start(servers, tmp_path / "data"))
    s3.create_bucket(Bucket="batch-bucket")
    parallel = TransferConfig(multipart_threshold=PART, multipart_chunksize=PART, max_concurrency=6)
    s3.upload_file(str(source), "batch-bucket", "input/m/parallel.bin", Config=parallel)
    # When
    s3 = aws("s3", start(servers, tmp_path / "data"))
    # Then
    assert (
        s3.get_object(Bucket="batch-bucket", Key="input/m/parallel.bin")["Body"].read() == source.read_bytes()
    )


def test_versions_keep_their_age_across_a_crash_so_lifecycle_expiry_is_not_postponed(
    tmp_path: Path, servers: list[MotoServer]
) -> None:
    # Given: a versioned bucket with a replaced object and a deleted one, and an expiry rule of a day
    s3 = aws("s3", start(servers, tmp_path))
    s3.create_bucket(Bucket="uploads")
    s3.put_bucket_versioning(Bucket="uploads", VersioningConfiguration={"Status": "Enabled"})
    for body in (b"v1", b"v2"):
        s3.put_object(Bucket="uploads", Key="pending/a", Body=body)
    s3.put_object(Bucket="uploads", Key="pending/b", Body=b"b")
    s3.delete_object(Bucket="uploads", Key="pending/b")
    before = s3.list_object_versions(Bucket="uploads")
    # When: the cloud restarts after a crash, and the sweeper runs two days later
    s3 = aws("s3", start(servers, tmp_path))
    after = s3.list_object_versions(Bucket="uploads")
    rule = ExpirationRule("uploads", "expire", "pending/", expiration_days=1, noncurrent_days=1)
    later = max(v["LastModified"] for v in before["Versions"]) + timedelta(days=2)
    LifecycleSweeper(s3, [rule], clock=lambda: later).sweep()
    # Then: every version and delete marker has the age it had, and all of them are expired by now
    for kind in ("Versions", "DeleteMarkers"):
        assert sorted((v["VersionId"], v["LastModified"]) for v in after[kind]) == sorted(
            (v["VersionId"], v["LastModified"]) for v in before[kind]
        )
    left = s3.list_object_versions(Bucket="uploads")
    assert (left.get("Versions", []), left.get("DeleteMarkers", [])) == ([], [])


def test_bodies_no_object_names_are_removed_after_a_restart_but_not_newer_ones(
    tmp_path: Path, servers: list[MotoServer]
) -> None:
    # Given: a stored object, and two body files no row names: one a crash left before the
    # restart, one as a request being served after it writes (its row not committed yet)
    s3 = aws("s3", start(servers, tmp_path))
    s3.create_bucket(Bucket="keep")
    s3.put_object(Bucket="keep", Key="k", Body=b"kept")
    blobs = tmp_path / "state" / "blobs" / "zz"
    blobs.mkdir(parents=True, exist_ok=True)
    left, newer = blobs / "zz-left-by-a-crash", blobs / "zz-being-written"
    left.write_bytes(b"orphan")
    newer.write_bytes(b"in flight")
    now = time.time()
    os.utime(left, (now - 100, now - 100))
    os.utime(newer, (now + 100, now + 100))
    # When: the store starts again on the same data dir
    server = MotoServer(tmp_path)
    servers.append(server)
    s3 = aws("s3", server.start())
    assert server.store is not None
    removed = server.store.orphans_collected(timeout=30)
    # Then: the crash's file is gone, the newer one and every named body stay
    assert removed == 1
    assert not left.exists()
    assert newer.exists()
    assert s3.get_object(Bucket="keep", Key="k")["Body"].read() == b"kept"


def test_a_call_made_between_bind_and_start_is_answered_once_moto_serves(
    tmp_path: Path, servers: list[MotoServer]
) -> None:
    # Given: a server that has its port but has not started (as workers start before moto does)
    server = MotoServer(tmp_path)
    servers.append(server)
    url = server.bind()
    with ThreadPoolExecutor(1) as pool:
        # When: a client calls it then, and the server starts a moment later
        early = pool.submit(lambda: aws("sqs", url).list_queues())
        time.sleep(0.3)
        assert not early.done()
        assert server.start() == url
        # Then: the call waited in the port's backlog and got its answer
        assert early.result(timeout=30)["ResponseMetadata"]["HTTPStatusCode"] == 200
