"""Request bodies of API Gateway REST proxy events, as every API function reads them."""

from __future__ import annotations

import base64
from collections.abc import Collection, Mapping
from typing import Any

from mlambda.errors import PayloadTooLargeError, UnsupportedMediaTypeError

JSON = "application/json"
BINARY = "application/octet-stream"
BINARY_MEDIA_TYPES = (BINARY,)
"""template.yaml's ``BinaryMediaTypes``: API Gateway hands a body of these types to the function
base64-encoded (any other body as UTF-8 text, where bytes do not survive), and decodes a base64
answer only for a request whose first ``Accept`` type is one of them."""


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


def header(event: Mapping[str, Any], name: str) -> str | None:
    """The request header ``name`` (any case, as clients send it), or None."""
    headers = event.get("headers") or {}
    value = headers.get(name)
    if value is None:
        lowered = name.lower()
        value = next((v for k, v in headers.items() if k.lower() == lowered), None)
    return None if value is None else str(value)


def header_values(event: Mapping[str, Any], name: str) -> list[str]:
    """Every value of the request header ``name`` (API Gateway's ``multiValueHeaders``)."""
    lowered = name.lower()
    multi = event.get("multiValueHeaders") or {}
    values = [str(v) for k, vs in multi.items() if k.lower() == lowered for v in vs or ()]
    if values:
        return values
    single = header(event, name)
    return [] if single is None else [single]


def require_media_type(event: Mapping[str, Any], accepted: Collection[str]) -> str:
    """The body's media type, one of ``accepted`` (no ``Content-Type`` reads as JSON); 415 otherwise.

    A compressed body (``Content-Encoding`` other than ``identity``) and JSON in another charset
    than UTF-8 are refused the same way, naming the header.
    """
    encoding = header(event, "Content-Encoding")
    if encoding is not None and encoding.strip().lower() not in ("", "identity"):
        raise UnsupportedMediaTypeError(
            f"Content-Encoding: {encoding[:64]} is not accepted; send the body uncompressed",
            details=[{"field": "Content-Encoding", "message": "compressed bodies are not accepted"}],
        )
    declared = header(event, "Content-Type")
    if declared is None or not declared.strip():
        return JSON
    media, _, parameters = declared.partition(";")
    media = media.strip().lower()
    if media not in accepted:
        raise UnsupportedMediaTypeError(
            f"Content-Type: {declared[:64]} is not accepted here; send {' or '.join(accepted)}",
            details=[{"field": "Content-Type", "message": f"accepted: {', '.join(accepted)}"}],
        )
    for parameter in parameters.split(";"):
        key, _, value = parameter.partition("=")
        if key.strip().lower() == "charset" and value.strip().strip('"').lower() not in ("utf-8", "utf8"):
            raise UnsupportedMediaTypeError(
                f"Content-Type: {declared[:64]}: bodies are read as UTF-8",
                details=[{"field": "Content-Type", "message": "charset must be utf-8"}],
            )
    return media


def accepts_binary(event: Mapping[str, Any]) -> bool:
    """Whether a binary (base64) answer reaches this caller as bytes: its first ``Accept`` type is binary."""
    accept = header(event, "Accept")
    first = (accept or "").split(",", 1)[0].split(";", 1)[0].strip().lower()
    return first in BINARY_MEDIA_TYPES
