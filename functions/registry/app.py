"""``/models...``: the model registry API (registry:read for GET, registry:write for changes)."""

from __future__ import annotations

from datetime import datetime
from functools import lru_cache
from typing import Annotated, Any

from aws_lambda_powertools.event_handler import APIGatewayRestResolver, Response
from aws_lambda_powertools.event_handler.openapi.params import Body, Header, Query
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext

from mlambda import errors
from mlambda.auth import require_scope
from mlambda.config import RegistrySettings
from mlambda.observability import logger
from mlambda.schemas.bounds import MAX_PAGE_TOKEN
from mlambda.schemas.keys import Scope
from mlambda.schemas.registry import ALIAS_PATTERN, Alias, EndpointConfig, PendingVersion, VersionRecord
from mlambda.schemas.registry_api import (
    AliasAtTime,
    AliasMove,
    CreateModelRequest,
    EndpointConfigRequest,
    EndpointPatch,
    HistoryPage,
    ModelDetails,
    ModelPage,
    MoveAliasRequest,
    RegisterVersionRequest,
    RollbackRequest,
    UpdateModelRequest,
    UploadRequest,
    UploadTicket,
    VersionPage,
)
from mlambda.services.registry.service import RegistryService, parse_if_match

app = APIGatewayRestResolver(enable_validation=True)
errors.install(app)

Limit = Annotated[int, Query(ge=1, le=100)]
Token = Annotated[str | None, Query(max_length=MAX_PAGE_TOKEN)]
IfMatch = Annotated[
    str | None,
    Header(alias="if-match", max_length=64, description="the endpoint's revision as read (its ETag)"),
]


@lru_cache(maxsize=1)
def service() -> RegistryService:
    """Built on first use, reused while the function is warm."""
    return RegistryService.from_settings(RegistrySettings.load())


def reader() -> str:
    """The caller's name, if it may read the registry."""
    return require_scope(app.current_event.raw_event, Scope.REGISTRY_READ).name


def writer() -> str:
    """The caller's name, if it may change the registry (recorded in the history)."""
    return require_scope(app.current_event.raw_event, Scope.REGISTRY_WRITE).name


def created(body: Any) -> Response[Any]:
    """A 201 with ``body``."""
    return Response(status_code=201, content_type="application/json", body=body)


def with_etag(config: EndpointConfig) -> Response[EndpointConfig]:
    """The endpoint config with its revision as the ETag (send it back in If-Match to change it)."""
    return Response(
        status_code=200,
        content_type="application/json",
        body=config,
        headers={"ETag": f'"{config.revision}"'},
    )


@app.post("/models")
def create_model(body: Annotated[CreateModelRequest, Body()]) -> Response[ModelDetails]:
    """Register a model name."""
    return created(service().create_model(body, writer()))


@app.get("/models")
def list_models(  # noqa: PLR0917 (each query parameter is a parameter: that is how powertools reads them)
    limit: Limit = 50,
    next_token: Token = None,
    owner: Annotated[str | None, Query(max_length=128)] = None,
    tag: Annotated[str | None, Query(max_length=400)] = None,
    name: Annotated[str | None, Query(pattern=r"^[A-Za-z0-9_-]{1,63}$")] = None,
    stage: Annotated[str | None, Query(pattern=ALIAS_PATTERN)] = None,
) -> ModelPage:
    """A page of models, optionally filtered by owner, ``tag=key:value``, a part of the name
    (``name=churn``) or an alias the model has (``stage=production``)."""
    reader()
    return service().list_models(limit=limit, token=next_token, owner=owner, tag=tag, name=name, stage=stage)


@app.get("/models/<name>")
def get_model(name: str) -> ModelDetails:
    """One model and where its aliases point."""
    reader()
    return service().get_model(name)


@app.patch("/models/<name>")
def update_model(name: str, body: Annotated[UpdateModelRequest, Body()]) -> ModelDetails:
    """Change description, owner or tags."""
    return service().update_model(name, body, writer())


