"""Batch prediction: 1,000,000 rows x 20 features through the local cloud, beside a plain script.

For CSV and for Parquet (10 row groups), in the same run on the same machine:

- plain: one process, ``pandas.read_csv`` / ``pyarrow.parquet.read_table`` of the whole local
  file, one onnxruntime call, the predictions written as Parquet;
- local cloud (``mlambda local up`` in a process of its own, as a user runs it): the file
  uploaded to the batch bucket (not timed), then from the S3 event to
  ``_SUCCESS``: fanout, chunk queue, two workers (the template's MaximumConcurrency), parts,
  manifest. Two figures: the manifest's wall time (job created by the event -> last chunk
  done) and the client's (upload finished -> ``_SUCCESS`` seen by polling, which adds the local
  S3-notification and SQS polling delays).

Memory: the local cloud's peak (its process and every process it started, sampled every 50 ms
during each upload and job) is printed per job, with who held it (``local up`` itself, which runs
moto, and each function's workers) and the peak of ``local up`` alone. One worker scoring one chunk is also run in a
fresh subprocess; its peak RSS minus its RSS after imports is the chunk's working set (ru_maxrss; it includes Arrow's C buffers, which
tracemalloc does not see; tracemalloc's peak is printed too, for the Python-visible part).

``--ten-million`` (minutes): 10,000,000 rows (2 GB of CSV) too, the same way, through the local
cloud, with rows in = scored + rejected. It completes because the local moto serves ranged GETs
by seeking (moto itself reads the whole object for each; see ``cloud/moto_server.py``).

Restart: at the end the cloud is killed (``kill -9``) and started again on its data dir, with
everything uploaded still stored: the time to serving again, beside the bytes uploaded.

Usage: make bench-batch, or from the repo root PYTHONPATH=. .venv/bin/python benchmarks/bench_batch.py
[--rows N] [--ten-million] [--keep] (it reuses tests/registry_support.py and tests/local_cloud_process.py).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

FEATURES = [f"f{i}" for i in range(20)]
MODEL = "bench-batch"
CHUNK_ROWS = 100_000
ROW_GROUP_ROWS = 100_000


def train() -> bytes:
    """A logistic regression on 20 features, as ONNX without ZipMap."""
    from skl2onnx import to_onnx
    from sklearn.datasets import make_classification
    from sklearn.linear_model import LogisticRegression

    x, y = make_classification(n_samples=5000, n_features=20, random_state=0)
    model = LogisticRegression(max_iter=1000).fit(x, y)
    return bytes(
        to_onnx(model, x[:1].astype(np.float32), options={id(model): {"zipmap": False}}).SerializeToString()
    )


def write_inputs(rows: int, directory: Path) -> tuple[Path, Path]:
    """``rows`` x (id + 20 floats) as CSV and as Parquet with row groups of 100k, written in slices."""
    import pyarrow as pa
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    csv_path, parquet_path = directory / f"rows-{rows}.csv", directory / f"rows-{rows}.parquet"
    rng = np.random.default_rng(0)
    slice_rows = 500_000
    csv_writer: pacsv.CSVWriter | None = None
    parquet_writer: pq.ParquetWriter | None = None
    for start in range(0, rows, slice_rows):
        count = min(slice_rows, rows - start)
        columns: dict[str, Any] = {"id": pa.array([f"id-{i}" for i in range(start, start + count)])}
        for name in FEATURES:
            columns[name] = pa.array(np.round(rng.normal(size=count), 6))
        table = pa.table(columns)
        if csv_writer is None:
            csv_writer = pacsv.CSVWriter(str(csv_path), table.schema)
            parquet_writer = pq.ParquetWriter(str(parquet_path), table.schema)
        csv_writer.write_table(table)
        assert parquet_writer is not None
        parquet_writer.write_table(table, row_group_size=ROW_GROUP_ROWS)
    assert csv_writer is not None and parquet_writer is not None
    csv_writer.close()
    parquet_writer.close()
    return csv_path, parquet_path


def plain(path: Path, model: bytes, out: Path) -> float:
    """The baseline: read everything, one onnxruntime call, write Parquet; seconds."""
    import onnxruntime as ort
    import pandas as pd

    started = time.perf_counter()
    frame = pd.read_csv(path) if path.suffix == ".csv" else pd.read_parquet(path)
    session = ort.InferenceSession(model, providers=["CPUExecutionProvider"])
    labels, probabilities = session.run(None, {"X": frame[FEATURES].to_numpy(np.float32)})
    pd.DataFrame(
        {"id": frame["id"], "label": labels, "proba_0": probabilities[:, 0], "proba_1": probabilities[:, 1]}
    ).to_parquet(out)
    return time.perf_counter() - started


def register(cloud: Any, s3: Any, model: bytes) -> None:
    """The model as v1 behind ``production``, through the registry's store."""
    from mlambda.adapters.dynamodb import DynamoTable
    from mlambda.adapters.registry import DynamoRegistryStore
    from mlambda.config import FunctionSettings
    from tests.registry_support import publish
    from tests.unit.fakes_batch import model_version

    outputs = cloud.outputs
    settings = FunctionSettings.model_validate(
        {"AWS_ENDPOINT_URL": cloud.endpoint_url, "AWS_REGION": "us-east-1"}
    )
    store = DynamoRegistryStore(DynamoTable(outputs["RegistryTableName"], settings))
    version = model_version(MODEL, data=model)
    s3.put_object(Bucket=outputs["ArtifactsBucketName"], Key=version.artifact_key, Body=model)
    publish(store, version, actor="bench")


