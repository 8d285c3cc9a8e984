"""``POST /models/{name}/predict``: score instances with the model's live variant.

The body is parsed once, by pydantic's JSON parser straight into ``PredictRequest``, and the
response is serialised once by pydantic's Rust serializer. powertools' ``enable_validation``
is off on this route because it parses the body with ``json.loads``, validates through a
TypeAdapter and re-encodes the response with ``jsonable_encoder``, which the benchmark
(benchmarks/bench_predict.py) measured at several times the cost of the model on a one-row
request; validation errors still go through ``errors.install``'s one mapping (422 naming the
field, 400 ``malformed_json``). Heavy modules (onnxruntime, boto3) load on the first request,
in ``service()``; pandas never loads in this function.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from aws_lambda_powertools.event_handler import APIGatewayRestResolver, Response
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
from mlambda.services.inference import InferenceService

app = APIGatewayRestResolver()
errors.install(app)


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


@app.post("/models/<name>/predict")
def predict(name: str) -> Response[str]:
    """Predictions for the request's instances (or entity), from the variant it is routed to."""
    event = app.current_event.raw_event
    require_scope(event, Scope.PREDICT)
    inference: InferenceService = app.context.get("inference") or service()
    request = parse_request(event, inference.max_body_bytes)
    return Response(
        status_code=200,
        content_type="application/json",
        body=inference.predict(name, request).model_dump_json(),
    )


def handler(
    event: dict[str, Any], context: LambdaContext, inference: InferenceService | None = None
) -> dict[str, Any]:
    """Route the request; tests and benchmarks may pass the service instead of building it from settings.

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
    if inference is not None:
        app.context["inference"] = inference
    try:
        response: dict[str, Any] = app.resolve(event, context)
    finally:
        if metrics.metric_set:
            metrics.flush_metrics()
    return response


_cold_start = True
