"""Request bodies of API Gateway REST proxy events, as every API function reads them."""

from __future__ import annotations

import base64
from collections.abc import Mapping
from typing import Any

from mlambda.errors import PayloadTooLargeError


def request_body(event: Mapping[str, Any]) -> bytes | str:
    """The body as sent: base64-decoded when API Gateway encoded it, else the event's string."""
    raw: str | bytes = event.get("body") or ""
    if event.get("isBase64Encoded") and raw:
        return base64.b64decode(raw)
    return raw


def require_body_within(body: bytes | str, limit: int) -> None:
    """413 ``body_too_large`` when ``body`` is over ``limit`` bytes.

    A string is measured in UTF-8 only when its length could put it over (a UTF-8 character
    is at most 4 bytes), so the common small request pays no encoding.
    """
    size = len(body) if isinstance(body, bytes) or len(body) * 4 <= limit else len(body.encode())
    if size > limit:
        raise PayloadTooLargeError(
            f"request body is {size} bytes, over the {limit}-byte limit",
            code="body_too_large",
            details={"bytes": size, "limit": limit},
        )
