"""Send what functions print (powertools' JSON logs, EMF metric lines) where the host wants it.

On Lambda each function's stdout goes to its own CloudWatch log group. Here every function
shares the host's stdout, so ``mlambda demo`` (or any host) would drown in JSON lines; a host
that passes a sink gets them in a file instead, while its own prints stay on the terminal.
Routing is per invocation thread (a contextvar), so concurrent invocations don't interfere.
"""

from __future__ import annotations

import logging
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import TextIO

_sink: ContextVar[TextIO | None] = ContextVar("mlambda_local_function_output", default=None)
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
            written = sink.write(text)
            sink.flush()
        return written

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
def function_output(sink: TextIO | None) -> Iterator[None]:
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
