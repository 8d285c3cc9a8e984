"""``/me`` and ``/keys``: who am I, and key management for admins."""

from __future__ import annotations

from functools import lru_cache
from typing import Annotated, Any

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.openapi.params import Body
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext

from mlambda.adapters.apikeys import ApiGatewayUsagePlans, DynamoApiKeyStore
from mlambda.adapters.dynamodb import DynamoTable
from mlambda.api import ANY_KEY, ScopedResolver, needs
from mlambda.config import KeysSettings
from mlambda.observability import logger
from mlambda.schemas.keys import ApiKeyView, CreatedKey, CreateKeyRequest, Principal, Scope, SetPlanRequest
from mlambda.services.apikeys import ApiKeyService

app = ScopedResolver()
ADMIN = needs(Scope.ADMIN)


@lru_cache(maxsize=1)
def service() -> ApiKeyService:
    """Built on first use, reused while the function is warm."""
    settings = KeysSettings.load()
    plans = (
        ApiGatewayUsagePlans(settings.plan_names, settings.usage_plan_prefix, settings)
        if settings.plan_names
        else None
    )
    return ApiKeyService(DynamoApiKeyStore(DynamoTable(settings.api_keys_table, settings)), plans)


@app.get("/me", ANY_KEY)
def whoami() -> Principal:
    """The caller's key id, name and scopes."""
    return app.caller()


@app.get("/keys", ADMIN)
def list_keys() -> dict[str, list[ApiKeyView]]:
    """Every key (admin)."""
    return {"keys": service().list_keys()}


@app.post("/keys", ADMIN, status_code=201)
def create_key(body: Annotated[CreateKeyRequest, Body()]) -> Response[CreatedKey]:
    """Issue a key (admin); its secret is in this response only."""
    created = service().create(body.name, body.scopes, created_by=app.caller().name, plan=body.plan)
    return Response(status_code=201, content_type="application/json", body=created)


@app.put("/keys/<key_id>/plan", ADMIN)
def set_plan(key_id: str, body: Annotated[SetPlanRequest, Body()]) -> ApiKeyView:
    """Give a key another usage plan (admin); takes effect once the authorizer cache expires (60 s)."""
    return service().set_plan(key_id, body.plan)


@app.delete("/keys/<key_id>", ADMIN)
def revoke_key(key_id: str) -> ApiKeyView:
    """Revoke a key (admin); takes effect once the gateway's authorizer cache expires (60 s)."""
    return service().revoke(key_id)


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_REST)
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    """Route the request."""
    return app.resolve(event, context)
