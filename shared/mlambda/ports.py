"""The interfaces services need from storage and messaging; adapters implement them."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Protocol

from mlambda.schemas.keys import ApiKeyRecord


class ApiKeyStore(Protocol):
    """Where hashed API keys live."""

    def get(self, key_id: str) -> ApiKeyRecord | None:
        """The key with ``key_id``, or None."""
        ...

    def add(self, record: ApiKeyRecord) -> None:
        """Store a new key; ConflictError when the id is taken."""
        ...

    def all(self) -> Iterable[ApiKeyRecord]:
        """Every key, revoked ones included."""
        ...

    def revoke(self, key_id: str, at: datetime) -> ApiKeyRecord:
        """Mark the key revoked (idempotent); NotFoundError when absent."""
        ...
