"""Keys and API Gateway's usage plans on moto: each mlambda key is throttled by its plan (issue 11, defect 11)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from moto import mock_aws

from functions.authorizer.app import handler as authorize
from mlambda.adapters.apikeys import ApiGatewayUsagePlans, DynamoApiKeyStore
from mlambda.adapters.dynamodb import DynamoTable
from mlambda.config import KeysSettings
from mlambda.errors import InvalidInputError
from mlambda.schemas.keys import Scope
from mlambda.services.apikeys import ApiKeyService
from tests.conftest import load_event


@pytest.fixture
def world() -> Iterator[tuple[ApiKeyService, Any, dict[str, str]]]:
    with mock_aws():
        boto3.client("dynamodb", region_name="us-east-1").create_table(
            TableName="keys",
            KeySchema=[{"AttributeName": "key_id", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "key_id", "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
        )
        api = boto3.client("apigateway", region_name="us-east-1")
        plans = {
            name: api.create_usage_plan(
                name=f"stack-{name}", throttle={"rateLimit": rate, "burstLimit": rate * 2}
            )["id"]
            for name, rate in (("standard", 100), ("trial", 2))
        }
        settings = KeysSettings.model_validate(
            {"API_KEYS_TABLE": "keys", "USAGE_PLANS": ",".join(plans), "USAGE_PLAN_PREFIX": "stack-"}
        )
        service = ApiKeyService(
            DynamoApiKeyStore(DynamoTable("keys", settings)),
            ApiGatewayUsagePlans(settings.plan_names, settings.usage_plan_prefix, settings, api),
        )
        yield service, api, plans


def plan_of(api: Any, usage_key: str) -> list[str]:
    """The usage plans API Gateway counts the API key holding ``usage_key`` against."""
    (key,) = [k for k in api.get_api_keys(includeValues=True)["items"] if k["value"] == usage_key]
    return sorted(
        plan["name"].removeprefix("stack-") for plan in api.get_usage_plans(keyId=key["id"])["items"]
    )


def authorizer_answer(key: str, lambda_context: Any, service: ApiKeyService) -> dict[str, Any]:
    event = load_event("apigw_authorizer_request")
    event["headers"] = {**(event.get("headers") or {}), "x-api-key": key}
    answer: dict[str, Any] = authorize(event, lambda_context, keys=service)
    return answer


def test_a_new_key_gets_an_api_gateway_key_in_its_plan_that_the_authorizer_returns(
    world: Any, lambda_context: Any
) -> None:
    # Given the keys service over API Gateway's usage plans
    service, api, _ = world
    # When a key is issued on the trial plan and presented to the authorizer
    created = service.create("app", [Scope.PREDICT], created_by="admin", plan="trial")
    answer = authorizer_answer(created.api_key, lambda_context, service)
    # Then the authorizer's usageIdentifierKey is an API Gateway key in the trial usage plan only
    assert answer["context"]["plan"] == "trial"
    assert plan_of(api, answer["usageIdentifierKey"]) == ["trial"]


def test_a_key_moved_to_another_plan_counts_against_that_plan_only(world: Any, lambda_context: Any) -> None:
    # Given a key on the standard plan
    service, api, _ = world
    created = service.create("app", [Scope.PREDICT], created_by="admin")
    # When it is given the trial plan
    view = service.set_plan(created.key_id, "trial")
    answer = authorizer_answer(created.api_key, lambda_context, service)
    # Then it is in the trial usage plan and no longer in the standard one
    assert view.plan == "trial"
    assert plan_of(api, answer["usageIdentifierKey"]) == ["trial"]


def test_a_revoked_key_leaves_api_gateway(world: Any) -> None:
    # Given a key
    service, api, _ = world
    created = service.create("app", [Scope.PREDICT], created_by="admin")
    # When it is revoked
    service.revoke(created.key_id)
    # Then API Gateway holds no key for it
    assert [k for k in api.get_api_keys()["items"] if k["name"] == f"mlambda-{created.key_id}"] == []


def test_an_unknown_plan_is_refused_naming_the_plans(world: Any) -> None:
    # Given the service
    service, _, _ = world
    # When a key is asked on a plan the template does not declare
    # Then 400 unknown_plan lists the plans
    with pytest.raises(InvalidInputError) as raised:
        service.create("app", [Scope.PREDICT], created_by="admin", plan="platinum")
    assert raised.value.code == "unknown_plan"
    assert raised.value.details == {"plans": ["standard", "trial"]}
