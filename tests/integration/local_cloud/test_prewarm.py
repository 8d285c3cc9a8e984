"""Pre-warming: the critical workers start at once, the others after the start, a few at a time, most used first."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

from mlambda_local.cloud.execution import FunctionPool
from mlambda_local.cloud.prewarm import USAGE_FILE, Prewarmer, UsageRecord, prewarm_order
from mlambda_local.cloud.runtime_api import Signal

from .support import wait_for


class FakePool:
    """A function whose one pre-warmed worker finishes its init when the test says so."""

    def __init__(self, logical_id: str, log: list[str]) -> None:
        self.spec = SimpleNamespace(logical_id=logical_id)
        self.log = log
        self.environment: Any = None

    def prewarm(self) -> Any:
        if self.environment is not None:
            return None
        self.log.append(self.spec.logical_id)
        self.environment = SimpleNamespace(initialised=Signal(), started_at=time.perf_counter())
        return self.environment

    def finish_init(self) -> None:
        self.environment.initialised.set()


def pools(names: list[str], log: list[str]) -> list[FunctionPool]:
    return cast(list[FunctionPool], [FakePool(name, log) for name in names])


def test_authorizers_and_the_most_used_function_come_first_then_by_use() -> None:
    # Given: four API functions, an authorizer among them, and what the last run used
    log: list[str] = []
    api = pools(["Keys", "Authorizer", "Predict", "Registry"], log)
    usage = {"Predict": 5000, "Registry": 12, "Authorizer": 3}
    # When
    first, then = prewarm_order(api, {"Authorizer"}, usage)
    # Then
    assert [p.spec.logical_id for p in first] == ["Authorizer", "Predict"]
    assert [p.spec.logical_id for p in then] == ["Registry", "Keys"]
    # ... and with no record of use, only the authorizer is critical, the rest in template order
    first, then = prewarm_order(api, {"Authorizer"}, {})
    assert [p.spec.logical_id for p in first] == ["Authorizer"]
    assert [p.spec.logical_id for p in then] == ["Keys", "Predict", "Registry"]


def test_the_others_wait_for_the_start_then_one_init_at_a_time() -> None:
    # Given
    log: list[str] = []
    first, then = pools(["Authorizer"], log), pools(["A", "B", "C"], log)
    prewarmer = Prewarmer(first, then, at_once=1)
    try:
        # When: started, before the cloud is up
        prewarmer.start()
        time.sleep(0.3)
        # Then: only the critical worker started
        assert log == ["Authorizer"]
        # When: the cloud is up
        prewarmer.release()
        wait_for(lambda: log == ["Authorizer", "A"], timeout=5)
        time.sleep(0.3)
        # Then: B waits for A's init to be over, and so on
        assert log == ["Authorizer", "A"]
        cast(Any, then[0]).finish_init()
        wait_for(lambda: log == ["Authorizer", "A", "B"], timeout=5)
        cast(Any, then[1]).finish_init()
        wait_for(lambda: log == ["Authorizer", "A", "B", "C"], timeout=5)
    finally:
        prewarmer.stop()


def test_a_function_a_request_already_started_is_not_started_again() -> None:
    # Given: B's worker started by a request before the pre-warm got to it
    log: list[str] = []
    first, then = pools([], log), pools(["A", "B"], log)
    cast(Any, then[1]).prewarm()
    log.clear()
    prewarmer = Prewarmer(first, then, at_once=2)
    # When
    prewarmer.start()
    prewarmer.release()
    wait_for(lambda: log == ["A"], timeout=5)
    prewarmer.stop()
    # Then
    assert [name for name, _ in prewarmer.started] == ["A"]


def test_use_is_saved_for_the_next_start_with_the_earlier_runs_halved(tmp_path: Path) -> None:
    # Given: what earlier runs used (Predict a lot), and a short run since
    (tmp_path / USAGE_FILE).write_text(json.dumps({"Predict": 4000, "Registry": 70, "Old": 1}))
    counts = {"Predict": 3, "Keys": 1, "Registry": 80}
    lock = threading.Lock()

    def current() -> dict[str, int]:
        with lock:
            return dict(counts)

    prewarmer = Prewarmer([], [], usage=UsageRecord(tmp_path), counts=current)
    # When: the cloud runs and stops
    prewarmer.start()
    prewarmer.release()
    prewarmer.stop()
    # Then: the short run does not undo the long one's ranking, and what is no longer used fades
    saved = {"Predict": 2003, "Keys": 1, "Registry": 115}
    assert json.loads((tmp_path / USAGE_FILE).read_text()) == saved
    assert UsageRecord(tmp_path).previous == saved
