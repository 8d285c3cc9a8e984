"""Score one chunk: one ranged read, parse, validate every row, run the model in vectorised batches.

Nothing is dropped silently: every data row of the chunk is either scored (a row of the output
part) or rejected (a row of the rejects file, with its reason), so rows in = scored + rejected.

CSV rows are the chunk's non-blank physical lines. The fast path parses the whole chunk at once
(``mlambda.adapters.tabular``: numbers typed by the reader, or read as text and parsed cell by
cell when some cell is not a number); a chunk it cannot take as-is (a ragged line, bytes that are
not UTF-8, a quoted field spanning lines) goes through the line-by-line path, which judges each
line on its own and rejects only the bad ones. Multi-line quoted fields are rejected explicitly
(each line of such a record, with the reason): byte-range chunks cannot tell where such a record
starts.

Parquet rows come from the chunk's row groups (its footer and one ranged read of the groups'
bytes); a null or non-finite feature rejects the row.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from mlambda.adapters import tabular
from mlambda.adapters.tabular import Table
from mlambda.schemas.batch import REJECT_COLUMNS, ChunkRecord, InputFormat, RejectedRow
from mlambda.schemas.registry import FeatureSchema, FeatureSpec, Signature
from mlambda.services.batch import planning
from mlambda.services.batch.planning import Source
from mlambda.services.batch.ports import Scorer
from mlambda.services.inference.scoring import columns_to_feed, output_columns

_TRUE = frozenset({"true", "1", "yes", "t"})
_FALSE = frozenset({"false", "0", "no", "f"})
MULTILINE_REASON = "unbalanced quotes: a quoted field spans lines (multi-line fields are not supported)"


@dataclass(frozen=True)
class ScoringInputs:
    """What every chunk of a job is scored with."""

    columns: list[str]
    schema: FeatureSchema
    signature: Signature
    passthrough: list[str]
    batch_rows: int = 65_536


@dataclass
class Reject:
    """One refused row: where it is and why."""

    chunk_row: int
    reason: str
    byte_offset: int | None = None


@dataclass
class ParsedChunk:
    """Every row of a chunk: feature values (fillers where rejected), validity, passthrough columns."""

    rows: int
    features: dict[str, np.ndarray]
    valid: np.ndarray
    passthrough: dict[str, np.ndarray | tabular.Column]  # Arrow columns kept as read, or text
    rejects: list[Reject] = field(default_factory=list)


@dataclass(frozen=True)
class ScoredChunk:
    """A chunk's part file, its rejects file (None when nothing was rejected) and its counts."""

    output: bytes
    rejects: bytes | None
    rows_in: int
    rows_scored: int
    rows_rejected: int
    columns: list[str]


# -- one cell, one line ---------------------------------------------------------------------------


def cell_value(spec: FeatureSpec, cell: str) -> tuple[Any, str | None]:
    """The feature value of a CSV cell, or the reason it is not one."""
    text = cell.strip()
    if spec.dtype == "string":
        return (cell, None) if text else (None, f"column '{spec.name}' is empty")
    if not text:
        return None, f"column '{spec.name}' is empty"
    if spec.dtype == "bool":
        lowered = text.lower()
        if lowered in _TRUE or lowered in _FALSE:
            return lowered in _TRUE, None
        return None, f"column '{spec.name}': {_shown(text)} is not true/false"
    try:
        value = float(text)
    except ValueError:
        return None, f"column '{spec.name}': {_shown(text)} is not a number"
    if not math.isfinite(value):
        return None, f"column '{spec.name}': {_shown(text)} is not finite"
    if spec.dtype == "int" and not value.is_integer():
        return None, f"column '{spec.name}': {_shown(text)} is not an integer"
    return value, None


def _shown(text: str) -> str:
    return repr(text if len(text) <= 40 else text[:37] + "...")


