"""The prediction cache table: ``pk`` = cache key, ``prediction`` (JSON text), ``expires_at`` (epoch seconds).

DynamoDB's TTL deletes expired items eventually (up to days later) and moto never does, so
readers ignore items whose ``expires_at`` has passed. Predictions are stored as JSON text:
probabilities round-trip exactly and no float goes through Decimal.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import orjson

from mlambda.adapters.dynamodb import DynamoTable


class PredictionCacheTable:
    """PredictionCacheStore on DynamoDB."""

    def __init__(self, table: DynamoTable) -> None:
        self._table = table

    def get_many(self, keys: Sequence[str], *, now: float) -> dict[str, dict[str, Any]]:
        """The unexpired entries among ``keys``."""
        if not keys:
            return {}
        if len(keys) == 1:
            item = self._table.get({"pk": keys[0]})
            items = [item] if item else []
        else:
            items = self._table.batch_get([{"pk": key} for key in keys])
        return {
            str(item["pk"]): orjson.loads(item["prediction"])
            for item in items
            if int(item.get("expires_at", 0)) > now and "prediction" in item
        }

    def put_many(self, entries: Mapping[str, dict[str, Any]], *, expires_at: int) -> None:
        """Store each prediction under its key until ``expires_at``."""
        items = [
            {"pk": key, "prediction": orjson.dumps(prediction).decode(), "expires_at": expires_at}
            for key, prediction in entries.items()
        ]
        if len(items) == 1:
            self._table.put(items[0])
        else:
            self._table.batch_put(items)
