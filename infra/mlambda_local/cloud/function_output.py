"""In-process mode: send what a function prints (powertools' JSON logs, EMF lines, its log records) to its log group.

On Lambda (and in the local cloud's worker processes) each function's stdout is its own log
stream. In process every function shares the runner's stdout, so each invocation's thread
routes it to the function's stream (a contextvar), while the runner's own prints stay on the
terminal and concurrent invocations don't interfere.
"""

from __future__ import annotations

import logging
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Protocol, TextIO


class Writer(Protocol):
    """Where a function's output goes (``logs.LineWriter``, or any text stream)."""

    def write(self, text: str) -> int: ...

    def flush(self) -> None: ...


_sink: ContextVar[Writer | None] = ContextVar("mlambda_local_function_output", default=None)
_install_lock = threading.Lock()


class _RoutingStream:
    """A stand-in for ``sys.stdout`` that writes to the current invocation's sink, if any."""

    def __init__(self, terminal: TextIO) -> None:
        self.terminal = terminal
        self._write_lock = threading.Lock()

    def write(self, text: str) -> int:
        sink = _sink.get()
        if sink is None:
            return self.terminal.write(text)
        with self._write_lock:
            return sink.write(text)

    def flush(self) -> None:
        sink = _sink.get()
        (self.terminal if sink is None else sink).flush()

    def __getattr__(self, name: str) -> object:
        return getattr(self.terminal, name)


def _install() -> _RoutingStream:
    """Put the router in front of stdout, and of every log handler already holding stdout."""
    with _install_lock:
        if isinstance(sys.stdout, _RoutingStream):
            router = sys.stdout
        else:
            router = _RoutingStream(sys.stdout)
            sys.stdout = router
        loggers = [logging.getLogger(), *logging.Logger.manager.loggerDict.values()]
        for item in loggers:
            for handler in getattr(item, "handlers", []):
                if isinstance(handler, logging.StreamHandler) and handler.stream is router.terminal:
                    handler.setStream(router)
        return router


@contextmanager
def function_output(sink: Writer | None) -> Iterator[None]:
    """While the block runs (in this thread), route stdout to ``sink``; ``None`` leaves it alone."""
    if sink is None:
        yield
        return
    _install()
    token = _sink.set(sink)
    try:
        yield
    finally:
        _sink.reset(token)
