"""``/models...``: the model registry API (registry:read for GET, registry:write for changes)."""

from __future__ import annotations

from datetime import datetime
from functools import lru_cache
from typing import Annotated, Any

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.openapi.params import Body, Header, Query
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext

from mlambda.api import DATETIME_TEXT, INTEGER_TEXT, ScopedResolver, needs
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

app = ScopedResolver()
READ = needs(Scope.REGISTRY_READ)
WRITE = needs(Scope.REGISTRY_WRITE)

Limit = Annotated[int, INTEGER_TEXT, Query(ge=1, le=100)]
Token = Annotated[str | None, Query(max_length=MAX_PAGE_TOKEN)]
IfMatch = Annotated[
    str | None,
    Header(alias="if-match", max_length=64, description="the endpoint's revision as read (its ETag)"),
]


@lru_cache(maxsize=1)
def service() -> RegistryService:
    """Built on first use, reused while the function is warm."""
    return RegistryService.from_settings(RegistrySettings.load())


def writer() -> str:
    """The caller's name (recorded in the history): the route's Access let it in."""
    return app.caller().name


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


@app.post("/models", WRITE, status_code=201)
def create_model(body: Annotated[CreateModelRequest, Body()]) -> Response[ModelDetails]:
    """Register a model name."""
    return created(service().create_model(body, writer()))


@app.get("/models", READ)
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
    return service().list_models(limit=limit, token=next_token, owner=owner, tag=tag, name=name, stage=stage)


@app.get("/models/<name>", READ)
def get_model(name: str) -> ModelDetails:
    """One model and where its aliases point."""
    return service().get_model(name)


@app.patch("/models/<name>", WRITE)
def update_model(name: str, body: Annotated[UpdateModelRequest, Body()]) -> ModelDetails:
    """Change description, owner or tags."""
    return service().update_model(name, body, writer())


@app.delete("/models/<name>", WRITE)
def delete_model(name: str) -> dict[str, Any]:
    """Delete a model no alias points at."""
    service().delete_model(name, writer())
    return {"model": name, "deleted": True}


@app.post("/models/<name>/uploads", WRITE, status_code=201)
def request_upload(name: str, body: Annotated[UploadRequest, Body()]) -> Response[UploadTicket]:
    """A presigned PUT URL for a model artifact or a reference sample."""
    return created(service().request_upload(name, body))


@app.post("/models/<name>/versions", WRITE, status_code=202)
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


@app.get("/models/<name>/versions", READ)
def list_versions(name: str, limit: Limit = 50, next_token: Token = None) -> VersionPage:
    """A page of versions, newest first."""
    return service().list_versions(name, limit=limit, token=next_token)


@app.get("/models/<name>/versions/<version>", READ)
def get_version(name: str, version: str) -> VersionRecord:
    """One version (``3`` or ``v3``), READY, PENDING_VALIDATION or FAILED."""
    return service().get_version(name, version)


@app.get("/models/<name>/aliases/<alias>", READ)
def get_alias(name: str, alias: str) -> Alias:
    """Where an alias points."""
    return service().get_alias(name, alias)


@app.put("/models/<name>/aliases/<alias>", WRITE)
def move_alias(name: str, alias: str, body: Annotated[MoveAliasRequest, Body()]) -> AliasMove:
    """Move an alias (``production`` runs the gate first)."""
    return service().move_alias(name, alias, body, writer())


@app.delete("/models/<name>/aliases/<alias>", WRITE)
def delete_alias(name: str, alias: str) -> Alias:
    """Remove an alias no endpoint variant uses."""
    return service().delete_alias(name, alias, writer())


@app.post("/models/<name>/rollback", WRITE)
def rollback(name: str, body: Annotated[RollbackRequest, Body()]) -> AliasMove:
    """Move an alias (default ``production``) back to its previous version."""
    return service().rollback(name, body, writer())


@app.put("/models/<name>/endpoint", WRITE)
def put_endpoint(
    name: str, body: Annotated[EndpointConfigRequest, Body()], if_match: IfMatch = None
) -> Response[EndpointConfig]:
    """Replace the whole config (variants, weights, shadow, rules, cache); replacing an existing
    one needs If-Match with its revision (428 without, 409 ``conflict`` when stale)."""
    actor = writer()
    return with_etag(service().put_endpoint(name, body, actor, if_match=parse_if_match(if_match)))


@app.patch("/models/<name>/endpoint", WRITE)
def patch_endpoint(
    name: str, body: Annotated[EndpointPatch, Body()], if_match: IfMatch = None
) -> Response[EndpointConfig]:
    """Change only what the body names (JSON merge patch); If-Match makes it conditional."""
    actor = writer()
    return with_etag(service().patch_endpoint(name, body, actor, if_match=parse_if_match(if_match)))


@app.get("/models/<name>/endpoint", READ)
def get_endpoint(name: str) -> Response[EndpointConfig]:
    """The endpoint config; its revision is the ETag."""
    return with_etag(service().get_endpoint(name))


@app.get("/models/<name>/history", READ)
def history(
    name: str,
    alias: Annotated[str | None, Query(max_length=32)] = None,
    at: Annotated[datetime | None, DATETIME_TEXT, Query()] = None,
    limit: Limit = 50,
    next_token: Token = None,
) -> HistoryPage | AliasAtTime:
    """The append-only log; ``alias`` + ``at`` answer "what did the alias point at, at that time"."""
    return service().history(name, alias=alias, at=at, limit=limit, token=next_token)


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_REST)
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    """Route the request."""
    return app.resolve(event, context)
