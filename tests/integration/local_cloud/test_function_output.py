"""Functions' stdout (logs, EMF lines) goes to the host's sink, per invocation thread."""

from __future__ import annotations

import io
import logging
import sys
import threading

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
