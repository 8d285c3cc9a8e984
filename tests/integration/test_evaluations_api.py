"""The evaluations function on moto with the template's tables and buckets: every route and scope,
uploads and traffic as sources, concurrent verdicts on DynamoDB transactions, publication to the
registry and the production gate that reads it."""

from __future__ import annotations

import json
import threading
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote

import boto3
import numpy as np
import pytest
import requests

from mlambda.adapters import tabular
from mlambda.adapters.dynamodb import DynamoTable
from mlambda.adapters.evaluations import DynamoEvaluationPublications, DynamoEvaluationStore
from mlambda.adapters.registry import DynamoModelCatalog
from mlambda.config import EvaluationsSettings, function_environment
from mlambda.schemas.archive import ArchiveEnvelope, archive_row, object_key, partition_prefix
from mlambda.schemas.evaluations import VerdictRequest
from mlambda.services.evaluations.service import EvaluationService
from tests.batch_support import register_model
from tests.conftest import forged_token as forged
from tests.conftest import load_event
from tests.integration.conftest import Stack
from tests.integration.test_registry_api import Serialized
from tests.unit.fakes_batch import FEATURES, classifier_model, make_frame

MODEL = "churn"
OWNER = "registry:read,registry:write"
EVALUATOR = "evaluate"


def call(
    stack: Stack,
    function: str,
    method: str,
    path: str,
    body: Any = None,
    *,
    scopes: str,
    name: str = "demo-app",
    **query: str,
) -> tuple[int, Any]:
    """One API Gateway request, as the authorizer lets it through with ``scopes`` under ``name``."""
    event = load_event(
        "apigw_rest",
        path=path,
        resource=path,
        httpMethod=method,
        body=json.dumps(body) if body is not None else None,
        queryStringParameters=query or None,
        multiValueQueryStringParameters={k: [v] for k, v in query.items()} or None,
    )
    event["requestContext"]["authorizer"].update(scopes=scopes, name=name, key_id=f"key-{name}")
    response = stack.invoke(function, event)
    headers = {**(response.get("headers") or {}), **(response.get("multiValueHeaders") or {})}
    assert str(headers.get("Content-Type")).find("application/json") >= 0
    return response["statusCode"], json.loads(response["body"]) if response["body"] else None


def api(stack: Stack, method: str, path: str, body: Any = None, **kwargs: Any) -> tuple[int, Any]:
    return call(stack, "EvaluationsFunction", method, path, body, **kwargs)


@pytest.fixture
def churn(stack: Stack) -> dict[str, Any]:
    """The 20-feature classifier registered as churn v1 (with its explainer), behind production."""
    s3 = boto3.client("s3", region_name="us-east-1")
    version = register_model(
        s3, stack.outputs["RegistryTableName"], stack.outputs["ArtifactsBucketName"], explained=True
    )
    return {"s3": s3, "version": version}


def inline_rows(count: int, seed: int = 0) -> list[dict[str, Any]]:
    frame = make_frame(count, seed)
    return [
        {"ticket": row["id"], **{name: float(row[name]) for name in FEATURES}}
        for row in frame.to_dict(orient="records")
    ]


def create(stack: Stack, rows: int = 6, **fields: Any) -> dict[str, Any]:
    body = {"version": 1, "source": {"type": "rows", "rows": inline_rows(rows)}, **fields}
    status, evaluation = api(stack, "POST", f"/models/{MODEL}/evaluations", body, scopes=OWNER, name="owner")
    assert status == 201, evaluation
    return dict(evaluation)


def verdict(stack: Stack, eid: str, index: int, who: str, **body: Any) -> tuple[int, Any]:
    return api(
        stack,
        "PUT",
        f"/evaluations/{eid}/rows/{index}/verdict",
        {"verdict": "correct", **body},
        scopes=EVALUATOR,
        name=who,
    )


