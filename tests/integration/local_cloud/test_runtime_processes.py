"""Functions in worker processes behind the Lambda Runtime API: Lambda's limits, errors and log lines."""

from __future__ import annotations

import http.client
import json
import re
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest

from mlambda_local.cloud.errors import FunctionInvocationError, TemplateError
from mlambda_local.cloud.execution import FunctionPool
from mlambda_local.cloud.functions import FunctionSpec
from mlambda_local.cloud.logs import LogGroup
from mlambda_local.cloud.runtime_api import Invocation, RuntimeApiEndpoint
from mlambda_local.cloud.runtimes import built_launch, runtime_python, runtime_support, source_launch

WORKERS = Path(__file__).parent / "workers"


def _pool(
    tmp_path: Path,
    *,
    handler: str = "app.handler",
    timeout: float = 2.0,
    memory_mb: int = 128,
    concurrency: int = 2,
    idle_seconds: float = 300.0,
    runtime: str = "python3.11",
    reserved: int | None = None,
) -> FunctionPool:
    spec = FunctionSpec(
        logical_id="WorkerFunction",
        name="stack-Worker",
        arn="arn:aws:lambda:us-east-1:123456789012:function:stack-Worker",
        code_dir=WORKERS,
        handler=handler,
        environment={"GREETING": "hello from the template"},
        timeout=timeout,
        memory_mb=memory_mb,
        reserved_concurrency=reserved,
        runtime=runtime,
    )
    return FunctionPool(
        spec,
        source_launch(spec),
        LogGroup(tmp_path, spec.name),
        concurrency=concurrency,
        base_environment={"PATH": "/usr/bin:/bin", "AWS_REGION": "us-east-1"},
        idle_seconds=idle_seconds,
    )


@pytest.fixture
def pool(tmp_path: Path) -> Iterator[FunctionPool]:
    running = _pool(tmp_path, timeout=1.0)
    yield running
    running.close()


def _log(pool: FunctionPool) -> str:
    return "".join(path.read_text() for path in pool.group.stream_files())


def _reports(pool: FunctionPool) -> list[str]:
    return [line for line in _log(pool).splitlines() if line.startswith("REPORT ")]


