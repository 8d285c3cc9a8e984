"""Functions in worker processes of their own, behind the Lambda Runtime API, with Lambda's limits.

``FunctionPool`` is one function: execution environments (``ExecutionEnvironment``: a worker
process running AWS's runtime interface client against its own ``RuntimeApiEndpoint``, through
``WORKER_BOOTSTRAP``), started
on demand up to the function's concurrency, reused warm (most recently used first), reaped
after ``idle_seconds`` without work. Per invocation, as Lambda does:

- the event is handed over on ``/next`` with the deadline; the answer comes back on
  ``/response`` or ``/error``;
- ``Timeout``: when the deadline passes the worker is killed and replaced, and the invocation
  fails with ``Task timed out after N.NN seconds``;
- ``MemorySize``: a worker whose resident memory (peak, ``VmHWM``) goes over it is killed and
  the invocation fails with ``Runtime.OutOfMemory`` (``Runtime exited with error: signal:
  killed``); a watchdog samples busy workers, and every answer is checked against the peak;
- a worker that dies (crash, ``os._exit``) fails its invocation with ``Runtime.ExitError``;
- ``ReservedConcurrentExecutions``: a synchronous invocation (API Gateway, Invoke) finding every
  reserved instance busy fails at once with ``TooManyRequestsException`` (Reason
  ``ReservedFunctionConcurrentInvocationLimitExceeded``), as Lambda throttles it; asynchronous
  invocations and event source mappings wait for an instance, as Lambda's internal queue and
  pollers do. A function without reserved concurrency is bounded by the local machine only
  (``--max-instances``, the mapping's ``MaximumConcurrency``): its invocations wait, since
  Lambda would have scaled instead of throttling;
- an import that fails posts ``/init/error``: the invocation fails with the runtime's error
  (``Runtime.ImportModuleError``...), and the next one starts a fresh worker;
- the platform writes ``START``, ``END`` and ``REPORT`` lines (Duration, Billed Duration,
  Memory Size, Max Memory Used, Init Duration on a cold start) to the worker's log stream.

Workers get the function's environment only (the template's variables, Lambda's reserved ones,
the endpoint and credentials), not the runner's.
"""

from __future__ import annotations

import _thread
import contextlib
import json
import logging
import math
import os
import signal
import subprocess
import threading
import time
import weakref
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

import orjson

from mlambda_local.cloud.errors import FunctionInvocationError
from mlambda_local.cloud.functions import FunctionSpec
from mlambda_local.cloud.logs import LogGroup, LogStream
from mlambda_local.cloud.runtime_api import Invocation, RuntimeApiEndpoint, Signal

logger = logging.getLogger("mlambda.local")

MAX_SYNC_PAYLOAD = 6 * 1024 * 1024  # Lambda's synchronous invocation request limit
INIT_LIMIT_SECONDS = 10.0  # Lambda's init phase; past it, init is retried within the invocation's timeout
DEFAULT_IDLE_SECONDS = 300.0
WATCHDOG_INTERVAL = 0.1
PLATFORM_ERRORS = frozenset({"Runtime.OutOfMemory", "Runtime.ExitError"})
THROTTLED = "TooManyRequestsException"
FAST_INVOCATION_SECONDS = 0.001  # an invocation this short skips the /proc read of the peak...
FAST_GROWTH_MB = 128  # ...when the last peak read is this far under MemorySize (1 ms of writes at
# memory bandwidth, tens of GB/s, is tens of MB)
# What ``python -m awslambdaric <handler>`` runs (its loop, its Runtime API client), except that
# ``/next`` is polled on the main thread. awslambdaric's ``__main__`` polls from a new thread per
# invocation when ``AWS_EXECUTION_ENV`` names python3.12 or later, so that the main thread can
# take signals while it waits; no signal but SIGKILL ever reaches a local worker (the runner ends
# workers as Lambda ends a sandbox), and that thread cost ~0.4 ms of CPU and ~1 ms of wall time an
# invocation here, more than the predict handler itself. The code directory is first on the path,
# as ``-m`` (and Lambda's ``LAMBDA_TASK_ROOT``) puts it.
WORKER_BOOTSTRAP = (
    "import os, sys; sys.path[0] = os.getcwd(); from awslambdaric import bootstrap; "
    "from awslambdaric.lambda_runtime_client import LambdaRuntimeClient; "
    "bootstrap.run(sys.argv[1], LambdaRuntimeClient(os.environ['AWS_LAMBDA_RUNTIME_API'], False))"
)


