"""``mlambda local up`` in a process of its own, as a user runs it: started, killed, restarted, measured.

Shared by the crash e2e test and ``benchmarks/bench_batch.py``.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from mlambda_local.client import ADMIN_KEY_FILE
from tests.conftest import REPO_ROOT

PAGE_KB = os.sysconf("SC_PAGE_SIZE") // 1024


class LocalCloudProcess:
    """``mlambda --data-dir <data_dir> local up``; its output goes to ``<data_dir>/local-up.log``."""

    def __init__(self, data_dir: Path, start_timeout: float = 180.0) -> None:
        self.data_dir = data_dir
        self.start_timeout = start_timeout
        self.process: subprocess.Popen[bytes] | None = None
        self.state: dict[str, Any] = {}

    @property
    def log(self) -> Path:
        return self.data_dir / "local-up.log"

    def start(self) -> float:
        """Start and wait until it serves (its state file names it, its admin key is printed); seconds taken."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        started = time.perf_counter()
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "mlambda_local.cli", "--data-dir", str(self.data_dir), "local", "up"],
                cwd=REPO_ROOT,
                stdout=log,
                stderr=subprocess.STDOUT,
                env={**os.environ, "POWERTOOLS_LOG_LEVEL": "WARNING"},
            )
        deadline = time.monotonic() + self.start_timeout
        while not self._up():
            if time.monotonic() > deadline:
                self.kill()
                raise AssertionError(f"the local cloud did not start: {self.log.read_text()[-3000:]}")
            time.sleep(0.02)
        return time.perf_counter() - started

    def _up(self) -> bool:
        assert self.process is not None
        if self.process.poll() is not None:
            raise AssertionError(f"mlambda local up exited: {self.log.read_text()[-3000:]}")
        try:
            state: dict[str, Any] = json.loads((self.data_dir / "state.json").read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            return False
        if state.get("pid") != self.process.pid or not (self.data_dir / ADMIN_KEY_FILE).exists():
            return False
        self.state = state
        return True

    @property
    def endpoint_url(self) -> str:
        return str(self.state["endpoint_url"])

    @property
    def api_url(self) -> str:
        return str(self.state["api_url"])

    @property
    def outputs(self) -> dict[str, str]:
        outputs: dict[str, str] = self.state["outputs"]
        return outputs

    @property
    def admin_key(self) -> str:
        return (self.data_dir / ADMIN_KEY_FILE).read_text().strip()

    def kill(self) -> None:
        """``kill -9``: nothing is flushed, closed or saved on the way out."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(60)

    def stop(self) -> None:
        """Ctrl-C's way: a clean stop."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(60)
            except subprocess.TimeoutExpired:
                self.kill()

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.stop()

    def rss_kb(self) -> int:
        """Resident memory of the cloud's process and every process it started, now."""
        return sum(self.rss_by_process_kb().values())

    def rss_by_process_kb(self) -> dict[int, int]:
        """Resident memory of the cloud's process and of each process it started (by pid), now."""
        if self.process is None or self.process.poll() is not None:
            return {}
        return {pid: _rss_kb(pid) for pid in _descendants(self.process.pid)}

    def label(self, pid: int) -> str:
        """``local up`` for the cloud's own process (runner and moto), else the function a worker runs."""
        if self.process is not None and pid == self.process.pid:
            return "local up"
        return _function_of(pid)


CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds_by_process(root: int) -> dict[str, float]:
    """CPU seconds (user + system) so far of ``root`` (``local up``) and each process it started,
    summed by what they run (``local up`` itself, or the function a worker runs)."""
    totals: dict[str, float] = {}
    for pid in _descendants(root):
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        label = "local up" if pid == root else _function_of(pid)
        totals[label] = totals.get(label, 0.0) + (int(fields[11]) + int(fields[12])) / CLOCK_TICKS
    return totals


def _function_of(pid: int) -> str:
    try:
        environment = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    except OSError:
        return "gone"
    for variable in environment:
        if variable.startswith(b"AWS_LAMBDA_FUNCTION_NAME="):
            return variable.split(b"=", 1)[1].decode().removeprefix("mlambda-local-")
    return "other"


def _descendants(root: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(entry.name))
    found, pending = [], [root]
    while pending:
        pid = pending.pop()
        found.append(pid)
        pending.extend(children.get(pid, []))
    return found


def _rss_kb(pid: int) -> int:
    try:
        return int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * PAGE_KB
    except (OSError, IndexError, ValueError):
        return 0


class PeakMemory:
    """The highest ``rss_kb`` of a cloud seen while this is running (sampled every 50 ms), and who held it."""

    def __init__(self, cloud: LocalCloudProcess, interval: float = 0.05) -> None:
        self.cloud = cloud
        self.interval = interval
        self.peak_kb = 0
        self.runner_peak_kb = 0  # the cloud's own process (runner, moto), alone
        self._at_peak: dict[int, int] = {}
        self._labels: dict[int, str] = {}  # read when a process is first seen: it may be gone at the end
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._stop.is_set():
            by_process = self.cloud.rss_by_process_kb()
            for pid in by_process.keys() - self._labels.keys():
                self._labels[pid] = self.cloud.label(pid)
            total = sum(by_process.values())
            if total > self.peak_kb:
                self.peak_kb, self._at_peak = total, by_process
            if self.cloud.process is not None:
                self.runner_peak_kb = max(self.runner_peak_kb, by_process.get(self.cloud.process.pid, 0))
            self._stop.wait(self.interval)

    def at_peak(self) -> str:
        """Who held the peak: ``local up 700 MB, BatchWorkerFunction 2 x 450 MB, ...``."""
        groups: dict[str, list[int]] = {}
        for pid, kb in self._at_peak.items():
            groups.setdefault(self._labels.get(pid, "gone"), []).append(kb)
        parts = sorted(groups.items(), key=lambda item: -sum(item[1]))
        return ", ".join(
            f"{label} {len(kbs)} x {sum(kbs) / len(kbs) / 1024:.0f} MB"
            if len(kbs) > 1
            else f"{label} {kbs[0] / 1024:.0f} MB"
            for label, kbs in parts
        )

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()
