"""API Gateway (REST, Lambda proxy) emulation: routes from the translated swagger, authorizers, events.

The routing table, authorizers and gateway responses all come from the ``Body`` SAM puts on
the AWS::ApiGateway::RestApi, so what is tested locally is what is deployed. A request goes
through what API Gateway does, in its order: body cap (413), route match (unknown route:
MISSING_AUTHENTICATION_TOKEN), authorizer (401 / 403, with results cached by identity for the
authorizer's TTL), then the function with a version 1.0 proxy event; a function error is a 502.
Bodies follow the API's binary media types as API Gateway applies them: a request body whose
``Content-Type`` matches one reaches the function base64-encoded, any other as UTF-8 text (bytes
that are not UTF-8 do not survive); a base64 answer (``isBase64Encoded``) is decoded only for a
request whose first ``Accept`` type matches one (no ``Accept``: only ``*/*`` does), else the
caller gets the base64 text.
"""

from __future__ import annotations

import base64
import fnmatch
import json
import logging
import re
import threading
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from mlambda_local.cloud.errors import FunctionInvocationError, TemplateError
from mlambda_local.cloud.functions import Function
from mlambda_local.cloud.template import IntrinsicResolver, Template
from mlambda_local.cloud.throttling import UsageLimiter, plans_from_template

logger = logging.getLogger("mlambda.local")

MAX_BODY_BYTES = 10 * 1024 * 1024  # API Gateway's payload limit
HTTP_METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS")
ANY_METHOD = "x-amazon-apigateway-any-method"

# API Gateway's defaults when the template defines no gateway response of that type.
DEFAULT_GATEWAY_RESPONSES: dict[str, tuple[int, str, str]] = {
    "UNAUTHORIZED": (401, "unauthorized", "Unauthorized"),
    "ACCESS_DENIED": (403, "forbidden", "User is not authorized to access this resource"),
    "MISSING_AUTHENTICATION_TOKEN": (403, "missing_authentication_token", "Missing Authentication Token"),
    "INVALID_API_KEY": (403, "forbidden", "Forbidden"),
    "REQUEST_TOO_LARGE": (413, "payload_too_large", "Request Too Long"),
    "THROTTLED": (429, "throttled", "Too Many Requests"),
    "QUOTA_EXCEEDED": (429, "quota_exceeded", "Limit Exceeded"),
    "AUTHORIZER_CONFIGURATION_ERROR": (500, "internal_error", "Internal server error"),
    "INTEGRATION_FAILURE": (502, "upstream_error", "Internal server error"),
}


@dataclass
class HttpResponse:
    """What the HTTP server writes back."""

    status: int
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""

    @classmethod
    def json(cls, status: int, payload: Any, headers: list[tuple[str, str]] | None = None) -> HttpResponse:
        return cls(
            status,
            [("Content-Type", "application/json"), *(headers or [])],
            json.dumps(payload, default=str).encode(),
        )

    @classmethod
    def error(
        cls,
        status: int,
        code: str,
        message: str,
        details: Any = None,
        headers: list[tuple[str, str]] | None = None,
    ) -> HttpResponse:
        """The platform's error shape, ``{code, message, details}`` (details null when there are none)."""
        return cls.json(status, {"code": code, "message": message, "details": details}, headers)


@dataclass(frozen=True)
class HttpRequest:
    """A request as the HTTP server read it (raw path with query string)."""

    method: str
    target: str
    headers: list[tuple[str, str]]
    body: bytes
    source_ip: str
    host: str = "127.0.0.1"

    def header(self, name: str) -> str | None:
        lowered = name.lower()
        found = [value for key, value in self.headers if key.lower() == lowered]
        return found[-1] if found else None


@dataclass(frozen=True)
class Authorizer:
    """A Lambda authorizer from ``securityDefinitions``."""

    name: str
    type: str  # "request" | "token"
    function: Function
    identity_sources: tuple[str, ...]
    ttl_seconds: int
    validation_expression: str | None = None


@dataclass(frozen=True)
class Route:
    """One method of one swagger path."""

    method: str  # an HTTP method or "ANY"
    resource: str
    pattern: re.Pattern[str]
    integration: str  # "aws_proxy" | "mock"
    function: Function | None
    authorizer: Authorizer | None
    mock_status: int = 200
    mock_headers: tuple[tuple[str, str], ...] = ()
    mock_body: str = ""

    @property
    def specificity(self) -> tuple[int, int, int]:
        """Literal paths before parameterised ones, greedy ``{proxy+}`` last; then ANY after methods."""
        greedy = 1 if "+}" in self.resource else 0
        parameters = self.resource.count("{")
        return (greedy, parameters, 1 if self.method == "ANY" else 0)


