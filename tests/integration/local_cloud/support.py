"""Helpers shared by the local cloud tests: the fixture template, a fake clock, polling with deadlines."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TypeVar

import pytest

FIXTURE_DIR = Path(__file__).parent / "fixture"
FIXTURE_TEMPLATE = FIXTURE_DIR / "template.yaml"

T = TypeVar("T")


class FakeClock:
    """A UTC clock the test moves forward, so schedules fire without waiting a minute."""

    def __init__(self, start: datetime | None = None) -> None:
        self._now = start or datetime(2030, 1, 1, 12, 0, 30, tzinfo=UTC)
        self._lock = threading.Lock()

    def __call__(self) -> datetime:
        with self._lock:
            return self._now

    def advance(self, seconds: float) -> None:
        with self._lock:
            self._now += timedelta(seconds=seconds)


def wait_for(probe: Callable[[], T | None], timeout: float = 15.0, interval: float = 0.1) -> T:
    """Poll ``probe`` until it returns something truthy; fail with a clear message at the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"condition not met within {timeout}s (last value: {value!r})")
        time.sleep(interval)
