"""Batch jobs on in-memory ports: exactly-once counting, redelivery, failures, DLQ and retry."""

from __future__ import annotations

import io
import json
import threading
from datetime import timedelta

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from pydantic import ValidationError

from mlambda.errors import ConflictError, InvalidInputError, NotFoundError, UpstreamError
from mlambda.schemas.batch import JOB_COMPLETED, BatchUploadRequest, ChunkMessage, Manifest, SubmitJobRequest
from tests.unit.fakes_batch import (
    BUCKET,
    FEATURES,
    Harness,
    classifier_model,
    csv_bytes,
    make_frame,
    model_version,
)

KEY = "input/churn/2025/scores.csv"


def manifest_of(h: Harness, job_id: str) -> Manifest:
    return Manifest.model_validate_json(h.objects.objects[f"output/{job_id}/_manifest.json"].body)


def output_ids(h: Harness, job_id: str) -> list[str]:
    ids: list[str] = []
    for key in h.objects.keys(f"output/{job_id}/part-"):
        ids.extend(pq.read_table(io.BytesIO(h.objects.objects[key].body)).column("id").to_pylist())
    return ids


def test_an_upload_is_planned_scored_and_completed_exactly_once() -> None:
    # Given
    h = Harness(chunk_rows=100)
    # When
    job = h.upload(KEY, csv_bytes(950))
    assert job is not None
    outcomes = h.drain()
    # Then
    done = h.jobs.get(job.job_id)
    assert done is not None
    assert outcomes == ["scored"] * done.total_chunks
    assert done.status == "completed"
    assert (done.rows_in, done.rows_scored, done.rows_rejected) == (950, 950, 0)
    assert done.done_chunks == done.total_chunks >= 9
    assert output_ids(h, job.job_id) == [f"row-{i}" for i in range(950)]
    manifest = manifest_of(h, job.job_id)
    assert manifest.model_version == 1
    assert manifest.rows_in == manifest.rows_scored + manifest.rows_rejected == 950
    assert [p.chunk for p in manifest.parts] == list(range(done.total_chunks))
    assert manifest.columns == ["id", "label", "proba_0", "proba_1"]
    assert manifest.timings.wall_seconds is not None
    assert h.objects.objects[f"output/{job.job_id}/_SUCCESS"].body == b""
    assert [detail["job_id"] for kind, detail in h.events.emitted if kind == JOB_COMPLETED] == [job.job_id]


def test_rows_in_equal_rows_scored_plus_rows_rejected_with_bad_rows() -> None:
    # Given a file with a few bad rows of each kind
    frame = make_frame(500)
    frame["f3"] = frame["f3"].astype(object)
    frame.loc[[10, 260], "f3"] = "oops"
    frame.loc[[300], "f3"] = None
    lines = frame.to_csv(index=False).encode().split(b"\n")
    lines[100] = b"ragged,1,2"
    body = b"\n".join(lines)
    h = Harness(chunk_rows=100)
    # When
    job = h.upload(KEY, body)
    assert job is not None
    h.drain()
    # Then
    done = h.jobs.get(job.job_id)
    assert done is not None and done.status == "completed"
    assert (done.rows_in, done.rows_scored, done.rows_rejected) == (500, 496, 4)
    assert len(output_ids(h, job.job_id)) == 496
    rejects = b"".join(h.objects.objects[k].body for k in h.objects.keys(f"rejects/{job.job_id}/"))
    assert rejects.count(b"\n") - len(h.objects.keys(f"rejects/{job.job_id}/")) == 4
    assert manifest_of(h, job.job_id).rows_rejected == 4


def test_a_redelivered_s3_event_finds_the_same_job_and_sends_nothing() -> None:
    h = Harness()
    first = h.upload(KEY, csv_bytes(250))
    sent = len(h.queue.bodies)
    assert first is not None
    again = h.planner.from_upload(BUCKET, KEY, h.objects.objects[KEY].etag)
    assert again is not None
    assert again.job_id == first.job_id
    assert len(h.queue.bodies) == sent
    assert len(h.jobs.jobs) == 1


def test_an_event_for_a_replaced_object_is_ignored() -> None:
    h = Harness()
    h.objects.upload(KEY, csv_bytes(10))
    assert h.planner.from_upload(BUCKET, KEY, "etag-of-an-older-upload") is None
    assert h.jobs.jobs == {}


