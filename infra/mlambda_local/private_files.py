"""Files and folders of the local cloud's data directory, owner-only from the moment they exist.

The data directory holds the admin key, the control token (``state.json``), every stored item
and object, logs that may carry request data: other users of the machine must read none of it.
Everything there is created through these helpers, with its mode given to ``open``/``mkdir``
(never created, then ``chmod``-ed: the file would be readable in between).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

FILE_MODE = 0o600
DIRECTORY_MODE = 0o700


def private_directory(path: Path) -> Path:
    """``path`` and its missing parents, each created 0700; an existing ``path`` is made 0700 too.

    (``Path.mkdir(mode, parents=True)`` gives the parents it creates the default mode, not ``mode``.)
    """
    missing: list[Path] = []
    walk = path
    while not walk.exists():
        missing.append(walk)
        walk = walk.parent
    for directory in reversed(missing):
        directory.mkdir(mode=DIRECTORY_MODE, exist_ok=True)
    if path.stat().st_mode & 0o777 != DIRECTORY_MODE:
        path.chmod(DIRECTORY_MODE)
    return path


def open_private(path: Path, flags: int) -> int:
    """``os.open(path, flags)``, creating the file 0600 when it is missing (``O_CREAT`` is added)."""
    return os.open(path, flags | os.O_CREAT, FILE_MODE)


def write_private(path: Path, data: bytes | str) -> Path:
    """Write ``data`` to ``path`` whole or not at all (a crash mid-write leaves the old file), 0600."""
    temporary = path.with_name(f".{path.name}.tmp")
    descriptor = open_private(temporary, os.O_WRONLY | os.O_TRUNC)
    os.fchmod(descriptor, FILE_MODE)  # a temporary file left by a crash keeps its old mode otherwise
    with os.fdopen(descriptor, "wb") as stream:
        stream.write(data.encode() if isinstance(data, str) else data)
    temporary.replace(path)
    return path


def write_private_json(path: Path, document: Any, indent: int | None = None) -> Path:
    """``document`` as JSON through ``write_private``.

    Every file the local cloud reads back after a crash (the state file, saved SQS batches, the
    log subscriptions' journal) is written this way: a half-written one would stop the next start.
    """
    return write_private(path, json.dumps(document, indent=indent, default=str))