def test_an_evaluation_is_created_judged_completed_and_published_to_the_version(
    stack: Stack, churn: dict[str, Any]
) -> None:
    # Given an evaluation of 6 inline rows (ticket ids as context)
    evaluation = create(stack, 6, name="round 1", instructions="Would this customer churn?")
    eid = evaluation["evaluation_id"]
    assert (evaluation["status"], evaluation["rows"], evaluation["explained"]) == ("open", 6, True)
    # When two evaluators judge: alice every row, bob the first three (one disagreement, with a comment)
    status, page = api(stack, "GET", f"/evaluations/{eid}/rows", scopes=EVALUATOR, name="alice", limit="4")
    assert status == 200 and [r["index"] for r in page["rows"]] == [0, 1, 2, 3] and page["next_token"]
    first = page["rows"][0]
    assert first["context"] == {"ticket": "row-0"} and first["explanation"]["method"] == "linear"
    rest = api(
        stack,
        "GET",
        f"/evaluations/{eid}/rows",
        scopes=EVALUATOR,
        name="alice",
        next_token=page["next_token"],
    )[1]
    assert [r["index"] for r in rest["rows"]] == [4, 5] and rest["next_token"] is None
    for index in range(6):
        assert verdict(stack, eid, index, "alice")[0] == 200
    predicted = first["prediction"]["label"]
    for index in range(3):
        body = (
            {"verdict": "incorrect", "label": 1 - predicted, "comment": "<script>x</script>"}
            if index == 0
            else {}
        )
        assert verdict(stack, eid, index, "bob", **body)[0] == 200
    # the same verdict again changes nothing
    status, again = verdict(stack, eid, 1, "bob")
    assert (status, again["changed"], again["verdict"]["revision"]) == (200, False, 1)
    # bob sees only his verdicts, the owner all of them
    mine = api(stack, "GET", f"/evaluations/{eid}/verdicts", scopes=EVALUATOR, name="bob")[1]
    assert {v["evaluator"] for v in mine["verdicts"]} == {"bob"}
    every = api(stack, "GET", f"/evaluations/{eid}/verdicts", scopes=OWNER, name="owner")[1]
    assert len(every["verdicts"]) == 9
    # Then completing publishes the results to churn v1, with the evaluators' names
    status, done = api(stack, "POST", f"/evaluations/{eid}/complete", {}, scopes=OWNER, name="owner")
    assert status == 200, done
    assert done["status"] == "completed" and done["results"]["verdicts"] == 9
    assert done["results"]["comments"][0]["comment"] == "<script>x</script>"
    assert done["results"]["inter_evaluator"]["rows"] == 3
    status, published = api(stack, "GET", f"/models/{MODEL}/versions/v1/evaluations", scopes="registry:read")
    assert status == 200
    assert [(p["evaluation_id"], p["evaluators"]) for p in published["evaluations"]] == [
        (eid, ["alice", "bob"])
    ]
    history = call(
        stack, "RegistryFunction", "GET", f"/models/{MODEL}/history", scopes="registry:read", limit="1"
    )[1]
    assert history["entries"][0]["action"] == "evaluation_completed"
    assert history["entries"][0]["details"]["evaluation_id"] == eid
    # and the closed evaluation takes no verdict
    status, closed = verdict(stack, eid, 0, "carol")
    assert (status, closed["code"]) == (409, "evaluation_closed")


def test_scopes_keep_evaluators_managers_and_readers_apart(stack: Stack, churn: dict[str, Any]) -> None:
    evaluation = create(stack, 2)
    eid = evaluation["evaluation_id"]
    body = {"version": 1, "source": {"type": "rows", "rows": inline_rows(1)}}
    cases = [
        ("POST", f"/models/{MODEL}/evaluations", body, EVALUATOR, 403),
        ("POST", f"/evaluations/{eid}/complete", {}, EVALUATOR, 403),
        ("POST", f"/evaluations/{eid}/cancel", {}, EVALUATOR, 403),
        ("PUT", f"/evaluations/{eid}/rows/0/verdict", {"verdict": "correct"}, OWNER, 403),
        ("GET", f"/evaluations/{eid}", None, "predict", 403),
        ("GET", f"/evaluations/{eid}/rows", None, "registry:read", 403),
        ("GET", f"/models/{MODEL}/versions/1/evaluations", None, EVALUATOR, 403),
        ("GET", f"/evaluations/{eid}", None, EVALUATOR, 200),
        ("GET", f"/evaluations/{eid}/results", None, OWNER, 200),
        ("GET", f"/models/{MODEL}/evaluations", None, "admin", 200),
        ("PUT", f"/evaluations/{eid}/rows/0/verdict", {"verdict": "correct"}, "admin", 200),
    ]
    for method, path, payload, scopes, expected in cases:
        status, answer = api(stack, method, path, payload, scopes=scopes)
        assert status == expected, (method, path, scopes, answer)
        if expected == 403:
            assert answer["code"] == "forbidden"


