"""Loaded ONNX sessions for online inference: fetched on first use, verified, warmed, kept in an LRU.

- Fetch: the version's artifact from the artifacts bucket, once per (model, version) per
  instance, even when concurrent invocations ask at the same time (per-key load lock).
- Verify: its sha256 must equal ``ModelVersion.artifact_sha256``. A mismatch is refused with a
  500 ``artifact_corrupt``, counted (``ArtifactCorrupt``) and logged as an alarm; the bytes are
  never loaded, so a tampered or truncated artifact is never served.
- Warm: one run on a zero row at load, because a session's first run costs 20-30 ms.
- Keep: an LRU bounded by count and by artifact bytes (a proxy for session memory).
- Deadline: ``run(..., timeout_ms=)`` asks onnxruntime to stop (``RunOptions.terminate``, set by
  one watchdog thread) and refuses a result that came back late, so the caller's fallback, not
  a late answer, is what a client gets after the deadline.
"""

from __future__ import annotations

import hashlib
import heapq
import itertools
import threading
import time
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import onnxruntime as ort

from mlambda.adapters.onnx import OnnxModel
from mlambda.errors import MlambdaError, UpstreamError
from mlambda.observability import MetricUnit, logger, metrics
from mlambda.ports import ArtifactStore
from mlambda.schemas.registry import ModelVersion

_WARMUP_TYPES: dict[str, Any] = {
    "tensor(float)": np.float32,
    "tensor(double)": np.float64,
    "tensor(int64)": np.int64,
    "tensor(int32)": np.int32,
    "tensor(bool)": np.bool_,
    "tensor(string)": np.str_,
}


class ArtifactCorruptError(MlambdaError):
    """The artifact's bytes do not hash to the sha256 the registry recorded: never serve it."""

    status = 500
    default_code = "artifact_corrupt"


class ModelFailedError(UpstreamError):
    """The model raised while scoring already validated input."""

    default_code = "model_failed"


class ModelTimeoutError(UpstreamError):
    """The model did not answer within its deadline."""

    status = 504
    default_code = "model_timeout"


class Watchdog:
    """One daemon thread that terminates onnxruntime runs past their deadline.

    Deadlines are kept in a heap and removed lazily (a finished run just marks its entry), so a
    request costs one lock and a push; the thread wakes at the earliest deadline only.
    """

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, ort.RunOptions]] = []
        self._done: set[int] = set()
        self._ids = itertools.count()
        self._condition = threading.Condition()
        self._thread: threading.Thread | None = None

    def watch(self, deadline: float, options: ort.RunOptions) -> int:
        """Terminate ``options``' run at ``deadline`` (monotonic seconds) unless ``release``d first."""
        token = next(self._ids)
        with self._condition:
            if self._thread is None:
                self._thread = threading.Thread(target=self._loop, name="onnx-watchdog", daemon=True)
                self._thread.start()
            earliest = self._heap[0][0] if self._heap else None
            heapq.heappush(self._heap, (deadline, token, options))
            if earliest is None or deadline < earliest:
                self._condition.notify()
        return token

    def release(self, token: int) -> None:
        """The run finished: leave it alone."""
        with self._condition:
            self._done.add(token)

    def _loop(self) -> None:
        with self._condition:
            while True:
                if not self._heap:
                    self._condition.wait()
                    continue
                deadline, token, options = self._heap[0]
                if token in self._done:
                    heapq.heappop(self._heap)
                    self._done.discard(token)
                    continue
                remaining = deadline - time.monotonic()
                if remaining > 0:
                    self._condition.wait(remaining)
                    continue
                heapq.heappop(self._heap)
                options.terminate = True


_watchdog = Watchdog()


def _warmup_feed(session: ort.InferenceSession) -> dict[str, np.ndarray]:
    """A one-row feed of zeros (empty strings) matching every input of ``session``."""
    feed: dict[str, np.ndarray] = {}
    for arg in session.get_inputs():
        shape = [dim if isinstance(dim, int) and dim > 0 else 1 for dim in (arg.shape or [1])]
        dtype = _WARMUP_TYPES.get(arg.type, np.float32)
        feed[arg.name] = (
            np.full(shape, "", dtype=object) if dtype is np.str_ else np.zeros(shape, dtype=dtype)
        )
    return feed


