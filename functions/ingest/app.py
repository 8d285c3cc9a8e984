"""The Event API: ``POST /events`` (ingest scope), ``POST /items``, ``DELETE /items/{id}``,
``GET /entities/{id}/features`` and ``DELETE /entities/{id}`` (admin: purge).

``POST /events`` parses its body itself rather than through powertools' validation: events are
validated one by one, so one bad event is reported by index (207) instead of failing the batch.
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Annotated, Any

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.openapi.params import Body, Query
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic import BaseModel, Field

from mlambda import errors
from mlambda.api import INTEGER_TEXT, RouteDoc, ScopedResolver, needs
from mlambda.config import IngestSettings
from mlambda.http import request_body
from mlambda.observability import logger, metrics
from mlambda.schemas.bounds import MAX_PAGE_TOKEN
from mlambda.schemas.events import (
    IDENTIFIER,
    EntityFeatures,
    Event,
    FeatureGroupPage,
    GroupName,
    IngestResponse,
    ItemsRequest,
    ItemsResponse,
    PurgeResult,
)
from mlambda.schemas.keys import Scope
from mlambda.services.ingestion.service import MAX_GROUPS_PAGE, IngestionService, parse_events

app = ScopedResolver()
INGEST = needs(Scope.INGEST)
ADMIN = needs(Scope.ADMIN)


class EventsBody(BaseModel):
    """``POST /events``'s body as the OpenAPI document states it; the route reads it itself, event by
    event (one bad event is rejected alone, with its index: 207)."""

    events: list[Event] = Field(min_length=1)


@lru_cache(maxsize=1)
def settings() -> IngestSettings:
    """Read once per instance."""
    return IngestSettings.load()


@lru_cache(maxsize=1)
def service() -> IngestionService:
    """Built on first use, reused while the function is warm."""
    return IngestionService.from_settings(settings())


@app.post("/events", INGEST, RouteDoc(body=EventsBody, answer=IngestResponse, statuses=(200, 207)))
def post_events() -> Response[str]:
    """Apply a batch of events: 200 when every event was accepted, 207 listing the rejected ones."""
    config = settings()
    events = parse_events(
        request_body(app.current_event.raw_event),
        max_bytes=config.max_body_bytes,
        max_events=config.max_events,
    )
    result = service().ingest(events)
    return Response(
        status_code=207 if result.rejected else 200,
        content_type="application/json",
        body=result.model_dump_json(exclude_none=True),
    )


@app.post("/items", INGEST)
def post_items(body: Annotated[ItemsRequest, Body()]) -> ItemsResponse:
    """Upsert item metadata (a metadata source's webhook); older changes never win."""
    return service().upsert_items(body)


@app.delete("/items/<item_id>", INGEST)
def delete_item(item_id: str) -> dict[str, Any]:
    """Remove an item's metadata."""
    if re.fullmatch(IDENTIFIER, item_id) is None:
        raise errors.InvalidInputError(f"item id must match {IDENTIFIER}", code="invalid_item_id")
    return service().delete_item(item_id)


@app.get("/entities/<entity_id>/features", INGEST)
def get_features(
    entity_id: str,
    group: Annotated[list[GroupName] | None, Query(max_length=100)] = None,
) -> EntityFeatures:
    """The entity's live feature groups (``group=`` to pick some) and aggregates."""
    _check_entity(entity_id)
    return service().entity_features(entity_id, group or [])


@app.get("/feature-groups", INGEST)
def feature_groups(
    limit: Annotated[int, INTEGER_TEXT, Query(ge=1, le=MAX_GROUPS_PAGE)] = 100,
    next_token: Annotated[str | None, Query(max_length=MAX_PAGE_TOKEN)] = None,
) -> FeatureGroupPage:
    """The feature groups the store has been sent (by name), with the feature names seen in each."""
    return service().feature_groups(limit=limit, token=next_token)


@app.delete("/entities/<entity_id>", ADMIN)
def purge_entity(entity_id: str) -> PurgeResult:
    """Erase the entity from the online stores and stop its in-flight data reaching the archive (admin)."""
    _check_entity(entity_id)
    return service().purge(entity_id, app.caller().name)


def _check_entity(entity_id: str) -> None:
    if re.fullmatch(IDENTIFIER, entity_id) is None:
        raise errors.InvalidInputError(f"entity id must match {IDENTIFIER}", code="invalid_entity_id")


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_REST)
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    """Route the request; flush the event counters when there are any.

    The namespace falls back to the template's when powertools found none in the process
    environment (the local cloud gives each function its variables per invocation).
    """
    try:
        response: dict[str, Any] = app.resolve(event, context)
    finally:
        if metrics.metric_set:
            metrics.namespace = metrics.namespace or "mlambda"
            metrics.flush_metrics()
    return response
