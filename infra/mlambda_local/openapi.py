"""The OpenAPI 3.1 document of the whole API: ``python -m mlambda_local.openapi [--check]`` (``make openapi``).

Built from what serves the API, never written by hand: each API function's powertools resolver
(``app.get_openapi_schema()``: paths, parameters, bodies and answers from the routes' pydantic
types), predict's hand-dispatched routes described from its pydantic schemas, and the routes of
template.yaml (the document covers exactly the routes API Gateway has: a route in one and not the
other is an error). On top of what powertools gives, every operation gets the ``x-api-key``
security scheme and its scope (``mlambda.api``'s ``Access``: ``x-mlambda-scope`` and a sentence of
its description), and every error it can answer as ``{code, message, details}`` with an example.

The document is committed as ``functions/console/openapi.json`` (the console function serves it at
``GET /openapi.json``, no key needed); a test fails when it drifts from this generator.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
from pathlib import Path
from typing import Any

from pydantic import TypeAdapter

import mlambda
from mlambda.api import SCOPE_EXTENSION, SECURITY_SCHEME, RouteDoc, ScopedResolver
from mlambda_local.cloud.template import load_yaml

REPO_ROOT = Path(__file__).resolve().parents[2]
DOCUMENT = REPO_ROOT / "functions" / "console" / "openapi.json"
REF = "#/components/schemas/{model}"
MEDIA_CHECKED = "x-media-type-checked"
"""Marks, while the document is built, the operations that answer 415 for a body they cannot read."""

ERROR_SCHEMA = {
    "type": "object",
    "description": "Every error the API answers, from a function or from API Gateway itself.",
    "properties": {
        "code": {
            "type": "string",
            "description": "Stable, machine-readable reason",
            "examples": ["forbidden"],
        },
        "message": {"type": "string", "description": "What went wrong, for a person"},
        "details": {
            "description": "What the code needs to say more (the fields at fault, the scope required, the limits); null when nothing",
            "anyOf": [{"type": "object"}, {"type": "array"}, {"type": "null"}],
        },
    },
    "required": ["code", "message", "details"],
}

# status -> (description, example body)
ERRORS: dict[int, tuple[str, dict[str, Any]]] = {
    400: (
        "Malformed request: the body is not JSON, or a value breaks a rule (`invalid_input`, `malformed_json`, `invalid_token`...)",
        {"code": "malformed_json", "message": "body is not valid JSON", "details": None},
    ),
    401: (
        "No API key, or one that is unknown or revoked",
        {"code": "unauthorized", "message": "missing, unknown or revoked API key", "details": None},
    ),
    403: (
        "The key lacks the route's scope",
        {
            "code": "forbidden",
            "message": "this key lacks the 'registry:write' scope",
            "details": {"required": "registry:write"},
        },
    ),
    404: (
        "No such route, or the thing the path names does not exist",
        {"code": "model_not_found", "message": "model 'churn' not found", "details": None},
    ),
    409: (
        "The write contradicts the current state or lost a race (a stale If-Match, a version not READY...)",
        {"code": "conflict", "message": "the endpoint changed since it was read", "details": {"revision": 4}},
    ),
    413: (
        "The body is over the route's limit",
        {
            "code": "body_too_large",
            "message": "request body is 7340032 bytes, over the 6291456-byte limit",
            "details": {"bytes": 7340032, "limit": 6291456},
        },
    ),
    415: (
        "The body's `Content-Type` (or `Content-Encoding`) is not one the route reads",
        {
            "code": "unsupported_media_type",
            "message": "Content-Type: text/plain is not accepted here; send application/json",
            "details": [{"field": "Content-Type", "message": "accepted: application/json"}],
        },
    ),
    422: (
        "Well-formed JSON that fails validation: `details` lists each field at fault",
        {
            "code": "validation_error",
            "message": "body.name: Field required",
            "details": [{"field": "body.name", "message": "Field required"}],
        },
    ),
    428: (
        "The change needs `If-Match` with the revision read (its ETag)",
        {
            "code": "precondition_required",
            "message": "send If-Match with the endpoint's revision",
            "details": None,
        },
    ),
    429: (
        "The key's usage plan is spent: `throttled` (rate, burst) or `quota_exceeded` (daily); `Retry-After` says when to retry",
        {
            "code": "throttled",
            "message": "Too Many Requests",
            "details": {"plan": "standard", "limit": "rate", "rate_per_second": 100, "burst": 200},
        },
    ),
}
RETRY_AFTER = {
    "Retry-After": {"description": "Seconds to wait before retrying", "schema": {"type": "integer"}}
}


def template_routes() -> dict[tuple[str, str], tuple[str, bool]]:
    """(METHOD, path) -> (function module, public) for every ``Type: Api`` event of template.yaml."""
    template = load_yaml(REPO_ROOT / "template.yaml")
    routes: dict[tuple[str, str], tuple[str, bool]] = {}
    for resource in template["Resources"].values():
        properties = resource.get("Properties") or {}
        for event in (properties.get("Events") or {}).values():
            if event.get("Type") != "Api":
                continue
            spec = event["Properties"]
            code = str(properties["CodeUri"]).strip("/").split("/")[-1]
            public = (spec.get("Auth") or {}).get("Authorizer") == "NONE"
            routes[(str(spec["Method"]).upper(), str(spec["Path"]))] = (f"functions.{code}.app", public)
    return routes


def _schema(adapter_type: Any, components: dict[str, Any], mode: str = "validation") -> dict[str, Any]:
    """The JSON schema of ``adapter_type``, its definitions moved into ``components``."""
    schema: dict[str, Any] = _canonical(TypeAdapter(adapter_type).json_schema(ref_template=REF, mode=mode))  # type: ignore[arg-type]
    for name, definition in schema.pop("$defs", {}).items():
        _add_component(components, name, definition)
    return schema


def _canonical(value: Any) -> Any:
    """Whole floats as ints and no ``default: null``, recursively: powertools' models write ``100.0``
    where pydantic wrote ``100``, and drop null defaults, so both sources describe a type the same way."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, dict):
        return {
            key: _canonical(item) for key, item in value.items() if not (key == "default" and item is None)
        }
    if isinstance(value, list):
        return [_canonical(item) for item in value]
    return value