@app.delete("/models/<name>")
def delete_model(name: str) -> dict[str, Any]:
    """Delete a model no alias points at."""
    service().delete_model(name, writer())
    return {"model": name, "deleted": True}


@app.post("/models/<name>/uploads")
def request_upload(name: str, body: Annotated[UploadRequest, Body()]) -> Response[UploadTicket]:
    """A presigned PUT URL for a model artifact or a reference sample."""
    writer()
    return created(service().request_upload(name, body))


@app.post("/models/<name>/versions")
def register_version(name: str, body: Annotated[RegisterVersionRequest, Body()]) -> Response[PendingVersion]:
    """Register an uploaded ONNX artifact as the next version: 202 PENDING_VALIDATION at once; the
    validator makes it READY or FAILED (poll GET /models/{name}/versions/{version})."""
    pending = service().register_version(name, body, writer())
    return Response(
        status_code=202,
        content_type="application/json",
        body=pending,
        headers={"Location": f"/models/{name}/versions/{pending.version}"},
    )


@app.get("/models/<name>/versions")
def list_versions(name: str, limit: Limit = 50, next_token: Token = None) -> VersionPage:
    """A page of versions, newest first."""
    reader()
    return service().list_versions(name, limit=limit, token=next_token)


@app.get("/models/<name>/versions/<version>")
def get_version(name: str, version: str) -> VersionRecord:
    """One version (``3`` or ``v3``), READY, PENDING_VALIDATION or FAILED."""
    reader()
    return service().get_version(name, version)


@app.get("/models/<name>/aliases/<alias>")
def get_alias(name: str, alias: str) -> Alias:
    """Where an alias points."""
    reader()
    return service().get_alias(name, alias)


@app.put("/models/<name>/aliases/<alias>")
def move_alias(name: str, alias: str, body: Annotated[MoveAliasRequest, Body()]) -> AliasMove:
    """Move an alias (``production`` runs the gate first)."""
    return service().move_alias(name, alias, body, writer())


@app.delete("/models/<name>/aliases/<alias>")
def delete_alias(name: str, alias: str) -> Alias:
    """Remove an alias no endpoint variant uses."""
    return service().delete_alias(name, alias, writer())


@app.post("/models/<name>/rollback")
def rollback(name: str, body: Annotated[RollbackRequest, Body()]) -> AliasMove:
    """Move an alias (default ``production``) back to its previous version."""
    return service().rollback(name, body, writer())


@app.put("/models/<name>/endpoint")
def put_endpoint(
    name: str, body: Annotated[EndpointConfigRequest, Body()], if_match: IfMatch = None
) -> Response[EndpointConfig]:
    """Replace the whole config (variants, weights, shadow, rules, cache); replacing an existing
    one needs If-Match with its revision (428 without, 409 ``conflict`` when stale)."""
    actor = writer()
    return with_etag(service().put_endpoint(name, body, actor, if_match=parse_if_match(if_match)))


@app.patch("/models/<name>/endpoint")
def patch_endpoint(
    name: str, body: Annotated[EndpointPatch, Body()], if_match: IfMatch = None
) -> Response[EndpointConfig]:
    """Change only what the body names (JSON merge patch); If-Match makes it conditional."""
    actor = writer()
    return with_etag(service().patch_endpoint(name, body, actor, if_match=parse_if_match(if_match)))


@app.get("/models/<name>/endpoint")
def get_endpoint(name: str) -> Response[EndpointConfig]:
    """The endpoint config; its revision is the ETag."""
    reader()
    return with_etag(service().get_endpoint(name))


@app.get("/models/<name>/history")
def history(
    name: str,
    alias: Annotated[str | None, Query(max_length=32)] = None,
    at: Annotated[datetime | None, Query()] = None,
    limit: Limit = 50,
    next_token: Token = None,
) -> HistoryPage | AliasAtTime:
    """The append-only log; ``alias`` + ``at`` answer "what did the alias point at, at that time"."""
    reader()
    return service().history(name, alias=alias, at=at, limit=limit, token=next_token)


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_REST)
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    """Route the request."""
    return app.resolve(event, context)
