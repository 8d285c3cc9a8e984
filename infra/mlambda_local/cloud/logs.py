"""Function logs as CloudWatch keeps them: a log group per function, a log stream per execution environment.

``<data_dir>/logs/<function name>/`` is the group ``/aws/lambda/<function name>``; each execution
environment (worker process, or the in-process runner's one shared environment) appends to its
own stream file, ``<YYYY-MM-DD>-<id>.log``, named ``YYYY/MM/DD/[$LATEST]<id>`` as Lambda names
streams. A worker's stdout and stderr are that file (opened ``O_APPEND``), so what the function
prints is on disk when the ``write`` returns, before the function answers: the file is the
durable buffer that log subscriptions deliver from (``log_subscription``), and nothing written
is lost if the worker or the runner dies before delivery. The platform lines (START, END,
REPORT, timeouts) are appended by the runner, one ``write`` per line.
"""

from __future__ import annotations

import os
import re
import secrets
import threading
import time
import weakref
from collections.abc import Callable
from pathlib import Path

from mlambda_local.private_files import open_private, private_directory

LOG_DIRECTORY = "logs"
_STREAM_FILE = re.compile(r"^(\d{4})-(\d{2})-(\d{2})-([0-9a-f]+)\.log$")


def log_group_name(function_name: str) -> str:
    """Lambda's log group for a function."""
    return f"/aws/lambda/{function_name}"


def stream_name(path: Path) -> str:
    """The Lambda log stream name of a stream file (``2026/05/10/[$LATEST]<id>``)."""
    found = _STREAM_FILE.match(path.name)
    if found is None:
        return path.stem
    year, month, day, identifier = found.groups()
    return f"{year}/{month}/{day}/[$LATEST]{identifier}"


class LogStream:
    """One stream file, open for appending; ``write`` appends whole lines (one system call each).

    The descriptor closes when the stream is garbage collected: the platform may still write a
    REPORT line after the worker that used the file has exited.
    """

    def __init__(self, name: str, path: Path) -> None:
        self.name = name
        self.path = path
        self.fd = open_private(path, os.O_WRONLY | os.O_APPEND)
        weakref.finalize(self, os.close, self.fd)

    def write(self, text: str) -> None:
        """Append ``text`` (whole lines) in one ``write``, so concurrent writers never interleave within it."""
        data = text.encode("utf-8", "replace")
        while data:
            written = os.write(self.fd, data)
            data = data[written:]


class LogGroup:
    """The directory of one function's streams."""

    def __init__(self, data_dir: Path, function_name: str) -> None:
        self.function_name = function_name
        self.name = log_group_name(function_name)
        self.directory = data_dir / LOG_DIRECTORY / function_name
        private_directory(self.directory)

    def new_stream(self) -> LogStream:
        """A fresh stream file, created 0600 and opened for appending."""
        identifier = secrets.token_hex(16)
        day = time.strftime("%Y-%m-%d", time.gmtime())
        path = self.directory / f"{day}-{identifier}.log"
        return LogStream(stream_name(path), path)

    def stream_files(self) -> list[Path]:
        """Every stream file of the group, oldest first."""
        return sorted(self.directory.glob("*.log"), key=lambda path: (path.stat().st_mtime_ns, path.name))


class LineWriter:
    """A text stream that writes complete lines to a ``LogStream``; partial lines wait for their newline.

    ``print`` writes its text and its newline in two calls; concurrent writers (threads of the
    in-process runner) would interleave between them. Each thread's partial line is kept apart
    until its newline arrives, then the whole line goes out in one ``write``.
    """

    def __init__(self, stream: LogStream) -> None:
        self.stream = stream
        self._pending = threading.local()

    def write(self, text: str) -> int:
        pending: str = getattr(self._pending, "text", "")
        combined = pending + text
        cut = combined.rfind("\n") + 1
        if cut:
            self.stream.write(combined[:cut])
        self._pending.text = combined[cut:]
        return len(text)

    def flush(self) -> None:
        """Nothing to do: complete lines are written at once, and a partial one waits for its newline."""


class LogTail:
    """Reads what was appended to a group's streams since the last call (complete lines only)."""

    def __init__(self, group: LogGroup, from_end: bool = True) -> None:
        self.group = group
        self._offsets: dict[Path, int] = {}
        if from_end:
            for path in group.stream_files():
                self._offsets[path] = path.stat().st_size

    def read_new(self, emit: Callable[[str, str], None], limit: int = 1 << 20) -> None:
        """Call ``emit(stream name, line)`` for each new complete line, at most ``limit`` bytes per stream."""
        for path in self.group.stream_files():
            offset = self._offsets.get(path, 0)
            try:
                size = path.stat().st_size
            except FileNotFoundError:
                continue
            if size <= offset:
                continue
            with path.open("rb") as stream:
                stream.seek(offset)
                chunk = stream.read(min(size - offset, limit))
            cut = chunk.rfind(b"\n") + 1
            if not cut:
                if len(chunk) < limit:
                    continue  # a line still being written
                cut = len(chunk)  # one line longer than the limit: shown in parts
            self._offsets[path] = offset + cut
            name = stream_name(path)
            for line in chunk[:cut].decode("utf-8", "replace").splitlines():
                emit(name, line)