def line_problem(fields: Sequence[str], inputs: ScoringInputs, positions: dict[str, int]) -> str | None:
    """Why a parsed CSV line cannot be scored, or None."""
    if len(fields) != len(inputs.columns):
        return f"ragged row: expected {len(inputs.columns)} fields, got {len(fields)}"
    for spec in inputs.schema.features:
        _, reason = cell_value(spec, fields[positions[spec.name]])
        if reason:
            return reason
    return None


# -- CSV ------------------------------------------------------------------------------------------


def line_spans(data: bytes) -> tuple[np.ndarray, np.ndarray]:
    """Start and end (without ``\\r\\n``) of every non-blank line of ``data``."""
    if not data:
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty
    buffer = np.frombuffer(data, dtype=np.uint8)
    newlines = np.flatnonzero(buffer == 10)
    starts = np.concatenate(([0], newlines + 1))
    ends = np.concatenate((newlines, [len(data)]))
    carriage = (ends > starts) & (buffer[np.maximum(ends - 1, 0)] == 13)
    ends = ends - carriage
    keep = ends > starts
    return starts[keep].astype(np.int64), ends[keep].astype(np.int64)


def has_multiline_quotes(data: bytes) -> bool:
    """Whether some line holds an odd number of quotes (a quoted field continues on the next line)."""
    if b'"' not in data:
        return False
    buffer = np.frombuffer(data, dtype=np.uint8)
    lines = np.searchsorted(np.flatnonzero(buffer == 10), np.flatnonzero(buffer == 34))
    return bool((np.bincount(lines) % 2).any())


def _rows_match(data: bytes, rows: int) -> bool:
    """Whether the reader's row count is the chunk's count of non-blank lines (it skips blank lines)."""
    lines = data.count(b"\n") + (0 if data.endswith(b"\n") else 1)
    return rows == lines or rows == len(line_spans(data)[0])


def _column_values(table: Table, spec: FeatureSpec) -> tuple[np.ndarray, np.ndarray]:
    """A parsed column as model values, and the mask of rows whose cell is not a valid value."""
    if spec.dtype == "string":
        texts = table.column(spec.name)
        missing = tabular.nulls(texts)
        if missing.any():
            texts = texts.copy()
            texts[missing] = ""
        return texts, missing
    if spec.dtype == "bool":
        texts = table.column(spec.name)
        lowered = np.char.lower(np.char.strip(texts.astype(str)))
        truth = np.isin(lowered, list(_TRUE))
        falsity = np.isin(lowered, list(_FALSE))
        return truth, ~(truth | falsity)
    values, missing, unparseable = table.numbers(spec.name)
    bad = missing | unparseable
    with np.errstate(invalid="ignore"):
        bad |= ~np.isfinite(values)
        if spec.dtype == "int":
            bad |= values != np.trunc(values)
    if bad.any():
        values[bad] = 0.0
    return values, bad


def _read_csv(data: bytes, inputs: ScoringInputs) -> Table | None:
    """The chunk as columns: numbers parsed by the reader when every cell is one, else as text
    (parsed afterwards, cell by cell in Arrow); None when a line is ragged or not UTF-8."""
    text = {spec.name for spec in inputs.schema.features if spec.dtype in ("string", "bool")}
    text |= set(inputs.passthrough)
    numeric = {spec.name for spec in inputs.schema.features if spec.dtype in ("float", "int")} - text
    strict: dict[str, tabular.CsvKind] = dict.fromkeys(numeric, "float")
    untyped: dict[str, tabular.CsvKind] = {}
    for kinds in (strict, untyped):
        try:
            return tabular.read_csv_columns(data, inputs.columns, kinds)
        except tabular.TableError:
            continue
    return None


