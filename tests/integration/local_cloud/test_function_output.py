"""In process, functions' stdout (logs, EMF lines) goes to their log group, per invocation thread."""

from __future__ import annotations

import io
import json
import logging
import sys
import threading
from pathlib import Path

import pytest

from mlambda_local.cloud.function_output import function_output


def test_prints_and_log_handlers_inside_an_invocation_reach_the_sink(
    capsys: pytest.CaptureFixture[str],
) -> None:
    handler_logger = logging.getLogger("test.function_output")
    handler = logging.StreamHandler(sys.stdout)
    handler_logger.addHandler(handler)
    handler_logger.propagate = False
    sink = io.StringIO()
    try:
        with function_output(sink):
            print('{"metric": 1}')
            handler_logger.warning("from a handler created before the router")
        print("host line")
    finally:
        handler_logger.removeHandler(handler)
    assert sink.getvalue().splitlines() == ['{"metric": 1}', "from a handler created before the router"]
    assert "host line" in capsys.readouterr().out


def test_other_threads_keep_their_stdout_while_one_invocation_is_routed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    terminal, sink = io.StringIO(), io.StringIO()
    monkeypatch.setattr(sys, "stdout", terminal)
    inside, release = threading.Event(), threading.Event()

    def invocation() -> None:
        with function_output(sink):
            inside.set()
            release.wait(5)
            print("from the function")

    worker = threading.Thread(target=invocation)
    worker.start()
    assert inside.wait(5)
    print("from the host")
    release.set()
    worker.join(5)
    assert sink.getvalue() == "from the function\n"
    assert terminal.getvalue() == "from the host\n"


def test_no_sink_leaves_stdout_alone(capsys: pytest.CaptureFixture[str]) -> None:
    with function_output(None):
        print("plain")
    assert capsys.readouterr().out == "plain\n"


def test_concurrent_functions_log_with_their_own_service_and_lambda_keys(tmp_path: Path) -> None:
    from mlambda.observability import logger as shared_logger
    from mlambda_local.cloud.functions import FunctionSpec, LocalFunction
    from mlambda_local.cloud.logs import LogGroup

    both_inside = threading.Barrier(2, timeout=5)

    def handler(event: dict[str, str], context: object) -> None:
        both_inside.wait()  # the two invocations overlap
        shared_logger.info("hello", extra={"from": event["who"]})

    def spec(name: str) -> FunctionSpec:
        return FunctionSpec(
            logical_id=f"{name}Function",
            name=f"stack-{name}",
            arn=f"arn:aws:lambda:us-east-1:123456789012:function:stack-{name}",
            code_dir=tmp_path,
            handler="app.handler",
            environment={"POWERTOOLS_SERVICE_NAME": name.lower()},
            timeout=5,
            memory_mb=128,
            reserved_concurrency=None,
        )

    functions = [
        LocalFunction(spec(name), handler, 1, {}, LogGroup(tmp_path, f"stack-{name}"))
        for name in ("Predict", "Ingest")
    ]
    try:
        futures = [f.submit({"who": f.spec.name}) for f in functions]
        for future in futures:
            future.result(timeout=5)
    finally:
        for function in functions:
            function.close()
    lines = [
        json.loads(line)
        for function in functions
        for path in function.group.stream_files()
        for line in path.read_text().splitlines()
    ]
    assert sorted((line["from"], line["service"], line["function_name"]) for line in lines) == [
        ("stack-Ingest", "ingest", "stack-Ingest"),
        ("stack-Predict", "predict", "stack-Predict"),
    ]
