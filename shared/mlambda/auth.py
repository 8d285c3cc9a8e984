"""What API handlers know about the caller: the principal the authorizer passed on, and scope checks.

The authorizer puts ``key_id``, ``name`` and ``scopes`` (comma-separated: API Gateway context
values must be strings) into the request context; each route's ``mlambda.api.Access`` checks them.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import lru_cache
from typing import Any

from mlambda.errors import UnauthorizedError
from mlambda.schemas.keys import DEFAULT_PLAN, Principal, Scope


def authorizer_context(principal: Principal) -> dict[str, str]:
    """The authorizer's context for ``principal`` (string values only, as API Gateway requires)."""
    return {
        "key_id": principal.key_id,
        "name": principal.name,
        "scopes": ",".join(sorted(principal.scopes)),
        "plan": principal.plan,
    }


def principal_from_event(event: Mapping[str, Any]) -> Principal:
    """The caller of a REST proxy event, from its authorizer context."""
    context = (event.get("requestContext") or {}).get("authorizer") or {}
    key_id = context.get("key_id")
    if not key_id:
        raise UnauthorizedError("request carries no authorizer context")
    return _principal(
        str(key_id),
        str(context.get("name", key_id)),
        str(context.get("scopes", "")),
        str(context.get("plan") or DEFAULT_PLAN),
    )


@lru_cache(maxsize=1024)
def _principal(key_id: str, name: str, scopes: str, plan: str) -> Principal:
    """Built once per caller and instance: every request of a warm function asks again (Principal is frozen)."""
    known = {scope.value for scope in Scope}
    return Principal(
        key_id=key_id,
        name=name,
        scopes=frozenset(Scope(s) for s in scopes.split(",") if s in known),
        plan=plan,
    )
