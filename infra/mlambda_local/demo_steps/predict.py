"""Online inference: predictions over HTTP against the promoted model, the canary split in the counts."""

from __future__ import annotations

import statistics
import time
from collections import Counter
from typing import Any

from mlambda_local.demo import DemoContext, DemoStep, expect_error, say

REQUESTS = 200


def _instances(ctx: DemoContext, start: int, count: int) -> list[dict[str, float]]:
    """Rows of the registry step's dataset as JSON instances."""
    dataset = ctx.notes["dataset"]
    frame = dataset["X"].iloc[start : start + count]
    return [dict(zip(dataset["features"], map(float, row), strict=True)) for row in frame.to_numpy()]


def predictions_over_http(ctx: DemoContext) -> None:
    """Batch request checked against sklearn, 200 entities over the split, bad inputs."""
    import numpy as np

    model = ctx.notes["model"]
    client = ctx.client(ctx.notes["app_key"])
    path = f"/models/{model}/predict"

    # A batch, pinned to one variant, checked against the sklearn estimator it was exported from.
    instances = _instances(ctx, 0, 5)
    body = client.post(path, {"instances": instances, "variant": "v1"})
    estimator = ctx.notes["estimators"][body["version"]]
    features = np.array([list(row.values()) for row in instances], dtype=np.float32)
    expected = estimator.predict_proba(features)[:, 1]
    got = np.array([p["probabilities"]["1"] for p in body["predictions"]])
    say(
        f"  5 instances -> {body['model']} v{body['version']} (variant {body['variant']}): "
        f"labels {[p['label'] for p in body['predictions']]}, "
        f"max |ORT - sklearn| = {float(np.max(np.abs(got - expected))):.2e}"
    )

    # 200 entities, each one request: the 90/10 sticky split shows in the variant counts.
    counts: Counter[str] = Counter()
    variant_of: dict[str, str] = {}
    latencies: list[float] = []
    served: list[dict[str, Any]] = []
    for i, instance in enumerate(_instances(ctx, 0, REQUESTS)):
        entity = f"patient-{i:04d}"
        started = time.perf_counter()
        answer = client.post(path, {"entity_id": entity, "instances": [instance]})
        latencies.append((time.perf_counter() - started) * 1000)
        counts[f"{answer['variant']} (v{answer['version']})"] += 1
        variant_of[entity] = answer["variant"]
        prediction = answer["predictions"][0]
        served.append(
            {
                "request_id": answer["request_id"],
                "entity_id": entity,
                **(
                    {"label": prediction["label"]}
                    if "label" in prediction
                    else {"value": prediction.get("value")}
                ),
            }
        )
    split = ", ".join(f"{name}: {n}" for name, n in sorted(counts.items()))
    say(f"  {REQUESTS} entities -> {split}")
    again = client.post(path, {"entity_id": "patient-0007", "instances": _instances(ctx, 7, 1)})
    say(
        f"  patient-0007 asks again -> variant {again['variant']} "
        f"(first answer: {variant_of['patient-0007']}; sticky on entity_id)"
    )
    say(f"  HTTP round trip through the local cloud: p50 {statistics.median(latencies):.1f} ms")
    ctx.notes["predictions"] = served

    # Bad input is named.
    broken = dict(instances[0])
    broken.pop(next(iter(broken)))
    error = expect_error(lambda: client.post(path, {"instances": [broken]}), 422)
    say(f"  a missing feature          -> {error.status} {error.code}: {error.message}")
    error = expect_error(lambda: client.post(path, {"instances": instances, "variant": "v9"}), 400)
    say(f"  an unknown variant         -> {error.status} {error.code}: {error.message}")
    error = expect_error(lambda: client.post("/models/nobody/predict", {"instances": instances}), 404)
    say(f"  a model with no production -> {error.status} {error.code}")


STEPS = [
    DemoStep(
        200, "Predict: online predictions over HTTP, the canary split in the counts", predictions_over_http
    )
]