def test_warm_invocations_reuse_the_worker_and_report_init_only_on_the_cold_start(
    pool: FunctionPool, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given: a variable of the runner's environment that no function should see
    monkeypatch.setenv("MLAMBDA_TEST_HOST_ONLY", "leaked")
    # When
    first = pool.invoke({"action": "echo"})
    second = pool.invoke({"action": "echo"})
    # Then: the same process, AWS's runtime client, the function's own environment and context
    assert first["pid"] == second["pid"]
    assert first["started"] == second["started"]
    assert first["function_name"] == "stack-Worker"
    assert first["memory_limit_in_mb"] == "128"
    assert first["greeting"] == "hello from the template"
    assert first["host_only"] is None
    assert re.fullmatch(r"127\.0\.0\.1:\d+", first["runtime_api"])
    assert 0 < first["remaining_ms"] <= 1000
    # ... and Lambda's platform lines, Init Duration on the cold start only
    log = _log(pool)
    for answer in (first, second):
        assert f"START RequestId: {answer['request_id']} Version: $LATEST" in log
        assert f"END RequestId: {answer['request_id']}" in log
    cold, warm = _reports(pool)
    pattern = (
        r"REPORT RequestId: {}\tDuration: [\d.]+ ms\tBilled Duration: \d+ ms\tMemory Size: 128 MB\t"
        r"Max Memory Used: [1-9]\d* MB\t"
    )
    assert re.match(pattern.format(first["request_id"]) + r"Init Duration: [\d.]+ ms\t$", cold)
    assert re.match(pattern.format(second["request_id"]) + "$", warm)
    assert pool.status()["cold_starts"] == 1


def test_a_python_3_12_worker_waits_for_its_invocations_without_a_thread_each(tmp_path: Path) -> None:
    # Given: a function on the python3.12 runtime (awslambdaric's __main__ would poll from a thread)
    with closing(_pool(tmp_path, runtime="python3.12")) as pool:
        # When: three invocations of one warm worker
        answers = [pool.invoke({"action": "echo"}) for _ in range(3)]
    # Then: Lambda's environment, and no thread started to wait for any of them
    assert {a["execution_env"] for a in answers} == {"AWS_Lambda_python3.12"}
    assert len({a["pid"] for a in answers}) == 1
    assert [a["threads_started"] for a in answers] == [0, 0, 0]


def test_handler_exception_is_the_runtime_error_document(pool: FunctionPool) -> None:
    # When
    with pytest.raises(FunctionInvocationError) as raised:
        pool.invoke({"action": "raise", "why": "testing"})
    # Then: awslambdaric's errorType/errorMessage/stackTrace, and the worker stays warm
    error = raised.value
    assert error.error_type == "ValueError"
    assert error.error_message == "asked to fail: testing"
    assert any("app.py" in frame for frame in error.payload["stackTrace"])
    assert "[ERROR] ValueError: asked to fail: testing" in _log(pool)
    assert pool.invoke({"action": "echo"})["pid"] > 0
    assert pool.status()["cold_starts"] == 1


def test_timeout_fails_as_lambda_does_and_replaces_the_worker(pool: FunctionPool) -> None:
    # Given
    before = pool.invoke({"action": "echo"})
    # When: longer than the 1 s Timeout
    with pytest.raises(FunctionInvocationError) as raised:
        pool.invoke({"action": "sleep", "seconds": 5})
    # Then
    assert raised.value.error_type == "Sandbox.Timedout"
    assert raised.value.error_message == "Task timed out after 1.00 seconds"
    log = _log(pool)
    assert re.search(r"\d{4}-\d\d-\d\dT[\d:.]+Z [0-9a-f-]{36} Task timed out after 1\.00 seconds", log)
    assert re.search(r"REPORT RequestId: .*\tDuration: 1000\.00 ms\t.*Status: timeout", log)
    # ... and the next invocation gets a fresh worker
    after = pool.invoke({"action": "echo"})
    assert after["pid"] != before["pid"]
    assert pool.status()["timeouts"] == 1


def test_memory_over_memory_size_kills_the_worker_with_lambdas_out_of_memory_error(tmp_path: Path) -> None:
    # Given (a generous timeout: the test is about memory, on a busy machine)
    with closing(_pool(tmp_path, timeout=30.0)) as pool:
        # When: 300 MB resident in a 128 MB function
        with pytest.raises(FunctionInvocationError) as raised:
            pool.invoke({"action": "allocate", "mb": 300})
        # Then
        assert raised.value.error_type == "Runtime.OutOfMemory"
        assert raised.value.error_message.endswith("Error: Runtime exited with error: signal: killed")
        assert re.search(
            r"Max Memory Used: \d+ MB\t.*Status: error\tError Type: Runtime.OutOfMemory", _log(pool)
        )
        # ... within the limit it runs, in a new worker
        assert pool.invoke({"action": "allocate", "mb": 20})["pid"] > 0
        assert pool.status()["out_of_memory"] == 1


def test_a_worker_that_dies_fails_its_invocation_with_the_exit_status(pool: FunctionPool) -> None:
    # When
    with pytest.raises(FunctionInvocationError) as raised:
        pool.invoke({"action": "exit", "code": 3})
    # Then
    assert raised.value.error_type == "Runtime.ExitError"
    assert raised.value.error_message.endswith("Runtime exited with error: exit status 3")
    assert pool.invoke({"action": "echo"})["pid"] > 0


def test_import_failure_is_an_init_error_and_the_next_invocation_starts_over(tmp_path: Path) -> None:
    # Given
    pool = _pool(tmp_path, handler="broken.handler")
    try:
        # When
        with pytest.raises(FunctionInvocationError) as raised:
            pool.invoke({})
        with pytest.raises(FunctionInvocationError) as again:
            pool.invoke({})
    finally:
        pool.close()
    # Then: Lambda's init error, an INIT_REPORT, and a new cold start for the second try
    assert raised.value.error_type == "Runtime.ImportModuleError"
    assert raised.value.error_message.startswith("Unable to import module 'broken'")
    assert "a_module_that_is_not_installed" in raised.value.error_message
    assert again.value.error_type == "Runtime.ImportModuleError"
    assert "\tPhase: init\tStatus: error\tError Type: Runtime.ImportModuleError" in _log(pool)
    assert pool.status()["cold_starts"] == 2


def test_concurrency_is_capped_and_more_instances_start_under_load(tmp_path: Path) -> None:
    # Given: a function that may run two at a time
    pool = _pool(tmp_path, concurrency=2, timeout=5.0)
    try:
        # When: four invocations at once, each holding its worker 0.6 s
        started = time.perf_counter()
        with ThreadPoolExecutor(4) as threads:
            answers = list(threads.map(pool.invoke, [{"action": "sleep", "seconds": 0.6}] * 4))
        elapsed = time.perf_counter() - started
        status = pool.status()
    finally:
        pool.close()
    # Then: two workers served them, two by two
    assert len({answer["pid"] for answer in answers}) == 2
    assert status["instances"] == 2
    assert elapsed >= 1.2


def test_idle_workers_are_reaped(tmp_path: Path) -> None:
    # Given
    pool = _pool(tmp_path, idle_seconds=0.0)
    try:
        first = pool.invoke({"action": "echo"})
        # When
        pool.watch(time.monotonic() + 1)
        second = pool.invoke({"action": "echo"})
    finally:
        pool.close()
    # Then: a new cold start
    assert first["pid"] != second["pid"]
    assert pool.status()["cold_starts"] == 2


def test_what_a_worker_prints_is_in_its_log_stream_before_it_answers(pool: FunctionPool) -> None:
    # When
    answer: dict[str, Any] = pool.invoke({"action": "print", "text": '{"record": 1}'})
    # Then: the stream named as Lambda names it holds the line
    streams = pool.group.stream_files()
    assert len(streams) == 1
    assert '{"record": 1}\n' in streams[0].read_text()
    assert answer["log_stream"].endswith(streams[0].stem.rsplit("-", 1)[-1])


class _OneInvocation:
    """A RuntimeApiHandler holding one invocation, recording what the runtime answers."""

    def __init__(self) -> None:
        self.invocation = Invocation(
            request_id="req-1",
            payload=b'{"hello": "world"}',
            function_arn="arn:aws:lambda:us-east-1:123456789012:function:f",
            trace_id="Root=1-00000000-000000000000000000000000",
            deadline_ms=1_700_000_000_000,
        )
        self.given = False
        self.init_errors: list[tuple[str, bytes]] = []

    def next_invocation(self) -> Invocation | None:
        if self.given:
            return None
        self.given = True
        return self.invocation

    def respond(self, request_id: str, body: bytes) -> int:
        if request_id != self.invocation.request_id:
            return 400
        if self.invocation.done.is_set():
            return 403
        self.invocation.succeed(body)
        return 202

    def report_error(self, request_id: str, error_type: str, body: bytes) -> int:
        if request_id != self.invocation.request_id:
            return 400
        self.invocation.fail(error_type, body)
        return 202

    def report_init_error(self, error_type: str, body: bytes) -> int:
        self.init_errors.append((error_type, body))
        return 202


def test_runtime_api_serves_next_with_lambdas_headers_and_refuses_wrong_or_repeated_answers() -> None:
    # Given
    handler = _OneInvocation()
    endpoint = RuntimeApiEndpoint(handler, "test")
    connection = http.client.HTTPConnection(endpoint.address)
    try:
        # When: the runtime's loop, on one kept-alive connection
        connection.request("GET", "/2018-06-01/runtime/invocation/next")
        next_response = connection.getresponse()
        event = next_response.read()
        headers = dict(next_response.getheaders())
        answers = []
        for path, body in [
            ("/2018-06-01/runtime/invocation/other/response", b"{}"),
            ("/2018-06-01/runtime/invocation/req-1/response", b'{"ok": true}'),
            ("/2018-06-01/runtime/invocation/req-1/response", b'{"again": true}'),
            ("/2018-06-01/runtime/init/error", b'{"errorType": "Runtime.X"}'),
            ("/2018-06-01/runtime/nothing", b""),
        ]:
            connection.request("POST", path, body, {"Lambda-Runtime-Function-Error-Type": "Runtime.X"})
            response = connection.getresponse()
            answers.append((response.status, json.loads(response.read())))
    finally:
        connection.close()
        endpoint.close()
    # Then
    assert next_response.status == 200
    assert event == b'{"hello": "world"}'
    assert headers["Lambda-Runtime-Aws-Request-Id"] == "req-1"
    assert headers["Lambda-Runtime-Deadline-Ms"] == "1700000000000"
    assert headers["Lambda-Runtime-Invoked-Function-Arn"].endswith(":function:f")
    assert headers["Lambda-Runtime-Trace-Id"].startswith("Root=1-")
    assert [status for status, _ in answers] == [400, 202, 403, 202, 404]
    assert answers[0][1]["errorType"] == "InvalidRequestID"
    assert answers[2][1]["errorType"] == "InvalidStateTransition"
    assert handler.invocation.result == b'{"ok": true}'
    assert handler.init_errors == [("Runtime.X", b'{"errorType": "Runtime.X"}')]


def test_built_artifacts_run_isolated_with_the_templates_python(tmp_path: Path) -> None:
    # Given: sam build's layout, produced here by hand (a function, and a layer's python/ folder)
    try:
        python = runtime_python("python3.12")
    except TemplateError as exc:
        pytest.skip(str(exc))
    build = tmp_path / ".aws-sam" / "build"
    (build / "EchoFunction").mkdir(parents=True)
    (build / "SharedLayer" / "python").mkdir(parents=True)
    (build / "EchoFunction" / "app.py").write_text(
        "import sys, boto3, layer_helper\n"
        "def handler(event, context):\n"
        "    return {'python': sys.version_info[:2], 'helper': layer_helper.VALUE,\n"
        "            'mlambda': any(m.startswith('mlambda') for m in sys.modules), 'path': sys.path[:3]}\n"
    )
    (build / "SharedLayer" / "python" / "layer_helper.py").write_text("VALUE = 'from the layer'\n")
    spec = FunctionSpec(
        logical_id="EchoFunction",
        name="stack-Echo",
        arn="arn:aws:lambda:us-east-1:123456789012:function:stack-Echo",
        code_dir=build / "EchoFunction",
        handler="app.handler",
        environment={},
        timeout=10,
        memory_mb=256,
        reserved_concurrency=None,
        runtime="python3.12",
        layer_dirs=(build / "SharedLayer",),
    )
    launch = built_launch(spec, python, runtime_support(python, "python3.12"))
    pool = FunctionPool(
        spec, launch, LogGroup(tmp_path, spec.name), concurrency=1, base_environment={"PATH": "/usr/bin:/bin"}
    )
    # When
    try:
        answer = pool.invoke({})
    finally:
        pool.close()
    # Then: Python 3.12, the artifact then its layer first on the path, and nothing of this virtualenv
    assert answer["python"] == [3, 12]
    assert answer["helper"] == "from the layer"
    assert answer["mlambda"] is False
    assert answer["path"][:2] == [str(build / "EchoFunction"), str(build / "SharedLayer" / "python")]


def test_a_synchronous_call_over_the_reserved_concurrency_is_throttled_as_lambda_throttles_it(
    tmp_path: Path,
) -> None:
    # Given: a function with one reserved instance, busy with a long invocation
    with (
        closing(_pool(tmp_path, timeout=10.0, concurrency=1, reserved=1)) as pool,
        ThreadPoolExecutor(2) as threads,
    ):
        busy = threads.submit(pool.invoke, {"action": "sleep", "seconds": 2})
        wait_for_busy = time.monotonic() + 30
        while pool.status()["workers"] == [] or not pool.status()["workers"][0]["busy"]:
            assert time.monotonic() < wait_for_busy, "the first invocation never started"
            time.sleep(0.02)
        # When: a synchronous invoker calls it, and an asynchronous one too
        with pytest.raises(FunctionInvocationError) as throttled:
            pool.invoke({"action": "echo"}, throttle=True)
        queued = threads.submit(pool.invoke, {"action": "echo"})
        # Then: Lambda's 429 at once for the first; the second waits its turn and runs
        assert throttled.value.error_type == "TooManyRequestsException"
        assert throttled.value.payload["Reason"] == "ReservedFunctionConcurrentInvocationLimitExceeded"
        assert not busy.done()
        assert queued.result(timeout=30)["pid"] == busy.result(timeout=30)["pid"]
    assert pool.status()["throttles"] == 1


def test_without_reserved_concurrency_a_synchronous_call_waits_for_the_local_cap(tmp_path: Path) -> None:
    # Given: no reserved concurrency, the local cap of one instance in use
    with closing(_pool(tmp_path, timeout=10.0, concurrency=1)) as pool, ThreadPoolExecutor(1) as threads:
        busy = threads.submit(pool.invoke, {"action": "sleep", "seconds": 1})
        time.sleep(0.2)
        # When: a synchronous invoker calls (Lambda would have scaled, not throttled)
        answer = pool.invoke({"action": "echo"}, throttle=True)
        # Then: it waited and ran
        assert answer["pid"] == busy.result(timeout=30)["pid"]
        assert pool.status()["throttles"] == 0


def test_fast_invocations_far_under_memory_size_reuse_the_last_peak_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given: a worker with room (512 MB), its peak reads counted
    from mlambda_local.cloud import execution

    fast = execution.FAST_INVOCATION_SECONDS
    monkeypatch.setattr(execution, "FAST_INVOCATION_SECONDS", 10.0)  # every echo counts as fast
    reads: list[int] = []
    peak = execution.ExecutionEnvironment.peak_memory_kb
    monkeypatch.setattr(
        execution.ExecutionEnvironment, "peak_memory_kb", lambda self: reads.append(1) or peak(self)
    )
    with closing(_pool(tmp_path, memory_mb=512)) as pool:
        # When: a cold invocation, then three warm fast ones, then one allocating 300 MB
        for _ in range(4):
            pool.invoke({"action": "echo"})
        reused = len(reads)
        monkeypatch.setattr(execution, "FAST_INVOCATION_SECONDS", fast)  # writing 300 MB takes longer
        pool.invoke({"action": "allocate", "mb": 300})
        reports = _reports(pool)
    # Then: one read for the four, the REPORT lines keep its figure; the allocation is read afresh
    assert reused == 1
    used = [int(re.search(r"Max Memory Used: (\d+) MB", line).group(1)) for line in reports]  # type: ignore[union-attr]
    assert len(set(used[:4])) == 1 and used[0] > 0
    assert used[4] >= 300 > used[0]


def test_an_allocation_over_memory_size_is_caught_even_after_fast_invocations(tmp_path: Path) -> None:
    # Given: a 256 MB function whose warm invocations are fast
    with closing(_pool(tmp_path, memory_mb=256, timeout=30.0)) as pool:
        for _ in range(3):
            pool.invoke({"action": "echo"})
        # When: one allocates and frees 300 MB
        with pytest.raises(FunctionInvocationError) as raised:
            pool.invoke({"action": "allocate", "mb": 300})
    # Then
    assert raised.value.error_type == "Runtime.OutOfMemory"