def test_planning_that_died_before_sending_is_resumed_by_the_redelivered_event() -> None:
    # Given SQS refusing the first send
    h = Harness(chunk_rows=100)
    stored = h.objects.upload(KEY, csv_bytes(300))
    h.queue.fail_next_send = True
    with pytest.raises(UpstreamError, match="injected"):
        h.planner.from_upload(BUCKET, KEY, stored.etag)
    # When the event is delivered again, at once (the planner may still be at work) and later
    pending = h.planner.from_upload(BUCKET, KEY, stored.etag)
    h.clock.now += timedelta(seconds=61)
    job = h.planner.from_upload(BUCKET, KEY, stored.etag)
    h.drain()
    # Then
    assert pending is not None and (pending.status, h.queue.bodies) == ("planning", [])
    assert job is not None
    done = h.jobs.get(job.job_id)
    assert done is not None and done.status == "completed"
    assert done.rows_scored == 300


def test_redelivered_chunk_messages_are_counted_once_and_parts_are_not_duplicated() -> None:
    # Given every message delivered twice, the copies racing in threads
    h = Harness(chunk_rows=50)
    job = h.upload(KEY, csv_bytes(400))
    assert job is not None
    messages = h.queue.take()
    # When
    threads = [threading.Thread(target=h.worker.process, args=(message,)) for message in messages + messages]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for message in messages:
        assert h.worker.process(message, attempt=3) == "job_closed"
    # Then
    done = h.jobs.get(job.job_id)
    assert done is not None
    assert (done.status, done.done_chunks, done.rows_in, done.rows_scored) == ("completed", 8, 400, 400)
    assert len(h.objects.keys(f"output/{job.job_id}/part-")) == 8
    assert output_ids(h, job.job_id) == [f"row-{i}" for i in range(400)]
    assert len([1 for kind, _ in h.events.emitted if kind == JOB_COMPLETED]) == 1


def test_a_worker_failing_mid_job_is_retried_and_the_job_completes() -> None:
    # Given writing chunk 2's part fails once
    h = Harness(chunk_rows=100)
    failures = {"left": 1}

    def flaky(key: str) -> bool:
        if key.endswith("part-00002.parquet") and failures["left"]:
            failures["left"] -= 1
            return True
        return False

    h.objects.fail_put = flaky
    job = h.upload(KEY, csv_bytes(500))
    assert job is not None
    # When
    outcomes = h.drain()
    # Then
    done = h.jobs.get(job.job_id)
    assert done is not None
    assert outcomes.count("failed") == 1
    assert (done.status, done.rows_scored, done.failed_chunks) == ("completed", 500, 0)
    chunk = h.jobs.get_chunk(job.job_id, 2)
    assert chunk is not None and chunk.attempts == 2 and "injected" in (chunk.last_error or "")
    assert [seconds for _, seconds in h.queue.retried] == [10]


def test_a_chunk_that_keeps_failing_fails_the_job_and_retry_resumes_only_that_chunk() -> None:
    # Given chunk 1 cannot be written, whatever the attempt
    h = Harness(chunk_rows=100)
    broken = {"on": True}
    h.objects.fail_put = lambda key: broken["on"] and key.endswith("part-00001.parquet")
    job = h.upload(KEY, csv_bytes(400))
    assert job is not None
    # When it exhausts its attempts
    h.drain()
    # Then it is in the dead letters and the job shows it
    failed = h.jobs.get(job.job_id)
    assert failed is not None
    assert len(h.dead_letters) == 1
    assert (failed.status, failed.failed_chunks, failed.done_chunks) == ("failed", 1, 3)
    assert failed.error_code == "chunks_failed"
    view = h.api.get(job.job_id)
    assert [(f.chunk, f.attempts) for f in view.failed] == [(1, 3)]
    # When the cause is fixed and the job retried
    broken["on"] = False
    h.objects.puts.clear()
    result = h.api.retry(job.job_id)
    h.drain()
    # Then only chunk 1 ran again and the job completed
    assert result.resent_chunks == [1]
    done = h.jobs.get(job.job_id)
    assert done is not None
    assert (done.status, done.failed_chunks, done.rows_scored, done.reason) == ("completed", 0, 400, None)
    assert [k for k in h.objects.puts if "part-" in k] == [f"output/{job.job_id}/part-00001.parquet"]


