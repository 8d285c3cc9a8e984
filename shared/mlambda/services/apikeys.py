"""API keys: issue (secret shown once), authenticate (constant-time hash check), list, revoke.

A key reads ``mlk.<key_id>.<secret>``: the id finds the record with one read, the secret
(32 random bytes) is stored only as its SHA-256. A fast hash is enough for a secret with
256 bits of entropy; a slow password hash would only add latency to every request.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from collections.abc import Callable, Iterable
from datetime import UTC, datetime

from mlambda.errors import NotFoundError, UnauthorizedError
from mlambda.ports import ApiKeyStore
from mlambda.schemas.keys import ApiKeyRecord, ApiKeyView, CreatedKey, Principal, Scope

KEY_PREFIX = "mlk"
MAX_PRESENTED_KEY_LENGTH = 128
KEY_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")
"""What a key id can be (``create`` makes 12 hex digits)."""


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def _now() -> datetime:
    return datetime.now(UTC)


class ApiKeyService:
    """Everything about API keys, over any ApiKeyStore."""

    def __init__(self, store: ApiKeyStore, clock: Callable[[], datetime] = _now) -> None:
        self._store = store
        self._clock = clock

    def create(self, name: str, scopes: Iterable[Scope], created_by: str) -> CreatedKey:
        """Issue a key; the returned ``api_key`` is the only copy of the secret."""
        key_id = secrets.token_hex(6)
        secret = secrets.token_urlsafe(32)
        record = ApiKeyRecord(
            key_id=key_id,
            name=name,
            scopes=sorted(set(scopes)),
            secret_hash=_hash(secret),
            created_at=self._clock(),
            created_by=created_by,
        )
        self._store.add(record)
        return CreatedKey(**ApiKeyView.of(record).model_dump(), api_key=f"{KEY_PREFIX}.{key_id}.{secret}")

    def authenticate(self, presented: str | None) -> Principal:
        """The principal for a presented key; UnauthorizedError for missing, unknown or revoked keys."""
        if not presented or len(presented) > MAX_PRESENTED_KEY_LENGTH:
            raise UnauthorizedError("Unauthorized")
        prefix, _, rest = presented.partition(".")
        key_id, _, secret = rest.partition(".")
        if prefix != KEY_PREFIX or not key_id or not secret:
            raise UnauthorizedError("Unauthorized")
        record = self._store.get(key_id)
        if record is None or record.revoked_at is not None:
            raise UnauthorizedError("Unauthorized")
        if not hmac.compare_digest(record.secret_hash, _hash(secret)):
            raise UnauthorizedError("Unauthorized")
        return Principal(key_id=record.key_id, name=record.name, scopes=frozenset(record.scopes))

    def list_keys(self) -> list[ApiKeyView]:
        """Every key, newest first, without secrets."""
        views = [ApiKeyView.of(record) for record in self._store.all()]
        return sorted(views, key=lambda view: view.created_at, reverse=True)

    def revoke(self, key_id: str) -> ApiKeyView:
        """Revoke a key for good (idempotent); an id no key can have is not found without a lookup."""
        if KEY_ID.fullmatch(key_id) is None:
            raise NotFoundError(f"no key {key_id[:64]!r}", code="key_not_found")
        return ApiKeyView.of(self._store.revoke(key_id, self._clock()))
