"""The authorizer and the keys function on moto, with API Gateway's event shapes."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from moto import mock_aws

from functions.authorizer import app as authorizer
from functions.keys import app as keys_app
from mlambda.adapters.apikeys import DynamoApiKeyStore
from mlambda.adapters.dynamodb import DynamoTable
from mlambda.config import KeysSettings, function_environment
from mlambda.errors import UnauthorizedError
from mlambda.schemas.keys import CreatedKey, Scope
from mlambda.services.apikeys import ApiKeyService
from tests.conftest import load_event

TABLE = "api-keys"


@pytest.fixture
def keys() -> Iterator[ApiKeyService]:
    with mock_aws(), function_environment({"API_KEYS_TABLE": TABLE}):
        boto3.client("dynamodb").create_table(
            TableName=TABLE,
            BillingMode="PAY_PER_REQUEST",
            AttributeDefinitions=[{"AttributeName": "key_id", "AttributeType": "S"}],
            KeySchema=[{"AttributeName": "key_id", "KeyType": "HASH"}],
        )
        authorizer.service.cache_clear()
        keys_app.service.cache_clear()
        settings = KeysSettings.load()
        yield ApiKeyService(DynamoApiKeyStore(DynamoTable(TABLE, settings)))
        authorizer.service.cache_clear()
        keys_app.service.cache_clear()


def authorize(api_key: str | None, context: Any) -> dict[str, Any]:
    headers = {"Host": "abc123.execute-api.us-east-1.amazonaws.com"}
    if api_key is not None:
        headers["x-api-key"] = api_key
    return authorizer.handler(load_event("apigw_authorizer_request", headers=headers), context)


def call(created: CreatedKey, method: str, path: str, context: Any, body: Any = None) -> tuple[int, Any]:
    """Call the keys function as API Gateway does after the authorizer allowed ``created``."""
    policy = authorize(created.api_key, context)
    event = load_event(
        "apigw_rest",
        path=path,
        resource=path,
        httpMethod=method,
        body=json.dumps(body) if body is not None else None,
    )
    event["requestContext"]["authorizer"] = {"principalId": policy["principalId"], **policy["context"]}
    response = keys_app.handler(event, context)
    return response["statusCode"], json.loads(response["body"])


def test_authorizer_allows_a_valid_key_and_passes_scopes(keys: ApiKeyService, lambda_context: Any) -> None:
    # Given
    created = keys.create("app", [Scope.PREDICT, Scope.INGEST], created_by="test")
    # When
    policy = authorize(created.api_key, lambda_context)
    # Then
    assert policy["principalId"] == created.key_id
    assert policy["context"]["scopes"] == "ingest,predict"
    statement = policy["policyDocument"]["Statement"][0]
    assert statement["Effect"] == "Allow"
    assert statement["Resource"] == ["arn:aws:execute-api:us-east-1:123456789012:abc123/v1/*/*"]


@pytest.mark.parametrize("presented", [None, "", "mlk.unknown.secret", "not-a-key"])
def test_authorizer_rejects_missing_and_unknown_keys(
    keys: ApiKeyService, lambda_context: Any, presented: str | None
) -> None:
    with pytest.raises(UnauthorizedError, match=r"^Unauthorized$"):
        authorize(presented, lambda_context)


def test_authorizer_rejects_a_revoked_key(keys: ApiKeyService, lambda_context: Any) -> None:
    created = keys.create("app", [Scope.PREDICT], created_by="test")
    keys.revoke(created.key_id)
    with pytest.raises(UnauthorizedError):
        authorize(created.api_key, lambda_context)


def test_me_returns_the_callers_principal(keys: ApiKeyService, lambda_context: Any) -> None:
    created = keys.create("app", [Scope.PREDICT], created_by="test")
    status, body = call(created, "GET", "/me", lambda_context)
    assert status == 200
    assert body == {"key_id": created.key_id, "name": "app", "scopes": ["predict"]}


def test_admin_creates_lists_and_revokes_keys(keys: ApiKeyService, lambda_context: Any) -> None:
    # Given
    admin = keys.create("root", [Scope.ADMIN], created_by="test")
    # When
    status, created = call(admin, "POST", "/keys", lambda_context, {"name": "svc", "scopes": ["ingest"]})
    _, listed = call(admin, "GET", "/keys", lambda_context)
    revoke_status, revoked = call(admin, "DELETE", f"/keys/{created['key_id']}", lambda_context)
    # Then
    assert status == 201
    assert created["api_key"].startswith(f"mlk.{created['key_id']}.")
    assert {k["name"] for k in listed["keys"]} == {"root", "svc"}
    assert all("api_key" not in k and "secret_hash" not in k for k in listed["keys"])
    assert revoke_status == 200
    assert revoked["revoked_at"] is not None
    with pytest.raises(UnauthorizedError):
        keys.authenticate(created["api_key"])


def test_key_management_needs_the_admin_scope(keys: ApiKeyService, lambda_context: Any) -> None:
    app_key = keys.create("app", [Scope.PREDICT, Scope.REGISTRY_WRITE], created_by="test")
    status, body = call(app_key, "POST", "/keys", lambda_context, {"name": "x", "scopes": ["admin"]})
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
    keys: ApiKeyService, lambda_context: Any, body: dict[str, Any], field: str
) -> None:
    admin = keys.create("root", [Scope.ADMIN], created_by="test")
    status, error = call(admin, "POST", "/keys", lambda_context, body)
    assert status == 422
    assert field in error["message"]


def test_revoking_an_unknown_key_is_404(keys: ApiKeyService, lambda_context: Any) -> None:
    admin = keys.create("root", [Scope.ADMIN], created_by="test")
    status, error = call(admin, "DELETE", "/keys/000000000000", lambda_context)
    assert status == 404
    assert error["code"] == "not_found"