def test_retry_refuses_a_complete_job_and_one_that_was_never_split() -> None:
    h = Harness()
    complete = h.upload(KEY, csv_bytes(50))
    h.drain()
    refused = h.upload("input/churn/empty.csv", b"")
    assert complete is not None and refused is not None
    with pytest.raises(ConflictError) as done:
        h.api.retry(complete.job_id)
    assert done.value.code == "job_complete"
    with pytest.raises(ConflictError) as unplanned:
        h.api.retry(refused.job_id)
    assert unplanned.value.code == "job_not_planned"


def test_a_last_attempt_that_went_silent_is_shown_as_failed() -> None:
    # Given the third attempt started, and the worker died without a word
    h = Harness(chunk_rows=100)
    job = h.upload(KEY, csv_bytes(200))
    assert job is not None
    h.jobs.record_attempt(job.job_id, 0, 3, h.clock())
    assert h.api.get(job.job_id).failed == []
    # When the worker timeout passes
    h.clock.now += timedelta(seconds=301)
    # Then
    assert [f.chunk for f in h.api.get(job.job_id).failed] == [0]


def header_only() -> bytes:
    return (",".join(["id", *FEATURES]) + "\n").encode()


@pytest.mark.parametrize(
    ("key", "body", "metadata", "code"),
    [
        ("input/unknown-model/a.csv", b"x", {}, "unknown_model"),
        (KEY, csv_bytes(5), {"alias": "canary"}, "unknown_model"),
        (KEY, csv_bytes(5), {"alias": "Not An Alias!"}, "invalid_alias"),
        (KEY, csv_bytes(5), {"chunk-rows": "7"}, "invalid_chunk_rows"),
        (KEY, csv_bytes(5), {"chunk-rows": "1\u00b3"}, "invalid_chunk_rows"),  # isdigit, then int() raised
        (KEY, b"", {}, "empty_file"),
        (KEY, header_only(), {}, "no_rows"),
        (KEY, b"id,f0,f1\n1,2,3\n", {}, "missing_columns"),
        (KEY, csv_bytes(5), {"passthrough": "nope"}, "unknown_passthrough"),
        (KEY, "id,f0\n1,2\n".encode("utf-16"), {}, "wrong_encoding"),
        ("input/churn/model.onnx", b"\x08\x07", {}, "unsupported_format"),
        ("input/churn/data.parquet", csv_bytes(5), {}, "not_parquet"),
        ("input/churn/data.csv", b"PAR1\x00\x01binary", {}, "not_csv"),
        ("uploads/churn/data.csv", csv_bytes(5), {}, "key_outside_input"),
    ],
)
def test_bad_input_fails_the_job_with_a_reason(
    key: str, body: bytes, metadata: dict[str, str], code: str
) -> None:
    h = Harness()
    job = h.upload(key, body, metadata)
    assert job is not None
    assert (job.status, job.error_code) == ("failed", code)
    assert job.reason
    assert h.queue.bodies == []


def test_a_parquet_feature_column_of_the_wrong_type_fails_the_job() -> None:
    h = Harness()
    table = pa.table({**{name: [0.5] for name in FEATURES}, "f4": ["text"]})
    sink = io.BytesIO()
    pq.write_table(table, sink)
    job = h.upload("input/churn/data.parquet", sink.getvalue())
    assert job is not None and job.error_code == "wrong_column_types"


def test_the_alias_is_pinned_to_a_version_for_the_whole_job() -> None:
    # Given v2 behind the staging alias
    h = Harness(chunk_rows=100)
    v2 = model_version(version=2)
    h.catalog.add(v2, "staging")
    h.loader.artifacts[v2.artifact_key] = classifier_model()[0]
    job = h.upload(KEY, csv_bytes(300), {"alias": "staging"})
    assert job is not None and job.model_version == 2
    # When staging moves to v1 mid-job
    h.catalog.aliases[("churn", "staging")] = 1
    h.drain()
    # Then every chunk used v2
    assert manifest_of(h, job.job_id).model_version == 2


def test_parquet_uploads_are_scored_by_row_groups() -> None:
    h = Harness(chunk_rows=100)
    sink = io.BytesIO()
    pq.write_table(pa.Table.from_pandas(make_frame(430), preserve_index=False), sink, row_group_size=60)
    job = h.upload("input/churn/data.parquet", sink.getvalue(), {"passthrough": "id"})
    assert job is not None
    h.drain()
    done = h.jobs.get(job.job_id)
    assert done is not None
    assert (done.status, done.total_chunks, done.rows_expected_exact, done.rows_scored) == (
        "completed",
        4,
        True,
        430,
    )
    assert output_ids(h, job.job_id) == [f"row-{i}" for i in range(430)]


