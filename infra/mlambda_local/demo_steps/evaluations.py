"""Human evaluation: v2 judged by two evaluators on archived traffic before production takes it."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Any

from mlambda_local.demo import DemoContext, DemoStep, expect_error, say

ROWS = 30
BOB_ROWS = 20
FLUSH_TIMEOUT_S = 90.0


def _archived_predictions(ctx: DemoContext, model: str) -> int:
    """Prediction objects of ``model`` in the data bucket."""
    import boto3

    s3 = boto3.client("s3", endpoint_url=ctx.cloud.endpoint_url, region_name="us-east-1")
    listed = s3.list_objects_v2(
        Bucket=ctx.cloud.outputs["DataBucketName"], Prefix=f"type=prediction/model={model}/"
    )
    return int(listed.get("KeyCount", 0))


def _truth(ctx: DemoContext) -> dict[tuple[float, ...], int]:
    """The dataset's label of each row, by its feature values (what a domain expert would know)."""
    dataset = ctx.notes["dataset"]
    features = dataset["features"]
    return {
        tuple(round(float(v), 4) for v in row): int(label)
        for row, label in zip(dataset["X"][features].to_numpy(), dataset["y"], strict=True)
    }


def evaluate_before_production(ctx: DemoContext) -> None:
    """Require an evaluation, judge v2 on traffic, complete, promote through the gate."""
    model = ctx.notes["model"]
    admin = ctx.admin
    deadline = time.monotonic() + FLUSH_TIMEOUT_S
    while _archived_predictions(ctx, model) == 0 and time.monotonic() < deadline:
        time.sleep(1.0)

    alice = ctx.client(admin.post("/keys", {"name": "alice", "scopes": ["evaluate"]})["api_key"])
    bob = ctx.client(admin.post("/keys", {"name": "bob", "scopes": ["evaluate"]})["api_key"])
    say("  POST /keys alice, bob with the 'evaluate' scope (they judge; registry:write keys manage)")
    admin.request("PATCH", f"/models/{model}", body={"require_evaluation": True})
    say(f"  PATCH /models/{model} require_evaluation=true   (mlambda evaluations require {model} on)")
    error = expect_error(
        lambda: admin.request("PUT", f"/models/{model}/aliases/production", body={"version": 2}), 409
    )
    say(f"  promote v2 -> {error.status} {error.code}: {error.message[:110]}...")
    error = expect_error(
        lambda: alice.post(f"/models/{model}/evaluations", {"version": 2, "source": {"type": "reference"}}),
        403,
    )
    say(f"  alice creates an evaluation -> {error.status} {error.code} (creating needs registry:write)")

    now = datetime.now(UTC)
    started = time.perf_counter()
    evaluation = admin.post(
        f"/models/{model}/evaluations",
        {
            "version": 2,
            "source": {
                "type": "traffic",
                "start": (now - timedelta(hours=1)).isoformat(),
                "end": (now + timedelta(minutes=1)).isoformat(),
            },
            "rows": ROWS,
            "name": "v2 before production",
            "instructions": "Is the diagnosis right for this patient?",
        },
    )
    eid = evaluation["evaluation_id"]
    source = evaluation["source"]
    say(
        f"  POST /models/{model}/evaluations -> 201 {eid}: {evaluation['rows']} rows drawn from "
        f"{source['available']} archived predictions of the last hour, explained with "
        f"{evaluation['explanation_method']} ({time.perf_counter() - started:.2f} s)"
    )

    truth = _truth(ctx)
    rows: list[dict[str, Any]] = []
    params: dict[str, Any] = {"limit": 100}
    while True:
        page = alice.get(f"/evaluations/{eid}/rows", params=params)
        rows.extend(page["rows"])
        if not page.get("next_token"):
            break
        params["next_token"] = page["next_token"]
    first = rows[0]
    top = sorted(first["explanation"]["attributions"].items(), key=lambda kv: -abs(kv[1]))[:3]
    say(
        f"  row 0: predicted {first['prediction']['label']} "
        f"(p={first['prediction']['probabilities'][str(first['prediction']['label'])]:.3f}), "
        f"top attributions {', '.join(f'{name} {value:+.2f}' for name, value in top)}"
    )
    for row in rows:
        key = tuple(round(float(row["inputs"][name]), 4) for name in ctx.notes["dataset"]["features"])
        right = truth.get(key, row["prediction"]["label"])
        predicted = row["prediction"]["label"]
        judged = {"verdict": "correct"} if right == predicted else {"verdict": "incorrect", "label": right}
        alice.request("PUT", f"/evaluations/{eid}/rows/{row['index']}/verdict", body=judged)
        if row["index"] < BOB_ROWS:
            # Bob doubts two right answers: evaluators disagree sometimes, and the figures say how much.
            doubt = row["index"] in (3, 11) and judged["verdict"] == "correct"
            said = {"verdict": "incorrect", "comment": "<b>unsure</b>: borderline case"} if doubt else judged
            bob.request("PUT", f"/evaluations/{eid}/rows/{row['index']}/verdict", body=said)
    say(
        f"  alice judged {len(rows)} rows, bob the first {BOB_ROWS} (PUT /evaluations/{eid}/rows/<i>/verdict)"
    )
    again = alice.request("PUT", f"/evaluations/{eid}/rows/0/verdict", body={"verdict": "correct"})
    say(f"  a verdict sent twice -> changed={again['changed']} (revision {again['verdict']['revision']})")
    mine = bob.get(f"/evaluations/{eid}/verdicts")["verdicts"]
    say(f"  bob lists verdicts while open -> {len(mine)}, all his own (evaluators judge blind)")

    done = admin.post(f"/evaluations/{eid}/complete", {})
    results = done["results"]
    shared = results["inter_evaluator"]
    say(
        f"  POST /evaluations/{eid}/complete -> {done['status']}: coverage {results['coverage']:.0%}, "
        f"agreement with v2 {results['agreement']:.1%}, accuracy on evaluators' labels {results['accuracy']:.1%}"
    )
    for figures in results["per_class"]:
        say(
            f"    class {figures['label']}: precision {figures['precision']:.2f} recall "
            f"{figures['recall'] if figures['recall'] is not None else float('nan'):.2f} "
            f"({figures['actual']} verdicts say it is this class)"
        )
    alpha = shared["krippendorff_alpha"]
    say(
        f"    alice vs bob on {shared['rows']} rows: pairwise agreement {shared['pairwise_agreement']:.0%}, "
        f"Krippendorff's alpha {alpha if alpha is None else round(alpha, 3)} (1 = perfect, 0 = chance: "
        "when nearly every verdict is 'correct', chance alone agrees that often)"
    )
    for comment in results["comments"][:2]:
        say(
            f"    comment, row {comment['row']} by {comment['evaluator']}: {comment['comment']!r} (kept as text)"
        )
    published = admin.get(f"/models/{model}/versions/2/evaluations")["evaluations"][0]
    say(
        f"  GET /models/{model}/versions/2/evaluations -> {published['evaluation_id']} by "
        f"{', '.join(published['evaluators'])}, agreement {published['agreement']:.3f}"
    )
    moved = admin.request("PUT", f"/models/{model}/aliases/production", body={"version": 2})
    check = next(c for c in moved["gate"]["checks"] if c["name"] == "evaluation_completed")
    say(f"  promote v2 -> production v{moved['version']}; gate: {check['message']}")
    rolled = admin.post(f"/models/{model}/rollback", {"reason": "demo: monitoring watches v1"})
    admin.request("PATCH", f"/models/{model}", body={"require_evaluation": False})
    say(f"  rollback -> production v{rolled['version']} (no gate on the way back); requirement lifted again")


STEPS = [
    DemoStep(
        450,
        "Evaluation: two evaluators judge v2 on archived traffic before production takes it",
        evaluate_before_production,
    )
]
