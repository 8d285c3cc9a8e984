"""Batch prediction on moto with the template's tables, buckets and queues: fanout, worker, Job API."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from typing import Any

import boto3
import pyarrow.parquet as pq
import pytest

from mlambda.adapters.batch import S3BatchObjects
from mlambda.config import BatchWorkerSettings
from mlambda.errors import ConflictError
from mlambda.schemas.batch import Manifest
from tests.batch_support import pump, register_model
from tests.conftest import forged_token as forged
from tests.conftest import load_event
from tests.integration.conftest import Stack
from tests.unit.fakes_batch import classifier_model, csv_bytes, make_frame

KEY = "input/churn/march 2025=final.csv"


@pytest.fixture
def batch(stack: Stack) -> Iterator[dict[str, Any]]:
    """The stack with the churn model registered, and the clients the tests use."""
    s3 = boto3.client("s3", region_name="us-east-1")
    sqs = boto3.client("sqs", region_name="us-east-1")
    register_model(s3, stack.outputs["RegistryTableName"], stack.outputs["ArtifactsBucketName"])
    yield {
        "s3": s3,
        "sqs": sqs,
        "bucket": stack.outputs["BatchBucketName"],
        "queue": stack.outputs["ChunkQueueUrl"],
    }


def upload(batch: dict[str, Any], key: str, body: bytes, **metadata: str) -> dict[str, Any]:
    """Put the object and the S3 event AWS would send for it (key URL-encoded)."""
    from urllib.parse import quote_plus

    batch["s3"].put_object(Bucket=batch["bucket"], Key=key, Body=body, Metadata=metadata)
    etag = batch["s3"].head_object(Bucket=batch["bucket"], Key=key)["ETag"].strip('"')
    event = load_event("batch_s3_object_created")
    record = event["Records"][0]
    record["s3"]["bucket"]["name"] = batch["bucket"]
    record["s3"]["object"].update(key=quote_plus(key, safe="/"), size=len(body), eTag=etag)
    return event


def run_worker(stack: Stack, batch: dict[str, Any]) -> list[Any]:
    return pump(batch["sqs"], batch["queue"], lambda event: stack.invoke("BatchWorkerFunction", event))


def api(
    stack: Stack, method: str, path: str, body: Any = None, scopes: str = "predict", **query: str
) -> tuple[int, Any]:
    event = load_event(
        "apigw_rest",
        path=path,
        resource=path,
        httpMethod=method,
        body=json.dumps(body) if body is not None else None,
        queryStringParameters=query or None,
        multiValueQueryStringParameters={k: [v] for k, v in query.items()} or None,
    )
    event["requestContext"]["authorizer"]["scopes"] = scopes
    response = stack.invoke("JobsFunction", event)
    return response["statusCode"], json.loads(response["body"])


def get_object(batch: dict[str, Any], key: str) -> bytes:
    return bytes(batch["s3"].get_object(Bucket=batch["bucket"], Key=key)["Body"].read())


def test_an_upload_is_split_scored_and_completed_with_rows_in_equal_scored_plus_rejected(
    stack: Stack, batch: dict[str, Any]
) -> None:
    # Given 3,000 rows, 3 of them bad, in chunks of 500 (object metadata)
    frame = make_frame(3000)
    frame["f0"] = frame["f0"].astype(object)
    frame.loc[[5, 1499, 2999], "f0"] = "n/a"
    event = upload(batch, KEY, frame.to_csv(index=False).encode(), **{"chunk-rows": "500"})
    # When
    planned = stack.invoke("BatchFanoutFunction", event)["jobs"][0]
    run_worker(stack, batch)
    # Then
    status, view = api(stack, "GET", f"/jobs/{planned['job_id']}")
    job = view["job"]
    assert status == 200
    assert (job["status"], job["input"]["key"], job["total_chunks"]) == ("completed", KEY, 6)
    assert (job["rows_in"], job["rows_scored"], job["rows_rejected"]) == (3000, 2997, 3)
    prefix = f"output/{job['job_id']}/"
    manifest = Manifest.model_validate_json(get_object(batch, prefix + "_manifest.json"))
    assert manifest.rows_in == manifest.rows_scored + manifest.rows_rejected == 3000
    scored = sum(pq.read_table(io.BytesIO(get_object(batch, p.key))).num_rows for p in manifest.parts)
    assert scored == 2997
    rejected = [get_object(batch, r.key).decode().splitlines()[1:] for r in manifest.rejects]
    assert sum(len(lines) for lines in rejected) == 3
    assert get_object(batch, prefix + "_SUCCESS") == b""
    assert view["manifest_uri"] == f"s3://{batch['bucket']}/{prefix}_manifest.json"


def test_the_job_api_pages_rejected_rows_and_links_the_files(stack: Stack, batch: dict[str, Any]) -> None:
    # Given a completed job with 3 rejected rows in 2 chunks
    frame = make_frame(1000)
    frame["f0"] = frame["f0"].astype(object)
    frame.loc[[5, 6, 999], "f0"] = "n/a"
    event = upload(batch, KEY, frame.to_csv(index=False).encode(), **{"chunk-rows": "500"})
    job_id = stack.invoke("BatchFanoutFunction", event)["jobs"][0]["job_id"]
    run_worker(stack, batch)
    # When
    status, page = api(stack, "GET", f"/jobs/{job_id}/rejects", offset="1", limit="5")
    files_status, files = api(stack, "GET", f"/jobs/{job_id}/files")
    # Then
    assert status == 200
    assert page["total"] == 3 and [r["chunk"] for r in page["rows"]] == [0, 1]
    assert page["rows"][0]["chunk_row"] == 6  # CSV chunks are byte ranges: chunk 1 starts near row 500
    assert all("f0" in r["reason"] for r in page["rows"])
    assert files_status == 200
    assert [(f["kind"], f["chunk"]) for f in files["files"]] == [
        ("part", 0),
        ("rejects", 0),
        ("part", 1),
        ("rejects", 1),
        ("manifest", None),
    ]
    link = files["files"][0]
    assert link["key"] == f"output/{job_id}/part-00000.parquet"
    assert "response-content-disposition=attachment" in link["url"]
    assert f"{link['filename']}" in link["url"].replace("%20", " ").replace("%3B", ";").replace("%22", '"')
    # And the routes keep their neighbours' guards
    assert api(stack, "GET", f"/jobs/{job_id}/rejects", scopes="registry:read")[0] == 403
    assert api(stack, "GET", f"/jobs/{job_id}/files", scopes="ingest")[0] == 403
    assert api(stack, "GET", f"/jobs/{job_id}/rejects", limit="501")[0] == 422
    assert api(stack, "GET", f"/jobs/{job_id}/rejects", offset="-1")[0] == 422
    assert api(stack, "GET", "/jobs/ffffffffffffffffffff/files")[0] == 404


def test_redelivered_s3_events_and_chunk_messages_change_nothing(stack: Stack, batch: dict[str, Any]) -> None:
    # Given one upload whose event arrives twice
    event = upload(batch, KEY, csv_bytes(1200), **{"chunk-rows": "400"})
    first = stack.invoke("BatchFanoutFunction", event)["jobs"][0]
    second = stack.invoke("BatchFanoutFunction", event)["jobs"][0]
    # When every chunk message is delivered twice (the first delivery's deletion "lost")
    sqs, queue = batch["sqs"], batch["queue"]
    received = sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10, AttributeNames=["All"])["Messages"]
    arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    from mlambda_local.cloud.sqs import sqs_record

    for message in received + received:
        stack.invoke("BatchWorkerFunction", {"Records": [sqs_record(message, arn, "us-east-1")]})
    # Then
    assert first["job_id"] == second["job_id"]
    assert len(received) == 3
    _, view = api(stack, "GET", f"/jobs/{first['job_id']}")
    job = view["job"]
    assert (job["status"], job["done_chunks"], job["rows_in"], job["rows_scored"]) == (
        "completed",
        3,
        1200,
        1200,
    )
    parts = batch["s3"].list_objects_v2(Bucket=batch["bucket"], Prefix=f"output/{job['job_id']}/part-")
    assert parts["KeyCount"] == 3


def test_a_chunk_that_keeps_failing_lands_in_the_dlq_and_retry_completes_the_job(
    stack: Stack, batch: dict[str, Any]
) -> None:
    # Given a tampered model artifact (every chunk fails its sha256 check), retried without delay
    stack.functions["BatchWorkerFunction"].environment["BATCH_RETRY_BACKOFF_SECONDS"] = "0"
    artifacts = stack.outputs["ArtifactsBucketName"]
    batch["s3"].put_object(Bucket=artifacts, Key="models/churn/v1.onnx", Body=b"tampered")
    event = upload(batch, KEY, csv_bytes(800), **{"chunk-rows": "400"})
    job_id = stack.invoke("BatchFanoutFunction", event)["jobs"][0]["job_id"]
    # When the worker exhausts the queue's maxReceiveCount
    run_worker(stack, batch)
    # Then the messages are in the DLQ and the job says so
    dlq = stack.outputs["ChunkDeadLetterQueueUrl"]
    dead = batch["sqs"].receive_message(QueueUrl=dlq, MaxNumberOfMessages=10)["Messages"]
    assert len(dead) == 2
    _, failed = api(stack, "GET", f"/jobs/{job_id}")
    assert (failed["job"]["status"], failed["job"]["failed_chunks"]) == ("failed", 2)
    assert failed["job"]["error_code"] == "chunks_failed"
    assert [(f["attempts"], "artifact" in f["last_error"]) for f in failed["failed"]] == [
        (3, True),
        (3, True),
    ]
    # When the artifact is restored and the job retried through the API
    batch["s3"].put_object(Bucket=artifacts, Key="models/churn/v1.onnx", Body=classifier_model()[0])
    status, retried = api(stack, "POST", f"/jobs/{job_id}/retry")
    run_worker(stack, batch)
    # Then
    assert (status, retried["resent_chunks"]) == (202, [0, 1])
    _, done = api(stack, "GET", f"/jobs/{job_id}")
    assert (done["job"]["status"], done["job"]["rows_scored"], done["job"]["failed_chunks"]) == (
        "completed",
        800,
        0,
    )
    status, again = api(stack, "POST", f"/jobs/{job_id}/retry")
    assert (status, again["code"]) == (409, "job_complete")


def test_parquet_uploads_are_scored_by_row_groups(stack: Stack, batch: dict[str, Any]) -> None:
    import pyarrow as pa

    sink = io.BytesIO()
    pq.write_table(pa.Table.from_pandas(make_frame(1000), preserve_index=False), sink, row_group_size=150)
    event = upload(batch, "input/churn/data.parquet", sink.getvalue(), **{"chunk-rows": "300"})
    job_id = stack.invoke("BatchFanoutFunction", event)["jobs"][0]["job_id"]
    run_worker(stack, batch)
    _, view = api(stack, "GET", f"/jobs/{job_id}")
    assert (view["job"]["status"], view["job"]["total_chunks"], view["job"]["rows_scored"]) == (
        "completed",
        4,
        1000,
    )
    assert view["job"]["rows_expected"] == 1000 and view["job"]["rows_expected_exact"]


def test_bad_uploads_become_failed_jobs_with_a_reason(stack: Stack, batch: dict[str, Any]) -> None:
    event = upload(batch, "input/nosuchmodel/x.csv", csv_bytes(5))
    planned = stack.invoke("BatchFanoutFunction", event)["jobs"][0]
    assert planned["status"] == "failed"
    assert "nosuchmodel" in planned["reason"]
    assert batch["sqs"].receive_message(QueueUrl=batch["queue"]).get("Messages") is None


def test_the_job_api_submits_lists_and_guards_jobs(stack: Stack, batch: dict[str, Any]) -> None:
    # Given an object already in the bucket
    batch["s3"].put_object(Bucket=batch["bucket"], Key="input/churn/existing.csv", Body=csv_bytes(50))
    # When / Then: submit creates once, then finds
    status, created = api(stack, "POST", "/jobs", {"key": "input/churn/existing.csv"})
    again_status, again = api(stack, "POST", "/jobs", {"key": "input/churn/existing.csv"})
    assert (status, again_status) == (201, 200)
    assert created["job"]["job_id"] == again["job"]["job_id"]
    assert created["job"]["submitted_by"] == "demo-app"
    listed_status, listed = api(stack, "GET", "/jobs", model="churn")
    assert listed_status == 200
    assert [j["job_id"] for j in listed["jobs"]] == [created["job"]["job_id"]]
    # and the guards
    assert api(stack, "GET", "/jobs/ffffffffffffffffffff")[0] == 404
    assert api(stack, "GET", "/jobs/../../etc")[0] == 404
    assert api(stack, "POST", "/jobs", {"key": "input/churn/missing.csv"})[0] == 404
    assert api(stack, "POST", "/jobs", {"key": "output/x/y.csv"})[1]["code"] == "key_outside_input"
    assert api(stack, "POST", "/jobs", {"key": "input/churn/x.csv", "bogus": 1})[0] == 422
    assert api(stack, "POST", "/jobs", {"key": "input/churn/x.csv", "passthrough": ["c" * 300]})[0] == 422
    assert api(stack, "GET", "/jobs")[0] == 422
    assert api(stack, "GET", f"/jobs/{created['job']['job_id']}", scopes="ingest")[0] == 403
    # and forged page tokens: a key a client made up, one of another model's listing
    well_formed = {"gsi1pk": "model#churn", "gsi1sk": "2000", "pk": "job#x", "sk": "meta"}
    for token in (forged(well_formed), forged({"gsi1pk": "model#churn"}), "x" * 100):
        status, error = api(stack, "GET", "/jobs", model="churn", next_token=token)
        assert (status, error["code"]) == (400, "invalid_token"), token


def test_ranged_reads_are_pinned_to_the_planned_etag(stack: Stack, batch: dict[str, Any]) -> None:
    # Given
    batch["s3"].put_object(Bucket=batch["bucket"], Key="input/churn/a.csv", Body=b"id,f0\n1,2\n")
    objects = S3BatchObjects(batch["bucket"], BatchWorkerSettings.load(stack.env("BatchWorkerFunction")))
    etag = objects.head("input/churn/a.csv").etag
    # When the object is replaced
    assert objects.get_range("input/churn/a.csv", 0, 4, etag=etag) == b"id,f0"
    batch["s3"].put_object(Bucket=batch["bucket"], Key="input/churn/a.csv", Body=b"other")
    # Then
    with pytest.raises(ConflictError) as error:
        objects.get_range("input/churn/a.csv", 0, 4, etag=etag)
    assert error.value.code == "input_changed"


def test_a_parquet_footer_is_read_with_one_small_ranged_get(stack: Stack, batch: dict[str, Any]) -> None:
    import pyarrow as pa

    from mlambda.services.batch.planning import FOOTER_READ_BYTES, Source, read_footer

    # Given a 20,000-row file of four row groups
    sink = io.BytesIO()
    pq.write_table(pa.Table.from_pandas(make_frame(20_000), preserve_index=False), sink, row_group_size=5000)
    body = sink.getvalue()
    batch["s3"].put_object(Bucket=batch["bucket"], Key="input/churn/big.parquet", Body=body)
    objects = S3BatchObjects(batch["bucket"], BatchWorkerSettings.load(stack.env("BatchWorkerFunction")))
    reads: list[tuple[int, int]] = []
    get_range = objects.get_range

    def counted(key: str, start: int, end: int, *, etag: str | None = None) -> bytes:
        reads.append((start, end))
        return get_range(key, start, end, etag=etag)

    objects.get_range = counted  # type: ignore[method-assign]
    # When
    footer, _ = read_footer(Source(objects, "input/churn/big.parquet", len(body), ""))
    # Then
    assert (footer.rows, [g.rows for g in footer.row_groups]) == (20_000, [5000] * 4)
    assert len(reads) == 1 and reads[0][1] - reads[0][0] + 1 <= FOOTER_READ_BYTES


def test_an_explained_upload_gets_attribution_columns_and_a_job_of_its_own(stack: Stack) -> None:
    # Given the classifier registered with its explainer
    s3 = boto3.client("s3", region_name="us-east-1")
    register_model(
        s3, stack.outputs["RegistryTableName"], stack.outputs["ArtifactsBucketName"], explained=True
    )
    batch = {
        "s3": s3,
        "sqs": boto3.client("sqs", region_name="us-east-1"),
        "bucket": stack.outputs["BatchBucketName"],
        "queue": stack.outputs["ChunkQueueUrl"],
    }
    # When a file is uploaded with x-amz-meta-explain, planned and scored
    event = upload(batch, KEY, csv_bytes(600), explain="true", **{"chunk-rows": "200"})
    planned = stack.invoke("BatchFanoutFunction", event)["jobs"][0]
    run_worker(stack, batch)
    # Then the parts carry explain_<feature>, explain_baseline, explain_value, explain_class, adding up
    status, view = api(stack, "GET", f"/jobs/{planned['job_id']}")
    job = view["job"]
    assert (status, job["status"], job["explain"]) == (200, "completed", True)
    assert job["explanation"]["method"] == "linear"
    manifest = Manifest.model_validate_json(get_object(batch, f"output/{job['job_id']}/_manifest.json"))
    assert manifest.explanation is not None
    assert manifest.columns[-3:] == ["explain_baseline", "explain_value", "explain_class"]
    table = pq.read_table(io.BytesIO(get_object(batch, manifest.parts[0].key)))
    assert table.column_names == manifest.columns
    total = sum(table.column(f"explain_f{i}").to_numpy() for i in range(20))
    assert (
        abs(
            total + table.column("explain_baseline").to_numpy() - table.column("explain_value").to_numpy()
        ).max()
        < 1e-9
    )
    # and submitting the same object plain through the Job API makes a second job
    plain_status, plain = api(stack, "POST", "/jobs", {"key": KEY})
    again_status, again = api(stack, "POST", "/jobs", {"key": KEY, "explain": True})
    assert (plain_status, again_status) == (201, 200)
    assert plain["job"]["job_id"] != job["job_id"] == again["job"]["job_id"]
    assert plain["job"]["explain"] is False


def test_a_presigned_batch_upload_carries_the_job_options_and_needs_no_aws_credentials(
    stack: Stack, batch: dict[str, Any]
) -> None:
    import requests

    # Given a ticket for version 1 in chunks of 100 rows
    status, ticket = api(
        stack,
        "POST",
        "/jobs/uploads",
        {"model": "churn", "filename": "march.csv", "alias": "v1", "chunk_rows": 100},
    )
    assert status == 201, ticket
    # When the file is PUT to its URL with its headers (plain HTTP: no AWS credentials)
    put = requests.put(ticket["url"], data=csv_bytes(250), headers=ticket["headers"], timeout=30)
    # Then the object carries the options its S3 event plans the job with
    assert put.status_code == 200, put.text
    head = batch["s3"].head_object(Bucket=batch["bucket"], Key=ticket["key"])
    assert head["Metadata"] == {"alias": "v1", "chunk-rows": "100", "explain": "false"}
    status, view = api(stack, "POST", "/jobs", {"key": ticket["key"], "alias": "v1", "chunk_rows": 100})
    assert status == 201 and view["job"]["total_chunks"] == 3


def test_a_batch_upload_ticket_is_refused_for_an_unknown_model_and_a_bad_name(
    stack: Stack, batch: dict[str, Any]
) -> None:
    status, body = api(stack, "POST", "/jobs/uploads", {"model": "nobody", "filename": "x.csv"})
    assert status == 404, body
    status, body = api(stack, "POST", "/jobs/uploads", {"model": "churn", "filename": "../x.csv"})
    assert status == 422 and "filename" in json.dumps(body["details"]), body
    status, body = api(
        stack, "POST", "/jobs/uploads", {"model": "churn", "filename": "x.csv"}, scopes="ingest"
    )
    assert status == 403, body