def test_bad_requests_get_precise_errors(stack: Stack, churn: dict[str, Any]) -> None:
    evaluation = create(stack, 2)
    eid = evaluation["evaluation_id"]
    base = f"/models/{MODEL}/evaluations"
    bad_creates = [
        (
            {"version": 1, "source": {"type": "rows", "rows": inline_rows(1)}, "rows": 501},
            422,
            "validation_error",
        ),
        ({"version": 1, "source": {"type": "nowhere"}}, 422, "validation_error"),
        (
            {
                "version": 1,
                "source": {
                    "type": "rows",
                    "rows": [{**inline_rows(1)[0], **{f"note{i}": "x" * 1000 for i in range(100)}}],
                },
            },
            422,
            "validation_error",
        ),
        (
            {
                "version": 1,
                "source": {"type": "rows", "rows": [{**inline_rows(1)[0], "note": {"deep": [1]}}]},
            },
            422,
            "validation_error",
        ),
        (
            {"version": 1, "source": {"type": "rows", "rows": [{**inline_rows(1)[0], "note": "x" * 5000}]}},
            422,
            "validation_error",
        ),
        ({"version": 10**40, "source": {"type": "rows", "rows": inline_rows(1)}}, 422, "validation_error"),
        (
            {
                "version": 1,
                "source": {"type": "traffic", "start": "2026-01-01T00:00:00Z", "end": "2026-02-01T00:00:00Z"},
            },
            422,
            "validation_error",
        ),
        ({"version": 7, "source": {"type": "rows", "rows": inline_rows(1)}}, 404, "version_not_found"),
        ({"version": 1, "source": {"type": "rows", "rows": [{"f0": 1.0}]}}, 422, "invalid_features"),
        ({"version": 1, "source": {"type": "reference"}}, 409, "reference_unavailable"),
    ]
    for body, status, code in bad_creates:
        got, answer = api(stack, "POST", base, body, scopes=OWNER)
        assert (got, answer["code"]) == (status, code), body
    assert api(stack, "POST", "/models/NOPE/evaluations", bad_creates[0][0], scopes=OWNER)[0] == 422
    assert (
        api(stack, "GET", "/evaluations/ffffffffffffffffffff", scopes=EVALUATOR)[1]["code"]
        == "evaluation_not_found"
    )
    assert api(stack, "GET", f"/evaluations/{quote('../../x', safe='')}", scopes=EVALUATOR)[0] == 404
    assert api(stack, "GET", f"/evaluations/{eid}/rows/9", scopes=EVALUATOR)[1]["code"] == "row_not_found"
    assert api(stack, "GET", f"/evaluations/{eid}/rows/-1", scopes=EVALUATOR)[1]["code"] == "row_not_found"
    forged = api(stack, "GET", f"/evaluations/{eid}/rows", scopes=EVALUATOR, next_token="eyJwayI6ICJ4In0")
    assert (forged[0], forged[1]["code"]) == (400, "invalid_token")
    long_comment = {"verdict": "correct", "comment": "x" * 2001}
    assert verdict(stack, eid, 0, "alice", **long_comment)[0] == 422
    assert verdict(stack, eid, 0, "alice", verdict="maybe")[0] == 422
    incomplete = api(stack, "POST", f"/evaluations/{eid}/complete", {}, scopes=OWNER)
    assert (incomplete[0], incomplete[1]["code"]) == (409, "no_verdicts")


