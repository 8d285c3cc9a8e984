"""The committed OpenAPI document: current, complete, and served without a key (issue 11, the spec)."""

from __future__ import annotations

import json
from typing import Any

import pytest
import schemathesis

from functions.console.app import handler as console
from mlambda_local.openapi import DOCUMENT, build, render
from tests.api_routes import api_routes, keyed_routes
from tests.conftest import load_event


@pytest.fixture(scope="module")
def document() -> dict[str, Any]:
    return build()


def test_the_committed_document_is_what_the_generator_writes(document: dict[str, Any]) -> None:
    # Given the routes, schemas and scopes of this tree
    # When the document is generated
    # Then it is the committed one (run `make openapi` after changing an API)
    assert DOCUMENT.read_text(encoding="utf-8") == render(document), (
        "openapi.json drifted: run `make openapi`"
    )


def test_the_document_is_openapi_3_1_that_schemathesis_loads(document: dict[str, Any]) -> None:
    # When a tool reads it
    schema = schemathesis.openapi.from_dict(document)
    operations = [result.ok() for result in schema.get_all_operations()]
    # Then every operation of the template is in it
    assert document["openapi"] == "3.1.0"
    assert len(operations) == len([r for r in api_routes() if not r.public]) + 1


@pytest.mark.parametrize("route", keyed_routes(), ids=lambda route: route.id)
def test_every_keyed_operation_states_its_key_scope_and_errors(route: Any, document: dict[str, Any]) -> None:
    # Given a route behind the authorizer
    operation = document["paths"][route.path][route.method.lower()]
    access = route.access()
    # Then the document names the key scheme, the route's scope, and its error answers in the one shape
    assert operation["security"] == [{"apiKey": []}]
    assert operation["x-mlambda-scope"] == [scope.value for scope in access.scopes]
    assert access.sentence in operation["description"]
    errors = {status: answer for status, answer in operation["responses"].items() if int(status) >= 400}
    assert {"400", "401", "404", "429"} <= set(errors)
    assert ("403" in errors) == bool(access.scopes)
    for answer in errors.values():
        content = answer["content"]["application/json"]
        assert content["schema"] == {"$ref": "#/components/schemas/Error"}
        assert set(content["example"]) == {"code", "message", "details"}
    assert "Retry-After" in errors["429"]["headers"]


def test_the_document_is_served_without_a_key(lambda_context: Any) -> None:
    # Given a request for /openapi.json with no key (the route has no authorizer)
    event = load_event("apigw_rest", resource="/openapi.json", path="/openapi.json", httpMethod="GET")
    event["requestContext"]["authorizer"] = None
    # When the console function answers it
    response = console(event, lambda_context)
    # Then it is the committed document
    assert response["statusCode"] == 200
    assert response["headers"]["Content-Type"] == "application/json"
    assert json.loads(response["body"]) == json.loads(DOCUMENT.read_text(encoding="utf-8"))
