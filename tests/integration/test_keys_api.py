"""The authorizer and the keys function on moto, with API Gateway's event shapes."""

from __future__ import annotations

import json
from typing import Any

import pytest

from mlambda.adapters.apikeys import DynamoApiKeyStore
from mlambda.adapters.dynamodb import DynamoTable
from mlambda.config import KeysSettings
from mlambda.errors import UnauthorizedError
from mlambda.schemas.keys import CreatedKey, Scope
from mlambda.services.apikeys import ApiKeyService
from tests.conftest import load_event
from tests.integration.conftest import Stack


@pytest.fixture
def keys(stack: Stack) -> ApiKeyService:
    """The key service on the template's API keys table."""
    settings = KeysSettings.load(stack.env("KeysFunction"))
    return ApiKeyService(DynamoApiKeyStore(DynamoTable(settings.api_keys_table, settings)))


def authorize(stack: Stack, api_key: str | None) -> dict[str, Any]:
    headers = {"Host": "abc123.execute-api.us-east-1.amazonaws.com"}
    if api_key is not None:
        headers["x-api-key"] = api_key
    result: dict[str, Any] = stack.invoke(
        "AuthorizerFunction", load_event("apigw_authorizer_request", headers=headers)
    )
    return result


def call(stack: Stack, created: CreatedKey, method: str, path: str, body: Any = None) -> tuple[int, Any]:
    """Call the keys function as API Gateway does after the authorizer allowed ``created``."""
    policy = authorize(stack, created.api_key)
    event = load_event(
        "apigw_rest",
        path=path,
        resource=path,
        httpMethod=method,
        body=json.dumps(body) if body is not None else None,
    )
    event["requestContext"]["authorizer"] = {"principalId": policy["principalId"], **policy["context"]}
    response = stack.invoke("KeysFunction", event)
    return response["statusCode"], json.loads(response["body"])


def test_authorizer_allows_a_valid_key_and_passes_scopes(stack: Stack, keys: ApiKeyService) -> None:
    # Given
    created = keys.create("app", [Scope.PREDICT, Scope.INGEST], created_by="test")
    # When
    policy = authorize(stack, created.api_key)
    # Then
    assert policy["principalId"] == created.key_id
    assert policy["context"]["scopes"] == "ingest,predict"
    statement = policy["policyDocument"]["Statement"][0]
    assert statement["Effect"] == "Allow"
    assert statement["Resource"] == ["arn:aws:execute-api:us-east-1:123456789012:abc123/v1/*/*"]


@pytest.mark.parametrize("presented", [None, "", "mlk.unknown.secret", "not-a-key"])
def test_authorizer_rejects_missing_and_unknown_keys(
    stack: Stack, keys: ApiKeyService, presented: str | None
) -> None:
    with pytest.raises(UnauthorizedError, match=r"^Unauthorized$"):
        authorize(stack, presented)


def test_authorizer_rejects_a_revoked_key(stack: Stack, keys: ApiKeyService) -> None:
    created = keys.create("app", [Scope.PREDICT], created_by="test")
    keys.revoke(created.key_id)
    with pytest.raises(UnauthorizedError):
        authorize(stack, created.api_key)


def test_me_returns_the_callers_principal(stack: Stack, keys: ApiKeyService) -> None:
    created = keys.create("app", [Scope.PREDICT], created_by="test")
    status, body = call(stack, created, "GET", "/me")
    assert status == 200
    assert body == {"key_id": created.key_id, "name": "app", "scopes": ["predict"], "plan": "standard"}


def test_admin_creates_lists_and_revokes_keys(stack: Stack, keys: ApiKeyService) -> None:
    # Given
    admin = keys.create("root", [Scope.ADMIN], created_by="test")
    # When
    status, created = call(stack, admin, "POST", "/keys", {"name": "svc", "scopes": ["ingest"]})
    _, listed = call(stack, admin, "GET", "/keys")
    revoke_status, revoked = call(stack, admin, "DELETE", f"/keys/{created['key_id']}")
    # Then
    assert status == 201
    assert created["api_key"].startswith(f"mlk.{created['key_id']}.")
    assert {k["name"] for k in listed["keys"]} == {"root", "svc"}
    assert all("api_key" not in k and "secret_hash" not in k for k in listed["keys"])
    assert revoke_status == 200
    assert revoked["revoked_at"] is not None
    with pytest.raises(UnauthorizedError):
        keys.authenticate(created["api_key"])


def test_key_management_needs_the_admin_scope(stack: Stack, keys: ApiKeyService) -> None:
    app_key = keys.create("app", [Scope.PREDICT, Scope.REGISTRY_WRITE], created_by="test")
    status, body = call(stack, app_key, "POST", "/keys", {"name": "x", "scopes": ["admin"]})
    assert status == 403
    assert body["code"] == "forbidden"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"name": "../evil", "scopes": ["predict"]}, "name"),
        ({"name": "ok", "scopes": []}, "scopes"),
        ({"name": "ok", "scopes": ["superuser"]}, "scopes"),
        ({"name": "ok", "scopes": ["predict"], "extra": 1}, "extra"),
    ],
)
def test_bad_key_requests_name_the_field(
    stack: Stack, keys: ApiKeyService, body: dict[str, Any], field: str
) -> None:
    admin = keys.create("root", [Scope.ADMIN], created_by="test")
    status, error = call(stack, admin, "POST", "/keys", body)
    assert status == 422
    assert field in error["message"]


def test_revoking_an_unknown_key_is_404_key_not_found_as_every_key_route_says(
    stack: Stack, keys: ApiKeyService
) -> None:
    # Given
    admin = keys.create("root", [Scope.ADMIN], created_by="test")
    # When
    status, error = call(stack, admin, "DELETE", "/keys/000000000000")
    # Then the same code as PUT /keys/{id}/plan and a malformed id answer
    assert status == 404
    assert error["code"] == "key_not_found"
