"""Which workers start before their first request, and when: ``local up`` pre-warms the API's functions.

A worker's init (importing its handler: the shared layer, boto3, numpy...) is most of a second of
CPU. Starting one of every function behind the API at once made a two-core machine run nine of
them beside the runner's own start, so the runner (and with it the first answer) waited for all
of them. Instead:

- the authorizers, and the API function the last run used most, start at once: their init
  overlaps moto's start and provisioning, and the first request most likely needs them;
- the others start once the cloud is up, most used first, one at a time on a two-core machine
  (``cpu_count - 1`` at a time), each after the previous one's init is over;
- a request for a function not warm yet starts its worker at once, as it always did: pre-warming
  only changes when workers start, never whether a request waits for one.

How much each function was used is kept in ``<data_dir>/functions-used.json``: invocations, the
earlier runs' halved at each run (so a short run does not undo a long one's ranking, and a
function that stops being used fades), saved every half minute while it changes and at stop.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from mlambda_local.cloud.execution import ExecutionEnvironment, FunctionPool
from mlambda_local.private_files import write_private_json

logger = logging.getLogger("mlambda.local")

USAGE_FILE = "functions-used.json"
SAVE_SECONDS = 30.0
INIT_WAIT_SECONDS = 15.0  # a pre-warm waits this long for an init before starting the next anyway


class UsageRecord:
    """Invocations per function (logical id): this run's, plus half of what the earlier runs had."""

    def __init__(self, data_dir: Path) -> None:
        self.path = data_dir / USAGE_FILE
        self.previous = self._load()

    def _load(self) -> dict[str, int]:
        try:
            document = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        if not isinstance(document, dict):
            return {}
        return {str(k): int(v) for k, v in document.items() if isinstance(v, int) and v >= 0}

    def merged(self, counts: dict[str, int]) -> dict[str, int]:
        """This run's counts plus half the earlier ones (functions with neither are left out)."""
        names = set(self.previous) | set(counts)
        merged = {name: counts.get(name, 0) + self.previous.get(name, 0) // 2 for name in names}
        return {name: count for name, count in merged.items() if count > 0}

    def save(self, counts: dict[str, int]) -> None:
        write_private_json(self.path, self.merged(counts))


def prewarm_order(
    pools: Sequence[FunctionPool], authorizers: set[str], usage: dict[str, int]
) -> tuple[list[FunctionPool], list[FunctionPool]]:
    """(at once, after the start): authorizers and the most used function first; the rest by use.

    Ties keep the template's order. Without any record of use only the authorizers start at once.
    """
    ranked = sorted(
        (pool for pool in pools if pool.spec.logical_id not in authorizers),
        key=lambda pool: -usage.get(pool.spec.logical_id, 0),
    )
    first = [pool for pool in pools if pool.spec.logical_id in authorizers]
    if ranked and usage.get(ranked[0].spec.logical_id, 0) > 0:
        first.append(ranked.pop(0))
    return first, ranked


class Prewarmer:
    """Starts ``first`` at once; ``release`` starts the rest, ``at_once`` initialising at a time."""

    def __init__(
        self,
        first: Sequence[FunctionPool],
        then: Sequence[FunctionPool],
        *,
        at_once: int | None = None,
        usage: UsageRecord | None = None,
        counts: Callable[[], dict[str, int]] | None = None,
    ) -> None:
        self.first = list(first)
        self.then = list(then)
        self.at_once = max(1, at_once if at_once is not None else (os.cpu_count() or 2) - 1)
        self.usage = usage
        self._counts = counts
        self.started: list[tuple[str, ExecutionEnvironment]] = []
        self._stop = threading.Event()
        self._released = threading.Event()
        self._thread = threading.Thread(target=self._run, name="mlambda-prewarm", daemon=True)

    def start(self) -> None:
        """Start the first workers now (in this thread: a fork is milliseconds), the rest on ``release``."""
        for pool in self.first:
            self._prewarm(pool)
        self._thread.start()

    def release(self) -> None:
        """The cloud is up: the other workers may start."""
        self._released.set()

    def _prewarm(self, pool: FunctionPool) -> ExecutionEnvironment | None:
        environment = pool.prewarm()
        if environment is not None:
            self.started.append((pool.spec.logical_id, environment))
        return environment

    def _run(self) -> None:
        saved: dict[str, int] = {}
        self._released.wait()
        pending = list(self.then)
        initialising: list[ExecutionEnvironment] = []
        while not self._stop.is_set():
            initialising = [
                e
                for e in initialising
                if not e.initialised.is_set() and time.perf_counter() - e.started_at < INIT_WAIT_SECONDS
            ]
            if pending and len(initialising) < self.at_once:
                environment = self._prewarm(pending.pop(0))
                if environment is not None:
                    initialising.append(environment)
                continue
            if initialising:
                initialising[0].initialised.wait(0.2)
                continue
            saved = self._save(saved)
            self._stop.wait(SAVE_SECONDS)

    def _save(self, saved: dict[str, int]) -> dict[str, int]:
        if self.usage is None or self._counts is None:
            return saved
        counts = self._counts()
        if counts != saved and any(counts.values()):
            try:
                self.usage.save(counts)
            except OSError as exc:
                logger.warning("could not save which functions were used: %s", exc)
        return counts

    def stop(self) -> None:
        """Stop starting workers and save the counts one last time."""
        self._stop.set()
        self._released.set()
        if self._thread.is_alive():
            self._thread.join()
        self._save({})
