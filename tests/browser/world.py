"""A local cloud with real models, traffic, monitoring runs, a batch job and features: what the
console's browser tests and ``make screenshots`` look at.

Everything goes through the platform's own front doors (HTTP API, the batch bucket, the
schedule trigger), as a user's tools would: no store is written behind the API's back.
"""

from __future__ import annotations

import argparse
import io
import json
import signal
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
import numpy as np
import pandas as pd

from mlambda.schemas.registry_api import RegisterVersionRequest
from mlambda_local.bootstrap import ensure_admin_key
from mlambda_local.client import ApiClient, Target
from mlambda_local.cloud import LocalCloud
from mlambda_local.sklearn_export import snake_case, to_onnx

REPO_ROOT = Path(__file__).resolve().parents[2]
MODEL = "breast-cancer"
XSS_MODEL = "xss-probe"
XSS = "<img src=x onerror=alert(1)>"
FEATURE_COUNT = 8
ARCHIVE_TIMEOUT_S = 90.0
JOB_TIMEOUT_S = 90.0
READY_TIMEOUT_S = 120.0
# The registry names the reference's label column (`target`) once versions are validated apart.
TAKES_TARGET = "target" in RegisterVersionRequest.model_fields


@dataclass
class World:
    """The running cloud, its URLs and one key per role."""

    cloud: LocalCloud
    data_dir: Path
    keys: dict[str, str] = field(default_factory=dict)
    notes: dict[str, Any] = field(default_factory=dict)

    @property
    def api_url(self) -> str:
        return str(self.cloud.api_url)

    @property
    def console_url(self) -> str:
        return f"{self.api_url}/console/"

    def client(self, role: str = "admin") -> ApiClient:
        return ApiClient(Target(api_url=self.api_url, api_key=self.keys[role]))

    def aws(self, service: str) -> Any:
        return boto3.client(service, endpoint_url=self.cloud.endpoint_url, region_name=self.cloud.region)


@dataclass
class AttachedWorld:
    """A world another process runs (``python -m tests.browser.world``): its URLs, keys and notes."""

    console_url: str
    api_url: str
    keys: dict[str, str]
    notes: dict[str, Any]

    @classmethod
    def load(cls, path: Path) -> AttachedWorld:
        return cls(**json.loads(path.read_text()))


ROLES: dict[str, list[str]] = {
    "reader": ["registry:read"],
    "writer": ["registry:read", "registry:write", "predict"],
    "predictor": ["predict"],
    "analyst": ["registry:read", "predict", "ingest"],
    "evaluator": ["evaluate"],
}


def _dataset() -> tuple[pd.DataFrame, np.ndarray, list[str]]:
    """Breast-cancer data with its first FEATURE_COUNT features (small forms, readable charts)."""
    from sklearn.datasets import load_breast_cancer

    data = load_breast_cancer(as_frame=True)
    names = snake_case(list(data.feature_names))[:FEATURE_COUNT]
    frame = data.data.iloc[:, :FEATURE_COUNT].set_axis(names, axis=1).astype("float32")
    return frame, data.target.to_numpy(), names


def wait_ready(client: ApiClient, model: str, version: int) -> dict[str, Any]:
    """The version once validation is over (a version without a status is READY)."""
    deadline = time.monotonic() + READY_TIMEOUT_S
    while True:
        record = dict(client.get(f"/models/{model}/versions/{version}"))
        status = record.get("status", "READY")
        if status != "PENDING_VALIDATION":
            if status != "READY":
                raise AssertionError(f"{model} v{version} is {status}: {record.get('failure')}")
            return record
        if time.monotonic() > deadline:
            raise AssertionError(f"{model} v{version} still pending after {READY_TIMEOUT_S:.0f} s")
        time.sleep(0.3)