def test_submitting_an_existing_object_twice_returns_the_same_job() -> None:
    h = Harness()
    h.objects.upload(KEY, csv_bytes(120))
    first, created = h.api.submit(SubmitJobRequest(key=KEY), submitted_by="app")
    again, created_again = h.api.submit(SubmitJobRequest(key=KEY), submitted_by="app")
    other, _ = h.api.submit(SubmitJobRequest(key=KEY, alias="v1"), submitted_by="app")
    assert (created, created_again) == (True, False)
    assert first.job.job_id == again.job.job_id != other.job.job_id
    assert first.job.submitted_by == "app"


def test_submit_refuses_a_missing_object_and_a_key_outside_input() -> None:
    h = Harness()
    with pytest.raises(NotFoundError):
        h.api.submit(SubmitJobRequest(key="input/churn/none.csv"), submitted_by="app")
    with pytest.raises(InvalidInputError):
        h.api.submit(SubmitJobRequest(key="output/churn/x.csv"), submitted_by="app")


def test_jobs_are_listed_per_model_newest_first() -> None:
    h = Harness()
    ids = []
    for number in range(3):
        job = h.upload(f"input/churn/{number}.csv", csv_bytes(5, seed=number))
        assert job is not None
        ids.append(job.job_id)
    first = h.api.list("churn", limit=2)
    rest = h.api.list("churn", limit=2, next_token=first.next_token)
    assert [j.job_id for j in first.jobs + rest.jobs] == ids[::-1]
    assert h.api.list("other").jobs == []


def test_unknown_jobs_and_chunk_messages_for_unknown_jobs_are_handled() -> None:
    h = Harness()
    with pytest.raises(NotFoundError):
        h.api.get("0" * 20)
    assert h.worker.process(ChunkMessage(job_id="0" * 20, chunk=0)) == "unknown_job"


def test_the_job_view_says_where_the_output_is() -> None:
    h = Harness()
    job = h.upload(KEY, csv_bytes(20))
    h.drain()
    assert job is not None
    view = h.api.get(job.job_id)
    assert view.progress == 1.0
    assert view.output_uri == f"s3://{BUCKET}/output/{job.job_id}/"
    assert view.manifest_uri == f"s3://{BUCKET}/output/{job.job_id}/_manifest.json"
    assert json.loads(view.model_dump_json())["job"]["status"] == "completed"


def bad_rows_job(h: Harness) -> str:
    """500 rows in chunks of 100, rejected at rows 10 (chunk 0), 100 (1), 260 (2) and 300 (3)."""
    frame = make_frame(500)
    frame["f3"] = frame["f3"].astype(object)
    frame.loc[[10, 260], "f3"] = "oops"
    frame.loc[[300], "f3"] = None
    lines = frame.to_csv(index=False).encode().split(b"\n")
    lines[101] = b"ragged,1,2"
    job = h.upload(KEY, b"\n".join(lines))
    assert job is not None
    h.drain()
    return job.job_id


def test_rejected_rows_are_paged_in_chunk_order_with_their_reasons() -> None:
    # Given
    h = Harness(chunk_rows=100)
    job_id = bad_rows_job(h)
    # When
    first = h.api.rejects(job_id, offset=0, limit=2)
    rest = h.api.rejects(job_id, offset=2, limit=100)
    beyond = h.api.rejects(job_id, offset=4, limit=100)
    # Then
    assert first.total == rest.total == 4
    assert [(r.chunk, r.chunk_row) for r in first.rows] == [(0, 10), (1, 0)]
    assert [(r.chunk, r.chunk_row) for r in rest.rows] == [(2, 60), (3, 0)]
    assert "f3" in first.rows[0].reason and first.rows[0].byte_offset is not None
    assert beyond.rows == []


def test_rejected_csv_rows_carry_their_row_in_the_file() -> None:
    # Given 500 CSV rows in byte-range chunks, bad at rows 10, 100, 260 and 300
    h = Harness(chunk_rows=100)
    job_id = bad_rows_job(h)
    # When
    page = h.api.rejects(job_id, offset=0, limit=100)
    # Then the chunks before each reject were counted: its data row in the whole file
    assert [r.row for r in page.rows] == [10, 100, 260, 300]


