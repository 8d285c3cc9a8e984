"""Page tokens: opaque, signed, and bound to the listing that issued them; every paged listing uses them.

A paged query hands DynamoDB's ``LastEvaluatedKey`` back to the client as ``next_token``. Taken
back as the client sends it, a token could start a query anywhere in the table, or hold a key
DynamoDB refuses (a 502 to the caller). So a token is::

    base64url(JSON {"l": <listing>, "k": <key>}) "." base64url(HMAC-SHA256(secret, that JSON))

and reading one checks, in order: its shape and length, the signature (in constant time), the
listing it was issued for (the listing's name, its partition and its filters: a token from
``/models?owner=a`` does not continue ``/models?owner=b``), then the key itself against the
listing's key shape (exactly the expected attributes, each a string, the partition the listing
reads, the sort key's prefix). Anything else is 400 ``invalid_token``. The last check means a
leaked secret still cannot make a query DynamoDB refuses.

The secret: 32 random bytes, created by the first function instance that needs one (a
conditional put, so concurrent instances agree) and stored in the table the listing reads, under
``pk = mlambda#page-tokens``; each instance reads it once. It lives with the data it guards:
whoever can read it can read every page of that table already, and callers of the API never
see it. Its location follows the table's, which ``mlambda.config`` names for each function, on
AWS and in the local cloud alike. Deleting the item rotates it: outstanding tokens become 400
``invalid_token`` and clients start their listing again.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import secrets
import threading
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from mlambda.adapters.dynamodb import DynamoTable
from mlambda.errors import ConflictError, InvalidInputError, UpstreamError
from mlambda.schemas.bounds import MAX_PAGE_TOKEN

SECRET_KEY = {"pk": "mlambda#page-tokens", "sk": "secret"}
MAX_KEY_VALUE_CHARS = 1024
_MAC_CHARS = 43  # 32 bytes, unpadded base64url


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def listing(*parts: object) -> str:
    """A listing's identity for its tokens: its name, partition and filters (None for an absent filter)."""
    return json.dumps(parts, separators=(",", ":"), default=str)


def invalid_token(reason: str) -> InvalidInputError:
    """The one answer to a token this API did not issue for this listing (the reason is logged, not shown)."""
    return InvalidInputError(
        "next_token is not a token this listing issued; start the listing again without it",
        code="invalid_token",
        details={"field": "next_token", "reason": reason},
    )


class PageTokens:
    """Issues and verifies the page tokens of the listings on one table."""

    def __init__(self, table: DynamoTable) -> None:
        self._table = table
        self._secret: bytes | None = None
        self._lock = threading.Lock()

    def _key(self) -> bytes:
        """The table's secret: read once, created on first use."""
        if self._secret is not None:
            return self._secret
        with self._lock:
            if self._secret is None:
                self._secret = self._load_or_create()
            return self._secret

    def _load_or_create(self) -> bytes:
        held = self._table.get(SECRET_KEY, consistent=True)
        if held is None:
            fresh = {
                **SECRET_KEY,
                "secret": _b64(secrets.token_bytes(32)),
                "created_at": datetime.now(UTC).isoformat(),
            }
            try:
                self._table.put(fresh, condition="attribute_not_exists(pk)")
            except ConflictError:  # another instance created it first: use theirs
                held = self._table.get(SECRET_KEY, consistent=True)
            else:
                held = fresh
        if held is None or not isinstance(held.get("secret"), str):
            raise UpstreamError(
                f"table {self._table.name}: the page-token secret vanished while being created"
            )
        return _unb64(str(held["secret"]))

    def _mac(self, payload: bytes) -> str:
        return _b64(hmac.new(self._key(), payload, hashlib.sha256).digest())

    def issue(self, listing: str, key: Mapping[str, Any] | None) -> str | None:
        """The token that continues ``listing`` after ``key`` (None: the listing is over)."""
        if not key:
            return None
        payload = json.dumps({"l": listing, "k": dict(key)}, sort_keys=True, separators=(",", ":")).encode()
        return f"{_b64(payload)}.{self._mac(payload)}"

    def read(
        self,
        token: str | None,
        listing: str,
        *,
        equal: Mapping[str, str],
        prefixed: Mapping[str, str],
    ) -> dict[str, Any] | None:
        """The key ``token`` continues ``listing`` from (None without a token); 400 ``invalid_token``
        unless this table issued it for this listing and the key has exactly the listing's shape:
        the attributes of ``equal`` with those values, and of ``prefixed`` starting with theirs."""
        if not token:
            return None
        if len(token) > MAX_PAGE_TOKEN or token.count(".") != 1:
            raise invalid_token("malformed")
        body, mac = token.split(".")
        if len(mac) != _MAC_CHARS:
            raise invalid_token("malformed signature")
        try:
            payload = _unb64(body)
        except (binascii.Error, ValueError) as exc:
            raise invalid_token("not base64") from exc
        if not hmac.compare_digest(self._mac(payload), mac):
            raise invalid_token("bad signature")
        try:
            document = json.loads(payload)
        except ValueError as exc:
            raise invalid_token("not JSON") from exc
        if not isinstance(document, dict) or document.get("l") != listing:
            raise invalid_token("another listing")
        key = document.get("k")
        if not isinstance(key, dict) or set(key) != set(equal) | set(prefixed):
            raise invalid_token("not a key of this listing")
        for name, value in key.items():
            if not isinstance(value, str) or not value or len(value) > MAX_KEY_VALUE_CHARS:
                raise invalid_token(f"bad {name}")
            if name in equal and value != equal[name]:
                raise invalid_token(f"{name} outside the listing")
            if name in prefixed and not value.startswith(prefixed[name]):
                raise invalid_token(f"{name} outside the listing")
        return dict(key)