def through_cloud(cloud: Any, s3: Any, path: Path) -> dict[str, Any]:
    """Upload (untimed), then time the event -> _SUCCESS; the job's figures."""
    bucket = cloud.outputs["BatchBucketName"]
    key = f"input/{MODEL}/{path.name}"
    s3.upload_file(str(path), bucket, key, ExtraArgs={"Metadata": {"chunk-rows": str(CHUNK_ROWS)}})
    uploaded = time.perf_counter()
    etag = s3.head_object(Bucket=bucket, Key=key)["ETag"].strip('"')
    from mlambda.schemas.batch import job_id_for, success_key

    job_id = job_id_for(bucket, key, etag, "production")
    while True:
        try:
            s3.head_object(Bucket=bucket, Key=success_key(job_id))
            break
        except s3.exceptions.ClientError:
            time.sleep(0.05)
        if time.perf_counter() - uploaded > 3600:
            raise RuntimeError("job did not finish within an hour")
    seen = time.perf_counter() - uploaded
    manifest = json.loads(s3.get_object(Bucket=bucket, Key=f"output/{job_id}/_manifest.json")["Body"].read())
    assert manifest["rows_in"] == manifest["rows_scored"] + manifest["rows_rejected"]
    return {"job_id": job_id, "seen": seen, "manifest": manifest}


class LocalFile:
    """The ranged reads a ``Source`` makes, over a local file (the one-chunk memory probe needs no more)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def get_range(self, key: str, start: int, end: int, *, etag: str | None = None) -> bytes:
        with self.path.open("rb") as stream:
            stream.seek(start)
            return stream.read(end - start + 1)


def peak_rss_kb() -> int:
    """This process's peak resident set (VmHWM). Not ru_maxrss: Linux carries that over execve,
    so a subprocess would report its parent's peak."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def one_chunk(path: Path, model_path: Path) -> None:
    """Subprocess mode: score the first chunk of ``path`` and print memory figures as JSON."""
    import tracemalloc

    from mlambda.adapters.onnx import OnnxModel, inspect_model
    from mlambda.schemas.batch import ChunkRecord
    from mlambda.schemas.registry import FeatureSchema, FeatureSpec
    from mlambda.services.batch.planning import PlanningLimits, Source, plan_file
    from mlambda.services.batch.scoring import ScoringInputs, score_chunk

    model = model_path.read_bytes()
    scorer = OnnxModel(model)
    source = Source(LocalFile(path), path.name, path.stat().st_size, "")  # type: ignore[arg-type]
    fmt = "csv" if path.suffix == ".csv" else "parquet"
    plan = plan_file(source, fmt, PlanningLimits(chunk_rows=CHUNK_ROWS))  # type: ignore[arg-type]
    span = plan.chunks[0]
    chunk = ChunkRecord(
        job_id="0" * 20,
        index=0,
        start=span.start,
        end=span.end,
        row_groups=list(span.row_groups),
        first_row=0,
    )
    schema = FeatureSchema(
        mode="tensor", features=[FeatureSpec(name=n, dtype="float") for n in FEATURES], tensor_input="X"
    )
    inputs = ScoringInputs(
        columns=plan.columns,
        schema=schema,
        signature=inspect_model(model, max_bytes=10_000_000),
        passthrough=["id"],
    )
    # A warm worker: one chunk scored first, so that imports and lazy initialisation are in the baseline.
    score_chunk(source, fmt, chunk, inputs, scorer)  # type: ignore[arg-type]
    baseline = peak_rss_kb()
    tracemalloc.start()
    scored = score_chunk(source, fmt, chunk, inputs, scorer)  # type: ignore[arg-type]
    _, traced_peak = tracemalloc.get_traced_memory()
    peak = peak_rss_kb()
    print(
        json.dumps(
            {
                "rows": scored.rows_in,
                "baseline_mb": baseline / 1024,
                "peak_mb": peak / 1024,
                "delta_mb": (peak - baseline) / 1024,
                "traced_peak_mb": traced_peak / 2**20,
                "part_mb": len(scored.output) / 2**20,
            }
        )
    )


def memory_probe(path: Path, model_path: Path) -> dict[str, float]:
    result = subprocess.run(
        [sys.executable, __file__, "--one-chunk", str(path), str(model_path)],
        capture_output=True,
        text=True,
        check=True,
    )
    figures: dict[str, float] = json.loads(result.stdout.strip().splitlines()[-1])
    return figures


