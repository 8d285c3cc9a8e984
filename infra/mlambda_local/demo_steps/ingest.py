"""Event ingestion: interactions and labels for the predictions just served, feature updates,
a bad event named by index, an opt-out predict honours, and the archive flushed to Parquet."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Any

from mlambda.client import ApiError
from mlambda.schemas.events import event_body
from mlambda_local.demo import DemoContext, DemoStep, expect_error, say

FLUSH_TIMEOUT_S = 60.0
BATCH = 100


def _archived_labels(ctx: DemoContext, since: datetime) -> set[str]:
    """Ids of the label rows in the data bucket's Parquet (read as monitoring reads them)."""
    from mlambda.adapters.archive import ArchiveFrames
    from mlambda.adapters.s3 import ObjectStore
    from mlambda.config import FunctionSettings

    settings = FunctionSettings.load(
        {
            "AWS_ENDPOINT_URL": ctx.cloud.endpoint_url or "",
            "AWS_REGION": getattr(ctx.cloud, "region", "us-east-1"),
        }
    )
    frames = ArchiveFrames(ObjectStore(ctx.cloud.outputs["DataBucketName"], settings))
    columns = frames.events("label", since, datetime.now(UTC) + timedelta(minutes=1)).columns
    return {str(value) for value in columns["id"]} if "id" in columns else set()


def events_for_predictions(ctx: DemoContext) -> None:
    """Views, clicks and ground-truth labels for the predict step's requests, then features."""
    served = ctx.notes["predictions"]
    truth = ctx.notes["dataset"]["y"]
    client = ctx.client(ctx.notes["app_key"])
    now = datetime.now(UTC)
    events: list[dict[str, Any]] = []
    for i, prediction in enumerate(served):
        entity, request = prediction["entity_id"], prediction["request_id"]
        events.append(
            event_body(
                f"view-{request}",
                "interaction",
                entity,
                now,
                kind="view",
                item_id="offer-1",
                request_id=request,
            )
        )
        if i % 4 == 0:
            events.append(
                event_body(
                    f"click-{request}",
                    "interaction",
                    entity,
                    now,
                    kind="click",
                    item_id="offer-1",
                    request_id=request,
                )
            )
        events.append(
            event_body(f"label-{request}", "label", entity, now, request_id=request, value=int(truth[i]))
        )
    events.append(
        event_body(
            "profile-0000",
            "feature_update",
            "patient-0000",
            now,
            group="profile",
            values={"age": 61, "smoker": False},
            add={"visits": 1},
        )
    )
    started = time.perf_counter()
    totals = client.send_events(events, batch_size=BATCH).as_json()
    elapsed = time.perf_counter() - started
    say(
        f"  {len(events)} events in batches of {BATCH} -> accepted {totals['accepted']}, "
        f"rejected {totals['rejected']} ({len(events) / elapsed:.0f} events/s over HTTP)"
    )
    again = client.send_events(events[:BATCH], batch_size=BATCH).as_json()
    say(
        f"  the first batch sent again   -> {again['duplicates']} duplicates, {again['accepted']} applied twice"
    )

    labels = [e["event_id"] for e in events if e["type"] == "label"]
    ctx.notes["labels"] = labels
    bad = [
        event_body("ok-1", "interaction", "visitor-42", now, kind="render", item_id="offer-2"),
        event_body(
            "bad-1", "interaction", "visitor-42", now + timedelta(days=1), kind="click", item_id="offer-2"
        ),
        {"event_id": "bad-2", "type": "purchase", "entity_id": "visitor-42"},
    ]
    body = client.post("/events", {"events": bad})
    for result in body["results"]:
        detail = f"{result.get('code')}: {result.get('reason')}" if result["status"] == "rejected" else ""
        say(f"    [{result['index']}] {result['event_id']:6} {result['status']:9} {detail}")

    features = client.get("/entities/patient-0000/features")
    group = features["groups"][0]
    say(
        f"  GET /entities/patient-0000/features -> {group['group']} {group['values']}, aggregates {features['aggregates']}"
    )

    model = ctx.notes["model"]
    client.post(
        "/events", {"events": [event_body("optout-0003", "interaction", "patient-0003", now, kind="opt_out")]}
    )
    instance = dict(
        zip(ctx.notes["dataset"]["features"], map(float, ctx.notes["dataset"]["X"].iloc[3]), strict=True)
    )
    try:
        answer = client.post(
            f"/models/{model}/predict", {"entity_id": "patient-0003", "instances": [instance]}
        )
    except ApiError as refused:
        if refused.status != 403:
            raise
        say(f"  patient-0003 opted out        -> {refused.status} {refused.code}: {refused.message}")
    else:
        say(f"  patient-0003 opted out        -> served the fallback {answer['predictions'][0]}")
    error = expect_error(lambda: client.delete("/entities/visitor-42"), 403)
    say(f"  DELETE /entities/... with the app key -> {error.status} {error.code} (admin only)")
    purge = ctx.admin.delete("/entities/visitor-42")
    say(
        f"  DELETE /entities/visitor-42 (admin) -> {purge['features_deleted']} feature and {purge['tracking_deleted']} tracking items erased"
    )


def archive_flushed(ctx: DemoContext) -> None:
    """Wait for the archiver (the local SQS poller delivers to it) to write the labels as Parquet."""
    since = datetime.now(UTC) - timedelta(hours=1)
    wanted = set(ctx.notes["labels"])
    deadline = time.monotonic() + FLUSH_TIMEOUT_S
    found: set[str] = set()
    while time.monotonic() < deadline:
        found = _archived_labels(ctx, since) & wanted
        if found == wanted:
            break
        time.sleep(1.0)
    if found != wanted:
        raise AssertionError(
            f"the archiver flushed {len(found)} of {len(wanted)} labels within {FLUSH_TIMEOUT_S:.0f} s"
        )
    say(
        f"  archiver flushed: {len(found)} labels under type=label/ in the data bucket, each exactly once by id"
    )


STEPS = [
    DemoStep(
        300, "Ingest: interactions, labels and features for the served predictions", events_for_predictions
    ),
    DemoStep(310, "Ingest: the archive flushed to partitioned Parquet", archive_flushed),
]
