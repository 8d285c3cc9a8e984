"""The resolver every API function routes with: each route declares who may call it, checked first.

powertools validates a route's path, query and body in the first middleware of the route's stack,
so a scope check in the route body came after it: a ``predict`` key POSTing ``{}`` to ``/models``
was told 422 (and the route's schema) instead of 403. Here every route is declared with its
``Access`` and its stack is ``[access check, powertools' request validation, powertools' response
validation]``: the route turns off the resolver-wide placement of the validation middlewares and
lists powertools' own classes after the check, so a caller learns nothing about a route's input
before it is known to be allowed there.

The same declaration feeds the OpenAPI document: the route's ``security`` (the ``x-api-key``
scheme), ``x-mlambda-scope`` (the scopes, any one of which will do; empty for any valid key) and
a sentence of its description (``mlambda_local.openapi`` adds the error responses).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from aws_lambda_powertools.event_handler import APIGatewayRestResolver
from aws_lambda_powertools.event_handler.middlewares import BaseMiddlewareHandler
from aws_lambda_powertools.event_handler.middlewares.openapi_validation import (
    OpenAPIRequestValidationMiddleware,
    OpenAPIResponseValidationMiddleware,
)

from mlambda import errors
from mlambda.auth import principal_from_event
from mlambda.schemas.keys import Principal, Scope

if TYPE_CHECKING:
    from aws_lambda_powertools.event_handler import Response
    from aws_lambda_powertools.event_handler.middlewares import NextMiddleware

SECURITY_SCHEME = "apiKey"
"""The OpenAPI security scheme every keyed route names (the ``x-api-key`` header)."""
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


class _AccessCheck(BaseMiddlewareHandler[Any]):
    """The first middleware of every route: its Access, checked on the raw event."""

    def __init__(self, access: Access) -> None:
        self.access = access

    def handler(self, app: Any, next_middleware: NextMiddleware) -> Response[Any]:
        self.access.check(app.current_event.raw_event)
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
                middlewares=[_AccessCheck(access), self._request_validation, self._response_validation],
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