@dataclass(frozen=True)
class WorkerLaunch:
    """How a function's workers start: interpreter, code directory, import path and environment."""

    python: str
    code_dir: Path
    python_path: tuple[Path, ...] = ()
    isolated: bool = False  # -S: only the code, its layers and python_path (the built artifacts)
    environment: dict[str, str] = field(default_factory=dict)
    runtime_name: str = "python3.12"

    def command(self, handler: str) -> list[str]:
        flags = ["-S"] if self.isolated else ["-s"]
        return [self.python, *flags, "-c", WORKER_BOOTSTRAP, handler]


class _ProcStatus:
    """``/proc/<pid>/status`` kept open: one ``pread`` per look (it is read after every invocation)."""

    def __init__(self, pid: int) -> None:
        try:
            self._fd: int | None = os.open(f"/proc/{pid}/status", os.O_RDONLY)
        except OSError:
            self._fd = None
        else:
            weakref.finalize(self, os.close, self._fd)

    def kilobytes(self, name: bytes) -> int | None:
        """A ``kB`` figure (``VmHWM:``, ``VmRSS:``), or None once the process is gone."""
        if self._fd is None:
            return None
        try:
            data = os.pread(self._fd, 4096, 0)
        except OSError:
            return None
        start = data.find(name)
        if start < 0:
            return None
        end = data.find(b"kB", start)
        return int(data[start + len(name) : end])


def _megabytes(kilobytes: int) -> int:
    return math.ceil(kilobytes / 1024)


def _request_ids() -> tuple[str, str]:
    """A request id (UUID v4 text) and an X-Ray trace id, from one read of the OS's random source."""
    h = os.urandom(26).hex()
    request_id = f"{h[:8]}-{h[8:12]}-4{h[13:16]}-{'89ab'[int(h[16], 16) % 4]}{h[17:20]}-{h[20:32]}"
    return request_id, f"Root=1-{int(time.time()):08x}-{h[28:52]};Parent={h[36:52]};Sampled=0"


def _iso_now() -> str:
    now = time.time()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now)) + f".{int(now % 1 * 1000):03d}Z"


