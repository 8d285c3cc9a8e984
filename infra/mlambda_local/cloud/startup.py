"""The local cloud's start as a timeline: when each phase began and ended, and the CPU it took.

Wall-clock figures on a shared machine say more about the other programs than about the cloud;
each phase therefore also records this process's CPU time, and offsets are measured from the
moment the process started (``/proc/self/stat``), so interpreter start-up and imports are part of
the picture. ``LocalCloud`` logs the timeline once it is up and again at the first API answer
(with when each pre-warmed worker finished its init), and ``status()`` returns it.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any


def seconds_since_process_start() -> float:
    """How long ago this process started (0.0 where ``/proc`` cannot tell)."""
    try:
        fields = Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()
        uptime = float(Path("/proc/uptime").read_text().split()[0])
    except (OSError, IndexError, ValueError):
        return 0.0
    started = int(fields[19]) / os.sysconf("SC_CLK_TCK")  # field 22: start time, in ticks after boot
    return max(0.0, uptime - started)


@dataclass(frozen=True, slots=True)
class Phase:
    """One phase: offsets from the process start, and this process's CPU seconds during it."""

    name: str
    start: float
    end: float
    cpu: float

    @property
    def seconds(self) -> float:
        return self.end - self.start

    def as_dict(self) -> dict[str, Any]:
        return {
            "phase": self.name,
            "start_s": round(self.start, 3),
            "seconds": round(self.seconds, 3),
            "cpu_s": round(self.cpu, 3),
        }


class StartupTimeline:
    """Phases of a start, as offsets from the process's start (``perf_counter`` based)."""

    def __init__(self) -> None:
        self.origin = time.perf_counter() - seconds_since_process_start()
        self.cpu_origin = 0.0  # process_time counts from the process start already
        self.phases: list[Phase] = []
        self.events: list[tuple[str, float]] = []
        self._lock = threading.Lock()

    def now(self) -> float:
        """Seconds since the process started."""
        return time.perf_counter() - self.origin

    @contextmanager
    def phase(self, name: str) -> Iterator[None]:
        """Record the ``with`` block as phase ``name``."""
        start, cpu = self.now(), time.process_time()
        try:
            yield
        finally:
            phase = Phase(name, start, self.now(), time.process_time() - cpu)
            with self._lock:
                self.phases.append(phase)

    def add(self, name: str, start: float, end: float, cpu: float = 0.0) -> None:
        """Record a phase measured elsewhere (another thread, another process), as offsets."""
        with self._lock:
            self.phases.append(Phase(name, start, end, cpu))

    def event(self, name: str) -> float:
        """Record that ``name`` happened now; its offset."""
        at = self.now()
        with self._lock:
            self.events.append((name, at))
        return at

    def as_dict(self) -> dict[str, Any]:
        with self._lock:
            phases, events = sorted(self.phases, key=lambda p: p.start), list(self.events)
        return {
            "phases": [phase.as_dict() for phase in phases],
            "events": [{"event": name, "at_s": round(at, 3)} for name, at in events],
            "cpu_s": round(time.process_time(), 3),
        }

    def summary(self) -> str:
        """``imports 0.41 s (cpu 0.40), template 0.02 s (cpu 0.02), ...``, in start order."""
        with self._lock:
            phases = sorted(self.phases, key=lambda p: p.start)
            events = list(self.events)
        parts = [f"{p.name} {p.seconds:.2f} s (cpu {p.cpu:.2f})" for p in phases]
        parts += [f"{name} at {at:.2f} s" for name, at in events]
        return ", ".join(parts)