def _path_pattern(resource: str) -> re.Pattern[str]:
    parts: list[str] = []
    for segment in resource.strip("/").split("/"):
        if not segment:
            continue
        greedy = re.fullmatch(r"\{([A-Za-z0-9_.\-]+)\+\}", segment)
        parameter = re.fullmatch(r"\{([A-Za-z0-9_.\-]+)\}", segment)
        if greedy:
            parts.append(f"(?P<{_group(greedy.group(1))}>.+)")
        elif parameter:
            parts.append(f"(?P<{_group(parameter.group(1))}>[^/]+)")
        else:
            parts.append(re.escape(segment))
    return re.compile("^/" + "/".join(parts) + "/?$")


def _group(name: str) -> str:
    """Regex group names cannot contain '-' or '.': encode them reversibly."""
    return name.replace("_", "__").replace("-", "_d").replace(".", "_p")


def _ungroup(name: str) -> str:
    return re.sub(r"_(_|d|p)", lambda m: {"_": "_", "d": "-", "p": "."}[m.group(1)], name)


@dataclass
class RestApi:
    """One AWS::ApiGateway::RestApi with its stage, routes, authorizers and gateway responses."""

    logical_id: str
    api_id: str
    stage: str
    routes: list[Route]
    gateway_responses: dict[str, Any]
    binary_media_types: list[str]
    region: str
    account_id: str
    limiter: UsageLimiter | None = None
    _cache: dict[tuple[str, tuple[str, ...]], tuple[float, dict[str, Any]]] = field(default_factory=dict)
    _cache_lock: threading.Lock = field(default_factory=threading.Lock)

    # -- building --------------------------------------------------------------------------------

    @classmethod
    def from_template(
        cls,
        logical_id: str,
        template: Template,
        resolver: IntrinsicResolver,
        functions: Mapping[str, Function],
    ) -> RestApi:
        """Read routes, authorizers and gateway responses from the RestApi's swagger ``Body``."""
        properties = template.resources[logical_id].get("Properties") or {}
        if "Body" not in properties:
            raise TemplateError(
                f"API {logical_id}: only RestApis with an inline swagger Body can run locally"
            )
        body = resolver.resolve(properties["Body"])
        if "openapi" in body and "swagger" not in body:
            logger.info("API %s: reading an OpenAPI 3 definition with the swagger 2 extensions", logical_id)
        stage = cls._stage_name(logical_id, template, resolver)

        def function_for(uri: Any, where: str) -> Function:
            function_id = resolver.logical_id_for_function_arn(str(uri))
            if function_id is None or function_id not in functions:
                raise TemplateError(
                    f"API {logical_id}: {where} targets {uri!r}, not a function of this template"
                )
            return functions[function_id]

        authorizers: dict[str, Authorizer] = {}
        definitions = (
            body.get("securityDefinitions") or (body.get("components") or {}).get("securitySchemes") or {}
        )
        for name, definition in definitions.items():
            config = definition.get("x-amazon-apigateway-authorizer")
            if config is None:
                continue
            kind = str(config.get("type", "token")).lower()
            if kind not in ("request", "token"):
                raise TemplateError(
                    f"API {logical_id}: authorizer {name} of type {kind} is not supported locally"
                )
            sources = [s.strip() for s in str(config.get("identitySource", "")).split(",") if s.strip()]
            if kind == "token" and not sources:
                sources = [f"method.request.header.{definition.get('name', 'Authorization')}"]
            authorizers[name] = Authorizer(
                name=name,
                type=kind,
                function=function_for(config.get("authorizerUri"), f"authorizer {name}"),
                identity_sources=tuple(sources),
                ttl_seconds=int(config.get("authorizerResultTtlInSeconds", 300)),
                validation_expression=config.get("identityValidationExpression"),
            )
        default_security = body.get("security") or []
        routes: list[Route] = []
        for resource, methods in (body.get("paths") or {}).items():
            for method_name, operation in methods.items():
                if method_name.upper() not in HTTP_METHODS and method_name != ANY_METHOD:
                    continue
                method = "ANY" if method_name == ANY_METHOD else method_name.upper()
                routes.append(
                    cls._route(
                        logical_id,
                        resource=resource,
                        method=method,
                        operation=operation,
                        default_security=default_security,
                        authorizers=authorizers,
                        function_for=function_for,
                    )
                )
        routes.sort(key=lambda route: route.specificity)
        return cls(
            logical_id=logical_id,
            api_id=resolver.rest_api_id(logical_id),
            stage=stage,
            routes=routes,
            gateway_responses=body.get("x-amazon-apigateway-gateway-responses") or {},
            binary_media_types=[
                str(kind).replace("~1", "/")
                for kind in body.get("x-amazon-apigateway-binary-media-types")
                or properties.get("BinaryMediaTypes")
                or []
            ],
            region=template.region,
            account_id=template.account_id,
            limiter=UsageLimiter(plans)
            if (plans := plans_from_template(template.resources, resolver.resolve, logical_id))
            else None,
        )

    @staticmethod
    def _stage_name(logical_id: str, template: Template, resolver: IntrinsicResolver) -> str:
        for resource in template.resources.values():
            if resource.get("Type") != "AWS::ApiGateway::Stage":
                continue
            properties = resource.get("Properties") or {}
            if properties.get("RestApiId") == {"Ref": logical_id}:
                return str(resolver.resolve(properties.get("StageName")))
        raise TemplateError(f"API {logical_id}: no AWS::ApiGateway::Stage deploys it")

    @staticmethod
    def _route(
        api: str,
        *,
        resource: str,
        method: str,
        operation: dict[str, Any],
        default_security: list[dict[str, Any]],
        authorizers: dict[str, Authorizer],
        function_for: Any,
    ) -> Route:
        integration = operation.get("x-amazon-apigateway-integration") or {}
        kind = str(integration.get("type", "")).lower()
        authorizer: Authorizer | None = None
        for requirement in operation.get("security", default_security) or []:
            for name in requirement:
                if name in authorizers:
                    authorizer = authorizers[name]
        if kind == "aws_proxy":
            return Route(
                method=method,
                resource=resource,
                pattern=_path_pattern(resource),
                integration=kind,
                function=function_for(integration.get("uri"), f"{method} {resource}"),
                authorizer=authorizer,
            )
        if kind == "mock":
            default = (integration.get("responses") or {}).get("default") or {}
            headers = tuple(
                (key.removeprefix("method.response.header."), str(value).strip("'"))
                for key, value in (default.get("responseParameters") or {}).items()
            )
            templates = default.get("responseTemplates") or {}
            return Route(
                method=method,
                resource=resource,
                pattern=_path_pattern(resource),
                integration=kind,
                function=None,
                authorizer=authorizer,
                mock_status=int(default.get("statusCode", 200)),
                mock_headers=headers,
                mock_body=str(templates.get("application/json", "")),
            )
        raise TemplateError(
            f"API {api}: {method} {resource} has a {kind or 'missing'} integration; only Lambda proxy runs locally"
        )

    # -- serving ---------------------------------------------------------------------------------

    def match(self, method: str, path: str) -> tuple[Route, dict[str, str]] | None:
        """The route for ``method path`` (ANY after explicit methods) and its path parameters."""
        for route in self.routes:
            if route.method not in (method, "ANY"):
                continue
            found = route.pattern.match(path)
            if found:
                return route, {_ungroup(key): unquote(value) for key, value in found.groupdict().items()}
        return None

    def gateway_response(
        self, kind: str, message: str, request_id: str, status: int | None = None
    ) -> HttpResponse:
        """The response API Gateway gives for ``kind``, honouring the template's gateway responses."""
        default_status, code, _ = DEFAULT_GATEWAY_RESPONSES.get(kind, (status or 500, "error", message))
        family = "DEFAULT_4XX" if (status or default_status) < 500 else "DEFAULT_5XX"
        configured = self.gateway_responses.get(kind) or self.gateway_responses.get(family)
        headers = [("x-amzn-ErrorType", kind), ("x-amzn-RequestId", request_id)]
        if not configured:
            return HttpResponse.error(status or default_status, code, message, headers=headers)
        response_status = int(configured.get("statusCode") or status or default_status)
        for key, value in (configured.get("responseParameters") or {}).items():
            headers.append((key.removeprefix("gatewayresponse.header."), str(value).strip("'")))
        templates = configured.get("responseTemplates") or {}
        template = templates.get("application/json")
        if template is None:
            return HttpResponse.error(response_status, code, message, headers=headers)
        rendered = (
            template.replace("$context.error.messageString", json.dumps(message))
            .replace("$context.error.message", message)
            .replace("$context.error.responseType", kind)
            .replace("$context.requestId", request_id)
            .replace("$context.stage", self.stage)
        )
        return HttpResponse(
            response_status, [("Content-Type", "application/json"), *headers], rendered.encode()
        )

    def handle(self, request: HttpRequest, path: str) -> HttpResponse:
        """Serve one request whose stage prefix is already stripped from ``path``."""
        request_id = str(uuid.uuid4())
        if len(request.body) > MAX_BODY_BYTES:
            return self.gateway_response("REQUEST_TOO_LARGE", "Request Too Long", request_id)
        matched = self.match(request.method, path)
        if matched is None:
            return self.gateway_response(
                "MISSING_AUTHENTICATION_TOKEN", "Missing Authentication Token", request_id
            )
        route, path_parameters = matched
        if route.integration == "mock":
            return HttpResponse(route.mock_status, list(route.mock_headers), route.mock_body.encode())
        event = self.proxy_event(request, path, route, path_parameters, request_id)
        if route.authorizer is not None:
            outcome = self.authorize(route.authorizer, event, request_id)
            if isinstance(outcome, HttpResponse):
                return outcome
            context, usage_key = outcome
            refused = self.metered(context, usage_key, request_id)
            if refused is not None:
                return refused
            event["requestContext"]["authorizer"] = context
        assert route.function is not None
        try:
            result = route.function.invoke(event, throttle=True)
        except FunctionInvocationError as exc:
            # Lambda's 429 (reserved concurrency in use) reaches a REST proxy client as a 500.
            status = 500 if exc.error_type == "TooManyRequestsException" else None
            return self.gateway_response("INTEGRATION_FAILURE", "Internal server error", request_id, status)
        return self.proxy_response(route, result, request_id, accept=request.header("Accept"))

    def metered(self, context: dict[str, Any], usage_key: str | None, request_id: str) -> HttpResponse | None:
        """The usage plan's answer when the key is over it (429 with Retry-After), else None.

        On AWS, API Gateway finds the plan from the authorizer's usageIdentifierKey (the key's API
        Gateway API key is in its plan's usage plan); here the plan is the authorizer's ``plan``
        context, taken from the same key record, and the bucket is the usage key's.
        """
        if self.limiter is None:
            return None
        plan = str(context.get("plan") or "")
        if plan not in self.limiter.plans:
            return self.gateway_response("INVALID_API_KEY", "Forbidden", request_id)
        refusal = self.limiter.take(usage_key or str(context.get("principalId")), plan)
        if refusal is None:
            return None
        message = "Too Many Requests" if refusal.kind == "THROTTLED" else "Limit Exceeded"
        response = self.gateway_response(refusal.kind, message, request_id)
        response.headers = [(k, v) for k, v in response.headers if k.lower() != "retry-after"]
        response.headers.append(("Retry-After", str(refusal.retry_after)))
        return response

    # -- events ----------------------------------------------------------------------------------

    def method_arn(self, method: str, path: str) -> str:
        return f"arn:aws:execute-api:{self.region}:{self.account_id}:{self.api_id}/{self.stage}/{method}/{path.lstrip('/')}"

    def _is_binary(self, media_type: str | None) -> bool:
        """Whether a request's ``Content-Type`` (or first ``Accept`` type) is one of the API's binary media types."""
        media = (media_type or "").split(",", 1)[0].split(";", 1)[0].strip().lower()
        if not media:
            return "*/*" in self.binary_media_types
        return any(fnmatch.fnmatch(media, pattern.lower()) for pattern in self.binary_media_types)

    def proxy_event(
        self, request: HttpRequest, path: str, route: Route, path_parameters: dict[str, str], request_id: str
    ) -> dict[str, Any]:
        """A REST API (payload version 1.0) Lambda proxy event."""
        headers: dict[str, str] = {}
        multi_headers: dict[str, list[str]] = {}
        for key, value in [
            *request.headers,
            ("X-Forwarded-For", request.source_ip),
            ("X-Forwarded-Proto", "http"),
        ]:
            headers[key] = value
            multi_headers.setdefault(key, []).append(value)
        query = urlsplit(request.target).query
        pairs = parse_qsl(query, keep_blank_values=True)
        single_query: dict[str, str] = {}
        multi_query: dict[str, list[str]] = {}
        for key, value in pairs:
            single_query[key] = value
            multi_query.setdefault(key, []).append(value)
        binary = bool(request.body) and self._is_binary(request.header("Content-Type") or "application/json")
        body: str | None = None
        if request.body:
            body = (
                base64.b64encode(request.body).decode() if binary else request.body.decode("utf-8", "replace")
            )
        now = datetime.now(UTC)
        path = unquote(path)
        return {
            "resource": route.resource,
            "path": path,
            "httpMethod": request.method,
            "headers": headers,
            "multiValueHeaders": multi_headers,
            "queryStringParameters": single_query or None,
            "multiValueQueryStringParameters": multi_query or None,
            "pathParameters": path_parameters or None,
            "stageVariables": None,
            "requestContext": {
                "accountId": self.account_id,
                "apiId": self.api_id,
                "resourceId": route.resource,
                "resourcePath": route.resource,
                "stage": self.stage,
                "requestId": request_id,
                "extendedRequestId": request_id,
                "requestTime": now.strftime("%d/%b/%Y:%H:%M:%S +0000"),
                "requestTimeEpoch": int(now.timestamp() * 1000),
                "httpMethod": request.method,
                "path": f"/{self.stage}{path}",
                "protocol": "HTTP/1.1",
                "domainName": request.host,
                "domainPrefix": request.host.split(".", 1)[0],
                "identity": {
                    "sourceIp": request.source_ip,
                    "userAgent": request.header("User-Agent"),
                    "accountId": None,
                    "apiKey": None,
                    "caller": None,
                    "user": None,
                    "userArn": None,
                    "cognitoIdentityId": None,
                    "cognitoIdentityPoolId": None,
                    "cognitoAuthenticationType": None,
                    "cognitoAuthenticationProvider": None,
                },
                "authorizer": None,
            },
            "body": body,
            "isBase64Encoded": binary,
        }

    def proxy_response(
        self, route: Route, result: Any, request_id: str, *, accept: str | None = None
    ) -> HttpResponse:
        """Turn a Lambda proxy result into the HTTP response; a malformed one is a 502, as on AWS.

        A base64 body is decoded when the request's first ``Accept`` type is a binary media type
        (``accept``), else passed on as its base64 text, as API Gateway does.
        """
        if not isinstance(result, dict) or "statusCode" not in result:
            logger.error("%s %s: malformed Lambda proxy response %r", route.method, route.resource, result)
            return self.gateway_response("INTEGRATION_FAILURE", "Internal server error", request_id)
        try:
            status = int(result["statusCode"])
            raw_body = result.get("body") or ""
            decode = bool(result.get("isBase64Encoded")) and self._is_binary(accept)
            body = base64.b64decode(raw_body) if decode else str(raw_body).encode()
        except (TypeError, ValueError) as exc:
            logger.error("%s %s: malformed Lambda proxy response: %s", route.method, route.resource, exc)
            return self.gateway_response("INTEGRATION_FAILURE", "Internal server error", request_id)
        headers: list[tuple[str, str]] = []
        multi = result.get("multiValueHeaders") or {}
        for key, values in multi.items():
            headers.extend((key, str(value)) for value in values)
        names = {key.lower() for key in multi}
        for key, value in (result.get("headers") or {}).items():
            if key.lower() not in names:
                headers.append((key, str(value)))
        if not any(key.lower() == "content-type" for key, _ in headers):
            headers.append(("Content-Type", "application/json"))
        headers.append(("x-amzn-RequestId", request_id))
        return HttpResponse(status, headers, body)

    # -- authorizers -----------------------------------------------------------------------------

    def _identity(self, authorizer: Authorizer, event: dict[str, Any]) -> tuple[str, ...] | None:
        """The identity values the authorizer is keyed on; ``None`` if one is missing (-> 401)."""
        lowered_headers = {key.lower(): value for key, value in event["headers"].items()}
        query = event["queryStringParameters"] or {}
        values: list[str] = []
        for source in authorizer.identity_sources:
            value: str | None
            if source.startswith("method.request.header."):
                value = lowered_headers.get(source.removeprefix("method.request.header.").lower())
            elif source.startswith("method.request.querystring."):
                value = query.get(source.removeprefix("method.request.querystring."))
            elif source.startswith("context."):
                value = str(event["requestContext"].get(source.removeprefix("context."), "")) or None
            else:
                value = None
            if not value:
                return None
            values.append(value)
        return tuple(values)

    def authorize(
        self, authorizer: Authorizer, event: dict[str, Any], request_id: str
    ) -> tuple[dict[str, Any], str | None] | HttpResponse:
        """Run (or reuse the cached result of) the authorizer: its context and usageIdentifierKey, or an error response."""
        identity = self._identity(authorizer, event)
        if identity is None:
            return self.gateway_response("UNAUTHORIZED", "Unauthorized", request_id)
        if authorizer.validation_expression and not re.fullmatch(
            authorizer.validation_expression, identity[0]
        ):
            return self.gateway_response("UNAUTHORIZED", "Unauthorized", request_id)
        method_arn = self.method_arn(event["httpMethod"], event["path"])
        result = self._cached(authorizer, identity)
        if result is None:
            if authorizer.type == "token":
                authorizer_event: dict[str, Any] = {
                    "type": "TOKEN",
                    "authorizationToken": identity[0],
                    "methodArn": method_arn,
                }
            else:
                authorizer_event = {
                    "type": "REQUEST",
                    "methodArn": method_arn,
                    **{
                        key: event[key]
                        for key in ("resource", "path", "httpMethod", "headers", "multiValueHeaders")
                    },
                    **{
                        key: event[key]
                        for key in (
                            "queryStringParameters",
                            "multiValueQueryStringParameters",
                            "pathParameters",
                            "stageVariables",
                        )
                    },
                    "requestContext": {k: v for k, v in event["requestContext"].items() if k != "authorizer"},
                }
            try:
                result = authorizer.function.invoke(authorizer_event, throttle=True)
            except FunctionInvocationError as exc:
                if exc.error_message == "Unauthorized":
                    return self.gateway_response("UNAUTHORIZED", "Unauthorized", request_id)
                return self.gateway_response(
                    "AUTHORIZER_CONFIGURATION_ERROR", "Internal server error", request_id
                )
            if not isinstance(result, dict) or not isinstance(result.get("policyDocument"), dict):
                logger.error("authorizer %s returned no policyDocument: %r", authorizer.name, result)
                return self.gateway_response(
                    "AUTHORIZER_CONFIGURATION_ERROR", "Internal server error", request_id
                )
            self._store(authorizer, identity, result)
        decision = evaluate_policy(result["policyDocument"], method_arn)
        if decision is not True:
            message = (
                "User is not authorized to access this resource with an explicit deny"
                if decision is False
                else "User is not authorized to access this resource"
            )
            return self.gateway_response("ACCESS_DENIED", message, request_id)
        context = {key: _context_value(value) for key, value in (result.get("context") or {}).items()}
        usage_key = result.get("usageIdentifierKey")
        return {"principalId": result.get("principalId"), "integrationLatency": 0, **context}, (
            str(usage_key) if usage_key else None
        )

    def _cached(self, authorizer: Authorizer, identity: tuple[str, ...]) -> dict[str, Any] | None:
        if authorizer.ttl_seconds <= 0:
            return None
        with self._cache_lock:
            entry = self._cache.get((authorizer.name, identity))
            if entry is None or entry[0] < time.monotonic():
                return None
            return entry[1]

    def _store(self, authorizer: Authorizer, identity: tuple[str, ...], result: dict[str, Any]) -> None:
        if authorizer.ttl_seconds > 0:
            with self._cache_lock:
                self._cache[(authorizer.name, identity)] = (time.monotonic() + authorizer.ttl_seconds, result)