def _parse_csv_fast(data: bytes, offset: int, inputs: ScoringInputs) -> ParsedChunk | None:
    """The whole chunk parsed at once; None when the chunk needs the line-by-line path.

    Rows whose cells the vectorised pass refuses are judged again line by line: a line with a
    real problem is rejected with its reason, and a line the per-cell rules accept (a number
    with spaces around it) is scored with the values they give.
    """
    if not data or data.isspace() or has_multiline_quotes(data):
        return None
    table = _read_csv(data, inputs)
    if table is None or not _rows_match(data, table.rows):
        return None
    rows = table.rows
    features: dict[str, np.ndarray] = {}
    suspect = np.zeros(rows, dtype=bool)
    for spec in inputs.schema.features:
        values, bad = _column_values(table, spec)
        features[spec.name] = values
        suspect |= bad
    valid = np.ones(rows, dtype=bool)
    rejects: list[Reject] = []
    if suspect.any():
        starts, ends = line_spans(data)
        positions = {name: index for index, name in enumerate(inputs.columns)}
        for row in np.flatnonzero(suspect).tolist():
            line = data[starts[row] : ends[row]].decode("utf-8")
            fields = next(csv.reader([line]))
            problem = line_problem(fields, inputs, positions)
            if problem is not None:
                valid[row] = False
                rejects.append(Reject(chunk_row=row, reason=problem, byte_offset=offset + int(starts[row])))
                continue
            for spec in inputs.schema.features:
                features[spec.name][row] = cell_value(spec, fields[positions[spec.name]])[0]
    passthrough: dict[str, np.ndarray | tabular.Column] = {
        name: table.arrow(name) for name in inputs.passthrough
    }
    return ParsedChunk(rows=rows, features=features, valid=valid, passthrough=passthrough, rejects=rejects)


def _parse_csv_lines(data: bytes, offset: int, inputs: ScoringInputs) -> ParsedChunk:
    """Each non-blank line judged on its own: the path for chunks the fast parser refused."""
    starts, ends = line_spans(data)
    rows = len(starts)
    positions = {name: index for index, name in enumerate(inputs.columns)}
    filler: dict[str, Any] = {"string": "", "bool": False, "float": 0.0, "int": 0.0}
    values: dict[str, list[Any]] = {name: [] for name in inputs.schema.names}
    passthrough: dict[str, list[str | None]] = {name: [] for name in inputs.passthrough}
    valid = np.zeros(rows, dtype=bool)
    rejects: list[Reject] = []
    for row, (start, end) in enumerate(zip(starts.tolist(), ends.tolist(), strict=True)):
        raw = data[start:end]
        fields: list[str] = []
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            problem: str | None = f"not valid UTF-8 (byte {exc.start} of the line)"
        else:
            if text.count('"') % 2:
                problem = MULTILINE_REASON
            else:
                fields = next(csv.reader([text]))
                problem = line_problem(fields, inputs, positions)
        if problem is not None:
            rejects.append(Reject(chunk_row=row, reason=problem, byte_offset=offset + start))
            for spec in inputs.schema.features:
                values[spec.name].append(filler[spec.dtype])
            for name in inputs.passthrough:
                passthrough[name].append(None)
            continue
        valid[row] = True
        for spec in inputs.schema.features:
            values[spec.name].append(cell_value(spec, fields[positions[spec.name]])[0])
        for name in inputs.passthrough:
            cell = fields[positions[name]]
            passthrough[name].append(cell if cell != "" else None)
    kinds: dict[str, Any] = {"string": object, "bool": np.bool_, "float": np.float64, "int": np.float64}
    features: dict[str, np.ndarray] = {
        spec.name: np.asarray(values[spec.name], dtype=kinds[spec.dtype]) for spec in inputs.schema.features
    }
    texts: dict[str, np.ndarray | tabular.Column] = {
        name: np.asarray(cells, dtype=object) for name, cells in passthrough.items()
    }
    return ParsedChunk(rows=rows, features=features, valid=valid, passthrough=texts, rejects=rejects)


def parse_csv_chunk(data: bytes, offset: int, inputs: ScoringInputs) -> ParsedChunk:
    """Every row of a CSV chunk (``data`` starts at file byte ``offset``, at a line start)."""
    return _parse_csv_fast(data, offset, inputs) or _parse_csv_lines(data, offset, inputs)


# -- Parquet --------------------------------------------------------------------------------------