def _register_models(world: World, workdir: Path) -> None:
    from sklearn.ensemble import GradientBoostingClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import accuracy_score, roc_auc_score
    from sklearn.model_selection import train_test_split
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    admin = world.client()
    x, y, names = _dataset()
    x_train, x_test, y_train, y_test = train_test_split(x, y, test_size=0.3, random_state=0, stratify=y)
    admin.post(
        "/models",
        {
            "name": MODEL,
            "description": "Breast cancer diagnosis from cell nuclei measurements (sklearn dataset).",
            "owner": "alice",
            "tags": {"team": "oncology", "task": "binary"},
        },
    )
    admin.post(
        "/models",
        {
            "name": "churn",
            "description": "Customer churn (no version yet).",
            "owner": "bob",
            "tags": {"team": "growth"},
        },
    )
    candidates = {
        1: (
            "logistic regression",
            make_pipeline(StandardScaler(), LogisticRegression(C=1.0, max_iter=2000)),
            {"C": 1.0},
        ),
        2: (
            "gradient boosting",
            GradientBoostingClassifier(n_estimators=40, max_depth=2, random_state=0),
            {"n_estimators": 40, "max_depth": 2},
        ),
    }
    for number, (kind, estimator, params) in candidates.items():
        estimator.fit(x_train.to_numpy(np.float32), y_train)
        proba = estimator.predict_proba(x_test.to_numpy(np.float32))[:, 1]
        metrics = {
            "auc": round(float(roc_auc_score(y_test, proba)), 4),
            "accuracy": round(float(accuracy_score(y_test, proba > 0.5)), 4),
        }
        onnx_path = workdir / f"v{number}.onnx"
        onnx_path.write_bytes(to_onnx(estimator))
        reference = workdir / f"v{number}-reference.parquet"
        (x_test.assign(label=y_test) if TAKES_TARGET else x_test).to_parquet(reference, index=False)
        created = admin.register(
            MODEL,
            onnx_path,
            reference=reference,
            features=names,
            metrics=metrics,
            params={"estimator": kind, **params},
            training_data_uri="sklearn.datasets.load_breast_cancer#train",
            training_data_version="2024-01",
            source_code_version=f"git:{number:07x}",
            **({"target": "label"} if TAKES_TARGET else {}),
        )
        wait_ready(admin, MODEL, int(created["version"]))
    # v3: no reference sample, so no explainer (predict answers 409 explainer_unavailable).
    plain = workdir / "v1.onnx"
    created = admin.register(
        MODEL, plain, features=names, metrics={"auc": 0.99}, source_code_version="git:0000003"
    )
    wait_ready(admin, MODEL, int(created["version"]))
    admin.request("PUT", f"/models/{MODEL}/aliases/production", body={"version": 1})
    admin.request("PUT", f"/models/{MODEL}/aliases/staging", body={"version": 2})
    admin.request(
        "PUT",
        f"/models/{MODEL}/endpoint",
        body={
            "variants": [
                {"name": "main", "target": "production", "weight": 90},
                {"name": "canary", "target": "v2", "weight": 10},
                {"name": "plain", "target": "v3", "weight": 0},
            ],
            "sticky_key": "entity_id",
        },
    )
    world.notes.update(features=names, x_test=x_test, y_test=y_test)
    admin.post("/models", {"name": XSS_MODEL, "description": XSS, "owner": XSS, "tags": {"note": XSS}})


def _archived_rows(world: World, prefix: str) -> int:
    """Rows of the data bucket's Parquet objects under ``prefix`` (from their footers)."""
    import pyarrow.parquet as pq

    s3 = world.aws("s3")
    bucket = world.cloud.outputs["DataBucketName"]
    rows = 0
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for entry in page.get("Contents", []):
            body = s3.get_object(Bucket=bucket, Key=entry["Key"])["Body"].read()
            rows += pq.ParquetFile(io.BytesIO(body)).metadata.num_rows
    return rows


def _serve_and_monitor(world: World) -> None:
    """Three rounds of traffic, each more shifted, with their true labels, each followed by a
    monitoring run: trends across runs to look at."""
    client = world.client("predictor")
    ingest = world.client()
    x_test: pd.DataFrame = world.notes["x_test"]
    y_test: np.ndarray = world.notes["y_test"]
    names: list[str] = world.notes["features"]
    rng = np.random.default_rng(11)
    sent = 0
    stamp = pd.Timestamp.now(tz="UTC").floor("s").isoformat().replace("+00:00", "Z")
    for round_number, scale in enumerate((1.0, 1.25, 1.6)):
        picked = rng.choice(len(x_test), 120)
        frame = x_test.iloc[picked].reset_index(drop=True)
        frame[names[:2]] = frame[names[:2]] * scale * rng.uniform(0.97, 1.03, (len(frame), 2))
        truth = y_test[picked]
        for start in range(0, len(frame), 40):
            rows = frame.iloc[start : start + 40]
            request_id = f"seed-{round_number}-{start}"
            instances = [dict(zip(names, map(float, row), strict=True)) for row in rows.to_numpy()]
            client.post(
                f"/models/{MODEL}/predict",
                {"instances": instances, "variant": "main", "request_id": request_id},
            )
            labels = [
                {
                    "event_id": f"label-{request_id}-{row}",
                    "type": "label",
                    "entity_id": f"patient-{round_number}-{start + row}",
                    "timestamp": stamp,
                    "payload": {"request_id": request_id, "row": row, "value": int(truth[start + row])},
                }
                for row in range(len(rows))
            ]
            ingest.post("/events", {"events": labels})
        sent += len(frame)
        deadline = time.monotonic() + ARCHIVE_TIMEOUT_S
        while (
            _archived_rows(world, f"type=prediction/model={MODEL}/") < sent
            or _archived_rows(world, "type=label/") < sent
        ):
            if time.monotonic() > deadline:
                raise AssertionError("the archiver did not flush the predictions and labels in time")
            time.sleep(0.5)
        world.cloud.trigger("MonitorFunction")


