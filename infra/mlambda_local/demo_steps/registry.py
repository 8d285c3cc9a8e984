"""The model registry: train real sklearn models, register them (validated asynchronously, with a
held-out labelled reference), promote through the gate, split traffic, roll back."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from mlambda.client import VersionFailedError
from mlambda_local.demo import DemoContext, DemoStep, expect_error, say
from mlambda_local.sklearn_export import snake_case, to_onnx

MODEL = "breast-cancer"


def _train(ctx: DemoContext) -> dict[str, Any]:
    """Two logistic regressions (different C) on all 30 features, one on 10 features only.

    Each reference sample is the held-out test split with its label column (``target``): the
    registry scores it for the quality baseline, which training rows would flatter.
    """
    import numpy as np
    from sklearn.datasets import load_breast_cancer
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import train_test_split
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    data = load_breast_cancer(as_frame=True)
    names = snake_case(list(data.feature_names))
    x = data.data.set_axis(names, axis=1).astype("float32")
    y = data.target.to_numpy()
    x_train, x_test, y_train, y_test = train_test_split(x, y, test_size=0.3, random_state=0, stratify=y)
    trained: dict[str, Any] = {"features": names, "X": x, "y": y, "X_test": x_test, "y_test": y_test}
    for label, c, columns in (("v1", 1.0, names), ("v2", 0.05, names), ("narrow", 1.0, names[:10])):
        estimator = make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=2000))
        estimator.fit(x_train[columns].to_numpy(np.float32), y_train)
        auc = float(
            roc_auc_score(y_test, estimator.predict_proba(x_test[columns].to_numpy(np.float32))[:, 1])
        )
        path = ctx.workdir / f"{MODEL}-{label}.onnx"
        path.write_bytes(to_onnx(estimator))
        reference = ctx.workdir / f"{MODEL}-{label}-reference.parquet"
        x_test[columns].assign(target=y_test).to_parquet(reference, index=False)
        trained[label] = {
            "estimator": estimator,
            "onnx": path,
            "reference": reference,
            "columns": columns,
            "metrics": {"auc": round(auc, 4)},
            "params": {"C": c, "max_iter": 2000},
        }
        say(f"  trained {label:7} C={c:<5} {len(columns)} features  test AUC {auc:.4f}  -> {path.name}")
    return trained


def _register(ctx: DemoContext, spec: dict[str, Any], **fields: Any) -> dict[str, Any]:
    """Register one trained model and wait for the validator; prints what it found."""
    started = time.perf_counter()
    version = ctx.admin.register(
        MODEL,
        spec["onnx"],
        reference=spec["reference"],
        target="target",
        metrics=spec["metrics"],
        params=spec["params"],
        **fields,
    )
    took = time.perf_counter() - started
    baseline = (version.get("reference") or {}).get("metrics") or {}
    shown = ", ".join(
        f"{name} {m['value']:.3f} [{m['low']:.3f}, {m['high']:.3f}]"
        for name, m in baseline.items()
        if name in ("accuracy", "auc")
    )
    say(
        f"  POST /models/{MODEL}/versions -> 202 v{version['version']} PENDING_VALIDATION -> READY in "
        f"{took:.1f} s: sha256 {version['artifact_sha256'][:12]}, {len(version['smoke_cases'])} smoke cases"
    )
    say(f"    baseline on {version['reference']['labelled_rows']} held-out rows: {shown}")
    for warning in version["warnings"]:
        say(f"    warning {warning['code']}: {warning['message'][:100]}")
    return version


def _file_reading_model(path: Path) -> bytes:
    """An ONNX model whose sparse weights say they live in a file on the server (the wave-1 exploit)."""
    from onnx import TensorProto, helper

    values = helper.make_tensor("w", TensorProto.FLOAT, [4], [0.0] * 4)
    values.ClearField("float_data")
    values.data_location = TensorProto.EXTERNAL
    entry = values.external_data.add()
    entry.key, entry.value = "location", ".mlambda/admin_key"
    indices = helper.make_tensor("w_indices", TensorProto.INT64, [4], [0, 1, 2, 3])
    graph = helper.make_graph(
        [helper.make_node("Add", ["x", "w"], ["y"])],
        "leak",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, 4])],
        sparse_initializer=[helper.make_sparse_tensor(values, indices, [4])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    path.write_bytes(model.SerializeToString())
    return path.read_bytes()


def register_versions(ctx: DemoContext) -> None:
    """Create the model and register two versions, each with a labelled held-out reference sample."""
    trained = _train(ctx)
    ctx.admin.post(
        "/models",
        {"name": MODEL, "description": "Breast cancer diagnosis (sklearn dataset)", "tags": {"team": "demo"}},
    )
    versions: dict[int, dict[str, Any]] = {}
    for label in ("v1", "v2"):
        spec = trained[label]
        version = _register(
            ctx,
            spec,
            training_data_uri="sklearn.datasets.load_breast_cancer",
            source_code_version="demo",
        )
        versions[version["version"]] = spec
    ctx.notes["model"] = MODEL
    ctx.notes["versions"] = sorted(versions)
    ctx.notes["estimators"] = {number: spec["estimator"] for number, spec in versions.items()}
    ctx.notes["dataset"] = {"X": trained["X"], "y": trained["y"], "features": trained["features"]}
    ctx.notes["registry_training"] = trained


def refuse_file_reading_model(ctx: DemoContext) -> None:
    """A model that tries to read a server file through external tensor data ends FAILED."""
    path = ctx.workdir / "reads-a-file.onnx"
    _file_reading_model(path)
    ctx.admin.post("/models", {"name": "reads-a-file"})
    key = ctx.admin.upload("reads-a-file", path, kind="model")
    pending = ctx.admin.post(
        "/models/reads-a-file/versions", {"upload_key": key, "feature_names": ["a", "b", "c", "d"]}
    )
    try:
        ctx.admin.wait_until_ready("reads-a-file", int(pending["version"]), timeout=60)
    except VersionFailedError as exc:  # FAILED, as it must be
        say(f"  sparse initializer pointing at .mlambda/admin_key -> {exc}")
        return
    raise AssertionError("a model reading a local file was validated READY")


def promote_and_split(ctx: DemoContext) -> None:
    """v1 to production through the gate, v2 to staging, a 95/5 canary, then a ramp to 90/10 that keeps the rules."""
    moved = ctx.admin.request("PUT", f"/models/{MODEL}/aliases/production", body={"version": 1})
    for check in moved["gate"]["checks"]:
        say(f"  gate {check['name']:22} {'ok ' if check['passed'] else 'FAIL'} {check['message']}")
    say(f"  production -> v{moved['version']}")
    staged = ctx.admin.request("PUT", f"/models/{MODEL}/aliases/staging", body={"version": 2})
    say(f"  staging    -> v{staged['version']} (no gate: no traffic goes to staging)")
    config = ctx.admin.request(
        "PUT",
        f"/models/{MODEL}/endpoint",
        body={
            "variants": [
                {"name": "v1", "target": "v1", "weight": 95},
                {"name": "v2", "target": "v2", "weight": 5},
            ],
            "sticky_key": "entity_id",
            "rules": {"fallback": {"response": {"label": 0}, "timeout_ms": 500}},
        },
    )
    split = ", ".join(f"{v['target']}={v['weight']}%" for v in config["variants"])
    say(
        f"  endpoint split: {split} (sticky on {config['sticky_key']}, v2 passed the gate), "
        f"revision {config['revision']}"
    )
    ramp = {
        "variants": [
            {"name": "v1", "target": "v1", "weight": 90},
            {"name": "v2", "target": "v2", "weight": 10},
        ]
    }
    ramped = ctx.admin.request(
        "PATCH", f"/models/{MODEL}/endpoint", body=ramp, headers={"If-Match": f'"{config["revision"]}"'}
    )
    say(
        f'  PATCH 80/20 (If-Match: "{config["revision"]}") -> revision {ramped["revision"]}, '
        f"fallback kept: {ramped['rules']['fallback'] == config['rules']['fallback']}"
    )
    stale = expect_error(
        lambda: ctx.admin.request(
            "PATCH", f"/models/{MODEL}/endpoint", body=ramp, headers={"If-Match": f'"{config["revision"]}"'}
        ),
        409,
    )
    say(f"  the same PATCH on revision {config['revision']} again -> {stale.status} {stale.code}")
    error = expect_error(
        lambda: ctx.admin.request(
            "PUT",
            f"/models/{MODEL}/endpoint",
            body={"variants": [{"name": "a", "target": "v1", "weight": 70}]},
        ),
        422,
    )
    say(f"  weights summing to 70       -> {error.status} {error.code}: {error.message}")


def gate_and_rollback(ctx: DemoContext) -> None:
    """A version with another schema fails the gate (as production and as a canary); a good
    promotion, then a rollback; history at a point in time."""
    narrow = ctx.notes["registry_training"]["narrow"]
    version = _register(ctx, narrow, description="only 10 features")
    error = expect_error(
        lambda: ctx.admin.request(
            "PUT", f"/models/{MODEL}/aliases/production", body={"version": version["version"]}
        ),
        422,
    )
    say(f"  promote v{version['version']} (10 features)     -> {error.status} {error.code}: {error.message}")
    canary = {
        "variants": [
            {"name": "v1", "target": "v1", "weight": 95},
            {"name": "narrow", "target": f"v{version['version']}", "weight": 5},
        ]
    }
    error = expect_error(lambda: ctx.admin.request("PATCH", f"/models/{MODEL}/endpoint", body=canary), 422)
    say(f"  ...as a 5 % canary            -> {error.status} {error.code} (the same gate)")
    error = expect_error(
        lambda: ctx.admin.request("PUT", f"/models/{MODEL}/aliases/bad name", body={"version": 1}), 400
    )
    say(f"  alias 'bad name'              -> {error.status} {error.code}")
    before_v2 = datetime.now(UTC)
    time.sleep(0.01)
    moved = ctx.admin.request(
        "PUT", f"/models/{MODEL}/aliases/production", body={"version": 2, "reason": "better calibrated"}
    )
    say(f"  promote v2                    -> production v{moved['previous_version']} -> v{moved['version']}")
    rolled = ctx.admin.post(f"/models/{MODEL}/rollback", {"reason": "demo rollback"})
    say(
        f"  rollback                      -> production v{rolled['previous_version']} -> v{rolled['version']}"
    )
    for entry in ctx.admin.get(f"/models/{MODEL}/history", params={"limit": 8})["entries"]:
        change = ""
        if entry.get("alias"):
            change = f"{entry['alias']} v{entry.get('from_version')} -> v{entry.get('to_version')}"
        elif entry.get("to_version"):
            change = f"v{entry['to_version']}"
        elif entry["action"] == "endpoint_changed":
            change = f"revision {entry['details'].get('revision')}"
        say(f"  {entry['at'][:23]}  {entry['actor']:12} {entry['action']:18} {change}")
    answer = ctx.admin.get(
        f"/models/{MODEL}/history", params={"alias": "production", "at": before_v2.isoformat()}
    )
    say(f"  production at {before_v2.isoformat()[:23]} (before v2) -> v{answer['version']}")


STEPS = [
    DemoStep(
        100, "Registry: train two sklearn models, register them (validated asynchronously)", register_versions
    ),
    DemoStep(105, "Registry: a model that tries to read a server file is refused", refuse_file_reading_model),
    DemoStep(110, "Registry: promote through the gate, stage, split traffic, ramp", promote_and_split),
    DemoStep(120, "Registry: a failing gate, a rollback, history at a point in time", gate_and_rollback),
]