def test_an_uploaded_csv_is_a_source_and_is_deleted_once_consumed(
    stack: Stack, churn: dict[str, Any]
) -> None:
    # Given a CSV put through the registry's upload URL with kind evaluation
    status, ticket = call(
        stack,
        "RegistryFunction",
        "POST",
        f"/models/{MODEL}/uploads",
        {"filename": "tickets.csv", "kind": "evaluation"},
        scopes=OWNER,
    )
    assert status == 201
    frame = make_frame(40, seed=5)
    frame.loc[3, "f2"] = None
    body = frame.to_csv(index=False).encode()
    assert requests.put(ticket["url"], data=body, timeout=10).status_code == 200
    bucket = stack.outputs["ArtifactsBucketName"]
    # When
    request = {"version": 1, "source": {"type": "upload", "upload_key": ticket["upload_key"]}, "rows": 10}
    status, evaluation = api(stack, "POST", f"/models/{MODEL}/evaluations", request, scopes=OWNER)
    # Then
    assert status == 201, evaluation
    assert evaluation["source"]["available"] == 39 and evaluation["source"]["skipped"] == 1
    assert evaluation["rows"] == 10
    with pytest.raises(churn["s3"].exceptions.ClientError):
        churn["s3"].head_object(Bucket=bucket, Key=ticket["upload_key"])
    row = api(stack, "GET", f"/evaluations/{evaluation['evaluation_id']}/rows/0", scopes=EVALUATOR)[1]
    assert set(row["context"]) == {"id"} and set(row["inputs"]) == set(FEATURES)


def test_archived_traffic_of_a_window_is_a_source(stack: Stack, churn: dict[str, Any]) -> None:
    # Given predictions archived as the archiver writes them (one of them a shadow answer)
    at = datetime(2026, 3, 1, 9, 30, tzinfo=UTC)
    frame = make_frame(5, seed=9)
    envelopes = [
        ArchiveEnvelope(
            id=f"req-{i}:0",
            type="prediction",
            timestamp=at + timedelta(minutes=i),
            model=MODEL,
            payload={
                "request_id": f"req-{i}",
                "row": 0,
                "version": 1,
                "variant": "v1",
                "shadow": i == 4,
                "features": {name: float(frame.loc[i, name]) for name in FEATURES},
                "prediction": {"label": 1},
            },
        )
        for i in range(5)
    ]
    prefix = partition_prefix(envelopes[0])
    churn["s3"].put_object(
        Bucket=stack.outputs["DataBucketName"],
        Key=object_key(prefix, [e.id for e in envelopes]),
        Body=tabular.parquet_bytes(tabular.rows_to_columns([archive_row(e) for e in envelopes])),
    )
    # When
    request = {
        "version": 1,
        "source": {"type": "traffic", "start": "2026-03-01T09:00:00Z", "end": "2026-03-01T10:00:00Z"},
    }
    status, evaluation = api(stack, "POST", f"/models/{MODEL}/evaluations", request, scopes=OWNER)
    # Then
    assert status == 201, evaluation
    assert evaluation["rows"] == 4 and evaluation["source"]["type"] == "traffic"
    rows = api(stack, "GET", f"/evaluations/{evaluation['evaluation_id']}/rows", scopes=EVALUATOR)[1]["rows"]
    assert [r["source"]["record_id"] for r in rows] == ["req-0:0", "req-1:0", "req-2:0", "req-3:0"]
    assert rows[2]["source"]["served_at"].startswith("2026-03-01T09:32")
    fitted = classifier_model()[1]
    expected = fitted.predict(frame.loc[:3, FEATURES].to_numpy(np.float32))
    assert [r["prediction"]["label"] for r in rows] == expected.tolist()


