"""``POST /models/{name}/predict`` and the Open Inference Protocol's ``/v2/...`` routes, on one engine.

The predict route takes mlambda's ``instances`` and MLflow's scoring formats
(``mlambda.schemas.inference``); the ``/v2`` routes are the Open Inference Protocol (KServe,
Triton: ``mlambda.schemas.open_inference``). Both go through ``InferenceService.serve``: the
same authorisation (the ``predict`` scope), variants, serving rules, prediction log and
explanations.

This function has a latency budget, so it is dispatched by hand (a dict lookup on API Gateway's
method and resource template) instead of through powertools' resolver: on a warm one-row request the same parse and service take
~72 µs through the resolver (event wrapper, route regex, middleware frame, response builder)
and ~41 µs here, where the model itself takes ~7 µs (benchmarks/bench_predict.py). What the
resolver gives the other functions is kept: errors go through ``errors.caller_error``, the
one mapping every API uses (4xx naming the field, 400 ``malformed_json``, 5xx generic; on
``/v2`` routes the body also carries the protocol's ``error``), and any other method or path is
a 404 ``no_route``.

The body is parsed once, by orjson (the fastest parser here: a 1,000-row ``dataframe_split``
parses in half the time pydantic's JSON mode takes), then validated by pydantic; the response
is written once, by orjson, numpy columns included. Heavy modules (onnxruntime, boto3) load on the first
request, in ``service()``; pandas never loads in this function.

Media types: the predict route reads JSON (``application/json`` or no ``Content-Type``), the
``/v2`` infer routes also ``application/octet-stream``, the binary tensor data extension's body
(a JSON header of ``Inference-Header-Content-Length`` bytes, then the tensors' bytes), which
template.yaml declares a binary media type so that API Gateway hands it over intact (base64);
anything else, or a compressed body, is a 415 ``unsupported_media_type``. Binary outputs are
answered base64-encoded with ``isBase64Encoded``, which API Gateway decodes for a caller whose
first ``Accept`` type is ``application/octet-stream`` (``mlambda.http.accepts_binary``); for
any other caller they are written as JSON.
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from functools import lru_cache
from typing import Any, TypeVar

import orjson
from aws_lambda_powertools.event_handler.openapi.exceptions import RequestValidationError
from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic import BaseModel, ValidationError

from mlambda import errors
from mlambda.api import needs
from mlambda.config import PredictSettings
from mlambda.http import (
    BINARY,
    JSON,
    accepts_binary,
    header_values,
    request_body,
    require_body_within,
    require_media_type,
)
from mlambda.observability import MetricUnit, logger, metrics
from mlambda.schemas.inference import PredictRequest
from mlambda.schemas.keys import Scope
from mlambda.schemas.open_inference import INFERENCE_HEADER, InferRequest
from mlambda.services.inference.open_inference import (
    BinaryInferResponse,
    OpenInference,
    server_metadata,
    split_body,
)
from mlambda.services.inference.prediction_log import json_default
from mlambda.services.inference.service import InferenceService


@lru_cache(maxsize=1)
def settings() -> PredictSettings:
    """Read once per instance."""
    return PredictSettings.load()


@lru_cache(maxsize=1)
def service() -> InferenceService:
    """Built on first use, reused while the function is warm (loaded models live in it)."""
    return InferenceService.from_settings(settings())


Body = TypeVar("Body", bound=BaseModel)


def parse_json(raw: bytes | str, schema: type[Body]) -> Body:
    """A JSON body as ``schema``: 400 malformed, 422 naming the field."""
    try:
        try:
            document = orjson.loads(raw or b"{}")
        except orjson.JSONDecodeError:
            # NaN, Infinity: not JSON, but pydantic's parser reads them, so the validation names the
            # field (422) instead of refusing the whole body; truly malformed JSON is a 400 there too.
            return schema.model_validate_json(raw or b"{}")
        return schema.model_validate(document)
    except ValidationError as exc:
        raise RequestValidationError(exc.errors(include_url=False, include_input=False)) from exc


def parse_body(event: dict[str, Any], max_bytes: int, schema: type[Body]) -> Body:
    """The request's JSON body as ``schema``: 415 not JSON, 413 when oversized, then ``parse_json``."""
    require_media_type(event, (JSON,))
    raw = request_body(event)
    require_body_within(raw, max_bytes)
    return parse_json(raw, schema)


def parse_request(event: dict[str, Any], max_bytes: int) -> PredictRequest:
    """The predict body as a PredictRequest."""
    return parse_body(event, max_bytes, PredictRequest)


