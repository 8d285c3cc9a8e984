"""The prediction cache's writes leave the request path: queued for a writer thread, best-effort, counted."""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from typing import Any

import pytest

from mlambda.errors import UpstreamError
from mlambda.services.inference import prediction_cache
from mlambda.services.inference.prediction_cache import PredictionCache


class GatedStore:
    """A cache table whose writes wait until the test opens the gate (a slow or frozen network)."""

    def __init__(self, fail: bool = False) -> None:
        self.items: dict[str, tuple[dict[str, Any], int]] = {}
        self.gate = threading.Event()
        self.fail = fail
        self.calls = 0

    def get_many(self, keys: Sequence[str], *, now: float) -> dict[str, dict[str, Any]]:
        return {k: self.items[k][0] for k in keys if k in self.items and self.items[k][1] > now}

    def put_many(self, entries: Mapping[str, dict[str, Any]], *, expires_at: int) -> None:
        self.calls += 1
        self.gate.wait(10)
        if self.fail:
            raise UpstreamError("the cache table is unavailable")
        for key, prediction in entries.items():
            self.items[key] = (dict(prediction), expires_at)


def test_a_write_does_not_wait_for_the_store_and_lands_when_the_writer_catches_up() -> None:
    # Given: a store that does not answer yet
    store = GatedStore()
    cache = PredictionCache(store, clock=lambda: 1000.0)
    # When: a request stores its predictions
    cache.store({"k1": {"label": 1}, "k2": {"label": 0}}, ttl_seconds=60)
    # Then: it returned at once, nothing written yet; once the store answers, both are there
    assert store.items == {}
    store.gate.set()
    assert cache.flush(timeout=10)
    assert store.items == {"k1": ({"label": 1}, 1060), "k2": ({"label": 0}, 1060)}
    assert cache.lookup(["k1", "k2", "k3"]) == {"k1": {"label": 1}, "k2": {"label": 0}}


def test_writes_go_in_batches_of_what_dynamodb_takes_at_once() -> None:
    # Given
    store = GatedStore()
    store.gate.set()
    cache = PredictionCache(store)
    # When: one request with 60 new predictions
    cache.store({f"k{n}": {"value": n} for n in range(60)}, ttl_seconds=60)
    assert cache.flush(timeout=10)
    # Then: three store calls of at most 25
    assert store.calls == 3
    assert len(store.items) == 60


def test_a_failed_write_is_logged_and_counted_by_the_next_request(monkeypatch: pytest.MonkeyPatch) -> None:
    # Given: a store that fails, and the metrics the cache adds recorded
    added: list[tuple[str, float]] = []
    monkeypatch.setattr(
        prediction_cache.metrics, "add_metric", lambda name, unit, value: added.append((name, value))
    )
    store = GatedStore(fail=True)
    store.gate.set()
    cache = PredictionCache(store)
    cache.store({"k1": {"label": 1}}, ttl_seconds=60)
    assert cache.flush(timeout=10)
    assert added == []  # never from the writer's thread
    # When: the next request stores
    cache.store({"k2": {"label": 1}}, ttl_seconds=60)
    # Then: the failure is counted on the request's thread
    assert added == [("PredictionCacheErrors", 1)]


def test_when_the_writer_is_behind_new_entries_are_dropped_and_counted(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given: a writer stuck on its first write, and room for two requests' entries
    added: list[tuple[str, float]] = []
    monkeypatch.setattr(
        prediction_cache.metrics, "add_metric", lambda name, unit, value: added.append((name, value))
    )
    store = GatedStore()
    cache = PredictionCache(store, queue_limit=2)
    cache.store({"a": {"label": 1}}, ttl_seconds=60)
    while store.calls == 0:  # the writer took the first and waits on the store
        threading.Event().wait(0.01)
    cache.store({"b": {"label": 1}}, ttl_seconds=60)
    cache.store({"c": {"label": 1}}, ttl_seconds=60)
    # When: two more come while the queue is full
    cache.store({"d": {"label": 1}, "e": {"label": 1}}, ttl_seconds=60)
    cache.store({"f": {"label": 1}}, ttl_seconds=60)
    # Then: the requests never waited; the dropped entries are counted by the next request
    assert ("PredictionCacheDropped", 2) in added
    store.gate.set()
    assert cache.flush(timeout=10)
    assert set(store.items) == {"a", "b", "c"}


def test_without_write_behind_the_entry_is_there_when_store_returns() -> None:
    # Given
    store = GatedStore()
    store.gate.set()
    cache = PredictionCache(store, clock=lambda: 0.0, write_behind=False)
    # When
    cache.store({"k": {"label": 1}}, ttl_seconds=5)
    # Then
    assert store.items == {"k": ({"label": 1}, 5)}