class ExecutionEnvironment:
    """One worker process and its Runtime API endpoint: serves one invocation at a time."""

    def __init__(
        self,
        spec: FunctionSpec,
        launch: WorkerLaunch,
        stream: LogStream,
        base_environment: dict[str, str],
        on_exit: Callable[[ExecutionEnvironment], None],
    ) -> None:
        self.spec = spec
        self.stream = stream
        self.id = stream.name.rsplit("]", 1)[-1]
        self._on_exit = on_exit
        self._lock = threading.Lock()  # guards the fields below
        self._slot = _thread.allocate_lock()  # released when an invocation (or the shutdown) is handed over
        self._slot.acquire()
        self._assigned: Invocation | None = None
        self._current: Invocation | None = None
        self._closing = False
        self.dead = False
        self.kill_reason: str | None = None
        self.init_error: tuple[str, bytes] | None = None
        self.init_duration_ms: float | None = None
        self.initialised = Signal()  # set when the init is over (done, failed, or the worker died)
        self.ready_at: float | None = None  # perf_counter when it was
        self.known_peak_kb: int | None = None  # VmHWM as last read (``FunctionPool._peak``)
        self.cold = True  # the next invocation is this environment's first
        self.last_used = time.monotonic()
        self.endpoint = RuntimeApiEndpoint(self, f"{spec.logical_id}-{self.id[:6]}")
        environment = {
            **base_environment,
            **launch.environment,
            **spec.environment,
            "AWS_LAMBDA_RUNTIME_API": self.endpoint.address,
            "AWS_LAMBDA_LOG_STREAM_NAME": stream.name,
        }
        if launch.python_path:
            environment["PYTHONPATH"] = os.pathsep.join(str(path) for path in launch.python_path)
        self.started_at = time.perf_counter()
        stream.write(f"INIT_START Runtime Version: {launch.runtime_name}.mlambda-local\n")
        self.process = subprocess.Popen(
            launch.command(spec.handler),
            cwd=launch.code_dir,
            env=environment,
            stdin=subprocess.DEVNULL,
            stdout=stream.fd,
            stderr=stream.fd,
            start_new_session=True,
            close_fds=True,
        )
        self._status = _ProcStatus(self.process.pid)
        threading.Thread(target=self._watch_exit, name=f"exit-{spec.logical_id}", daemon=True).start()

    # -- the Runtime API side (called on the endpoint's connection threads) ------------------------

    def next_invocation(self) -> Invocation | None:
        with self._lock:
            if self.init_duration_ms is None:
                self.init_duration_ms = (time.perf_counter() - self.started_at) * 1000
            self._current = None
        self._initialised()
        self._slot.acquire()  # until assign() or shutdown() releases it
        with self._lock:
            invocation = self._assigned
            if self._closing or invocation is None:
                return None
            self._assigned = None
            self._current = invocation
            invocation.deadline_ms = int(time.time() * 1000 + self.spec.timeout * 1000)
            invocation.picked_at = time.perf_counter()
        invocation.picked.set()
        return invocation

    def _answered(self, request_id: str) -> Invocation | int:
        invocation = self._current
        if invocation is None or invocation.request_id != request_id:
            return 400
        if invocation.done.is_set():
            return 403
        return invocation

    def respond(self, request_id: str, body: bytes) -> int:
        with self._lock:
            invocation = self._answered(request_id)
            if isinstance(invocation, int):
                return invocation
            invocation.answered_at = time.perf_counter()
        invocation.succeed(body)
        return 202

    def report_error(self, request_id: str, error_type: str, body: bytes) -> int:
        with self._lock:
            invocation = self._answered(request_id)
            if isinstance(invocation, int):
                return invocation
            invocation.answered_at = time.perf_counter()
        invocation.fail(error_type, body)
        return 202

    def report_init_error(self, error_type: str, body: bytes) -> int:
        with self._lock:
            if self.init_error is not None or self.init_duration_ms is not None:
                return 403
            self.init_error = (error_type, body)
            self.init_duration_ms = (time.perf_counter() - self.started_at) * 1000
        self._initialised()
        self.stream.write(
            f"INIT_REPORT Init Duration: {self.init_duration_ms:.2f} ms\tPhase: init\tStatus: error\t"
            f"Error Type: {error_type}\n"
        )
        return 202

    def _initialised(self) -> None:
        with self._lock:
            if self.ready_at is None:
                self.ready_at = time.perf_counter()
        self.initialised.set()

    # -- the runner side -----------------------------------------------------------------------

    def assign(self, invocation: Invocation) -> None:
        """Hand ``invocation`` to the worker (it picks it up on ``/next``)."""
        self.stream.write(f"START RequestId: {invocation.request_id} Version: $LATEST\n")
        with self._lock:
            self._assigned = invocation
        with contextlib.suppress(RuntimeError):  # already released by a shutdown: /next returns nothing
            self._slot.release()

    def peak_memory_kb(self) -> int | None:
        """The worker's peak resident memory so far (``VmHWM``)."""
        return self._status.kilobytes(b"VmHWM:")

    def resident_memory_kb(self) -> int | None:
        """The worker's resident memory now (``VmRSS``)."""
        return self._status.kilobytes(b"VmRSS:")

    @property
    def usable(self) -> bool:
        """Alive, not being killed, and initialised (or still initialising) without error."""
        return not self.dead and self.kill_reason is None and self.init_error is None

    @property
    def busy(self) -> bool:
        return self._current is not None or self._assigned is not None

    def kill(self, reason: str) -> None:
        """SIGKILL the worker's process group (what Lambda does on timeout and out of memory)."""
        with self._lock:
            if self.kill_reason is None:
                self.kill_reason = reason
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)

    def shutdown(self) -> None:
        """Stop the worker (idle reaping, stop): its blocked ``/next`` returns nothing, then SIGKILL."""
        self._close_slot()
        self.kill("shutdown")
        self.endpoint.close()

    def _close_slot(self) -> None:
        """No more invocations: a ``/next`` waiting (or coming) returns nothing."""
        with self._lock:
            if self._closing:
                return
            self._closing = True
            assigned = self._assigned is not None
        if not assigned:  # else the slot is already released for an invocation no one took
            self._slot.release()

    def _watch_exit(self) -> None:
        code = self.process.wait()
        self._initialised()
        self._close_slot()
        with self._lock:
            self.dead = True
            reason = self.kill_reason
            pending = [i for i in (self._current, self._assigned) if i is not None and not i.done.is_set()]
        self.endpoint.close()
        for invocation in pending:
            if self.init_error is not None and invocation.picked_at is None:
                invocation.fail(*self.init_error)
            elif reason != "timeout":  # a timed-out invocation is answered by its invoker
                error_type = "Runtime.OutOfMemory" if reason == "memory" else "Runtime.ExitError"
                message = (
                    f"RequestId: {invocation.request_id} Error: Runtime exited with error: {_exit_text(code)}"
                )
                self.stream.write(f"{message}\n{error_type}\n")
                invocation.fail(
                    error_type, json.dumps({"errorType": error_type, "errorMessage": message}).encode()
                )
        self._on_exit(self)