def _parquet_values(table: Table, spec: FeatureSpec) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Model values of a Parquet column, the bad-row mask, and the reason per bad row."""
    if spec.dtype == "string":
        texts = table.column(spec.name)
        nulls = tabular.nulls(texts)
        return texts, nulls, [f"column '{spec.name}' is null"] * int(nulls.sum())
    if spec.dtype == "bool":
        values, nulls, _ = table.numbers(spec.name)
        flags = np.where(nulls, False, values != 0)
        return flags, nulls, [f"column '{spec.name}' is null"] * int(nulls.sum())
    values, nulls, _ = table.numbers(spec.name)
    with np.errstate(invalid="ignore"):
        infinite = ~nulls & ~np.isfinite(values)
        fractional = (
            ~nulls & ~infinite & (values != np.trunc(values)) if spec.dtype == "int" else nulls & False
        )
    bad = nulls | infinite | fractional
    reasons = [
        f"column '{spec.name}' is null"
        if nulls[row]
        else f"column '{spec.name}': {float(values[row])!r} is not finite"
        if infinite[row]
        else f"column '{spec.name}': {float(values[row])!r} is not an integer"
        for row in np.flatnonzero(bad).tolist()
    ]
    values[bad] = 0.0
    return values, bad, reasons


def fetch_row_groups(
    source: Source, row_groups: Sequence[int]
) -> tuple[tabular.ParquetFooter, dict[int, bytes]]:
    """The footer and the row groups' byte span (one GET)."""
    footer, regions = planning.read_footer(source)
    chosen = [footer.row_groups[index] for index in row_groups]
    if chosen:
        start, end = min(g.start for g in chosen), max(g.end for g in chosen)
        if end > start:
            regions[start] = source.read(start, end - 1)
    return footer, regions


def parse_parquet_chunk(source: Source, row_groups: Sequence[int], inputs: ScoringInputs) -> ParsedChunk:
    """Every row of a chunk's row groups."""
    wanted = list(dict.fromkeys([*inputs.schema.names, *inputs.passthrough]))
    footer, regions = fetch_row_groups(source, row_groups)
    table = footer.read(row_groups, regions, wanted)
    rows = table.rows
    valid = np.ones(rows, dtype=bool)
    first_reason: dict[int, str] = {}
    features: dict[str, np.ndarray] = {}
    for spec in inputs.schema.features:
        values, bad, reasons = _parquet_values(table, spec)
        features[spec.name] = values
        for row, reason in zip(np.flatnonzero(bad).tolist(), reasons, strict=True):
            first_reason.setdefault(row, reason)
        valid &= ~bad
    rejects = [Reject(chunk_row=row, reason=first_reason[row]) for row in sorted(first_reason)]
    passthrough: dict[str, np.ndarray | tabular.Column] = {
        name: table.arrow(name) for name in inputs.passthrough
    }
    return ParsedChunk(rows=rows, features=features, valid=valid, passthrough=passthrough, rejects=rejects)


# -- scoring and output ---------------------------------------------------------------------------


def prediction_outputs(signature: Signature) -> list[str]:
    """The graph outputs batch scoring asks for."""
    if signature.task == "regression":
        return [signature.value_output or ""]
    return [signature.label_output or "", signature.probability_output or ""]


def prediction_names(signature: Signature) -> list[str]:
    """The prediction columns ``output_columns`` gives for this signature."""
    if signature.task == "regression":
        return ["value"]
    labels = signature.class_labels or []
    return ["label", *(f"proba_{label}" for label in labels)]


def score_parsed(parsed: ParsedChunk, inputs: ScoringInputs, scorer: Scorer) -> dict[str, np.ndarray]:
    """Predictions for the valid rows, scored ``batch_rows`` at a time."""
    every_row = bool(parsed.valid.all())
    selected = None if every_row else np.flatnonzero(parsed.valid)
    count = parsed.rows if every_row else len(selected if selected is not None else ())
    names = prediction_outputs(inputs.signature)
    pieces: list[dict[str, np.ndarray]] = []
    for low in range(0, count, inputs.batch_rows):
        high = min(count, low + inputs.batch_rows)
        if selected is None:
            columns = {name: values[low:high] for name, values in parsed.features.items()}
        else:
            rows = selected[low:high]
            columns = {name: values[rows] for name, values in parsed.features.items()}
        outputs = scorer.run(columns_to_feed(inputs.schema, columns), names)
        pieces.append(output_columns(inputs.signature, outputs))
    if not pieces:
        return {}
    return {name: np.concatenate([piece[name] for piece in pieces]) for name in pieces[0]}