def _context_value(value: Any) -> Any:
    """API Gateway passes authorizer context values to a REST integration as strings."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return value if isinstance(value, str) else str(value)


@lru_cache(maxsize=1024)
def _arn_pattern(pattern: str) -> re.Pattern[str]:
    """An IAM resource pattern (``*``, ``?`` wildcards) compiled once: policies are evaluated per request."""
    return re.compile(
        "".join(".*" if char == "*" else "." if char == "?" else re.escape(char) for char in pattern)
    )


def _arn_matches(pattern: str, arn: str) -> bool:
    return _arn_pattern(pattern).fullmatch(arn) is not None


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


def evaluate_policy(document: Mapping[str, Any], method_arn: str) -> bool | None:
    """IAM-style evaluation for ``execute-api:Invoke`` on ``method_arn``.

    ``False``: an explicit Deny matches; ``True``: an Allow matches and no Deny; ``None``: nothing allows.
    """
    allowed = False
    for statement in _as_list(document.get("Statement")):
        actions = _as_list(statement.get("Action"))
        if not any(_arn_matches(str(action), "execute-api:Invoke") for action in actions):
            continue
        if not any(
            _arn_matches(str(resource), method_arn) for resource in _as_list(statement.get("Resource"))
        ):
            continue
        effect = str(statement.get("Effect", "")).lower()
        if effect == "deny":
            return False
        if effect == "allow":
            allowed = True
    return True if allowed else None