class LoadedModel:
    """A verified, warmed session for one model version."""

    def __init__(self, version: ModelVersion, model: OnnxModel) -> None:
        self.version = version
        self.model = model
        self.size_bytes = model.size_bytes

    def run(
        self, feed: Mapping[str, np.ndarray], outputs: Sequence[str], *, timeout_ms: int | None = None
    ) -> dict[str, Any]:
        """The requested outputs for ``feed``; ModelTimeoutError past ``timeout_ms``, ModelFailedError on failure."""
        names = outputs if isinstance(outputs, list) else list(outputs)
        inputs = feed if isinstance(feed, dict) else dict(feed)
        if timeout_ms is None:
            try:
                values = self.model.session.run(names, inputs)
            except Exception as exc:  # onnxruntime's errors are untyped
                raise ModelFailedError(f"{self.version.model} v{self.version.version} failed: {exc}") from exc
            return dict(zip(names, values, strict=True))
        options = ort.RunOptions()
        started = time.monotonic()
        deadline = started + timeout_ms / 1000.0
        token = _watchdog.watch(deadline, options)
        try:
            values = self.model.session.run(names, inputs, options)
        except Exception as exc:  # terminated runs and model faults are both untyped here
            if options.terminate or time.monotonic() >= deadline:
                raise ModelTimeoutError(
                    f"{self.version.model} v{self.version.version} exceeded {timeout_ms} ms"
                ) from exc
            raise ModelFailedError(f"{self.version.model} v{self.version.version} failed: {exc}") from exc
        finally:
            _watchdog.release(token)
        if time.monotonic() >= deadline:
            raise ModelTimeoutError(f"{self.version.model} v{self.version.version} exceeded {timeout_ms} ms")
        return dict(zip(names, values, strict=True))


class ModelSessions:
    """The LRU of loaded models, keyed by (model, version), bounded by count and bytes."""

    def __init__(
        self,
        artifacts: ArtifactStore,
        *,
        max_models: int = 8,
        max_bytes: int = 512 * 1024 * 1024,
        intra_op_threads: int = 1,
    ) -> None:
        self._artifacts = artifacts
        self._max_models = max_models
        self._max_bytes = max_bytes
        self._intra_op_threads = intra_op_threads
        self._models: OrderedDict[tuple[str, int], LoadedModel] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()
        self._loading: dict[tuple[str, int], threading.Lock] = {}

    def __len__(self) -> int:
        return len(self._models)

    @property
    def loaded(self) -> list[tuple[str, int]]:
        """Keys of the loaded models, least recently used first."""
        with self._lock:
            return list(self._models)

    def get(self, version: ModelVersion) -> LoadedModel:
        """The loaded model for ``version``: from the LRU, or fetched, verified and warmed now."""
        key = (version.model, version.version)
        with self._lock:
            loaded = self._models.get(key)
            if loaded is not None:
                self._models.move_to_end(key)
                return loaded
            loading = self._loading.setdefault(key, threading.Lock())
        with loading:
            with self._lock:
                loaded = self._models.get(key)
                if loaded is not None:
                    return loaded
            loaded = self._load(version)
            with self._lock:
                self._models[key] = loaded
                self._bytes += loaded.size_bytes
                self._evict(keep=key)
                self._loading.pop(key, None)
        return loaded

    def _load(self, version: ModelVersion) -> LoadedModel:
        started = time.perf_counter()
        data = self._artifacts.get(version.artifact_key)
        digest = hashlib.sha256(data).hexdigest()
        if digest != version.artifact_sha256:
            metrics.add_metric(name="ArtifactCorrupt", unit=MetricUnit.Count, value=1)
            logger.error(
                "ALARM artifact sha256 mismatch: refusing to serve",
                extra={
                    "alarm": "artifact_corrupt",
                    "model": version.model,
                    "version": version.version,
                    "artifact_key": version.artifact_key,
                    "expected_sha256": version.artifact_sha256,
                    "actual_sha256": digest,
                },
            )
            raise ArtifactCorruptError(
                f"artifact of {version.model} v{version.version} does not match its recorded sha256",
                details={"model": version.model, "version": version.version},
            )
        model = OnnxModel(data, intra_op_threads=self._intra_op_threads)
        try:
            model.session.run(None, _warmup_feed(model.session))
        except Exception as exc:  # a warm-up failure is logged; real rows may still score
            logger.warning("model warm-up run failed", extra={"model": version.model, "error": str(exc)})
        metrics.add_metric(
            name="ModelLoadMs", unit=MetricUnit.Milliseconds, value=(time.perf_counter() - started) * 1000
        )
        logger.info(
            "model loaded",
            extra={"model": version.model, "version": version.version, "bytes": model.size_bytes},
        )
        return LoadedModel(version, model)

    def _evict(self, keep: tuple[str, int]) -> None:
        while len(self._models) > 1 and (
            len(self._models) > self._max_models or self._bytes > self._max_bytes
        ):
            oldest = next(iter(self._models))
            if oldest == keep:
                break
            evicted = self._models.pop(oldest)
            self._bytes -= evicted.size_bytes
