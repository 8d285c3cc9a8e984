"""The SDK on a fake transport: which calls are retried (and how long it waits), errors, payloads."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pytest

from mlambda.client import (
    AuthenticationError,
    Client,
    ConflictError,
    HttpResponse,
    InvalidRequestError,
    NotFoundError,
    Predictions,
    RateLimitedError,
    RetryPolicy,
    ServerError,
    TransportError,
)
from mlambda.client.client import retry_after_seconds

Answer = HttpResponse | Exception | Callable[[dict[str, Any]], HttpResponse]


def answer(status: int, body: Any = None, **headers: str) -> HttpResponse:
    return HttpResponse(status, b"" if body is None else json.dumps(body).encode(), headers)


def error(status: int, code: str, **headers: str) -> HttpResponse:
    return answer(status, {"code": code, "message": f"{code} happened", "details": {"field": "x"}}, **headers)


class FakeTransport:
    """Answers from a script, per (method, path) in order; records every request it was sent."""

    def __init__(self, script: Mapping[tuple[str, str], list[Answer]]) -> None:
        self.script = {key: list(answers) for key, answers in script.items()}
        self.sent: list[dict[str, Any]] = []

    def send(
        self, method: str, url: str, *, headers: Mapping[str, str], body: Any, timeout: float
    ) -> HttpResponse:
        path = url.split("/v1", 1)[-1].split("?", 1)[0] if "/v1" in url else url
        data = body.read() if hasattr(body, "read") else body
        request = {"method": method, "path": path, "url": url, "headers": dict(headers), "body": data}
        self.sent.append(request)
        queue = self.script[(method, path)]
        reply = queue.pop(0) if len(queue) > 1 else queue[0]
        if isinstance(reply, Exception):
            raise reply
        return reply(request) if callable(reply) else reply

    def calls(self, method: str, path: str) -> list[dict[str, Any]]:
        return [r for r in self.sent if (r["method"], r["path"]) == (method, path)]


def client_on(
    script: Mapping[tuple[str, str], list[Answer]], **policy: Any
) -> tuple[Client, FakeTransport, list[float]]:
    transport = FakeTransport(script)
    slept: list[float] = []
    retry = RetryPolicy(jitter=lambda: 1.0, **policy)
    return (
        Client("http://api.test/v1", "mlk.k.s", transport=transport, retry=retry, sleep=slept.append),
        transport,
        slept,
    )


REFUSED = TransportError("cannot connect to http://api.test: Connection refused", sent=False)
RESET = TransportError("connection to http://api.test broke: Connection reset by peer", sent=True)


def test_a_get_is_retried_on_5xx_and_a_broken_connection_with_exponential_backoff() -> None:
    # Given
    client, transport, slept = client_on(
        {
            ("GET", "/models/churn"): [
                error(503, "unavailable"),
                RESET,
                error(502, "bad_gateway"),
                answer(200, {"name": "churn"}),
            ]
        }
    )
    # When
    model = client.model("churn")
    # Then
    assert model == {"name": "churn"}
    assert len(transport.calls("GET", "/models/churn")) == 4
    assert slept == [0.25, 0.5, 1.0]


def test_a_429_is_retried_for_any_call_after_the_retry_after_it_names() -> None:
    # Given a model creation (never safe to repeat after the server acted) throttled once
    client, transport, slept = client_on(
        {
            ("POST", "/models"): [
                error(429, "too_many_requests", **{"retry-after": "3"}),
                answer(201, {"name": "churn"}),
            ]
        }
    )
    # When
    created = client.create_model("churn")
    # Then the throttled request was not processed, so it is sent again, 3 s later
    assert created["name"] == "churn"
    assert len(transport.calls("POST", "/models")) == 2
    assert slept == [3.0]


def test_a_call_that_is_not_idempotent_is_never_repeated_after_a_5xx() -> None:
    client, transport, slept = client_on(
        {("POST", "/models/churn/rollback"): [error(502, "bad_gateway"), answer(200, {})]}
    )
    with pytest.raises(ServerError) as raised:
        client.rollback("churn")
    assert raised.value.status == 502 and raised.value.code == "bad_gateway"
    assert len(transport.calls("POST", "/models/churn/rollback")) == 1
    assert slept == []


def test_a_call_that_is_not_idempotent_is_never_repeated_after_a_reset_connection() -> None:
    client, transport, _ = client_on({("POST", "/models/churn/rollback"): [RESET, answer(200, {})]})
    with pytest.raises(TransportError) as raised:
        client.rollback("churn")
    assert raised.value.sent is True
    assert len(transport.calls("POST", "/models/churn/rollback")) == 1


def test_a_connection_that_never_opened_is_retried_for_any_call() -> None:
    client, transport, slept = client_on(
        {("POST", "/models/churn/rollback"): [REFUSED, REFUSED, answer(200, {"version": 1})]}
    )
    assert client.rollback("churn") == {"version": 1}
    assert len(transport.calls("POST", "/models/churn/rollback")) == 3
    assert slept == [0.25, 0.5]


def test_retries_stop_after_the_attempts_and_raise_the_last_error_with_its_retry_after() -> None:
    client, transport, slept = client_on(
        {("GET", "/me"): [error(429, "too_many_requests", **{"retry-after": "1"})]}, attempts=3
    )
    with pytest.raises(RateLimitedError) as raised:
        client.whoami()
    assert raised.value.retry_after == 1.0
    assert len(transport.calls("GET", "/me")) == 3
    assert slept == [1.0, 1.0]


def test_a_retry_after_longer_than_the_policy_allows_is_raised_at_once() -> None:
    client, transport, slept = client_on(
        {("GET", "/me"): [error(429, "too_many_requests", **{"retry-after": "3600"})]}
    )
    with pytest.raises(RateLimitedError):
        client.whoami()
    assert len(transport.calls("GET", "/me")) == 1 and slept == []


def test_backoff_is_capped_and_jittered() -> None:
    policy = RetryPolicy(backoff=1.0, max_backoff=4.0, jitter=lambda: 0.5)
    assert [policy.delay(n, None) for n in (1, 2, 3, 4, 5)] == [0.5, 1.0, 2.0, 2.0, 2.0]
    assert policy.delay(1, 7.0) == 7.0


def test_retry_after_reads_seconds_and_http_dates() -> None:
    assert retry_after_seconds("2.5") == 2.5
    assert retry_after_seconds("Wed, 21 Oct 2015 07:28:10 GMT", now=lambda: 1445412480.0) == 10.0
    assert retry_after_seconds("soon") is None and retry_after_seconds(None) is None


@pytest.mark.parametrize(
    ("status", "kind"),
    [
        (400, InvalidRequestError),
        (401, AuthenticationError),
        (404, NotFoundError),
        (409, ConflictError),
        (422, InvalidRequestError),
        (500, ServerError),
    ],
)
def test_errors_carry_the_apis_code_message_and_details(status: int, kind: type[Exception]) -> None:
    client, _, _ = client_on({("POST", "/models"): [error(status, "something")]})
    with pytest.raises(kind) as raised:
        client.create_model("churn")
    assert (raised.value.status, raised.value.code, raised.value.details) == (
        status,
        "something",
        {"field": "x"},
    )  # type: ignore[attr-defined]
    assert str(raised.value) == f"HTTP {status} something: something happened"


def test_an_error_without_a_json_body_keeps_its_status_and_text() -> None:
    client, _, _ = client_on({("GET", "/me"): [HttpResponse(403, b"<html>Forbidden</html>")]})
    with pytest.raises(Exception, match="HTTP 403 http_error: <html>Forbidden</html>"):
        client.whoami()


def test_predict_sends_rows_columnar_and_a_retry_repeats_the_same_request_id() -> None:
    # Given
    mlflow_answer = answer(
        200,
        {
            "predictions": [1, 0],
            "classes": ["0", "1"],
            "probabilities": [[0.2, 0.8], [0.9, 0.1]],
            "model": "churn",
            "version": 3,
            "variant": "main",
            "request_id": "r",
        },
    )
    client, transport, _ = client_on(
        {("POST", "/models/churn/predict"): [error(503, "unavailable"), mlflow_answer]}
    )
    # When
    result = client.predict("churn", [{"a": 1, "b": 2.0}, {"b": 3.5, "a": 4}])
    # Then
    first, second = (json.loads(r["body"]) for r in transport.calls("POST", "/models/churn/predict"))
    assert first == second
    assert first["dataframe_split"] == {"columns": ["a", "b"], "data": [[1, 2.0], [4, 3.5]]}
    assert len(first["request_id"]) == 32
    assert result.predictions == [1, 0] and result.version == 3
    assert result.rows() == [
        {"label": 1, "probabilities": {"0": 0.2, "1": 0.8}},
        {"label": 0, "probabilities": {"0": 0.9, "1": 0.1}},
    ]


def test_predictions_read_mlambdas_row_answer_like_mlflows() -> None:
    rows = Predictions.from_response(
        {
            "model": "m",
            "version": 1,
            "variant": "v1",
            "request_id": "r",
            "cached": False,
            "predictions": [
                {"label": 1, "probabilities": {"0": 0.3, "1": 0.7}, "decision": "block"},
                {"excluded": "seen"},
            ],
        }
    )
    assert rows.predictions == [1, None]
    assert rows.classes == ["0", "1"] and rows.probabilities == [[0.3, 0.7], []]
    assert rows.columns() == {
        "label": [1, None],
        "proba_0": [0.3, None],
        "proba_1": [0.7, None],
        "decision": ["block", None],
        "excluded": [None, "seen"],
    }


def test_send_events_chunks_to_the_apis_limit_and_indexes_rejections_over_all_events() -> None:
    # Given 1,200 events, the 1,100th rejected
    def events_answer(request: dict[str, Any]) -> HttpResponse:
        events = json.loads(request["body"])["events"]
        results = [
            {
                "index": i,
                "status": "rejected" if e["event_id"] == "e1099" else "accepted",
                "event_id": e["event_id"],
            }
            for i, e in enumerate(events)
        ]
        rejected = sum(r["status"] == "rejected" for r in results)
        return answer(
            200,
            {"accepted": len(events) - rejected, "duplicates": 0, "rejected": rejected, "results": results},
        )

    client, transport, _ = client_on({("POST", "/events"): [events_answer]})
    done: list[int] = []
    # When
    totals = client.send_events(({"event_id": f"e{i}"} for i in range(1200)), on_progress=done.append)
    # Then
    assert [len(json.loads(r["body"])["events"]) for r in transport.sent] == [500, 500, 200]
    assert (totals.accepted, totals.rejected, totals.requests) == (1199, 1, 3)
    assert totals.rejections[0]["index"] == 1099 and done == [500, 500, 200]


def test_register_creates_a_model_that_does_not_exist_yet(tmp_path: Path) -> None:
    # Given no model 'churn'
    model_file = tmp_path / "model.onnx"
    model_file.write_bytes(b"onnx bytes")
    ticket = answer(
        201, {"upload_key": "uploads/churn/abc/model.onnx", "url": "http://s3.test/put", "headers": {}}
    )
    client, transport, _ = client_on(
        {
            ("POST", "/models/churn/uploads"): [error(404, "model_not_found"), ticket],
            ("POST", "/models"): [answer(201, {"name": "churn"})],
            ("PUT", "http://s3.test/put"): [answer(200)],
            ("POST", "/models/churn/versions"): [answer(202, {"version": 1, "status": "PENDING_VALIDATION"})],
        }
    )
    # When
    pending = client.register("churn", model_file, owner="ana", wait=False)
    # Then
    assert pending["version"] == 1
    assert json.loads(transport.calls("POST", "/models")[0]["body"])["owner"] == "ana"
    put = transport.calls("PUT", "http://s3.test/put")[0]
    assert put["body"] == b"onnx bytes" and "x-api-key" not in put["headers"]


def test_register_without_create_model_reports_the_missing_model(tmp_path: Path) -> None:
    model_file = tmp_path / "model.onnx"
    model_file.write_bytes(b"x")
    client, transport, _ = client_on({("POST", "/models/churn/uploads"): [error(404, "model_not_found")]})
    with pytest.raises(NotFoundError):
        client.register("churn", model_file, create_model=False)
    assert transport.calls("POST", "/models") == []


def test_paths_are_percent_encoded_so_a_name_cannot_add_a_segment() -> None:
    client, transport, _ = client_on({("GET", "/models/a%2F..%2Fkeys"): [answer(200, {})]})
    client.model("a/../keys")
    assert transport.sent[0]["url"] == "http://api.test/v1/models/a%2F..%2Fkeys"


def test_importing_the_sdk_loads_none_of_the_servers_modules() -> None:
    heavy = (
        "numpy",
        "boto3",
        "botocore",
        "onnxruntime",
        "pydantic",
        "pandas",
        "pyarrow",
        "requests",
        "aws_lambda_powertools",
    )
    script = f"import sys, mlambda.client; print([m for m in {heavy!r} if m in sys.modules])"
    loaded = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True).stdout
    assert loaded.strip() == "[]"