def _path(event: dict[str, Any], name: str) -> str | None:
    value = (event.get("pathParameters") or {}).get(name)
    return None if value is None else str(value)


def predict(event: dict[str, Any], inference: InferenceService) -> Any:
    """``POST /models/{name}/predict``: predictions in the request format's shape."""
    return inference.predict(str(_path(event, "name")), parse_request(event, inference.max_body_bytes))


def infer(event: dict[str, Any], inference: InferenceService) -> Any:
    """``POST /v2/models/{name}[/versions/{version}]/infer``: JSON, or a JSON header and binary tensor data."""
    require_media_type(event, (JSON, BINARY))
    raw = request_body(event)
    require_body_within(raw, inference.max_body_bytes)
    header, binary = split_body(
        raw, header_values(event, INFERENCE_HEADER), delivered_as_bytes=bool(event.get("isBase64Encoded"))
    )
    return OpenInference(inference).infer(
        str(_path(event, "name")),
        _path(event, "version"),
        parse_json(header, InferRequest),
        binary=binary,
        binary_outputs=accepts_binary(event),
    )


def model_metadata(event: dict[str, Any], inference: InferenceService) -> Any:
    """``GET /v2/models/{name}[/versions/{version}]``."""
    return OpenInference(inference).metadata(str(_path(event, "name")), _path(event, "version"))


def model_ready(event: dict[str, Any], inference: InferenceService) -> Any:
    """``GET /v2/models/{name}[/versions/{version}]/ready``."""
    return OpenInference(inference).ready(str(_path(event, "name")), _path(event, "version"))


ROUTES: dict[tuple[str, str], Callable[[dict[str, Any], InferenceService], Any]] = {
    ("POST", "/models/{name}/predict"): predict,
    ("GET", "/v2"): lambda event, inference: server_metadata(),
    ("GET", "/v2/health/live"): lambda event, inference: {"live": True},
    ("GET", "/v2/health/ready"): lambda event, inference: {"ready": True},
    ("GET", "/v2/models/{name}"): model_metadata,
    ("GET", "/v2/models/{name}/versions/{version}"): model_metadata,
    ("GET", "/v2/models/{name}/ready"): model_ready,
    ("GET", "/v2/models/{name}/versions/{version}/ready"): model_ready,
    ("POST", "/v2/models/{name}/infer"): infer,
    ("POST", "/v2/models/{name}/versions/{version}/infer"): infer,
}
"""API Gateway's (method, resource template) -> the route; template.yaml declares the same."""
ACCESS = needs(Scope.PREDICT)
"""Who may call every route of this function (the OpenAPI document states it per route)."""


def answer(
    event: dict[str, Any], inference: InferenceService | None
) -> tuple[bytes, dict[str, list[str]] | None]:
    """The response body of the event's route and its headers when not JSON; the caller's scope is checked first."""
    route = ROUTES.get((str(event.get("httpMethod")), str(event.get("resource"))))
    if route is None:
        raise errors.NotFoundError(
            f"no route for {event.get('httpMethod')} {event.get('path')}", code="no_route"
        )
    ACCESS.check(event)
    result = route(event, inference or service())
    if isinstance(result, BinaryInferResponse):
        header = orjson.dumps(result.header, default=json_default, option=orjson.OPT_SERIALIZE_NUMPY)
        headers = {"Content-Type": [BINARY], INFERENCE_HEADER: [str(len(header))]}
        return b"".join([header, *result.chunks]), headers
    return orjson.dumps(result, default=json_default, option=orjson.OPT_SERIALIZE_NUMPY), None


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
    headers: dict[str, list[str]] | None = None
    try:
        status, (body, headers) = 200, answer(event, inference)
    except Exception as exc:  # every failure becomes the caller's {code, message} answer
        error = errors.caller_error(exc)
        status = error.status
        document = error.to_body()
        if str(event.get("resource", "")).startswith("/v2"):
            document["error"] = error.message  # the Open Inference Protocol's error field
        body = orjson.dumps(document, default=str)  # details that are not JSON types, as strings
    finally:
        if metrics.metric_set:
            metrics.flush_metrics()
    if headers is not None:  # bytes: base64, which API Gateway decodes (BinaryMediaTypes)
        return {
            "statusCode": status,
            "body": base64.b64encode(body).decode(),
            "isBase64Encoded": True,
            "multiValueHeaders": headers,
        }
    return {
        "statusCode": status,
        "body": body.decode(),
        "isBase64Encoded": False,
        "multiValueHeaders": {"Content-Type": [JSON]},
    }


_cold_start = True