def ranged_get_cost(s3: Any, bucket: str, key: str) -> float:
    """Seconds for a 1-byte ranged GET of ``key`` on the local moto (a seek, as on S3)."""
    started = time.perf_counter()
    for _ in range(3):
        s3.get_object(Bucket=bucket, Key=key, Range="bytes=0-0")["Body"].read()
    return (time.perf_counter() - started) / 3


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument(
        "--ten-million",
        action="store_true",
        help="also score 10,000,000 rows through the local cloud (minutes)",
    )
    parser.add_argument("--keep", action="store_true", help="keep the scratch directory")
    parser.add_argument("--one-chunk", nargs=2, metavar=("FILE", "MODEL"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one_chunk:
        one_chunk(Path(args.one_chunk[0]), Path(args.one_chunk[1]))
        return 0

    import boto3

    from tests.local_cloud_process import LocalCloudProcess, PeakMemory

    scratch = Path(tempfile.mkdtemp(prefix="bench-batch-"))
    model = train()
    model_path = scratch / "model.onnx"
    model_path.write_bytes(model)
    sizes = [args.rows, *([10_000_000] if args.ten_million else [])]
    print(
        f"bench_batch: logistic regression, 20 features; chunks of {CHUNK_ROWS:,} rows; {os.cpu_count()} CPUs"
    )
    uploaded = 0
    cloud = LocalCloudProcess(scratch / "cloud")
    try:
        cloud.start()
        session = boto3.session.Session(
            region_name="us-east-1", aws_access_key_id="testing", aws_secret_access_key="testing"
        )
        s3 = session.client("s3", endpoint_url=cloud.endpoint_url)
        register(cloud, s3, model)
        for rows in sizes:
            started = time.perf_counter()
            csv_path, parquet_path = write_inputs(rows, scratch)
            print(
                f"\n{rows:,} rows: CSV {csv_path.stat().st_size / 1e6:.0f} MB, "
                f"Parquet {parquet_path.stat().st_size / 1e6:.0f} MB "
                f"({rows // ROW_GROUP_ROWS} row groups) written in {time.perf_counter() - started:.1f} s"
            )
            for path in (csv_path, parquet_path):
                baseline = plain(path, model, scratch / "plain-out.parquet")
                with PeakMemory(cloud) as memory:
                    job = through_cloud(cloud, s3, path)
                uploaded += path.stat().st_size
                timings = job["manifest"]["timings"]
                wall = float(timings["wall_seconds"])
                seen = float(job["seen"])
                kind = path.suffix.lstrip(".").upper()
                print(f"  {kind}")
                print(
                    f"    plain pandas + onnxruntime      {baseline:7.2f} s  {rows / baseline / 1e6:6.2f} M rows/s"
                )
                print(
                    f"    local cloud, event -> last part {wall:7.2f} s  {rows / wall / 1e6:6.2f} M rows/s"
                    f"  = {baseline / wall:5.0%} of plain"
                )
                print(
                    f"    local cloud, upload -> _SUCCESS {seen:7.2f} s  {rows / seen / 1e6:6.2f} M rows/s"
                    f"  = {baseline / seen:5.0%} of plain"
                )
                manifest = job["manifest"]
                print(
                    f"    {len(manifest['parts'])} chunks, chunk time {timings['chunk_seconds_total']:.2f} s total, "
                    f"{timings['chunk_seconds_max']:.2f} s max; rows in {manifest['rows_in']:,} = "
                    f"{manifest['rows_scored']:,} + {manifest['rows_rejected']:,}"
                )
                key = f"input/{MODEL}/{path.name}"
                cost = ranged_get_cost(s3, cloud.outputs["BatchBucketName"], key)
                print(f"    local S3: one ranged GET of this object costs {cost * 1000:.1f} ms")
                if rows == args.rows:
                    probe = memory_probe(path, model_path)
                    print(
                        f"    one worker, one chunk of {probe['rows']:,} rows: peak RSS +{probe['delta_mb']:.0f} MB "
                        f"over {probe['baseline_mb']:.0f} MB after imports (tracemalloc peak "
                        f"{probe['traced_peak_mb']:.0f} MB); part file {probe['part_mb']:.1f} MB"
                    )
                print(
                    f"    local cloud (mlambda local up and the processes it started) peak RSS "
                    f"{memory.peak_kb / 1024:.0f} MB during upload + job: {memory.at_peak()}; "
                    f"local up alone (runner and moto) peak {memory.runner_peak_kb / 1024:.0f} MB"
                )
            for path in (csv_path, parquet_path):
                path.unlink()
        # Restart as after a crash, with everything above stored: the time to serving again.
        cloud.kill()
        state_mb = sum(f.stat().st_size for f in (scratch / "cloud" / "state").glob("state.sqlite3*")) / 1e6
        bodies_gb = sum(f.stat().st_size for f in (scratch / "cloud" / "state" / "blobs").rglob("*")) / 1e9
        restart = cloud.start()
        print(
            f"\nrestart (kill -9, then mlambda local up on the same data dir) after {uploaded / 1e9:.2f} GB "
            f"uploaded, {bodies_gb:.2f} GB of bodies and {state_mb:.1f} MB of state on disk: "
            f"{restart:.1f} s to serving"
        )
    finally:
        cloud.stop()
        if args.keep:
            print(f"scratch kept in {scratch}")
        else:
            shutil.rmtree(scratch, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
