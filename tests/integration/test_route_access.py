"""Authorization before validation, on every route of the API (issue 11, defect 6).

Each route of template.yaml is called as API Gateway calls it after the authorizer let a key
through, by a key holding every scope but the ones the route accepts, with a body, query and path
that fail validation: the answer must be 403 naming the scope, never a 4xx about the input.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from mlambda.auth import authorizer_context
from mlambda.schemas.keys import Principal, Scope
from tests.api_routes import ApiRoute, keyed_routes
from tests.conftest import load_event

INVALID_QUERY = {
    "limit": "-7",
    "next_token": "!" * 5000,
    "offset": "x",
    "model": "../../etc",
    "format": "pdf",
    "todo": "perhaps",
    "at": "yesterday",
}


def call(
    route: ApiRoute, principal: Principal | None, body: str | None, lambda_context: Any
) -> dict[str, Any]:
    path = route.concrete_path(**dict.fromkeys(route.parameters, "%2e%2e" + "z" * 300))
    event = load_event(
        "apigw_rest",
        resource=route.path,
        path=path,
        httpMethod=route.method,
        body=body,
        queryStringParameters=INVALID_QUERY,
        multiValueQueryStringParameters={key: [value] for key, value in INVALID_QUERY.items()},
        pathParameters=dict.fromkeys(route.parameters, "%2e%2e" + "z" * 300) or None,
    )
    event["headers"] = {**event["headers"], "Content-Type": "application/json", "if-match": "x" * 500}
    event["requestContext"] = {
        **event["requestContext"],
        "resourcePath": route.path,
        "httpMethod": route.method,
        "authorizer": None
        if principal is None
        else {"principalId": principal.key_id, **authorizer_context(principal)},
    }
    response: dict[str, Any] = route.handler()(event, lambda_context)
    return response


@pytest.mark.parametrize("route", keyed_routes(), ids=lambda route: route.id)
def test_every_keyed_route_declares_who_may_call_it(route: ApiRoute) -> None:
    # Given a route of the template behind the authorizer
    # When its function is asked for the route's Access
    access = route.access()
    # Then it declares one
    assert access is not None, f"{route.function} declares no Access for {route.id}"


@pytest.mark.parametrize("body", ["{}", '{"bogus": [', "[]", json.dumps({"x": "y" * 10_000})])
@pytest.mark.parametrize("route", keyed_routes(), ids=lambda route: route.id)
def test_a_key_without_the_scope_is_refused_before_its_input_is_read(
    route: ApiRoute, body: str, lambda_context: Any
) -> None:
    # Given a key holding every scope but the ones the route accepts
    access = route.access()
    assert access is not None
    if not access.scopes:
        pytest.skip("any valid key may call this route: no key lacks its scope")
    others = frozenset(Scope) - set(access.scopes) - {Scope.ADMIN}
    principal = Principal(key_id="k1", name="outsider", scopes=others)
    # When it sends invalid input
    response = call(route, principal, body, lambda_context)
    # Then the answer is 403 naming the scope, not a complaint about the input
    payload = json.loads(response["body"])
    assert response["statusCode"] == 403, payload
    assert payload["code"] == "forbidden"
    required = payload["details"]["required"]
    assert set(required if isinstance(required, list) else [required]) == {s.value for s in access.scopes}


@pytest.mark.parametrize("route", keyed_routes(), ids=lambda route: route.id)
def test_a_request_without_a_principal_is_refused_before_its_input_is_read(
    route: ApiRoute, lambda_context: Any
) -> None:
    # Given a request that reached the function with no authorizer context (a misconfigured route)
    # When it sends invalid input
    response = call(route, None, '{"bogus": [', lambda_context)
    # Then the answer is 401
    assert response["statusCode"] == 401, response["body"]
    assert json.loads(response["body"])["code"] == "unauthorized"
