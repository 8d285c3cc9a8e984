"""``POST /models/{name}/predict``: score instances with the model's live variant.

This function has one route and a latency budget, so it is dispatched by hand instead of
through powertools' resolver: on a warm one-row request the same parse and service take
~72 µs through the resolver (event wrapper, route regex, middleware frame, response builder)
and ~41 µs here, where the model itself takes ~7 µs (benchmarks/bench_predict.py). What the
resolver gives the other functions is kept: errors go through ``errors.caller_error``, the
one mapping every API uses (4xx naming the field, 400 ``malformed_json``, 5xx generic), and
any other method or path is a 404 ``no_route``.

The body is parsed once, by pydantic's JSON parser straight into ``PredictRequest``, and the
response is written once, by orjson. Heavy modules (onnxruntime, boto3) load on the first
request, in ``service()``; pandas never loads in this function.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import orjson
from aws_lambda_powertools.event_handler.openapi.exceptions import RequestValidationError
from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic import ValidationError

from mlambda import errors
from mlambda.auth import require_scope
from mlambda.config import PredictSettings
from mlambda.http import request_body, require_body_within
from mlambda.observability import MetricUnit, logger, metrics
from mlambda.schemas.inference import PredictRequest
from mlambda.schemas.keys import Scope
from mlambda.services.inference.service import InferenceService

ROUTE = ("POST", "/models/{name}/predict")
"""The one route: API Gateway's method and resource template, as proxy events carry them."""


@lru_cache(maxsize=1)
def settings() -> PredictSettings:
    """Read once per instance."""
    return PredictSettings.load()


@lru_cache(maxsize=1)
def service() -> InferenceService:
    """Built on first use, reused while the function is warm (loaded models live in it)."""
    return InferenceService.from_settings(settings())


def parse_request(event: dict[str, Any], max_bytes: int) -> PredictRequest:
    """The request body as a PredictRequest: 413 when oversized, 400 malformed, 422 naming the field."""
    raw = request_body(event)
    require_body_within(raw, max_bytes)
    try:
        return PredictRequest.model_validate_json(raw or b"{}")
    except ValidationError as exc:
        raise RequestValidationError(exc.errors(include_url=False, include_input=False)) from exc


def predict(event: dict[str, Any], inference: InferenceService) -> str:
    """The response body: predictions for the request's instances (or entity) from its variant."""
    if (event.get("httpMethod"), event.get("resource")) != ROUTE:
        raise errors.NotFoundError(
            f"no route for {event.get('httpMethod')} {event.get('path')}", code="no_route"
        )
    require_scope(event, Scope.PREDICT)
    name = str((event.get("pathParameters") or {}).get("name", ""))
    request = parse_request(event, inference.max_body_bytes)
    return orjson.dumps(inference.predict(name, request)).decode()


def handler(
    event: dict[str, Any], context: LambdaContext, inference: InferenceService | None = None
) -> dict[str, Any]:
    """Answer one API Gateway proxy event; tests and benchmarks may pass the service instead of building it.

    Only the correlation id is put on the logger: ``inject_lambda_context`` costs ~40 µs per
    call (measured), more than the model, and this function logs only on errors and loads.
    Per-request figures are emitted by the service as one EMF line; powertools' ``metrics``
    carries the rare ones (cold start, fallbacks, errors) and is flushed only when it has any.
    Its namespace comes from the settings when powertools found none in the process
    environment (the local cloud gives each function its variables per invocation).
    """
    global _cold_start
    if not metrics.namespace:
        metrics.namespace = settings().metrics_namespace
        metrics.service = settings().service_name
    logger.set_correlation_id((event.get("requestContext") or {}).get("requestId"))
    if _cold_start:
        _cold_start = False
        metrics.add_metric(name="ColdStart", unit=MetricUnit.Count, value=1)
    try:
        status, body = 200, predict(event, inference or service())
    except Exception as exc:  # every failure becomes the caller's {code, message} answer
        error = errors.caller_error(exc)
        status, body = error.status, error.to_json()
    finally:
        if metrics.metric_set:
            metrics.flush_metrics()
    return {
        "statusCode": status,
        "body": body,
        "isBase64Encoded": False,
        "multiValueHeaders": {"Content-Type": ["application/json"]},
    }


_cold_start = True
