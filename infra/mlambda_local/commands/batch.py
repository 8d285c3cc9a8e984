"""``mlambda batch submit|status|list|fetch|retry``: score files with a model, watch, collect the output.

``submit`` asks ``POST /jobs/uploads`` for a presigned PUT under ``input/<model>/`` (the job's
options ride on the object's metadata), uploads the file with a progress bar, asks ``POST /jobs``
for the job the upload's S3 event plans (the same one: job ids derive from the object and the
options) and follows it. No AWS credentials are needed, only an API key with ``predict``.
``fetch`` writes the output as Parquet or CSV, as the file's name says.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from mlambda.client import Client
from mlambda_local.client import EXIT_PARTIAL, CliError
from mlambda_local.commands import api, columns
from mlambda_local.output import Outcome, progress, status, table

TERMINAL = ("completed", "failed")


def follow(client: Client, job_id: str, *, timeout: float) -> dict[str, Any]:
    """Poll the job with a progress bar of its chunks until it completes or fails."""
    bar = progress(None, f"job {job_id}", unit="chunk")

    def show(view: dict[str, Any]) -> None:
        job = view["job"]
        if job["total_chunks"] and bar.total != job["total_chunks"]:
            bar.total = job["total_chunks"]
            bar.refresh()
        bar.update(job["done_chunks"] - bar.n)
        bar.set_postfix_str(
            f"{job['rows_scored']:,} scored, {job['rows_rejected']:,} rejected, {job['status']}"
        )

    try:
        return client.wait_for_job(job_id, timeout=timeout, on_progress=show)
    finally:
        bar.close()


def summary(view: dict[str, Any]) -> list[str]:
    """What a finished (or running) job produced."""
    job = view["job"]
    if job["status"] == "failed":
        lines = [f"job {job['job_id']} failed: {job.get('reason')}"]
        lines.extend(f"  chunk {f['chunk']}: {f['last_error']}" for f in view.get("failed") or [])
        return lines
    lines = [
        f"job {job['job_id']} {job['status']}: {job['rows_in']:,} rows in, {job['rows_scored']:,} scored, "
        f"{job['rows_rejected']:,} rejected ({job['done_chunks']}/{job['total_chunks']} chunks)",
        f"  output   {view['output_uri']}",
    ]
    explanation = job.get("explanation")
    if explanation:
        lines.append(
            f"  explained with {explanation['method']} ({explanation['output']} scale): "
            f"{', '.join(explanation['columns'][:3])}, ... explain_value = explain_baseline + sum"
        )
    if view.get("rejects_uri"):
        lines.append(f"  rejects  {view['rejects_uri']}")
    return lines


def _finished(view: dict[str, Any]) -> Outcome:
    return Outcome(view, lambda: summary(view), 0 if view["job"]["status"] == "completed" else EXIT_PARTIAL)


def batch_submit(args: argparse.Namespace) -> Outcome:
    """Upload a CSV/Parquet file under input/<model>/ and follow its job."""
    path = Path(args.file)
    if not path.is_file():
        raise CliError(f"no such file: {path}")
    if path.suffix.lower() not in (".csv", ".parquet", ".pq"):
        raise CliError("the file must be .csv or .parquet")
    client = api(args)
    bar = progress(path.stat().st_size, f"uploading {path.name}", byte_units=True)
    try:
        view = client.submit_batch(
            args.model,
            path,
            alias=args.alias,
            chunk_rows=args.chunk_rows,
            explain=args.explain,
            passthrough=columns(args.passthrough),
            on_progress=bar.update,
        )
    finally:
        bar.close()
    status(f"uploaded {path} to s3://{view['job']['input']['bucket']}/{view['job']['input']['key']}")
    status(f"job {view['job']['job_id']}")
    if args.no_wait:
        return Outcome(view, lambda: summary(view))
    return _finished(follow(client, view["job"]["job_id"], timeout=args.timeout))


def batch_status(args: argparse.Namespace) -> Outcome:
    """A job's record, progress and failed chunks."""
    view = api(args).job(args.job_id)
    return Outcome(view, lambda: summary(view))


