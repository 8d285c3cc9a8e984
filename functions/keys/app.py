"""``/me`` and ``/keys``: who am I, and key management for admins."""

from __future__ import annotations

from functools import lru_cache
from typing import Annotated, Any

from aws_lambda_powertools.event_handler import APIGatewayRestResolver, Response
from aws_lambda_powertools.event_handler.openapi.params import Body
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext

from mlambda import errors
from mlambda.adapters.apikeys import DynamoApiKeyStore
from mlambda.adapters.dynamodb import DynamoTable
from mlambda.auth import principal_from_event, require_scope
from mlambda.config import KeysSettings
from mlambda.observability import logger
from mlambda.schemas.keys import ApiKeyView, CreatedKey, CreateKeyRequest, Principal, Scope
from mlambda.services.apikeys import ApiKeyService

app = APIGatewayRestResolver(enable_validation=True)
errors.install(app)


@lru_cache(maxsize=1)
def service() -> ApiKeyService:
    """Built on first use, reused while the function is warm."""
    settings = KeysSettings.load()
    return ApiKeyService(DynamoApiKeyStore(DynamoTable(settings.api_keys_table, settings)))


@app.get("/me")
def whoami() -> Principal:
    """The caller's key id, name and scopes."""
    return principal_from_event(app.current_event.raw_event)


@app.get("/keys")
def list_keys() -> dict[str, list[ApiKeyView]]:
    """Every key (admin)."""
    require_scope(app.current_event.raw_event, Scope.ADMIN)
    return {"keys": service().list_keys()}


@app.post("/keys")
def create_key(body: Annotated[CreateKeyRequest, Body()]) -> Response[CreatedKey]:
    """Issue a key (admin); its secret is in this response only."""
    caller = require_scope(app.current_event.raw_event, Scope.ADMIN)
    created = service().create(body.name, body.scopes, created_by=caller.name)
    return Response(status_code=201, content_type="application/json", body=created)


@app.delete("/keys/<key_id>")
def revoke_key(key_id: str) -> ApiKeyView:
    """Revoke a key (admin); takes effect once the gateway's authorizer cache expires (60 s)."""
    require_scope(app.current_event.raw_event, Scope.ADMIN)
    return service().revoke(key_id)


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_REST)
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    """Route the request."""
    return app.resolve(event, context)