def _add_component(components: dict[str, Any], name: str, definition: Any) -> None:
    definition = _canonical(definition)
    if name in components and components[name] != definition:
        raise ValueError(f"two different schemas are both named {name!r}: rename one")
    components[name] = definition


def _json(schema: dict[str, Any]) -> dict[str, Any]:
    return {"application/json": {"schema": schema}}


def _predict_paths(components: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """predict's hand-dispatched routes, described from its pydantic schemas."""
    from functions.predict import app as predict
    from mlambda.schemas.inference import MlflowResponse, PredictRequest, PredictResponse
    from mlambda.schemas.open_inference import InferRequest, InferResponse, MetadataTensor

    predict_request = _schema(PredictRequest, components)
    predict_response = {
        "anyOf": [
            _schema(PredictResponse, components, "serialization"),
            _schema(MlflowResponse, components, "serialization"),
        ]
    }
    infer_request = _schema(InferRequest, components)
    infer_response = _schema(InferResponse, components, "serialization")
    tensor = _schema(MetadataTensor, components, "serialization")
    model_metadata = {
        "type": "object",
        "properties": {
            "name": {"type": "string"},
            "versions": {"type": "array", "items": {"type": "string"}},
            "platform": {"type": "string"},
            "inputs": {"type": "array", "items": tensor},
            "outputs": {"type": "array", "items": tensor},
            "parameters": {"type": "object"},
        },
        "required": ["name", "versions", "platform", "inputs", "outputs"],
    }
    answers: dict[tuple[str, str], tuple[str, dict[str, Any] | None, dict[str, Any]]] = {
        ("POST", "/models/{name}/predict"): (
            "Score instances with the model's live variant (mlambda's `instances`, or MLflow's `dataframe_split`, `dataframe_records`, `instances`, `inputs`).",
            predict_request,
            predict_response,
        ),
        ("GET", "/v2"): (
            "Open Inference Protocol: the server's metadata.",
            None,
            {
                "type": "object",
                "properties": {
                    "name": {"type": "string"},
                    "version": {"type": "string"},
                    "extensions": {"type": "array", "items": {"type": "string"}},
                },
                "required": ["name", "version", "extensions"],
            },
        ),
        ("GET", "/v2/health/live"): (
            "Open Inference Protocol: liveness.",
            None,
            {"type": "object", "properties": {"live": {"type": "boolean"}}, "required": ["live"]},
        ),
        ("GET", "/v2/health/ready"): (
            "Open Inference Protocol: readiness.",
            None,
            {"type": "object", "properties": {"ready": {"type": "boolean"}}, "required": ["ready"]},
        ),
        ("GET", "/v2/models/{name}"): (
            "Open Inference Protocol: the production version's inputs and outputs.",
            None,
            model_metadata,
        ),
        ("GET", "/v2/models/{name}/versions/{version}"): (
            "Open Inference Protocol: a version's inputs and outputs.",
            None,
            model_metadata,
        ),
        ("GET", "/v2/models/{name}/ready"): (
            "Open Inference Protocol: the production version resolves and loads.",
            None,
            {
                "type": "object",
                "properties": {"name": {"type": "string"}, "ready": {"type": "boolean"}},
                "required": ["name", "ready"],
            },
        ),
        ("GET", "/v2/models/{name}/versions/{version}/ready"): (
            "Open Inference Protocol: the version resolves and loads.",
            None,
            {
                "type": "object",
                "properties": {"name": {"type": "string"}, "ready": {"type": "boolean"}},
                "required": ["name", "ready"],
            },
        ),
        ("POST", "/v2/models/{name}/infer"): (
            "Open Inference Protocol: infer with the production version.",
            infer_request,
            infer_response,
        ),
        ("POST", "/v2/models/{name}/versions/{version}/infer"): (
            "Open Inference Protocol: infer with a version.",
            infer_request,
            infer_response,
        ),
    }
    if set(answers) != set(predict.ROUTES):
        raise ValueError(
            f"predict's routes and their description differ: {sorted(set(answers) ^ set(predict.ROUTES))}"
        )
    paths: dict[str, dict[str, Any]] = {}
    for (method, path), (summary, body, response) in answers.items():
        parameters = [
            {"name": part.strip("{}"), "in": "path", "required": True, "schema": {"type": "string"}}
            for part in path.split("/")
            if part.startswith("{")
        ]
        operation: dict[str, Any] = {
            "operationId": "predict_"
            + "_".join(part.strip("{}") for part in path.split("/") if part)
            + "_"
            + method.lower(),
            "summary": f"{method} {path}",
            "description": summary,
            "tags": ["inference"],
            "parameters": parameters,
            "responses": {"200": {"description": "Successful Response", "content": _json(response)}},
            "security": [{SECURITY_SCHEME: []}],
            SCOPE_EXTENSION: [scope.value for scope in predict.ACCESS.scopes],
        }
        operation["description"] += f"\n\n{predict.ACCESS.sentence}"
        if body is not None:
            operation["requestBody"] = {"required": True, "content": _json(body)}
            operation[MEDIA_CHECKED] = True
        if path.endswith("/infer"):
            operation["requestBody"]["content"]["application/octet-stream"] = {
                "schema": {"type": "string", "format": "binary"},
                "description": "The binary tensor data extension: the JSON request of "
                "`Inference-Header-Content-Length` bytes, then each binary input's bytes",
            }
        paths.setdefault(path, {})[method.lower()] = operation
    return paths


def _resolver_paths(module: str, components: dict[str, Any]) -> dict[str, dict[str, Any]]:
    app = importlib.import_module(module).app
    if not isinstance(app, ScopedResolver):
        raise ValueError(f"{module}.app is not a ScopedResolver: its routes declare no Access")
    from aws_lambda_powertools.event_handler.openapi.models import APIKey, APIKeyIn

    document = app.get_openapi_schema(
        title="mlambda",
        version=mlambda.__version__,
        openapi_version="3.1.0",
        security_schemes={SECURITY_SCHEME: APIKey(name="x-api-key", in_=APIKeyIn.header)},
    )
    raw = _canonical(json.loads(document.model_dump_json(by_alias=True, exclude_none=True)))
    for name, definition in (raw.get("components") or {}).get("schemas", {}).items():
        if name in ("HTTPValidationError", "ValidationError"):
            continue  # powertools' 422 body: the platform's is Error
        _add_component(components, name, definition)
    tag = module.split(".")[1]
    paths: dict[str, dict[str, Any]] = raw.get("paths") or {}
    for path, operations in paths.items():
        for method, operation in operations.items():
            operation["tags"] = [tag]
            _document(operation, app.documentation[(method.upper(), path)], components)
    return paths


_JSON_SCHEMA_BOUNDS = {"ge": "minimum", "le": "maximum", "gt": "exclusiveMinimum", "lt": "exclusiveMaximum"}
"""powertools writes pydantic's names for a query parameter's bounds when its Annotated carries a
validator beside Query() (mlambda.api.INTEGER_TEXT): the document states them in JSON Schema's."""


def _document(operation: dict[str, Any], doc: RouteDoc, components: dict[str, Any]) -> None:
    """What a route's RouteDoc adds: the body it parses itself, its answer's type, every success status."""
    for parameter in operation.get("parameters") or []:
        schema = parameter.get("schema") or {}
        for name, standard in _JSON_SCHEMA_BOUNDS.items():
            if name in schema:
                schema[standard] = schema.pop(name)
    responses = operation.setdefault("responses", {})
    if doc.body is not None:
        operation["requestBody"] = {"required": True, "content": _json(_schema(doc.body, components))}
    usual = responses[str(doc.statuses[0])]
    if doc.answer is not None:
        usual["content"] = _json(_schema(doc.answer, components))
    if doc.html:
        usual["content"]["text/html"] = {"schema": {"type": "string"}}
    for status in doc.statuses[1:]:
        responses[str(status)] = {**usual, "description": "Successful Response"}


def _errors_for(method: str, operation: dict[str, Any], public: bool, json_only: bool) -> list[int]:
    """The error statuses an operation can answer (``json_only``: its function refuses a body of another
    media type, as ``mlambda.api.ScopedResolver`` does; predict reads any body as JSON)."""
    statuses = [400, 404]
    # predict's body routes check the media type; every other function's (ScopedResolver) too
    if operation.pop(MEDIA_CHECKED, False) or (json_only and operation.get("requestBody")):
        statuses.append(415)
    if not public:
        statuses += [401, 429]
        if operation.get(SCOPE_EXTENSION):
            statuses.append(403)
    parameters = operation.get("parameters") or []
    if operation.get("requestBody") or parameters:
        statuses.append(422)
    if operation.get("requestBody"):
        statuses.append(413)
    if method in ("post", "put", "patch", "delete"):
        statuses.append(409)
    if any(parameter.get("name") == "if-match" for parameter in parameters):
        statuses.append(428)
    return sorted(statuses)


def _add_errors(method: str, operation: dict[str, Any], public: bool, json_only: bool) -> None:
    responses = operation.setdefault("responses", {})
    responses.pop("422", None)  # powertools' own 422 body; the platform's is Error, where it applies
    for status in _errors_for(method, operation, public, json_only):
        description, example = ERRORS[status]
        response: dict[str, Any] = {
            "description": description,
            "content": {
                "application/json": {"schema": {"$ref": REF.format(model="Error")}, "example": example}
            },
        }
        if status == 429:
            response["headers"] = RETRY_AFTER
        responses[str(status)] = response


def _openapi_document_path() -> dict[str, Any]:
    return {
        "get": {
            "operationId": "openapi_document_get",
            "summary": "GET /openapi.json",
            "description": "This document (OpenAPI 3.1). No API key needed.",
            "tags": ["meta"],
            "security": [],
            "responses": {
                "200": {"description": "The OpenAPI document", "content": _json({"type": "object"})}
            },
        }
    }


def build() -> dict[str, Any]:
    """The whole API's OpenAPI document."""
    routes = template_routes()
    components: dict[str, Any] = {"Error": ERROR_SCHEMA}
    paths: dict[str, dict[str, Any]] = {}
    modules = sorted({module for module, public in routes.values() if not public})
    for module in modules:
        found = (
            _predict_paths(components)
            if module == "functions.predict.app"
            else _resolver_paths(module, components)
        )
        for path, operations in found.items():
            for method, operation in operations.items():
                if method in paths.get(path, {}):
                    raise ValueError(f"{method.upper()} {path} is described twice")
                paths.setdefault(path, {})[method] = operation
    paths["/openapi.json"] = _openapi_document_path()
    described = {(method.upper(), path) for path, operations in paths.items() for method in operations}
    deployed = {
        route for route, (module, public) in routes.items() if not public or route == ("GET", "/openapi.json")
    }
    if described != deployed:
        raise ValueError(
            "the document and template.yaml disagree on the routes: "
            f"only described {sorted(described - deployed)}, only deployed {sorted(deployed - described)}"
        )
    for path, operations in paths.items():
        for method, operation in operations.items():
            module, public = routes[(method.upper(), path)]
            _add_errors(method, operation, public, json_only=module != "functions.predict.app")
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "mlambda",
            "version": mlambda.__version__,
            "summary": "A serverless ML platform: registry, online inference, events, batch jobs, monitoring, human evaluation.",
            "description": (
                "Every route but `GET /openapi.json` needs an `x-api-key` header holding a key with the "
                "route's scope (`x-mlambda-scope`: any one of them, or `admin`). Every error is "
                "`{code, message, details}`. Each key has a usage plan (rate, burst, daily quota); over it "
                "the API answers 429 with `Retry-After`."
            ),
        },
        "servers": [{"url": "/v1", "description": "the API's stage (template.yaml's StageName) on its host"}],
        "paths": dict(sorted(paths.items())),
        "components": {
            "schemas": dict(sorted(components.items())),
            "securitySchemes": {
                SECURITY_SCHEME: {
                    "type": "apiKey",
                    "in": "header",
                    "name": "x-api-key",
                    "description": "`mlk.<key_id>.<secret>`",
                }
            },
        },
    }


def render(document: dict[str, Any]) -> str:
    """The committed text: stable key order, two-space indent, a final newline."""
    return json.dumps(document, indent=2, ensure_ascii=False) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail if the committed document is not current")
    args = parser.parse_args(argv)
    text = render(build())
    if args.check:
        if not DOCUMENT.exists() or DOCUMENT.read_text(encoding="utf-8") != text:
            print(f"{DOCUMENT.relative_to(REPO_ROOT)} is out of date: run `make openapi`", file=sys.stderr)
            return 1
        return 0
    DOCUMENT.write_text(text, encoding="utf-8")
    paths = build()["paths"]
    print(f"wrote {DOCUMENT.relative_to(REPO_ROOT)}: {sum(len(ops) for ops in paths.values())} operations")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
