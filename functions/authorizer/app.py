"""API Gateway REQUEST authorizer: ``x-api-key`` -> principal + scopes, or 401.

Unknown, malformed and revoked keys raise ``Unauthorized`` (API Gateway's contract for a 401).
The policy allows every route of the API so that API Gateway can cache it per key;
each handler then checks the scope its route needs (403). The answer carries the key's
``usageIdentifierKey`` (its API Gateway API key, in its plan's usage plan) and its plan in the context.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from aws_lambda_powertools.utilities.data_classes.api_gateway_authorizer_event import (
    APIGatewayAuthorizerRequestEvent,
    APIGatewayAuthorizerResponse,
)
from aws_lambda_powertools.utilities.typing import LambdaContext

from mlambda.adapters.apikeys import DynamoApiKeyStore
from mlambda.adapters.dynamodb import DynamoTable
from mlambda.auth import authorizer_context
from mlambda.config import AuthorizerSettings
from mlambda.observability import logger
from mlambda.services.apikeys import ApiKeyService


@lru_cache(maxsize=1)
def service() -> ApiKeyService:
    """Built on first use, reused while the function is warm."""
    settings = AuthorizerSettings.load()
    return ApiKeyService(DynamoApiKeyStore(DynamoTable(settings.api_keys_table, settings)))


@logger.inject_lambda_context
def handler(
    event: dict[str, Any], context: LambdaContext, keys: ApiKeyService | None = None
) -> dict[str, Any]:
    """Authenticate the request's API key and return an IAM policy with the principal's context."""
    request = APIGatewayAuthorizerRequestEvent(event)
    presented = request.headers.get("x-api-key") if request.headers else None
    principal = (keys or service()).authenticate(presented)
    arn = request.parsed_arn
    policy = APIGatewayAuthorizerResponse(
        principal_id=principal.key_id,
        region=arn.region,
        aws_account_id=arn.aws_account_id,
        api_id=arn.api_id,
        stage=arn.stage,
        context=authorizer_context(principal),
    )
    policy.allow_all_routes()
    if principal.usage_key:
        # The API takes the key's usage plan from here (ApiKeySourceType: AUTHORIZER): API Gateway
        # throttles each mlambda key by the plan its API Gateway API key is in.
        policy.usage_identifier_key = principal.usage_key
    logger.debug("authorized", extra={"key_id": principal.key_id})
    return policy.asdict()
