"""The API keys table (partition key ``key_id``)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime

from mlambda.adapters.dynamodb import DynamoTable
from mlambda.errors import ConflictError, NotFoundError
from mlambda.schemas.keys import ApiKeyRecord


class DynamoApiKeyStore:
    """ApiKeyStore on DynamoDB."""

    def __init__(self, table: DynamoTable) -> None:
        self._table = table

    def get(self, key_id: str) -> ApiKeyRecord | None:
        """The key with ``key_id``, or None."""
        item = self._table.get({"key_id": key_id})
        return ApiKeyRecord.model_validate(item) if item else None

    def add(self, record: ApiKeyRecord) -> None:
        """Store a new key; ConflictError when the id is taken."""
        try:
            self._table.put(record.model_dump(mode="json"), condition="attribute_not_exists(key_id)")
        except ConflictError as exc:
            raise ConflictError(f"key {record.key_id} already exists") from exc

    def all(self) -> Iterator[ApiKeyRecord]:
        """Every key, revoked ones included."""
        return (ApiKeyRecord.model_validate(item) for item in self._table.scan_all())

    def revoke(self, key_id: str, at: datetime) -> ApiKeyRecord:
        """Mark the key revoked, keeping the first revocation time; NotFoundError when absent."""
        try:
            item = self._table.update(
                {"key_id": key_id},
                "SET revoked_at = if_not_exists(revoked_at, :at)",
                condition="attribute_exists(key_id)",
                values={":at": at.isoformat()},
            )
        except ConflictError as exc:
            raise NotFoundError(f"key {key_id} not found") from exc
        return ApiKeyRecord.model_validate(item)
