"""The model registry: train real sklearn models, register, promote through the gate, split, roll back."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

from mlambda_local.commands.models import register_file
from mlambda_local.demo import DemoContext, DemoStep, expect_error, say
from mlambda_local.sklearn_export import snake_case, to_onnx

MODEL = "breast-cancer"


def _train(ctx: DemoContext) -> dict[str, Any]:
    """Two logistic regressions (different C) on all 30 features, one on 10 features only."""
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
        x_train[columns].assign(target=y_train).to_parquet(reference, index=False)
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


def register_versions(ctx: DemoContext) -> None:
    """Create the model and register two versions, each with a reference sample."""
    trained = _train(ctx)
    ctx.admin.post(
        "/models",
        {"name": MODEL, "description": "Breast cancer diagnosis (sklearn dataset)", "tags": {"team": "demo"}},
    )
    versions: dict[int, dict[str, Any]] = {}
    for label in ("v1", "v2"):
        spec = trained[label]
        version = register_file(
            ctx.admin,
            MODEL,
            spec["onnx"],
            reference=spec["reference"],
            feature_names=spec["columns"],
            metrics=spec["metrics"],
            params=spec["params"],
            training_data_uri="sklearn.datasets.load_breast_cancer",
            source_code_version="demo",
        )
        versions[version["version"]] = spec
        say(
            f"  POST /models/{MODEL}/versions -> 201 v{version['version']} "
            f"sha256 {version['artifact_sha256'][:12]} {len(version['smoke_cases'])} smoke cases, "
            f"profile {version['reference_profile_key']}"
        )
    ctx.notes["model"] = MODEL
    ctx.notes["versions"] = sorted(versions)
    ctx.notes["estimators"] = {number: spec["estimator"] for number, spec in versions.items()}
    ctx.notes["dataset"] = {"X": trained["X"], "y": trained["y"], "features": trained["features"]}
    ctx.notes["registry_training"] = trained


def promote_and_split(ctx: DemoContext) -> None:
    """v1 to production through the gate, v2 to staging, a 90/10 split."""
    moved = ctx.admin.request("PUT", f"/models/{MODEL}/aliases/production", body={"version": 1})
    for check in moved["gate"]["checks"]:
        say(f"  gate {check['name']:22} {'ok ' if check['passed'] else 'FAIL'} {check['message']}")
    say(f"  production -> v{moved['version']}")
    staged = ctx.admin.request("PUT", f"/models/{MODEL}/aliases/staging", body={"version": 2})
    say(f"  staging    -> v{staged['version']} (no gate outside production)")
    config = ctx.admin.request(
        "PUT",
        f"/models/{MODEL}/endpoint",
        body={
            "variants": [
                {"name": "v1", "target": "v1", "weight": 90},
                {"name": "v2", "target": "v2", "weight": 10},
            ],
            "sticky_key": "entity_id",
        },
    )
    split = ", ".join(f"{v['target']}={v['weight']}%" for v in config["variants"])
    say(f"  endpoint split: {split} (sticky on {config['sticky_key']})")
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
    """A version with another schema fails the gate; a good promotion, then a rollback; history at a time."""
    narrow = ctx.notes["registry_training"]["narrow"]
    version = register_file(
        ctx.admin,
        MODEL,
        narrow["onnx"],
        reference=narrow["reference"],
        feature_names=narrow["columns"],
        metrics=narrow["metrics"],
        description="only 10 features",
    )
    error = expect_error(
        lambda: ctx.admin.request(
            "PUT", f"/models/{MODEL}/aliases/production", body={"version": version["version"]}
        ),
        422,
    )
    say(f"  promote v{version['version']} (10 features)     -> {error.status} {error.code}: {error.message}")
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
        say(f"  {entry['at'][:23]}  {entry['actor']:12} {entry['action']:18} {change}")
    answer = ctx.admin.get(
        f"/models/{MODEL}/history", params={"alias": "production", "at": before_v2.isoformat()}
    )
    say(f"  production at {before_v2.isoformat()[:23]} (before v2) -> v{answer['version']}")


STEPS = [
    DemoStep(100, "Registry: train two sklearn models and register them", register_versions),
    DemoStep(110, "Registry: promote through the gate, stage, split traffic", promote_and_split),
    DemoStep(120, "Registry: a failing gate, a rollback, history at a point in time", gate_and_rollback),
]
