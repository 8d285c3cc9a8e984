"""Turn a source's columns into the rows an evaluation holds: which rows are usable, which are drawn,
and each drawn row as a client would send it (features) plus the rest of its columns (context).

A row is usable when every feature of the evaluated version is present and fits its type (the
same rules as a batch file's cells: ``mlambda.services.inference.scoring.cell_value``). Numeric
columns are judged in bulk; text and mixed columns cell by cell.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import numpy as np

from mlambda.errors import UnprocessableError
from mlambda.schemas.evaluations import MAX_CONTEXT_CHARS, MAX_CONTEXT_COLUMNS
from mlambda.schemas.registry import FeatureSchema, FeatureSpec
from mlambda.services.inference.scoring import cell_value

MAX_REASONS = 5


@dataclass
class Usable:
    """The rows of a source every feature of the model can be read from."""

    mask: np.ndarray
    values: dict[str, np.ndarray]
    reasons: list[str] = field(default_factory=list)

    @property
    def count(self) -> int:
        """Usable rows."""
        return int(self.mask.sum())


def _cell(spec: FeatureSpec, raw: Any) -> tuple[Any, str | None]:
    """One cell of any type as the feature's value, or why it is not one."""
    if raw is None or (isinstance(raw, float | np.floating) and math.isnan(raw)):
        return None, f"column '{spec.name}' is empty"
    if isinstance(raw, str):
        return cell_value(spec, raw)
    if spec.dtype == "string":
        return str(raw), None
    if isinstance(raw, bool | np.bool_):
        if spec.dtype == "bool":
            return bool(raw), None
        return None, f"column '{spec.name}': {raw} is true/false, not a number"
    if isinstance(raw, int | float | np.integer | np.floating):
        number = float(raw)
        if spec.dtype == "bool":
            if number in (0.0, 1.0):
                return number == 1.0, None
            return None, f"column '{spec.name}': {raw} is not true/false"
        return cell_value(spec, repr(number))
    return None, f"column '{spec.name}': a {type(raw).__name__} is not a {spec.dtype}"


def _feature(spec: FeatureSpec, column: np.ndarray) -> tuple[np.ndarray, np.ndarray, dict[int, str]]:
    """(values as the feature's type, bad-row mask, reason of each of the first bad rows)."""
    rows = len(column)
    if spec.dtype in ("float", "int") and column.dtype.kind in "iuf":
        values = column.astype(np.float64)
        with np.errstate(invalid="ignore"):
            bad = ~np.isfinite(values)
            if spec.dtype == "int":
                bad |= ~bad & (values != np.trunc(np.where(bad, 0.0, values)))
        reasons = {
            int(row): (
                f"column '{spec.name}' is empty"
                if math.isnan(values[row])
                else f"column '{spec.name}': {values[row]!r} is not "
                + ("finite" if not math.isfinite(values[row]) else "an integer")
            )
            for row in np.flatnonzero(bad)[:MAX_REASONS]
        }
        return values, bad, reasons
    if spec.dtype == "bool" and column.dtype.kind == "b":
        return column.astype(bool), np.zeros(rows, dtype=bool), {}
    cells = np.empty(rows, dtype=object)
    flagged = np.zeros(rows, dtype=bool)
    why: dict[int, str] = {}
    for row, raw in enumerate(column.tolist()):
        value, reason = _cell(spec, raw)
        if reason is not None:
            flagged[row] = True
            if len(why) < MAX_REASONS:
                why[row] = reason
        cells[row] = value
    return cells, flagged, why


def usable_rows(schema: FeatureSchema, columns: Mapping[str, np.ndarray], rows: int) -> Usable:
    """Which of ``rows`` rows have every feature; UnprocessableError naming feature columns the source lacks."""
    missing = [name for name in schema.names if name not in columns]
    if missing:
        raise UnprocessableError(
            f"the source lacks {len(missing)} feature column(s) of the model: {', '.join(missing[:10])}",
            code="missing_columns",
            details={"missing": missing[:100], "found": list(columns)[:100]},
        )
    mask = np.ones(rows, dtype=bool)
    values: dict[str, np.ndarray] = {}
    first: dict[int, str] = {}
    for spec in schema.features:
        column, bad, reasons = _feature(spec, np.asarray(columns[spec.name]))
        values[spec.name] = column
        mask &= ~bad
        for row, reason in reasons.items():
            first.setdefault(row, reason)
    shown = [f"row {row}: {first[row]}" for row in sorted(first)[:MAX_REASONS]]
    return Usable(mask=mask, values=values, reasons=shown)


def draw(usable: Usable, count: int, *, sampling: str, seed: int) -> list[int]:
    """Up to ``count`` usable row positions, in source order: a seeded uniform sample, or the first ones."""
    positions: list[int] = np.flatnonzero(usable.mask).tolist()
    if len(positions) <= count or sampling == "first":
        return positions[:count]
    chosen = np.random.default_rng(seed).choice(len(positions), size=count, replace=False)
    return [positions[i] for i in sorted(chosen.tolist())]


def json_value(spec: FeatureSpec, value: Any) -> Any:
    """A feature value as the JSON a client sends for a feature of its type."""
    if spec.dtype == "float":
        return float(value)
    if spec.dtype == "int":
        return int(value)
    if spec.dtype == "bool":
        return bool(value)
    return str(value)


def inputs_of(schema: FeatureSchema, usable: Usable, position: int) -> dict[str, Any]:
    """The features of one usable row, by name."""
    return {spec.name: json_value(spec, usable.values[spec.name][position]) for spec in schema.features}


def context_columns(columns: Sequence[str], schema: FeatureSchema, hidden: Sequence[str] = ()) -> list[str]:
    """The non-feature columns evaluators see beside the inputs (the first few, ``hidden`` ones left out)."""
    features = set(schema.names) | set(hidden)
    return [name for name in columns if name not in features][:MAX_CONTEXT_COLUMNS]


def context_value(raw: Any) -> Any:
    """A context cell as JSON: text (truncated), a finite number, a boolean, or None."""
    if raw is None:
        return None
    if isinstance(raw, bool | np.bool_):
        return bool(raw)
    if isinstance(raw, int | np.integer):
        return int(raw)
    if isinstance(raw, float | np.floating):
        return float(raw) if math.isfinite(raw) else None
    if isinstance(raw, datetime | np.datetime64):
        return str(raw)[:MAX_CONTEXT_CHARS]
    return str(raw)[:MAX_CONTEXT_CHARS]
