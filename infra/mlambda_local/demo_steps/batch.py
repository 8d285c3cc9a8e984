"""Batch prediction: a file dropped under input/<model>/ comes back as scored Parquet, bad rows kept apart."""

from __future__ import annotations

import io
import json
import time
from typing import Any

from mlambda_local.demo import DemoContext, DemoStep, say

ROWS = 20_000
CHUNK_ROWS = 5_000
BAD_ROWS = {3: ("not-a-number", "abc"), 7_777: ("empty cell", ""), 19_998: ("ragged row", None)}


def _scores_csv(ctx: DemoContext) -> tuple[bytes, Any]:
    """ROWS rows resampled (with a little noise) from the registry step's dataset, an id column, three bad rows."""
    import numpy as np
    import pandas as pd

    dataset = ctx.notes["dataset"]
    features: list[str] = dataset["features"]
    rng = np.random.default_rng(0)
    picks = rng.integers(0, len(dataset["X"]), size=ROWS)
    frame = dataset["X"].iloc[picks].reset_index(drop=True)
    frame = frame * rng.normal(1.0, 0.01, size=frame.shape).astype("float32")
    frame.insert(0, "patient_id", [f"p{i:06d}" for i in range(ROWS)])
    text = frame.to_csv(index=False, float_format="%.5g")
    clean = pd.read_csv(io.StringIO(text), dtype={"patient_id": str})
    lines = text.splitlines()
    for row, (_, cell) in BAD_ROWS.items():
        cells = lines[row + 1].split(",")
        lines[row + 1] = ",".join(cells[:5]) if cell is None else ",".join([*cells[:-1], cell])
    say(f"  {ROWS:,} rows x {len(features)} features + patient_id, with bad rows at {sorted(BAD_ROWS)}")
    return ("\n".join(lines) + "\n").encode(), clean


def score_a_file(ctx: DemoContext) -> None:
    """Upload -> S3 event -> fanout -> chunk queue -> workers (2 at a time) -> parts, manifest, _SUCCESS."""
    import boto3
    import numpy as np
    import pyarrow.parquet as pq

    model = ctx.notes["model"]
    client = ctx.client(ctx.notes["app_key"])
    s3 = boto3.client(
        "s3",
        endpoint_url=ctx.cloud.endpoint_url,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    bucket = ctx.cloud.outputs["BatchBucketName"]
    body, clean = _scores_csv(ctx)
    key = f"input/{model}/demo/patients.csv"
    started = time.perf_counter()
    s3.put_object(Bucket=bucket, Key=key, Body=body, Metadata={"chunk-rows": str(CHUNK_ROWS)})
    say(f"  PUT s3://{bucket}/{key} ({len(body) / 1e6:.1f} MB, metadata chunk-rows={CHUNK_ROWS})")

    job_id = ""
    while not job_id:
        jobs = client.get("/jobs", params={"model": model})["jobs"]
        job_id = next((j["job_id"] for j in jobs if j["input"]["key"] == key), "")
        time.sleep(0.2)
    shown = -1
    while True:
        view = client.get(f"/jobs/{job_id}")
        job = view["job"]
        if job["done_chunks"] != shown:
            shown = job["done_chunks"]
            say(f"  GET /jobs/{job_id} -> {job['status']:9} {shown}/{job['total_chunks']} chunks")
        if job["status"] in ("completed", "failed"):
            break
        time.sleep(0.2)
    if job["status"] != "completed":
        raise AssertionError(f"batch job failed: {job.get('reason')}")
    say(
        f"  done in {time.perf_counter() - started:.1f} s from the upload, with model v{job['model_version']}"
    )

    manifest = json.loads(s3.get_object(Bucket=bucket, Key=f"output/{job_id}/_manifest.json")["Body"].read())
    say(f"  _manifest.json: {len(manifest['parts'])} parts, columns {manifest['columns'][:4]}...")
    say(
        f"    rows in {manifest['rows_in']:,} = scored {manifest['rows_scored']:,} "
        f"+ rejected {manifest['rows_rejected']:,}; wall {manifest['timings']['wall_seconds']:.2f} s, "
        f"chunk time {manifest['timings']['chunk_seconds_total']:.2f} s"
    )
    if (
        manifest["rows_in"] != manifest["rows_scored"] + manifest["rows_rejected"]
        or manifest["rows_in"] != ROWS
    ):
        raise AssertionError("rows in != rows scored + rows rejected")
    for part in manifest["rejects"]:
        text = s3.get_object(Bucket=bucket, Key=part["key"])["Body"].read().decode()
        for line in text.splitlines()[1:]:
            say(f"    reject {line}")

    scored = pq.read_table(
        io.BytesIO(s3.get_object(Bucket=bucket, Key=manifest["parts"][0]["key"])["Body"].read())
    )
    estimator = ctx.notes["estimators"][job["model_version"]]
    ids = scored.column("patient_id").to_pylist()
    rows = clean.set_index("patient_id").loc[ids]
    expected = estimator.predict_proba(rows.to_numpy(np.float32))[:, 1]
    gap = float(np.max(np.abs(scored.column("proba_1").to_numpy() - expected)))
    say(f"  part-00000: {scored.num_rows:,} rows; max |batch ORT - sklearn| on proba_1 = {gap:.2e}")
    ctx.notes["batch_job"] = job_id


STEPS = [DemoStep(400, "Batch: score a 20,000-row CSV dropped in S3, with bad rows kept apart", score_a_file)]