def batch_list(args: argparse.Namespace) -> Outcome:
    """A model's jobs, newest first."""
    jobs = api(args).jobs(args.model, limit=args.limit)
    rows = [
        {
            "job_id": j["job_id"],
            "status": j["status"],
            "created_at": j["created_at"][:19],
            "version": f"v{j['model_version']}" if j.get("model_version") else "-",
            "scored": f"{j['rows_scored']:,}",
            "rejected": f"{j['rows_rejected']:,}",
            "input": j["input"]["key"],
        }
        for j in jobs
    ]
    return Outcome(jobs, lambda: table(rows) if rows else [f"{args.model}: no jobs"])


def batch_retry(args: argparse.Namespace) -> Outcome:
    """Re-send the chunks of a job that are not done, then follow it."""
    client = api(args)
    result = client.retry_job(args.job_id)
    status(f"re-sent chunks {result['resent_chunks']}")
    if args.no_wait:
        return Outcome(result, lambda: [f"job {args.job_id}: re-sent chunks {result['resent_chunks']}"])
    return _finished(follow(client, args.job_id, timeout=args.timeout))


def batch_fetch(args: argparse.Namespace) -> Outcome:
    """Write a completed job's output to one file, Parquet or CSV by its extension (parts in chunk
    order, one at a time); optionally its rejected rows, with their file row, to a CSV."""
    client = api(args)
    bar = progress(None, f"fetching {args.job_id}", byte_units=True)
    try:
        fetched = client.fetch_job(args.job_id, args.output, rejects=args.rejects, on_progress=bar.update)
    finally:
        bar.close()

    def lines() -> list[str]:
        out = [f"wrote {fetched.rows:,} rows ({fetched.parts} parts) to {fetched.path}"]
        if fetched.rejects_path is not None:
            out.append(f"wrote {fetched.rows_rejected:,} rejected rows to {fetched.rejects_path}")
        return out

    data = {
        "path": fetched.path,
        "rows": fetched.rows,
        "parts": fetched.parts,
        "rejects_path": fetched.rejects_path,
        "rows_rejected": fetched.rows_rejected,
    }
    return Outcome(data, lines)


def register(groups: Any) -> None:
    """Add ``mlambda batch ...``."""
    batch = groups.add_parser("batch", help="batch prediction jobs").add_subparsers(
        dest="command", required=True, metavar="COMMAND"
    )
    submit = batch.add_parser("submit", help="upload a CSV/Parquet file and score it")
    submit.add_argument("file")
    submit.add_argument("--model", required=True)
    submit.add_argument("--alias", default="production", help="alias or version (v3) to score with")
    submit.add_argument("--chunk-rows", type=int, help="rows per chunk (default: the deployment's)")
    submit.add_argument(
        "--passthrough",
        help="comma-separated columns copied to the output (default: every non-feature column)",
    )
    submit.add_argument(
        "--explain",
        action="store_true",
        help="add attribution columns (explain_<feature>, explain_baseline, explain_value, explain_class)",
    )
    submit.add_argument("--no-wait", action="store_true", help="print the job and return")
    submit.add_argument("--timeout", type=float, default=3600.0, help="seconds to wait (default 3600)")
    submit.set_defaults(run=batch_submit)
    status_ = batch.add_parser("status", help="a job's status and progress")
    status_.add_argument("job_id")
    status_.set_defaults(run=batch_status)
    listing = batch.add_parser("list", help="a model's jobs")
    listing.add_argument("--model", required=True)
    listing.add_argument("--limit", type=int, default=20)
    listing.set_defaults(run=batch_list)
    fetch = batch.add_parser("fetch", help="write a completed job's output to one .parquet or .csv file")
    fetch.add_argument("job_id")
    fetch.add_argument("output", help="the file to write: *.parquet or *.csv (the format follows the name)")
    fetch.add_argument("--rejects", help="also write the rejected rows (with their file row) to this CSV")
    fetch.set_defaults(run=batch_fetch)
    retry = batch.add_parser("retry", help="re-send the chunks of a job that are not done")
    retry.add_argument("job_id")
    retry.add_argument("--no-wait", action="store_true")
    retry.add_argument("--timeout", type=float, default=3600.0)
    retry.set_defaults(run=batch_retry)
