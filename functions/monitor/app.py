"""Monitoring: the EventBridge schedule runs it for every production model; ``GET /models/{name}/monitoring``
serves the latest report and the history.

One function, two triggers, told apart by the event's shape: an API Gateway proxy event has
``httpMethod``; anything else is a schedule (or an on-demand invoke naming ``model``/``models``).
"""

from __future__ import annotations

import re
from datetime import datetime
from functools import lru_cache
from typing import Annotated, Any, Literal

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.openapi.params import Query
from aws_lambda_powertools.utilities.typing import LambdaContext

from mlambda.api import INTEGER_TEXT, RouteDoc, ScopedResolver, needs
from mlambda.config import MonitorSettings
from mlambda.errors import InvalidInputError
from mlambda.observability import logger
from mlambda.schemas.keys import Scope
from mlambda.schemas.monitoring import MonitoringView
from mlambda.schemas.registry import MODEL_NAME_PATTERN
from mlambda.services.monitoring.service import MonitoringService

app = ScopedResolver()
MAX_MODELS_PER_INVOKE = 100


@lru_cache(maxsize=1)
def service() -> MonitoringService:
    """Built on first use, reused while the function is warm."""
    return MonitoringService.from_settings(MonitorSettings.load())


def _model_name(name: str) -> str:
    if not re.match(MODEL_NAME_PATTERN, name):
        raise InvalidInputError(f"{name!r} is not a model name", code="invalid_model_name")
    return name


@app.get("/models/<name>/monitoring", needs(Scope.REGISTRY_READ), RouteDoc(answer=MonitoringView, html=True))
def monitoring(
    name: str,
    limit: Annotated[int, INTEGER_TEXT, Query(ge=1, le=200)] = 24,
    format: Annotated[Literal["json", "html"], Query()] = "json",
) -> Response[str]:
    """The latest report and the last ``limit`` summaries; ``format=html`` returns the latest HTML report."""
    model = _model_name(name)
    if format == "html":
        return Response(
            status_code=200, content_type="text/html; charset=utf-8", body=service().latest_html(model)
        )
    view = service().view(model, limit)
    return Response(status_code=200, content_type="application/json", body=view.model_dump_json())


def _requested_models(event: dict[str, Any]) -> list[str] | None:
    """``{"model": "x"}`` or ``{"models": [...]}`` from an on-demand invoke; None: every production model."""
    names: list[Any] = []
    if isinstance(event.get("models"), list):
        names = event["models"]
    elif isinstance(event.get("model"), str):
        names = [event["model"]]
    if not names:
        return None
    if len(names) > MAX_MODELS_PER_INVOKE:
        raise InvalidInputError(f"at most {MAX_MODELS_PER_INVOKE} models per invocation")
    return [_model_name(str(n)) for n in names]


def _event_time(event: dict[str, Any]) -> datetime | None:
    """EventBridge's ``time`` (the schedule's tick), so a retried invocation reads the same window."""
    value = event.get("time")
    if not isinstance(value, str):
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None


def scheduled(event: dict[str, Any]) -> dict[str, Any]:
    """Monitor the requested (or every production) model; one summary each."""
    summaries = service().run(_requested_models(event), at=_event_time(event))
    return {
        "monitored": len(summaries),
        "results": [
            s.model_dump(
                mode="json",
                include={
                    "model",
                    "version",
                    "source",
                    "job_id",
                    "at",
                    "status",
                    "reason",
                    "rows",
                    "alerts_sent",
                    "report_key",
                    "html_key",
                },
            )
            for s in summaries
        ],
    }


@logger.inject_lambda_context
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    """API request or schedule tick."""
    if "httpMethod" in event:
        return app.resolve(event, context)
    return scheduled(event)