def test_concurrent_verdicts_are_counted_exactly_on_dynamodb_transactions(
    stack: Stack, churn: dict[str, Any]
) -> None:
    # Given an evaluation of 8 rows, and three evaluators writing at once (each twice: resends)
    evaluation = create(stack, 8)
    eid = evaluation["evaluation_id"]
    with function_environment(stack.env("EvaluationsFunction")):
        settings = EvaluationsSettings.load()
    dynamodb = Serialized(boto3.client("dynamodb", region_name="us-east-1"))
    registry = DynamoTable(settings.registry_table, settings, dynamodb)
    service = EvaluationService(
        DynamoEvaluationStore(DynamoTable(settings.evaluations_table, settings, dynamodb), registry),
        DynamoModelCatalog(registry),
        sources=None,  # type: ignore[arg-type]  # verdicts read no source
        models=None,  # type: ignore[arg-type]
        events=None,  # type: ignore[arg-type]
        publications=DynamoEvaluationPublications(registry),
    )
    errors: list[BaseException] = []

    def work(who: str) -> None:
        try:
            for _ in range(2):
                for index in range(8):
                    service.record_verdict(eid, index, VerdictRequest(verdict="correct"), who)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(who,)) for who in ("alice", "bob", "carol")]
    # When
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    # Then every pair is counted once, every row has its three evaluators
    assert errors == []
    stored = api(stack, "GET", f"/evaluations/{eid}", scopes=EVALUATOR)[1]
    assert (stored["verdicts"], stored["rows_judged"], stored["revision"]) == (24, 8, 24)
    assert stored["evaluators"] == ["alice", "bob", "carol"]
    rows = api(stack, "GET", f"/evaluations/{eid}/rows", scopes=EVALUATOR)[1]["rows"]
    assert all(r["verdict_count"] == 3 for r in rows)
    history = api(stack, "GET", f"/evaluations/{eid}/rows/0/history", scopes=OWNER)[1]["revisions"]
    assert sorted(v["evaluator"] for v in history) == ["alice", "bob", "carol"]


def test_the_production_gate_requires_a_completed_evaluation_when_the_model_says_so(
    stack: Stack, churn: dict[str, Any]
) -> None:
    # Given churn requires an evaluation (PATCH), and v1 has none
    status, model = call(
        stack, "RegistryFunction", "PATCH", f"/models/{MODEL}", {"require_evaluation": True}, scopes=OWNER
    )
    assert (status, model["require_evaluation"]) == (200, True)
    call(stack, "RegistryFunction", "DELETE", f"/models/{MODEL}/aliases/production", scopes=OWNER)
    # When production is asked for v1
    status, refused = call(
        stack, "RegistryFunction", "PUT", f"/models/{MODEL}/aliases/production", {"version": 1}, scopes=OWNER
    )
    # Then a 409 names what is missing
    assert (status, refused["code"]) == (409, "evaluation_required")
    assert refused["details"] == {
        "model": MODEL,
        "version": 1,
        "requirement": "require_evaluation",
        "where": "production",
    }
    # and once an evaluation of v1 is completed, the same move passes, the evaluation in its gate report
    evaluation = create(stack, 2)
    for index in range(2):
        verdict(stack, evaluation["evaluation_id"], index, "alice")
    api(stack, "POST", f"/evaluations/{evaluation['evaluation_id']}/complete", {}, scopes=OWNER)
    status, moved = call(
        stack, "RegistryFunction", "PUT", f"/models/{MODEL}/aliases/production", {"version": 1}, scopes=OWNER
    )
    assert status == 200, moved
    check = next(c for c in moved["gate"]["checks"] if c["name"] == "evaluation_completed")
    assert evaluation["evaluation_id"] in check["message"] and "alice" in check["message"]


