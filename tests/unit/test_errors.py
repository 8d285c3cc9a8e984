from __future__ import annotations

import json
from datetime import datetime
from typing import Annotated, Any

import pytest
from aws_lambda_powertools.event_handler.openapi.params import Body
from pydantic import BaseModel

from mlambda import errors
from mlambda.api import ANY_KEY, ScopedResolver, needs
from mlambda.schemas.keys import Scope
from tests.conftest import load_event

app = ScopedResolver()


class Thing(BaseModel):
    size: int
    fragile: bool = False
    made: datetime | None = None


@app.get("/raise/<kind>", ANY_KEY)
def raise_kind(kind: str) -> dict[str, str]:
    raise {
        "invalid": errors.InvalidInputError("bad size", details={"field": "size"}),
        "missing": errors.NotFoundError("model m not found"),
        "conflict": errors.ConflictError("version taken"),
        "forbidden": errors.ForbiddenError("nope"),
        "upstream": errors.UpstreamError("dynamodb is down: secret internals"),
        "bug": KeyError("internal detail"),
    }[kind]


@app.post("/things", ANY_KEY)
def create_thing(body: Annotated[Thing, Body()]) -> Thing:
    return body


@app.get("/admin", needs(Scope.ADMIN))
def admin_only() -> dict[str, str]:
    return {"ok": "yes"}


def call(
    path: str, method: str = "GET", body: str | None = None, lambda_context: Any = None
) -> tuple[int, Any]:
    event = load_event("apigw_rest", path=path, resource=path, httpMethod=method, body=body)
    response = app.resolve(event, lambda_context)
    return response["statusCode"], json.loads(response["body"])


@pytest.mark.parametrize(
    ("kind", "status", "code"),
    [
        ("invalid", 400, "invalid_input"),
        ("missing", 404, "not_found"),
        ("conflict", 409, "conflict"),
        ("forbidden", 403, "forbidden"),
        ("upstream", 502, "upstream_error"),
        ("bug", 500, "internal_error"),
    ],
)
def test_errors_map_to_status_and_json_shape(kind: str, status: int, code: str, lambda_context: Any) -> None:
    got_status, body = call(f"/raise/{kind}", lambda_context=lambda_context)
    assert got_status == status
    assert body["code"] == code
    assert isinstance(body["message"], str)


def test_server_errors_hide_internal_details(lambda_context: Any) -> None:
    _, body = call("/raise/upstream", lambda_context=lambda_context)
    assert "secret internals" not in body["message"]


def test_client_errors_keep_their_details(lambda_context: Any) -> None:
    _, body = call("/raise/invalid", lambda_context=lambda_context)
    assert body == {"code": "invalid_input", "message": "bad size", "details": {"field": "size"}}


def test_body_validation_names_the_field(lambda_context: Any) -> None:
    status, body = call("/things", "POST", json.dumps({"size": "big"}), lambda_context)
    assert status == 422
    assert body["code"] == "validation_error"
    assert "size" in body["message"]


def test_malformed_json_is_a_400(lambda_context: Any) -> None:
    status, body = call("/things", "POST", "{not json", lambda_context)
    assert status == 400
    assert body["code"] == "malformed_json"


def test_unknown_route_is_a_404_with_the_json_shape(lambda_context: Any) -> None:
    status, body = call("/nowhere", lambda_context=lambda_context)
    assert status == 404
    assert body["code"] == "no_route"


def test_missing_scope_is_a_403_naming_the_scope(lambda_context: Any) -> None:
    status, body = call("/admin", lambda_context=lambda_context)
    assert status == 403
    assert body["details"] == {"required": "admin"}


@pytest.mark.parametrize("kind", ["missing", "conflict", "forbidden", "upstream", "bug"])
def test_every_error_body_carries_details_even_when_there_are_none(kind: str, lambda_context: Any) -> None:
    # Given errors raised without details
    # When they are answered
    _, body = call(f"/raise/{kind}", lambda_context=lambda_context)
    # Then the body is still {code, message, details}, details null
    assert set(body) == {"code", "message", "details"}
    assert body["details"] is None


@pytest.mark.parametrize(
    "body",
    [
        {"size": "12"},
        {"size": True},
        {"size": 12, "fragile": 0},
        {"size": 12, "fragile": "true"},
        {"size": 1, "made": 0},
    ],
    ids=["int-as-string", "int-as-bool", "bool-as-int", "bool-as-string", "datetime-as-int"],
)
def test_a_body_value_of_another_json_type_is_refused(body: dict[str, Any], lambda_context: Any) -> None:
    # Given a value of another JSON type than the schema's (pydantic's lax mode would coerce it)
    # When it is sent
    status, payload = call("/things", "POST", json.dumps(body), lambda_context)
    # Then it is a 422 naming the field (the fuzzer's "schema-violating request accepted")
    assert (status, payload["code"]) == (422, "validation_error"), payload
    assert payload["details"][0]["field"].startswith("body.")


def test_json_strings_still_give_datetimes(lambda_context: Any) -> None:
    # Given a datetime as JSON has it, a string
    # When it is sent
    status, payload = call(
        "/things", "POST", json.dumps({"size": 3, "made": "2026-01-02T03:04:05Z"}), lambda_context
    )
    # Then it is read
    assert (status, payload["made"]) == (200, "2026-01-02T03:04:05Z")
