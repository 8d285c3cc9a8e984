"""In-memory implementations of the ports, for unit tests."""

from __future__ import annotations

from datetime import datetime

from mlambda.errors import ConflictError, NotFoundError
from mlambda.schemas.keys import ApiKeyRecord


class InMemoryApiKeyStore:
    """ApiKeyStore in a dict."""

    def __init__(self) -> None:
        self.records: dict[str, ApiKeyRecord] = {}

    def get(self, key_id: str) -> ApiKeyRecord | None:
        return self.records.get(key_id)

    def add(self, record: ApiKeyRecord) -> None:
        if record.key_id in self.records:
            raise ConflictError(f"key {record.key_id} already exists")
        self.records[record.key_id] = record

    def all(self) -> list[ApiKeyRecord]:
        return list(self.records.values())

    def revoke(self, key_id: str, at: datetime) -> ApiKeyRecord:
        record = self.records.get(key_id)
        if record is None:
            raise NotFoundError(f"key {key_id} not found")
        if record.revoked_at is None:
            record = record.model_copy(update={"revoked_at": at})
            self.records[key_id] = record
        return record
