"""The resolver every API function routes with: each route declares who may call it, checked first.

powertools validates a route's path, query and body in the first middleware of the route's stack,
so a scope check in the route body came after it: a ``predict`` key POSTing ``{}`` to ``/models``
was told 422 (and the route's schema) instead of 403. Here every route is declared with its
``Access`` and its stack is ``[access check, JSON body check, powertools' request validation,
powertools' response validation]``: the route turns off the resolver-wide placement of the validation middlewares and
lists powertools' own classes after the check, so a caller learns nothing about a route's input
before it is known to be allowed there.

Before powertools reads a body, the second middleware makes sure it is JSON text: a body declared
as another media type is 415 (powertools would parse a form or a multipart body into the route's
model, and fail with a 500 on any other type or a multipart without a boundary), and bytes that are
not UTF-8 are 400 ``malformed_json`` (powertools' decoding raised, a 500); and the body's values
must be of the JSON types the document gives them (``_JsonBodyCheck``).

The same declaration feeds the OpenAPI document: the route's ``security`` (the ``x-api-key``
scheme), ``x-mlambda-scope`` (the scopes, any one of which will do; empty for any valid key) and
a sentence of its description (``mlambda_local.openapi`` adds the error responses).
"""

from __future__ import annotations

import binascii
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any, TypeVar, get_args, get_origin, get_type_hints

from aws_lambda_powertools.event_handler import APIGatewayRestResolver
from aws_lambda_powertools.event_handler.middlewares import BaseMiddlewareHandler
from aws_lambda_powertools.event_handler.middlewares.openapi_validation import (
    OpenAPIRequestValidationMiddleware,
    OpenAPIResponseValidationMiddleware,
)
from aws_lambda_powertools.event_handler.openapi.exceptions import RequestValidationError
from aws_lambda_powertools.event_handler.openapi.params import Body
from pydantic import BeforeValidator, TypeAdapter, ValidationError

from mlambda import errors
from mlambda.auth import principal_from_event
from mlambda.http import require_media_type
from mlambda.schemas.bounds import is_decimal_text
from mlambda.schemas.keys import Principal, Scope

if TYPE_CHECKING:
    from aws_lambda_powertools.event_handler import Response
    from aws_lambda_powertools.event_handler.middlewares import NextMiddleware
    from aws_lambda_powertools.utilities.data_classes.common import BaseProxyEvent

SECURITY_SCHEME = "apiKey"
"""The OpenAPI security scheme every keyed route names (the ``x-api-key`` header)."""
JSON_MEDIA_TYPE = "application/json"
"""The one media type a request body may be declared as (or not declared at all)."""
SCOPE_EXTENSION = "x-mlambda-scope"
"""Per operation: the scopes any one of which lets a key call it (``[]``: any valid key)."""

Handler = TypeVar("Handler", bound=Callable[..., Any])


@dataclass(frozen=True)
class Access:
    """Who may call a route: a key holding any one of ``scopes`` (or ``admin``); no scopes: any valid key."""

    scopes: tuple[Scope, ...] = ()

    def check(self, event: Mapping[str, Any]) -> Principal:
        """The caller, if allowed: 401 without an authorizer context, 403 without the scope."""
        principal = principal_from_event(event)
        if self.scopes and not any(principal.allows(scope) for scope in self.scopes):
            wanted = " or ".join(f"'{scope.value}'" for scope in self.scopes)
            required: str | list[str] = (
                self.scopes[0].value if len(self.scopes) == 1 else [scope.value for scope in self.scopes]
            )
            raise errors.ForbiddenError(f"this key lacks the {wanted} scope", details={"required": required})
        return principal

    @property
    def sentence(self) -> str:
        """How the OpenAPI description states it."""
        if not self.scopes:
            return "Any valid API key."
        names = " or ".join(f"`{scope.value}`" for scope in self.scopes)
        return f"Needs an API key with the {names} scope (or `admin`)."


ANY_KEY = Access()
"""Any valid key (``GET /me``)."""


def needs(*scopes: Scope) -> Access:
    """A key holding any one of ``scopes`` (or admin)."""
    if not scopes:
        raise ValueError("name at least one scope; ANY_KEY is any valid key")
    return Access(tuple(scopes))


