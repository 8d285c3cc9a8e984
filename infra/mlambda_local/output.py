"""What a command answers and how it is printed: ``--output table`` (the default, for people) or
``--output json`` (for programs: the API's JSON, pretty-printed); progress bars on stderr.

Progress uses tqdm: a maintained, dependency-free bar (about 80 KB) that writes to stderr and
turns itself off when stderr is not a terminal, so pipes and logs get no control characters.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

OutputFormat = Literal["table", "json"]
MAX_CELL = 60


@dataclass
class Outcome:
    """A command's answer: ``data`` for ``--output json``, ``lines`` (else ``data`` laid out as a
    table) for ``--output table``, and the exit code."""

    data: Any = None
    lines: Callable[[], Iterable[str]] | None = None
    code: int = 0


def print_json(value: Any) -> None:
    """Pretty-print ``value`` as JSON."""
    print(json.dumps(value, indent=2, sort_keys=True, default=str))


def emit(outcome: Outcome, output: OutputFormat) -> None:
    """Print the outcome in the chosen format (nothing when a command printed as it went)."""
    if output == "json":
        if outcome.data is not None:
            print_json(outcome.data)
        return
    if outcome.lines is not None:
        for line in outcome.lines():
            print(line)
    elif outcome.data is not None:
        for line in table(outcome.data):
            print(line)


def cell(value: Any) -> str:
    """One value as table text: scalars as they are, the rest as compact JSON, cut to MAX_CELL."""
    if value is None:
        return "-"
    text = value if isinstance(value, str) else json.dumps(value, separators=(",", ":"), default=str)
    text = text.replace("\n", " ")
    return text if len(text) <= MAX_CELL else text[: MAX_CELL - 3] + "..."


def table(data: Any, columns: Sequence[str] | None = None) -> list[str]:
    """A list of objects as aligned columns; an object as ``key  value`` lines; a scalar as itself."""
    if isinstance(data, Mapping):
        width = max((len(str(k)) for k in data), default=0)
        return [f"{key!s:{width}}  {cell(value)}" for key, value in data.items()]
    if isinstance(data, list | tuple):
        rows = [row for row in data if isinstance(row, Mapping)]
        if not rows:
            return [cell(item) for item in data]
        names = list(columns or dict.fromkeys(k for row in rows for k in row))
        cells = [[cell(row.get(name)) for name in names] for row in rows]
        widths = [max(len(name), *(len(r[i]) for r in cells)) for i, name in enumerate(names)]
        lines = ["  ".join(name.upper().ljust(w) for name, w in zip(names, widths, strict=True)).rstrip()]
        lines.extend("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in cells)
        return lines
    return [cell(data)]


def progress(total: float | None, description: str, *, unit: str = "it", byte_units: bool = False) -> Any:
    """A tqdm bar on stderr (off when stderr is not a terminal); ``update(n)`` advances it."""
    from tqdm import tqdm

    return tqdm(
        total=total,
        desc=description,
        unit="B" if byte_units else unit,
        unit_scale=byte_units,
        unit_divisor=1024 if byte_units else 1000,
        file=sys.stderr,
        disable=None,
        leave=False,
        dynamic_ncols=True,
    )


def status(message: str) -> None:
    """One line on stderr (what happened beside the answer: uploads, job ids)."""
    print(message, file=sys.stderr, flush=True)