def test_a_csv_rejects_row_stays_unknown_while_an_earlier_chunk_is_not_scored() -> None:
    # Given chunk 1 not scored yet (its row count unknown)
    h = Harness(chunk_rows=100)
    job_id = bad_rows_job(h)
    h.jobs.chunk_items[(job_id, 1)]["rows_in"] = None
    # When
    rows = h.api.rejects(job_id, offset=0, limit=100).rows
    # Then rows after it are not guessed
    assert [r.row for r in rows] == [10, 100, None, None]


def test_a_batch_upload_ticket_makes_the_uploads_event_plan_the_job_post_jobs_returns() -> None:
    # Given a ticket asking for version 1, chunks of 100 rows and explanations off
    h = Harness(chunk_rows=100)
    ticket = h.api.upload_ticket(
        BatchUploadRequest(model="churn", filename="scores.csv", alias="v1", chunk_rows=100)
    )
    # When the file is PUT with the ticket's headers, its S3 event planned, and POST /jobs asked too
    stored = h.objects.put_presigned(ticket.url, csv_bytes(250), ticket.headers)
    planned = h.planner.from_upload(BUCKET, ticket.key, stored.etag)
    submitted, created = h.api.submit(
        SubmitJobRequest(key=ticket.key, alias="v1", chunk_rows=100), submitted_by="sdk"
    )
    # Then one job, with the ticket's options
    assert ticket.key.startswith("input/churn/") and ticket.key.endswith("/scores.csv")
    assert planned is not None and submitted.job.job_id == planned.job_id and not created
    assert (planned.alias, planned.chunk_rows, planned.total_chunks) == ("v1", 100, 3)


def test_a_batch_upload_ticket_is_refused_for_a_model_or_alias_that_cannot_score() -> None:
    h = Harness()
    with pytest.raises(NotFoundError):
        h.api.upload_ticket(BatchUploadRequest(model="nobody", filename="scores.csv"))
    with pytest.raises(NotFoundError):
        h.api.upload_ticket(BatchUploadRequest(model="churn", filename="scores.csv", alias="staging"))
    with pytest.raises(InvalidInputError):
        h.api.upload_ticket(BatchUploadRequest(model="churn", filename="scores.txt"))


@pytest.mark.parametrize(
    "body",
    [
        {"model": "churn", "filename": "../x.csv"},
        {"model": "Churn!", "filename": "x.csv"},
        {"model": "churn", "filename": "x.csv", "chunk_rows": 5},
        {"model": "churn", "filename": "x.csv", "passthrough": ["a,b"]},
        {"model": "churn", "filename": "x.csv", "alias": "bad alias"},
        {"model": "churn", "filename": "x.csv", "bucket": "elsewhere"},
    ],
)
def test_a_batch_upload_request_names_what_is_wrong(body: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        BatchUploadRequest.model_validate(body)


def test_a_rejects_page_reads_only_the_rejects_files_it_shows() -> None:
    # Given
    h = Harness(chunk_rows=100)
    job_id = bad_rows_job(h)
    read: list[str] = []
    original = h.objects.get
    h.objects.get = lambda key: read.append(key) or original(key)  # type: ignore[method-assign]
    # When
    h.api.rejects(job_id, offset=2, limit=1)
    # Then
    assert read == [f"rejects/{job_id}/part-00002.csv"]


def test_rejects_pages_are_bounded() -> None:
    h = Harness(chunk_rows=100)
    job_id = bad_rows_job(h)
    for offset, limit in ((0, 0), (0, 501), (-1, 10)):
        with pytest.raises(InvalidInputError):
            h.api.rejects(job_id, offset=offset, limit=limit)
    with pytest.raises(NotFoundError):
        h.api.rejects("0" * 20)


def test_files_link_every_part_rejects_file_and_the_manifest_under_download_names() -> None:
    # Given
    h = Harness(chunk_rows=100)
    job_id = bad_rows_job(h)
    # When
    files = h.api.files(job_id)
    # Then
    kinds = [(f.kind, f.chunk) for f in files.files]
    assert [k for k in kinds if k[0] == "part"] == [("part", i) for i in range(5)]
    assert [k for k in kinds if k[0] == "rejects"] == [("rejects", i) for i in range(4)]
    assert kinds[-1] == ("manifest", None)
    part = files.files[0]
    assert part.filename == f"churn-{job_id}-part-00000.parquet"
    assert part.url.endswith(f"download={part.filename}&expires={files.expires_in}")
    assert sum(f.rows or 0 for f in files.files if f.kind == "part") == 496