@dataclass(frozen=True)
class RouteDoc:
    """What the OpenAPI document says of a route beyond what powertools reads from its signature.

    ``body``/``answer``: the types of a body the route parses itself and of an answer it returns as
    text (``Response[str]``); ``statuses``: every success status it answers (the first is the usual).
    """

    body: Any = None
    answer: Any = None
    statuses: tuple[int, ...] = (200,)
    html: bool = False


def _integer_text(value: Any) -> Any:
    """A query integer is written in ASCII digits: pydantic's lax mode read ``9\\r``, `` 9`` and
    ``1_0`` as numbers, values the document calls invalid."""
    if isinstance(value, str) and not is_decimal_text(value.removeprefix("-")):
        raise ValueError("must be an integer written in digits")
    return value


def _boolean_text(value: Any) -> Any:
    """A query boolean is ``true`` or ``false``: pydantic's lax mode also took ``yes``, ``on``, ``1``."""
    if isinstance(value, str) and value not in ("true", "false"):
        raise ValueError("must be true or false")
    return value


def _datetime_text(value: Any) -> Any:
    """A query datetime is ISO 8601 (``2026-01-31T12:00:00Z``): pydantic's lax mode also read a
    number (``-3e-243``) as seconds since the epoch."""
    if isinstance(value, str) and not _ISO_DATE.match(value):
        raise ValueError("must be an ISO 8601 date-time, such as 2026-01-31T12:00:00Z")
    return value


_ISO_DATE = re.compile(r"\d{4}-\d{2}-\d{2}(?:[Tt ]|$)")

INTEGER_TEXT = BeforeValidator(_integer_text)
"""An integer query parameter: ``Annotated[int, INTEGER_TEXT, Query(...)]`` (flat: nested, the
document lost its bounds)."""

BOOLEAN_TEXT = BeforeValidator(_boolean_text)
"""A boolean query parameter: ``Annotated[bool, BOOLEAN_TEXT, Query()]``."""

DATETIME_TEXT = BeforeValidator(_datetime_text)
"""A date-time query parameter: ``Annotated[datetime, DATETIME_TEXT, Query()]``."""


class _AccessCheck(BaseMiddlewareHandler[Any]):
    """The first middleware of every route: its Access, checked on the raw event."""

    def __init__(self, access: Access) -> None:
        self.access = access

    def handler(self, app: Any, next_middleware: NextMiddleware) -> Response[Any]:
        self.access.check(app.current_event.raw_event)
        return next_middleware(app)


def require_json_body(event: BaseProxyEvent) -> None:
    """A request's body, if any, is UTF-8 text declared as JSON or not declared: else 415 or 400."""
    if not event.body:
        return
    require_media_type(event.raw_event, (JSON_MEDIA_TYPE,))
    declared = event.headers.get("content-type") or ""
    media = declared.split(";", 1)[0].strip().lower()
    if media and not declared.lstrip().startswith(JSON_MEDIA_TYPE):
        # Application/JSON is JSON (media types ignore case); powertools compares as written.
        headers = event.raw_event["headers"]
        for name in [name for name in headers if name.lower() == "content-type"]:
            headers[name] = JSON_MEDIA_TYPE
    try:
        event.decoded_body  # noqa: B018 - decoding is the check (cached for powertools)
    except (UnicodeDecodeError, binascii.Error) as exc:
        raise errors.InvalidInputError(
            "body is not valid JSON: it is not UTF-8 text", code="malformed_json"
        ) from exc


def _body_type(func: Callable[..., Any]) -> Any:
    """The type of the route's ``Annotated[X, Body()]`` parameter, or None when it takes no body."""
    for hint in get_type_hints(func, include_extras=True).values():
        if get_origin(hint) is Annotated and any(isinstance(meta, Body) for meta in hint.__metadata__):
            return get_args(hint)[0]
    return None


