"""The optional prediction cache: one entry per (model, version, normalised feature row), with a TTL.

Keys normalise rows so that equal inputs hit: values in the schema's feature order, numbers of
float features as floats (``1`` and ``1.0`` are the same input), everything else as sent; the
key is the sha256 of that canonical JSON. Entries hold the model's raw prediction (decision
rules are applied after the lookup, so a rule change takes effect at once). A cache that fails
is a miss, counted, never an error: the cache may only make requests faster.

Reads are on the request path (the answer depends on them); writes are not. An entry is handed
to a writer thread and the request goes on: the write is best-effort, and may be, because a
lost entry costs one recomputation and never a wrong answer (entries are the model's own output,
keyed by version and inputs, expiring at the time the request computed). That is why it needs
neither the function's output nor a log subscription, as the prediction log does: on Lambda a
write the sandbox's freeze interrupts resumes at the next invocation or is lost with the
sandbox, and past ``QUEUE_LIMIT`` requests' entries waiting, new ones are dropped (logged). Failed and dropped
writes are counted as ``PredictionCacheErrors`` / ``PredictionCacheDropped`` by the next
request (metrics are only touched on request threads).
"""

from __future__ import annotations

import hashlib
import queue
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

import orjson

from mlambda.errors import MlambdaError
from mlambda.observability import MetricUnit, logger, metrics
from mlambda.schemas.registry import FeatureSchema

QUEUE_LIMIT = 1000  # requests' worth of entries waiting to be written
WRITE_BATCH = 25  # entries per store call (DynamoDB's BatchWriteItem)


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


class _WriteBehind:
    """One daemon thread writing queued entries to the store, a batch at a time, oldest first."""

    def __init__(self, store: PredictionCacheStore, limit: int) -> None:
        self._store = store
        self._queue: queue.Queue[tuple[dict[str, dict[str, Any]], int]] = queue.Queue(maxsize=limit)
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self.failed = 0  # writes that failed since the last ``take_counts``
        self.dropped = 0  # entries dropped on a full queue since then

    def submit(self, entries: dict[str, dict[str, Any]], expires_at: int) -> None:
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="prediction-cache-writer", daemon=True)
                self._thread.start()
        try:
            self._queue.put_nowait((entries, expires_at))
        except queue.Full:
            with self._lock:
                self.dropped += len(entries)

    def _run(self) -> None:
        while True:
            entries, expires_at = self._queue.get()
            try:
                self._write(entries, expires_at)
            finally:
                self._queue.task_done()

    def _write(self, entries: dict[str, dict[str, Any]], expires_at: int) -> None:
        items = list(entries.items())
        for start in range(0, len(items), WRITE_BATCH):
            try:
                self._store.put_many(dict(items[start : start + WRITE_BATCH]), expires_at=expires_at)
            except MlambdaError as exc:
                with self._lock:
                    self.failed += 1
                logger.warning("prediction cache write failed", extra={"error": exc.message})

    def take_counts(self) -> tuple[int, int]:
        """(failed writes, dropped entries) since the last call."""
        with self._lock:
            counts = (self.failed, self.dropped)
            self.failed = self.dropped = 0
        return counts

    def flush(self, timeout: float) -> bool:
        """Wait until every queued entry is written (or failed); False if ``timeout`` passed first."""
        deadline = time.monotonic() + timeout
        while self._queue.unfinished_tasks:
            if time.monotonic() > deadline:
                return False
            time.sleep(0.001)
        return True


class PredictionCache:
    """Reads and writes the cache for the inference service; failures degrade to misses.

    ``write_behind=False`` writes in the caller's thread (tests that need the entry at once).
    """

    def __init__(
        self,
        store: PredictionCacheStore,
        clock: Callable[[], float] = time.time,
        *,
        write_behind: bool = True,
        queue_limit: int = QUEUE_LIMIT,
    ) -> None:
        self._store = store
        self._clock = clock
        self._writer = _WriteBehind(store, queue_limit) if write_behind else None

    def lookup(self, keys: Sequence[str]) -> dict[str, dict[str, Any]]:
        """Cached predictions by key (absent, expired and unreadable entries are misses)."""
        try:
            return self._store.get_many(list(dict.fromkeys(keys)), now=self._clock())
        except MlambdaError as exc:
            metrics.add_metric(name="PredictionCacheErrors", unit=MetricUnit.Count, value=1)
            logger.warning("prediction cache read failed", extra={"error": exc.message})
            return {}

    def store(self, entries: Mapping[str, dict[str, Any]], ttl_seconds: int) -> None:
        """Cache ``entries`` for ``ttl_seconds``, off the request path; failures are logged and counted."""
        if not entries:
            return
        expires_at = int(self._clock()) + ttl_seconds
        if self._writer is None:
            try:
                self._store.put_many(entries, expires_at=expires_at)
            except MlambdaError as exc:
                metrics.add_metric(name="PredictionCacheErrors", unit=MetricUnit.Count, value=1)
                logger.warning("prediction cache write failed", extra={"error": exc.message})
            return
        failed, dropped = self._writer.take_counts()
        if failed:
            metrics.add_metric(name="PredictionCacheErrors", unit=MetricUnit.Count, value=failed)
        if dropped:
            metrics.add_metric(name="PredictionCacheDropped", unit=MetricUnit.Count, value=dropped)
            logger.warning(
                "prediction cache writes dropped: the writer is behind", extra={"entries": dropped}
            )
        self._writer.submit(dict(entries), expires_at)

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait for the queued writes (tests; a host that wants them in before it stops)."""
        return True if self._writer is None else self._writer.flush(timeout)