def _empty_predictions(signature: Signature) -> dict[str, np.ndarray]:
    if signature.task == "regression":
        return {"value": np.zeros(0, dtype=np.float64)}
    labels = signature.class_labels or []
    label_type: Any = object if labels and isinstance(labels[0], str) else np.int64
    columns: dict[str, np.ndarray] = {"label": np.zeros(0, dtype=label_type)}
    for label in labels:
        columns[f"proba_{label}"] = np.zeros(0, dtype=np.float64)
    return columns


def output_columns_of(
    parsed: ParsedChunk, predictions: dict[str, np.ndarray], inputs: ScoringInputs
) -> dict[str, np.ndarray | tabular.Column]:
    """Passthrough columns of the valid rows (renamed ``input_<name>`` on a clash), then predictions."""
    predicted = predictions or _empty_predictions(inputs.signature)
    columns: dict[str, np.ndarray | tabular.Column] = {}
    for name, values in parsed.passthrough.items():
        kept = values.select(parsed.valid) if isinstance(values, tabular.Column) else values[parsed.valid]
        columns[f"input_{name}" if name in predicted else name] = kept
    columns.update(predicted)
    return columns


def rejects_csv(rejects: Sequence[Reject], chunk: ChunkRecord) -> bytes:
    """``row,chunk,chunk_row,byte_offset,reason``: ``row`` is the file row when known (Parquet)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(REJECT_COLUMNS)
    for reject in rejects:
        row = "" if chunk.first_row is None else chunk.first_row + reject.chunk_row
        offset = "" if reject.byte_offset is None else reject.byte_offset
        writer.writerow([row, chunk.index, reject.chunk_row, offset, reject.reason])
    return buffer.getvalue().encode("utf-8")


def read_rejects_csv(body: bytes) -> list[RejectedRow]:
    """The rows of a rejects file ``rejects_csv`` wrote."""
    reader = csv.DictReader(io.StringIO(body.decode("utf-8")))
    return [
        RejectedRow(
            row=int(line["row"]) if line.get("row") else None,
            chunk=int(line["chunk"]),
            chunk_row=int(line["chunk_row"]),
            byte_offset=int(line["byte_offset"]) if line.get("byte_offset") else None,
            reason=line.get("reason") or "",
        )
        for line in reader
    ]


def score_chunk(
    source: Source, fmt: InputFormat, chunk: ChunkRecord, inputs: ScoringInputs, scorer: Scorer
) -> ScoredChunk:
    """Read, parse, validate and score one chunk; its part file and rejects file as bytes."""
    if fmt == "csv":
        start, end = chunk.start or 0, chunk.end or 0
        data = source.read(start, end - 1) if end > start else b""
        parsed = parse_csv_chunk(data, start, inputs)
        del data
    else:
        parsed = parse_parquet_chunk(source, chunk.row_groups, inputs)
    predictions = score_parsed(parsed, inputs, scorer)
    columns = output_columns_of(parsed, predictions, inputs)
    scored = int(parsed.valid.sum())
    return ScoredChunk(
        # Dictionary encoding only for the predicted label: on ids and probabilities (all
        # distinct) it made the write 4x slower and the file larger (measured).
        output=tabular.parquet_bytes(columns, dictionary=["label"]),
        rejects=rejects_csv(parsed.rejects, chunk) if parsed.rejects else None,
        rows_in=parsed.rows,
        rows_scored=scored,
        rows_rejected=len(parsed.rejects),
        columns=list(columns),
    )
