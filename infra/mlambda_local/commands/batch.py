"""``mlambda batch submit|status|list|fetch|retry``: score files with a model, watch, collect the output.

``submit`` uploads the file under ``input/<model>/`` of the batch bucket (the upload's S3 event
plans the job) and asks ``POST /jobs`` for the same object, which returns that same job (job
ids are derived from the object and the alias), then shows a progress bar until it is done.
``fetch`` merges the job's parts into one Parquet file, one part at a time.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from mlambda_local.client import ApiClient, CliError, Target
from mlambda_local.commands import api, print_json

TERMINAL = ("completed", "failed")
EVENT_WAIT_SECONDS = 15.0
BAR_WIDTH = 30


def _target(args: argparse.Namespace) -> Target:
    return Target.resolve(Path(args.data_dir), args.api_url, args.api_key)


def s3_client(target: Target) -> Any:
    """boto3 S3 on the deployment (the local cloud's endpoint when there is one)."""
    import boto3

    kwargs: dict[str, Any] = {"region_name": os.environ.get("AWS_REGION", "us-east-1")}
    if target.endpoint_url:
        kwargs["endpoint_url"] = target.endpoint_url
        if not os.environ.get("AWS_ACCESS_KEY_ID"):
            kwargs |= {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}
    return boto3.client("s3", **kwargs)


def batch_bucket(args: argparse.Namespace, target: Target) -> str:
    """The bucket named by ``--bucket`` or the deployment's outputs."""
    bucket = getattr(args, "bucket", None) or target.outputs.get("BatchBucketName")
    if not bucket:
        raise CliError("no batch bucket known: pass --bucket (the stack output BatchBucketName)")
    return str(bucket)


def progress_line(view: dict[str, Any]) -> str:
    """``[#####.....]  5/10 chunks  500,000 scored  3 rejected  running``."""
    job = view["job"]
    total = job["total_chunks"] or 0
    filled = int(BAR_WIDTH * view["progress"])
    bar = "#" * filled + "." * (BAR_WIDTH - filled)
    return (
        f"[{bar}] {job['done_chunks']:>4}/{total:<4} chunks  {job['rows_scored']:>12,} scored  "
        f"{job['rows_rejected']:>8,} rejected  {job['status']}"
    )


def wait_for(client: ApiClient, job_id: str, *, timeout: float, interval: float = 0.5) -> dict[str, Any]:
    """Poll the job, drawing a progress bar, until it completes or fails."""
    deadline = time.monotonic() + timeout
    view: dict[str, Any] = client.get(f"/jobs/{job_id}")
    interactive = sys.stderr.isatty()
    last = ""
    while True:
        line = progress_line(view)
        if interactive:
            print(f"\r{line}", end="", file=sys.stderr, flush=True)
        elif line != last:
            print(line, file=sys.stderr, flush=True)
        last = line
        if view["job"]["status"] in TERMINAL:
            break
        if time.monotonic() > deadline:
            raise CliError(
                f"job {job_id} not done after {timeout:.0f} s; see `mlambda batch status {job_id}`"
            )
        time.sleep(interval)
        view = client.get(f"/jobs/{job_id}")
    if interactive:
        print(file=sys.stderr)
    return view


def summary(view: dict[str, Any]) -> None:
    """What a finished job produced."""
    job = view["job"]
    if job["status"] == "failed":
        print(f"job {job['job_id']} failed: {job.get('reason')}", file=sys.stderr)
        for failure in view.get("failed") or []:
            print(f"  chunk {failure['chunk']}: {failure['last_error']}", file=sys.stderr)
        return
    print(
        f"job {job['job_id']} {job['status']}: {job['rows_in']:,} rows in, {job['rows_scored']:,} scored, "
        f"{job['rows_rejected']:,} rejected"
    )
    print(f"  output   {view['output_uri']}")
    explanation = job.get("explanation")
    if explanation:
        print(
            f"  explained with {explanation['method']} ({explanation['output']} scale): "
            f"{', '.join(explanation['columns'][:3])}, ... explain_value = explain_baseline + sum"
        )
    if view.get("rejects_uri"):
        print(f"  rejects  {view['rejects_uri']}")


def find_job(client: ApiClient, job_id: str, key: str, args: argparse.Namespace) -> dict[str, Any]:
    """The job the upload's S3 event creates (same id, derived from the object); POST /jobs if it never comes."""
    from mlambda_local.client import ApiError

    deadline = time.monotonic() + EVENT_WAIT_SECONDS
    while time.monotonic() < deadline:
        try:
            return dict(client.get(f"/jobs/{job_id}"))
        except ApiError as exc:
            if exc.status != 404:
                raise
        time.sleep(0.2)
    body: dict[str, Any] = {"key": key, "alias": args.alias, "explain": args.explain}
    if args.chunk_rows:
        body["chunk_rows"] = args.chunk_rows
    return dict(client.post("/jobs", body))


def batch_submit(args: argparse.Namespace) -> int:
    """Upload a CSV/Parquet file under input/<model>/ and follow its job."""
    path = Path(args.file)
    if not path.is_file():
        raise CliError(f"no file {path}")
    if path.suffix.lower() not in (".csv", ".parquet", ".pq"):
        raise CliError("the file must be .csv or .parquet")
    target = _target(args)
    bucket = batch_bucket(args, target)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
    key = f"input/{args.model}/{stamp}-{path.name}"
    metadata = {"alias": args.alias}
    if args.chunk_rows:
        metadata["chunk-rows"] = str(args.chunk_rows)
    if args.explain:
        metadata["explain"] = "true"
    started = time.perf_counter()
    s3_client(target).upload_file(str(path), bucket, key, ExtraArgs={"Metadata": metadata})
    print(f"uploaded {path} to s3://{bucket}/{key} ({time.perf_counter() - started:.1f} s)", file=sys.stderr)
    etag = s3_client(target).head_object(Bucket=bucket, Key=key)["ETag"].strip('"')
    client = ApiClient(target)
    # Here, not at import: every `mlambda` command (local up included) imports this module to
    # build the parser, and the schemas' pydantic models were a fifth of a second of each start.
    from mlambda.schemas.batch import job_id_for

    job_id = job_id_for(bucket, key, etag, args.alias, explain=args.explain)
    view = find_job(client, job_id, key, args)
    print(f"job {job_id}", file=sys.stderr)
    if args.no_wait:
        print_json(view)
        return 0
    view = wait_for(client, job_id, timeout=args.timeout)
    summary(view)
    return 0 if view["job"]["status"] == "completed" else 1


def batch_status(args: argparse.Namespace) -> int:
    """A job's record, progress and failed chunks."""
    print_json(api(args).get(f"/jobs/{args.job_id}"))
    return 0


def batch_list(args: argparse.Namespace) -> int:
    """A model's jobs, newest first."""
    for job in api(args).get("/jobs", params={"model": args.model, "limit": args.limit})["jobs"]:
        print(
            f"{job['job_id']}  {job['status']:9} {job['created_at'][:19]}  v{job.get('model_version') or '-'}  "
            f"{job['rows_scored']:>10,} scored {job['rows_rejected']:>7,} rejected  {job['input']['key']}"
        )
    return 0


def batch_retry(args: argparse.Namespace) -> int:
    """Re-send the chunks of a job that are not done, then follow it."""
    client = api(args)
    result = client.post(f"/jobs/{args.job_id}/retry")
    print(f"re-sent chunks {result['resent_chunks']}", file=sys.stderr)
    if args.no_wait:
        print_json(result)
        return 0
    view = wait_for(client, args.job_id, timeout=args.timeout)
    summary(view)
    return 0 if view["job"]["status"] == "completed" else 1


def batch_fetch(args: argparse.Namespace) -> int:
    """Merge a completed job's parts (in chunk order) into one Parquet file; optionally its rejects into one CSV."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    target = _target(args)
    view = ApiClient(target).get(f"/jobs/{args.job_id}")
    job = view["job"]
    if job["status"] != "completed":
        raise CliError(f"job {args.job_id} is {job['status']}, not completed: nothing to fetch yet")
    bucket = job["input"]["bucket"]
    s3 = s3_client(target)
    manifest = json.loads(
        s3.get_object(Bucket=bucket, Key=f"output/{job['job_id']}/_manifest.json")["Body"].read()
    )
    out = Path(args.output)
    writer: pq.ParquetWriter | None = None
    rows = 0
    try:
        for part in manifest["parts"]:
            body = s3.get_object(Bucket=bucket, Key=part["key"])["Body"].read()
            table = pq.read_table(pa.BufferReader(body))
            if writer is None:
                writer = pq.ParquetWriter(out, table.schema)
            writer.write_table(table)
            rows += table.num_rows
    finally:
        if writer is not None:
            writer.close()
    print(f"wrote {rows:,} rows ({len(manifest['parts'])} parts) to {out}")
    if args.rejects:
        with Path(args.rejects).open("wb") as stream:
            for number, part in enumerate(manifest["rejects"]):
                data = s3.get_object(Bucket=bucket, Key=part["key"])["Body"].read()
                stream.write(data if number == 0 else data.split(b"\n", 1)[1])
        print(f"wrote {manifest['rows_rejected']:,} rejected rows to {args.rejects}")
    return 0


def register(groups: Any) -> None:
    """Add ``mlambda batch ...``."""
    batch = groups.add_parser("batch", help="batch prediction jobs").add_subparsers(
        dest="command", required=True
    )
    submit = batch.add_parser("submit", help="upload a CSV/Parquet file and score it")
    submit.add_argument("file")
    submit.add_argument("--model", required=True)
    submit.add_argument("--alias", default="production", help="alias or version (v3) to score with")
    submit.add_argument("--chunk-rows", type=int, help="rows per chunk (default: the deployment's)")
    submit.add_argument(
        "--explain",
        action="store_true",
        help="add attribution columns (explain_<feature>, explain_baseline, explain_value, explain_class)",
    )
    submit.add_argument("--bucket", help="batch bucket (default: the local cloud's)")
    submit.add_argument("--no-wait", action="store_true", help="print the job and return")
    submit.add_argument("--timeout", type=float, default=3600.0, help="seconds to wait (default 3600)")
    submit.set_defaults(run=batch_submit)
    status = batch.add_parser("status", help="a job's status and progress")
    status.add_argument("job_id")
    status.set_defaults(run=batch_status)
    listing = batch.add_parser("list", help="a model's jobs")
    listing.add_argument("--model", required=True)
    listing.add_argument("--limit", type=int, default=20)
    listing.set_defaults(run=batch_list)
    fetch = batch.add_parser("fetch", help="merge a completed job's output into one Parquet file")
    fetch.add_argument("job_id")
    fetch.add_argument("output")
    fetch.add_argument("--rejects", help="also write the rejected rows to this CSV")
    fetch.set_defaults(run=batch_fetch)
    retry = batch.add_parser("retry", help="re-send the chunks of a job that are not done")
    retry.add_argument("job_id")
    retry.add_argument("--no-wait", action="store_true")
    retry.add_argument("--timeout", type=float, default=3600.0)
    retry.set_defaults(run=batch_retry)