def _exit_text(code: int) -> str:
    """How Lambda words a runtime's exit: ``signal: killed``, ``exit status 1``."""
    if code >= 0:
        return f"exit status {code}"
    name = signal.Signals(-code).name.removeprefix("SIG").lower()
    return "signal: killed" if name == "kill" else f"signal: {name}"


class FunctionPool:
    """One function's execution environments; ``invoke`` runs an event the way Lambda does."""

    def __init__(
        self,
        spec: FunctionSpec,
        launch: WorkerLaunch,
        group: LogGroup,
        *,
        concurrency: int,
        base_environment: dict[str, str],
        idle_seconds: float = DEFAULT_IDLE_SECONDS,
    ) -> None:
        self.spec = spec
        self.launch = launch
        self.group = group
        self.concurrency = max(1, concurrency)
        self.idle_seconds = idle_seconds
        self._environment = {
            **base_environment,
            "AWS_LAMBDA_FUNCTION_NAME": spec.name,
            "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(spec.memory_mb),
            "AWS_LAMBDA_LOG_GROUP_NAME": group.name,
            "AWS_LAMBDA_INITIALIZATION_TYPE": "on-demand",
            "AWS_EXECUTION_ENV": f"AWS_Lambda_{launch.runtime_name}",
            "LAMBDA_TASK_ROOT": str(launch.code_dir),
            "_HANDLER": spec.handler,
        }
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)  # waited on only when every instance is busy
        self._waiting = 0
        self._idle: list[ExecutionEnvironment] = []  # most recently used last
        self._all: list[ExecutionEnvironment] = []
        self._starting = 0
        self._closed = False
        self._async = ThreadPoolExecutor(
            max_workers=self.concurrency, thread_name_prefix=f"async-{spec.logical_id}"
        )
        self.invocations = 0
        self.errors = 0
        self.cold_starts = 0
        self.timeouts = 0
        self.out_of_memory = 0
        self.throttles = 0
        self.last_error: str | None = None

    @property
    def environment(self) -> dict[str, str]:
        """What the function's workers see (besides the per-worker Runtime API address and stream)."""
        return {**self._environment, **self.launch.environment, **self.spec.environment}

    # -- environments --------------------------------------------------------------------------

    def _spawn(self) -> ExecutionEnvironment:
        """Start a worker (outside the lock: a fork takes milliseconds); its slot is already counted."""
        try:
            environment = ExecutionEnvironment(
                self.spec, self.launch, self.group.new_stream(), self._environment, self._gone
            )
        except BaseException:
            with self._cond:
                self._starting -= 1
                self._cond.notify_all()
            raise
        with self._cond:
            self._starting -= 1
            self._all.append(environment)
            self.cold_starts += 1
        return environment

    def _gone(self, environment: ExecutionEnvironment) -> None:
        with self._cond:
            if environment in self._idle:
                self._idle.remove(environment)
            if environment in self._all:
                self._all.remove(environment)
            self._cond.notify_all()

    def _acquire(self, throttle: bool = False) -> ExecutionEnvironment:
        """A warm idle environment, a new one if under the concurrency, else wait for one
        (``throttle``: raise Lambda's TooManyRequestsException instead of waiting)."""
        with self._lock:
            while True:
                if self._closed:
                    raise self._error("Runtime.Unavailable", "the local cloud is stopping")
                while self._idle:
                    environment = self._idle.pop()
                    if environment.usable:
                        self.invocations += 1
                        return environment
                if len(self._all) + self._starting < self.concurrency:
                    self._starting += 1
                    self.invocations += 1
                    break
                if throttle:
                    self.throttles += 1
                    raise self._throttled(self.throttles)
                self._waiting += 1
                self._cond.wait()
                self._waiting -= 1
        return self._spawn()

    def _throttled(self, count: int) -> FunctionInvocationError:
        if count == 1 or count % 100 == 0:
            logger.warning(
                "%s throttled: its %d reserved instances are busy (%d synchronous invocations refused so far)",
                self.spec.logical_id,
                self.concurrency,
                count,
            )
        message = "Rate Exceeded."
        return self._error(
            THROTTLED,
            message,
            {
                "errorType": THROTTLED,
                "errorMessage": message,
                "Reason": "ReservedFunctionConcurrentInvocationLimitExceeded",
                "retryAfterSeconds": "1",
            },
        )

    def _release(self, environment: ExecutionEnvironment) -> None:
        with self._lock:
            environment.last_used = time.monotonic()
            if environment.usable and not self._closed:
                self._idle.append(environment)
            if self._waiting:
                self._cond.notify()

    def prewarm(self) -> ExecutionEnvironment | None:
        """Start one environment now, so its init is done before the first request needs it.

        None when the function already has one (a request started it) or is closing.
        """
        with self._cond:
            if self._all or self._starting or self._closed:
                return None
            self._starting += 1
        environment = self._spawn()
        self._release(environment)
        return environment

    # -- invocations ---------------------------------------------------------------------------

    def invoke(self, event: Any, *, throttle: bool = False) -> Any:
        """Run ``event`` synchronously; the handler's result, or FunctionInvocationError as Lambda reports it.

        ``throttle``: the caller is a synchronous invoker (API Gateway, Invoke), which Lambda
        throttles when the function's reserved concurrency is in use instead of making it wait.
        """
        result = self.invoke_payload(orjson.dumps(event), throttle=throttle)
        return orjson.loads(result) if result else None

    def submit(self, event: Any) -> Future[Any]:
        """Start an invocation (asynchronous, as S3, EventBridge and CloudWatch Logs invoke)."""
        return self._async.submit(self.invoke, event)

    def invoke_payload(self, payload: bytes, *, throttle: bool = False) -> bytes:
        """Run one JSON payload; the response bytes."""
        if len(payload) > MAX_SYNC_PAYLOAD:
            raise self._error(
                "RequestEntityTooLargeException",
                f"Request must be smaller than {MAX_SYNC_PAYLOAD} bytes for the InvokeFunction operation",
            )
        environment = self._acquire(throttle and self.spec.reserved_concurrency is not None)
        request_id, trace_id = _request_ids()
        invocation = Invocation(
            request_id=request_id, payload=payload, function_arn=self.spec.arn, trace_id=trace_id
        )
        cold = environment.cold
        environment.cold = False
        environment.assign(invocation)
        try:
            return self._await(environment, invocation, cold)
        finally:
            self._release(environment)

    def _await(self, environment: ExecutionEnvironment, invocation: Invocation, cold: bool) -> bytes:
        # A cold worker may take Lambda's init limit, and then the timeout, to pick the invocation up.
        if not invocation.picked.wait(INIT_LIMIT_SECONDS + self.spec.timeout):
            environment.kill("timeout")
            self._timed_out(environment, invocation, cold)
        if not invocation.done.is_set():
            assert invocation.picked_at is not None
            remaining = self.spec.timeout - (time.perf_counter() - invocation.picked_at)
            if not invocation.done.wait(max(0.0, remaining)):
                environment.kill("timeout")
                self._timed_out(environment, invocation, cold)
        peak = self._peak(environment, invocation)
        if peak is not None and _megabytes(peak) > self.spec.memory_mb and not invocation.failed:
            # Over MemorySize between two watchdog samples: Lambda would have killed it.
            environment.kill("memory")
            message = f"RequestId: {invocation.request_id} Error: Runtime exited with error: signal: killed"
            environment.stream.write(f"{message}\nRuntime.OutOfMemory\n")
            invocation.fail(
                "Runtime.OutOfMemory",
                json.dumps({"errorType": "Runtime.OutOfMemory", "errorMessage": message}).encode(),
            )
        self._report(environment, invocation, cold, peak)
        if not invocation.failed:
            return invocation.result
        document = _error_document(invocation.result)
        error_type = str(document.get("errorType") or invocation.error_type)
        with self._cond:
            self.errors += 1
            if error_type == "Runtime.OutOfMemory":
                self.out_of_memory += 1
        raise self._error(error_type, str(document.get("errorMessage", "")), document)

    def _peak(self, environment: ExecutionEnvironment, invocation: Invocation) -> int | None:
        """The worker's peak memory after ``invocation`` (kB): read from ``/proc`` (VmHWM), or, after a
        fast invocation of a worker far under its MemorySize, the peak read last time.

        Reading ``/proc/<pid>/status`` was the runner's largest cost of a warm invocation (30-90 µs:
        the kernel formats the whole file). An invocation of under ``FAST_INVOCATION_SECONDS``
        cannot fault in ``FAST_GROWTH_MB`` of new pages, so it cannot have crossed the limit
        unseen; the REPORT line then shows the last peak read.
        """
        known = environment.known_peak_kb
        if (
            known is not None
            and invocation.picked_at is not None
            and invocation.answered_at is not None
            and invocation.answered_at - invocation.picked_at < FAST_INVOCATION_SECONDS
            and _megabytes(known) + FAST_GROWTH_MB < self.spec.memory_mb
        ):
            return known
        peak = environment.peak_memory_kb()
        environment.known_peak_kb = peak
        return peak

    def _timed_out(self, environment: ExecutionEnvironment, invocation: Invocation, cold: bool) -> NoReturn:
        message = f"Task timed out after {self.spec.timeout:.2f} seconds"
        environment.stream.write(f"{_iso_now()} {invocation.request_id} {message}\n")
        invocation.fail("Sandbox.Timedout", b"")
        self._report(environment, invocation, cold, environment.peak_memory_kb(), timed_out=True)
        with self._cond:
            self.errors += 1
            self.timeouts += 1
        raise self._error("Sandbox.Timedout", message)

    def _report(
        self,
        environment: ExecutionEnvironment,
        invocation: Invocation,
        cold: bool,
        peak_kb: int | None,
        timed_out: bool = False,
    ) -> None:
        """END and REPORT, as Lambda writes them (Billed Duration includes a cold start's init)."""
        if timed_out:
            duration = self.spec.timeout * 1000
        elif invocation.picked_at is None:
            duration = 0.0
        else:
            finished = invocation.answered_at or time.perf_counter()
            duration = (finished - invocation.picked_at) * 1000
        init = environment.init_duration_ms if cold and environment.init_error is None else None
        fields = [
            f"REPORT RequestId: {invocation.request_id}",
            f"Duration: {duration:.2f} ms",
            f"Billed Duration: {math.ceil(duration + (init or 0.0))} ms",
            f"Memory Size: {self.spec.memory_mb} MB",
            f"Max Memory Used: {_megabytes(peak_kb) if peak_kb else 0} MB",
        ]
        if init is not None:
            fields.append(f"Init Duration: {init:.2f} ms")
        if timed_out:
            fields.append("Status: timeout")
        elif invocation.error_type in PLATFORM_ERRORS:
            fields += ["Status: error", f"Error Type: {invocation.error_type}"]
        environment.stream.write(f"END RequestId: {invocation.request_id}\n" + "\t".join(fields) + "\t\n")

    def _error(
        self, error_type: str, message: str, document: dict[str, Any] | None = None
    ) -> FunctionInvocationError:
        self.last_error = f"{error_type}: {message}"
        return FunctionInvocationError(
            self.spec.logical_id,
            f"{error_type}: {message}",
            error_type=error_type,
            error_message=message,
            payload=document or {"errorType": error_type, "errorMessage": message},
        )

    # -- housekeeping --------------------------------------------------------------------------

    def watch(self, now: float) -> None:
        """Kill busy workers over their memory; reap workers idle for ``idle_seconds``."""
        with self._cond:
            environments = list(self._all)
            idle = list(self._idle)
        limit_kb = self.spec.memory_mb * 1024
        for environment in environments:
            if environment.busy and environment.usable:
                resident = environment.resident_memory_kb()
                if resident is not None and resident > limit_kb:
                    logger.warning("%s: worker over %d MB, killed", self.spec.logical_id, self.spec.memory_mb)
                    environment.kill("memory")
        for environment in idle:
            if now - environment.last_used > self.idle_seconds:
                with self._cond:
                    if environment not in self._idle:
                        continue
                    self._idle.remove(environment)
                environment.shutdown()

    def status(self) -> dict[str, Any]:
        """Counters for ``LocalCloud.status()``."""
        with self._cond:
            return {
                "name": self.spec.name,
                "handler": self.spec.handler,
                "code_dir": str(self.launch.code_dir),
                "mode": "process",
                "python": self.launch.python,
                "concurrency": self.concurrency,
                "instances": len(self._all),
                "idle": len(self._idle),
                "workers": [
                    {"pid": e.process.pid, "busy": e.busy, "log_stream": e.stream.name} for e in self._all
                ],
                "invocations": self.invocations,
                "cold_starts": self.cold_starts,
                "errors": self.errors,
                "timeouts": self.timeouts,
                "out_of_memory": self.out_of_memory,
                "throttles": self.throttles,
                "last_error": self.last_error,
                "log_group": str(self.group.directory),
            }

    def close(self) -> None:
        """Stop every worker (running invocations fail) and the asynchronous invoker."""
        with self._cond:
            self._closed = True
            environments = list(self._all)
            self._cond.notify_all()
        for environment in environments:
            environment.shutdown()
        for environment in environments:
            try:
                environment.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                logger.warning("%s: worker %d did not exit", self.spec.logical_id, environment.process.pid)
        self._async.shutdown(wait=False, cancel_futures=True)


def _error_document(body: bytes) -> dict[str, Any]:
    """The error a runtime posted (``{errorType, errorMessage, stackTrace}``), or what can be said of it."""
    try:
        document = json.loads(body) if body else {}
    except (ValueError, UnicodeDecodeError):
        return {"errorMessage": body[:1000].decode("utf-8", "replace")}
    return document if isinstance(document, dict) else {"errorMessage": str(document)}


class Watchdog:
    """One thread for every pool: memory checks every ``interval`` seconds, idle reaping."""

    def __init__(self, pools: Sequence[FunctionPool], interval: float = WATCHDOG_INTERVAL) -> None:
        self._pools = list(pools)
        self._interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="mlambda-watchdog", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _loop(self) -> None:
        while not self._stop.wait(self._interval):
            now = time.monotonic()
            for pool in self._pools:
                try:
                    pool.watch(now)
                except Exception:
                    logger.exception("watchdog of %s failed", pool.spec.logical_id)

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()