def test_a_resent_create_with_a_request_id_returns_the_same_evaluation(
    stack: Stack, churn: dict[str, Any]
) -> None:
    body = {
        "version": 1,
        "source": {"type": "rows", "rows": inline_rows(2)},
        "request_id": "nightly-2026-03-01",
    }
    first = api(stack, "POST", f"/models/{MODEL}/evaluations", body, scopes=OWNER)
    again = api(stack, "POST", f"/models/{MODEL}/evaluations", body, scopes=OWNER)
    assert (first[0], again[0]) == (201, 200)
    assert first[1]["evaluation_id"] == again[1]["evaluation_id"]
    listed = api(stack, "GET", f"/models/{MODEL}/evaluations", scopes=EVALUATOR)[1]["evaluations"]
    assert [e["evaluation_id"] for e in listed] == [first[1]["evaluation_id"]]


def test_a_cancelled_evaluation_is_listed_as_such_and_publishes_nothing(
    stack: Stack, churn: dict[str, Any]
) -> None:
    evaluation = create(stack, 2)
    eid = evaluation["evaluation_id"]
    verdict(stack, eid, 0, "alice")
    status, cancelled = api(
        stack, "POST", f"/evaluations/{eid}/cancel", {"reason": "wrong file"}, scopes=OWNER
    )
    assert (status, cancelled["status"], cancelled["note"]) == (200, "cancelled", "wrong file")
    listed = api(stack, "GET", f"/models/{MODEL}/evaluations", scopes=EVALUATOR, status="cancelled")[1]
    assert [e["evaluation_id"] for e in listed["evaluations"]] == [eid]
    assert api(stack, "GET", f"/models/{MODEL}/versions/1/evaluations", scopes="registry:read")[1] == {
        "evaluations": []
    }


def test_filtered_pages_are_filled_across_dynamodb_pages_and_resume_from_their_token(
    stack: Stack, churn: dict[str, Any]
) -> None:
    # Given 7 rows, alice has judged rows 0, 1, 3 and 4, bob rows 2 and 5
    eid = create(stack, 7)["evaluation_id"]
    for index in (0, 1, 3, 4):
        verdict(stack, eid, index, "alice")
    for index in (2, 5):
        verdict(stack, eid, index, "bob")
    # When alice asks for the rows she has not judged, two at a time
    first = api(
        stack, "GET", f"/evaluations/{eid}/rows", scopes=EVALUATOR, name="alice", todo="true", limit="2"
    )
    # Then the first page skips her judged rows to fill up, the next resumes after it
    assert first[0] == 200 and [r["index"] for r in first[1]["rows"]] == [2, 5]
    rest = api(
        stack,
        "GET",
        f"/evaluations/{eid}/rows",
        scopes=EVALUATOR,
        name="alice",
        todo="true",
        limit="2",
        next_token=first[1]["next_token"],
    )[1]
    assert [r["index"] for r in rest["rows"]] == [6] and rest["next_token"] is None
    # and her own verdicts page the same way, bob's never among them
    mine = api(stack, "GET", f"/evaluations/{eid}/verdicts", scopes=EVALUATOR, name="alice", limit="3")[1]
    assert [v["row"] for v in mine["verdicts"]] == [0, 1, 3] and mine["next_token"]
    more = api(
        stack,
        "GET",
        f"/evaluations/{eid}/verdicts",
        scopes=EVALUATOR,
        name="alice",
        limit="3",
        next_token=mine["next_token"],
    )[1]
    assert [(v["row"], v["evaluator"]) for v in more["verdicts"]] == [(4, "alice")]


