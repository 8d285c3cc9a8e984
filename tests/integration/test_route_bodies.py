"""Every route that reads a body reads JSON text only: another media type is 415, bytes that are not
UTF-8 are 400 ``malformed_json`` (the fuzzer's first finds: both were 500s, issue 11).

Each route of the OpenAPI document with a request body, served by a ScopedResolver, is called as
API Gateway calls it for an admin key: a binary body arrives base64-encoded, as it does from API
Gateway and the local gateway when it is not UTF-8.
"""

from __future__ import annotations

import base64
import importlib
import json
from functools import cache
from typing import Any

import pytest

from mlambda.api import ScopedResolver
from mlambda.auth import authorizer_context
from mlambda.schemas.keys import Principal, Scope
from mlambda_local.openapi import DOCUMENT
from tests.api_routes import ApiRoute, keyed_routes
from tests.conftest import load_event


@cache
def _document() -> dict[str, Any]:
    document: dict[str, Any] = json.loads(DOCUMENT.read_text())
    return document


def body_routes() -> list[ApiRoute]:
    """The keyed routes whose operation takes a body and whose function is a ScopedResolver."""
    paths = _document()["paths"]
    return [
        route
        for route in keyed_routes()
        if "requestBody" in paths[route.path][route.method.lower()]
        and isinstance(getattr(importlib.import_module(route.module), "app", None), ScopedResolver)
    ]


def call(
    route: ApiRoute, body: bytes, content_type: str | None, lambda_context: Any
) -> tuple[int, dict[str, Any]]:
    try:
        text, encoded = body.decode(), False
    except UnicodeDecodeError:
        text, encoded = base64.b64encode(body).decode(), True
    event = load_event(
        "apigw_rest",
        resource=route.path,
        path=route.concrete_path(),
        httpMethod=route.method,
        body=text,
        isBase64Encoded=encoded,
        pathParameters=dict.fromkeys(route.parameters, "x") or None,
    )
    headers = {key: value for key, value in event["headers"].items() if key.lower() != "content-type"}
    event["headers"] = {**headers, **({"Content-Type": content_type} if content_type else {})}
    event["multiValueHeaders"] = {key: [value] for key, value in event["headers"].items()}
    admin = Principal(key_id="k1", name="admin", scopes=frozenset({Scope.ADMIN}))
    event["requestContext"] = {
        **event["requestContext"],
        "resourcePath": route.path,
        "httpMethod": route.method,
        "authorizer": {"principalId": admin.key_id, **authorizer_context(admin)},
    }
    response: dict[str, Any] = route.handler()(event, lambda_context)
    return response["statusCode"], json.loads(response["body"])


def test_the_walk_covers_the_routes_that_read_a_body() -> None:
    # Given the document
    # When the routes with a body are listed
    ids = {route.id for route in body_routes()}
    # Then the registry's, the keys', the jobs', the evaluations' and /events are among them
    assert {"POST /models", "POST /keys", "POST /jobs", "POST /events", "PUT /models/{name}/endpoint"} <= ids


@pytest.mark.parametrize(
    "content_type",
    [
        "text/plain",
        "application/x-www-form-urlencoded",
        "multipart/form-data",
        "Application/XML; charset=utf-8",
    ],
)
@pytest.mark.parametrize("route", body_routes(), ids=lambda route: route.id)
def test_a_body_declared_as_another_media_type_is_a_415(
    route: ApiRoute, content_type: str, lambda_context: Any
) -> None:
    # Given a JSON body declared as something else (a multipart without its boundary among them)
    # When it is sent
    status, payload = call(route, b'{"name": "x"}', content_type, lambda_context)
    # Then the route refuses it before parsing it, naming the media type it reads
    assert (status, payload["code"]) == (415, "unsupported_media_type"), payload
    assert payload["details"] == [{"field": "Content-Type", "message": "accepted: application/json"}]


@pytest.mark.parametrize("content_type", ["application/json", "application/json; charset=utf-8", None])
@pytest.mark.parametrize("route", body_routes(), ids=lambda route: route.id)
def test_a_body_that_is_not_utf8_is_malformed_json(
    route: ApiRoute, content_type: str | None, lambda_context: Any
) -> None:
    # Given bytes that are not UTF-8 text, declared as JSON or not declared
    # When they are sent
    status, payload = call(route, b'{"name": "\xff\xfe"}', content_type, lambda_context)
    # Then the answer is 400 malformed_json, not a 500
    assert (status, payload["code"]) == (400, "malformed_json"), payload


def validated_body_routes() -> list[ApiRoute]:
    """The body routes whose body powertools validates (not those that parse it themselves: /events)."""
    return [
        route
        for route in body_routes()
        if importlib.import_module(route.module).app.documentation[(route.method, route.path)].body is None
    ]


@pytest.mark.parametrize("route", validated_body_routes(), ids=lambda route: route.id)
def test_a_json_media_type_in_another_case_is_read_as_json(route: ApiRoute, lambda_context: Any) -> None:
    # Given a malformed JSON body declared as Application/JSON (media types are case-insensitive)
    # When it is sent
    status, payload = call(route, b'{"name": ', "Application/JSON", lambda_context)
    # Then it is read as JSON: malformed, not an unsupported type or a 500
    assert (status, payload["code"]) == (400, "malformed_json"), payload
