"""The optional prediction cache: one entry per (model, version, normalised feature row), with a TTL.

Keys normalise rows so that equal inputs hit: values in the schema's feature order, numbers of
float features as floats (``1`` and ``1.0`` are the same input), everything else as sent; the
key is the sha256 of that canonical JSON. Entries hold the model's raw prediction (decision
rules are applied after the lookup, so a rule change takes effect at once). A cache that fails
is a miss, counted, never an error: the cache may only make requests faster.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

import orjson

from mlambda.errors import MlambdaError
from mlambda.observability import MetricUnit, logger, metrics
from mlambda.schemas.registry import FeatureSchema


class PredictionCacheStore(Protocol):
    """Where cached predictions live (the prediction cache table)."""

    def get_many(self, keys: Sequence[str], *, now: float) -> dict[str, dict[str, Any]]:
        """The unexpired entries among ``keys`` (expiry checked on read: stores may keep expired items)."""
        ...

    def put_many(self, entries: Mapping[str, dict[str, Any]], *, expires_at: int) -> None:
        """Store each prediction under its key until ``expires_at`` (epoch seconds)."""
        ...


def cache_key(model: str, version: int, schema: FeatureSchema, row: Mapping[str, Any]) -> str:
    """The row's cache key for (model, version): sha256 of its canonical feature values."""
    values = [
        float(row[spec.name])
        if spec.dtype == "float" and isinstance(row[spec.name], int | float)
        else row[spec.name]
        for spec in schema.features
    ]
    canonical = orjson.dumps([model, version, values])
    return hashlib.sha256(canonical).hexdigest()


class PredictionCache:
    """Reads and writes the cache for the inference service; failures degrade to misses."""

    def __init__(self, store: PredictionCacheStore, clock: Callable[[], float] = time.time) -> None:
        self._store = store
        self._clock = clock

    def lookup(self, keys: Sequence[str]) -> dict[str, dict[str, Any]]:
        """Cached predictions by key (absent, expired and unreadable entries are misses)."""
        try:
            return self._store.get_many(list(dict.fromkeys(keys)), now=self._clock())
        except MlambdaError as exc:
            metrics.add_metric(name="PredictionCacheErrors", unit=MetricUnit.Count, value=1)
            logger.warning("prediction cache read failed", extra={"error": exc.message})
            return {}

    def store(self, entries: Mapping[str, dict[str, Any]], ttl_seconds: int) -> None:
        """Cache ``entries`` for ``ttl_seconds``; a failed write is logged and counted."""
        if not entries:
            return
        try:
            self._store.put_many(entries, expires_at=int(self._clock()) + ttl_seconds)
        except MlambdaError as exc:
            metrics.add_metric(name="PredictionCacheErrors", unit=MetricUnit.Count, value=1)
            logger.warning("prediction cache write failed", extra={"error": exc.message})