def test_page_tokens_are_verified_and_bound_to_their_listing(stack: Stack, churn: dict[str, Any]) -> None:
    # Given an evaluation of 5 rows, alice's first page of the rows she has to do, and two evaluations
    eid = create(stack, 5)["evaluation_id"]
    create(stack, 2)
    todo = api(
        stack, "GET", f"/evaluations/{eid}/rows", scopes=EVALUATOR, name="alice", todo="true", limit="2"
    )
    token = todo[1]["next_token"]
    listing = f"/models/{MODEL}/evaluations"
    well_formed = forged({"pk": f"eval#{eid}", "sk": "row#00003"})
    # When tokens are forged, or taken to another listing or caller
    attempts = [
        api(stack, "GET", f"/evaluations/{eid}/rows", scopes=EVALUATOR, name="alice", next_token=well_formed),
        api(stack, "GET", f"/evaluations/{eid}/verdicts", scopes=EVALUATOR, name="alice", next_token=token),
        api(
            stack,
            "GET",
            f"/evaluations/{eid}/rows",
            scopes=EVALUATOR,
            name="bob",
            todo="true",
            next_token=token,
        ),
        api(stack, "GET", listing, scopes=OWNER, next_token=forged({"gsi1pk": f"model#{MODEL}"})),
        api(stack, "GET", listing, scopes=OWNER, limit="1", next_token=token),
    ]
    resumed = api(
        stack,
        "GET",
        f"/evaluations/{eid}/rows",
        scopes=EVALUATOR,
        name="alice",
        todo="true",
        next_token=token,
    )
    first = api(stack, "GET", listing, scopes=OWNER, limit="1")[1]
    second = api(stack, "GET", listing, scopes=OWNER, limit="1", next_token=first["next_token"])
    # Then
    assert [(status, body["code"]) for status, body in attempts] == [(400, "invalid_token")] * 5
    assert [r["index"] for r in resumed[1]["rows"]] == [2, 3, 4]
    assert second[0] == 200 and len(second[1]["evaluations"]) == 1


def test_only_a_ready_version_is_evaluated(stack: Stack, churn: dict[str, Any]) -> None:
    # Given churn v2 registered through the API: 202, validation still to run
    status, ticket = call(
        stack,
        "RegistryFunction",
        "POST",
        f"/models/{MODEL}/uploads",
        {"filename": "model.onnx", "kind": "model"},
        scopes=OWNER,
    )
    assert status == 201
    assert requests.put(ticket["url"], data=classifier_model()[0], timeout=10).status_code == 200
    status, pending = call(
        stack,
        "RegistryFunction",
        "POST",
        f"/models/{MODEL}/versions",
        {"upload_key": ticket["upload_key"], "feature_names": FEATURES},
        scopes=OWNER,
    )
    assert (status, pending["version"], pending["status"]) == (202, 2, "PENDING_VALIDATION")
    # When an evaluation of v2 is asked for
    body = {"version": 2, "source": {"type": "rows", "rows": inline_rows(2)}}
    status, refused = api(stack, "POST", f"/models/{MODEL}/evaluations", body, scopes=OWNER)
    # Then 409 says why; v2 has nothing published, and a version that does not exist is a 404
    assert (status, refused["code"]) == (409, "version_not_ready")
    assert "PENDING_VALIDATION" in refused["message"]
    published = api(stack, "GET", f"/models/{MODEL}/versions/2/evaluations", scopes="registry:read")
    assert published == (200, {"evaluations": []})
    missing = api(stack, "POST", f"/models/{MODEL}/evaluations", {**body, "version": 9}, scopes=OWNER)
    assert (missing[0], missing[1]["code"]) == (404, "version_not_found")


def test_an_evaluator_s_figures_while_open_count_only_their_own_verdicts(
    stack: Stack, churn: dict[str, Any]
) -> None:
    # Given alice said row 0 is wrong (with a comment) and bob that it is right
    eid = create(stack, 3)["evaluation_id"]
    verdict(stack, eid, 0, "alice", verdict="incorrect", comment="looks off")
    verdict(stack, eid, 0, "bob")
    # When bob reads the results while the evaluation is open
    status, seen = api(stack, "GET", f"/evaluations/{eid}/results", scopes=EVALUATOR, name="bob")
    # Then alice's verdict, comment and name stay hidden from him (judging is blind until completed)
    assert status == 200
    assert (seen["verdicts"], seen["correct"], seen["comments"]) == (1, 1, [])
    assert [e["name"] for e in seen["evaluators"]] == ["bob"]
    assert seen["inter_evaluator"]["rows"] == 0
    # while the owner sees everything
    every = api(stack, "GET", f"/evaluations/{eid}/results", scopes=OWNER, name="owner")[1]
    assert (every["verdicts"], [c["comment"] for c in every["comments"]]) == (2, ["looks off"])