def _batch_job(world: World) -> None:
    """A CSV with two bad rows scored by production: a completed job with rejects."""
    x_test: pd.DataFrame = world.notes["x_test"]
    frame = x_test.head(60).copy()
    frame.insert(0, "customer_id", [f"c-{i}" for i in range(len(frame))])
    text = frame.to_csv(index=False).splitlines()
    text[3] = text[3].split(",", 1)[0] + "," + ",".join(["not-a-number"] * FEATURE_COUNT)
    text[7] = text[7].split(",", 1)[0] + ",1.0"
    world.aws("s3").put_object(
        Bucket=world.cloud.outputs["BatchBucketName"],
        Key=f"input/{MODEL}/scores.csv",
        Body="\n".join(text).encode(),
    )
    client = world.client("predictor")
    deadline = time.monotonic() + JOB_TIMEOUT_S
    while True:
        jobs = client.get("/jobs", params={"model": MODEL}).get("jobs", [])
        if jobs and jobs[0]["status"] in ("completed", "failed"):
            world.notes["job_id"] = jobs[0]["job_id"]
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"the batch job did not finish: {jobs}")
        time.sleep(0.5)


def _features(world: World) -> None:
    now = pd.Timestamp.now(tz="UTC").floor("s")
    events = [
        {
            "event_id": "seed-profile-1",
            "type": "feature_update",
            "entity_id": "patient-17",
            "timestamp": (now - pd.Timedelta(minutes=3)).isoformat().replace("+00:00", "Z"),
            "payload": {"group": "measurements", "values": dict.fromkeys(world.notes["features"], 12.5)},
        },
        {
            "event_id": "seed-visit-1",
            "type": "feature_update",
            "entity_id": "patient-17",
            "timestamp": (now - pd.Timedelta(minutes=2)).isoformat().replace("+00:00", "Z"),
            "payload": {
                "group": "visits",
                "values": {"clinic": "north", "visits_90d": 3},
                "add": {"spend": 120.0},
            },
        },
    ]
    world.client().post("/events", {"events": events})


def _keys(world: World) -> None:
    admin = world.client()
    for role, scopes in ROLES.items():
        world.keys[role] = admin.post("/keys", {"name": f"{role}-key", "scopes": scopes})["api_key"]
    world.keys["xss"] = admin.post("/keys", {"name": "xss-key", "scopes": ["registry:read"]})["api_key"]


def describe(world: World) -> dict[str, Any]:
    """What ``AttachedWorld`` reads back."""
    return {
        "console_url": world.console_url,
        "api_url": world.api_url,
        "keys": world.keys,
        "notes": {"job_id": world.notes.get("job_id")},
    }


@contextmanager
def running_world(data_dir: Path) -> Iterator[World]:
    """A local cloud of the platform's template with everything above in it."""
    # Worker processes, as Lambda runs functions: one invocation per environment at a time. The
    # in-process mode runs a function's invocations in threads over one module, and the page's
    # parallel requests (a model page asks the registry function three things at once) would race
    # on its API resolver's current event and get each other's answers
    # (powertools keeps the current event on a class attribute, shared by every resolver).
    with LocalCloud(REPO_ROOT / "template.yaml", data_dir) as cloud:
        world = World(cloud, data_dir)
        world.keys["admin"] = ensure_admin_key(
            data_dir, cloud.outputs["ApiKeysTableName"], cloud.endpoint_url
        )
        workdir = data_dir / "work"
        workdir.mkdir(parents=True, exist_ok=True)
        _keys(world)
        _register_models(world, workdir)
        _features(world)
        _serve_and_monitor(world)
        _batch_job(world)
        yield world


def serve(argv: list[str] | None = None) -> None:
    """Run a world until Ctrl-C, its description in <dir>/world.json (for MLAMBDA_CONSOLE_WORLD)."""
    parser = argparse.ArgumentParser(description=serve.__doc__)
    parser.add_argument("data_dir", type=Path)
    args = parser.parse_args(argv)
    args.data_dir.mkdir(parents=True, exist_ok=True)
    stop = threading.Event()
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    with running_world(args.data_dir) as world:
        (args.data_dir / "world.json").write_text(json.dumps(describe(world)))
        print(
            f"console {world.console_url}\nMLAMBDA_CONSOLE_WORLD={args.data_dir / 'world.json'}", flush=True
        )
        stop.wait()


if __name__ == "__main__":
    serve()