class _JsonBodyCheck(BaseMiddlewareHandler[Any]):
    """The second middleware of every route: the body is JSON text of the document's JSON types.

    powertools validates a parsed body in pydantic's lax mode, where ``0`` is ``false``, ``"12"`` is
    12 and ``0`` a datetime: a body the document calls invalid was accepted. The body is first
    validated from its text in strict mode (JSON's types as the document states them; strings still
    give datetimes and enums, as JSON has no others), then powertools validates it as before.
    """

    def __init__(self, body_type: Any) -> None:
        self._body = None if body_type is None else TypeAdapter(body_type)

    def handler(self, app: Any, next_middleware: NextMiddleware) -> Response[Any]:
        event = app.current_event
        require_json_body(event)
        if self._body is not None and event.body:
            try:
                self._body.validate_json(event.decoded_body, strict=True)
            except ValidationError as exc:
                problems = [{**error, "loc": ("body", *error["loc"])} for error in exc.errors()]
                raise RequestValidationError(problems) from exc
        return next_middleware(app)


class ScopedResolver(APIGatewayRestResolver):
    """An APIGatewayRestResolver whose routes are declared with their Access (see the module docstring).

    ``routes`` maps ``(METHOD, /openapi/{path})`` to the Access declared for it: what the tests
    walk to prove that every route refuses a key without its scope before reading its input.
    """

    def __init__(self) -> None:
        super().__init__(enable_validation=True)
        self.routes: dict[tuple[str, str], Access] = {}
        self.documentation: dict[tuple[str, str], RouteDoc] = {}
        self._request_validation = OpenAPIRequestValidationMiddleware()  # type: ignore[no-untyped-call]
        self._response_validation = OpenAPIResponseValidationMiddleware(
            validation_serializer=None, has_response_validation_error=False
        )
        errors.install(self)

    def caller(self) -> Principal:
        """The principal the current route's Access check let in (read from the event, not a shared
        context: the in-process local cloud runs one module's handler in several threads at once)."""
        return principal_from_event(self.current_event.raw_event)

    def scoped(
        self, method: str, rule: str, access: Access, doc: RouteDoc | None = None, **options: Any
    ) -> Callable[[Handler], Handler]:
        """Register ``rule`` for ``method`` with its Access checked before powertools validates anything."""
        documented = doc or RouteDoc(statuses=(options.get("status_code", 200),))

        def register(func: Handler) -> Handler:
            text = " ".join((func.__doc__ or "").split())
            path = rule.replace("<", "{").replace(">", "}")
            self.routes[(method, path)] = access
            self.documentation[(method, path)] = documented
            decorator = self.route(
                rule,
                method,
                description=f"{text}\n\n{access.sentence}".strip(),
                status_code=documented.statuses[0],
                security=[{SECURITY_SCHEME: []}],
                openapi_extensions={SCOPE_EXTENSION: [scope.value for scope in access.scopes]},
                enable_validation=False,
                middlewares=[
                    _AccessCheck(access),
                    _JsonBodyCheck(_body_type(func)),
                    self._request_validation,
                    self._response_validation,
                ],
                **{key: value for key, value in options.items() if key != "status_code"},
            )
            return decorator(func)

        return register

    def get(  # type: ignore[override]
        self, rule: str, access: Access, doc: RouteDoc | None = None, **options: Any
    ) -> Callable[[Handler], Handler]:
        """A GET route with its Access."""
        return self.scoped("GET", rule, access, doc, **options)

    def post(  # type: ignore[override]
        self, rule: str, access: Access, doc: RouteDoc | None = None, **options: Any
    ) -> Callable[[Handler], Handler]:
        """A POST route with its Access."""
        return self.scoped("POST", rule, access, doc, **options)

    def put(  # type: ignore[override]
        self, rule: str, access: Access, doc: RouteDoc | None = None, **options: Any
    ) -> Callable[[Handler], Handler]:
        """A PUT route with its Access."""
        return self.scoped("PUT", rule, access, doc, **options)

    def patch(  # type: ignore[override]
        self, rule: str, access: Access, doc: RouteDoc | None = None, **options: Any
    ) -> Callable[[Handler], Handler]:
        """A PATCH route with its Access."""
        return self.scoped("PATCH", rule, access, doc, **options)

    def delete(  # type: ignore[override]
        self, rule: str, access: Access, doc: RouteDoc | None = None, **options: Any
    ) -> Callable[[Handler], Handler]:
        """A DELETE route with its Access."""
        return self.scoped("DELETE", rule, access, doc, **options)
