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
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from mlambda.adapters import tabular
from mlambda.adapters.tabular import Table
from mlambda.errors import UnprocessableError
from mlambda.ports import Scorer
from mlambda.schemas.batch import (
    MAX_CHUNK_ROWS,
    MIN_CHUNK_ROWS,
    REJECT_COLUMNS,
    ChunkRecord,
    ExplainedColumns,
    InputFormat,
    RejectedRow,
)
from mlambda.schemas.registry import FeatureSchema, FeatureSpec, ModelVersion, Signature
from mlambda.services.batch import planning
from mlambda.services.batch.planning import Source
from mlambda.services.inference.explain import (
    BACKGROUND_ROWS,
    COALITIONS,
    TREE_WORK_BUDGET,
    Explainer,
    explain_feed,
)
from mlambda.services.inference.scoring import (
    FALSE_CELLS,
    TRUE_CELLS,
    cell_value,
    columns_to_feed,
    output_columns,
)

MULTILINE_REASON = "unbalanced quotes: a quoted field spans lines (multi-line fields are not supported)"
EXPLAIN_WORK_PER_CHUNK = 50 * TREE_WORK_BUDGET
"""TreeSHAP work one chunk may do (rows x path elements x depth): about a minute of numpy, well
inside the worker's 300 s; explained jobs of deep ensembles get smaller chunks to stay under it."""
EXPLAIN_CELLS_PER_CHUNK = 20_000_000
"""Attributions one chunk holds (rows x features, float64: 160 MB): wide models get smaller chunks."""


@dataclass(frozen=True)
class ScoringInputs:
    """What every chunk of a job is scored with."""

    columns: list[str]
    schema: FeatureSchema
    signature: Signature
    passthrough: list[str]
    batch_rows: int = 65_536
    version: ModelVersion | None = None
    explainer: Explainer | None = None
    """Explained jobs: the version's explainer (attribution columns follow the predictions)."""


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


# -- one line -------------------------------------------------------------------------------------


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
        truth = np.isin(lowered, list(TRUE_CELLS))
        falsity = np.isin(lowered, list(FALSE_CELLS))
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


def explanation_names(version: ModelVersion) -> list[str]:
    """The attribution columns ``Explanations.columns`` gives for this version, in order."""
    names = [f"explain_{name}" for name in version.feature_schema.names]
    names += ["explain_baseline", "explain_value"]
    if version.signature.task == "classification":
        names.append("explain_class")
    return names


def explained_columns(version: ModelVersion, explainer: Explainer) -> ExplainedColumns:
    """How a job's attribution columns read: method, scale and names."""
    if not explainer.exact_method("auto"):
        raise UnprocessableError(
            f"{version.model} v{version.version} is explained by kernel_shap only "
            f"({BACKGROUND_ROWS * COALITIONS:,} model evaluations per row): too costly for a batch job; "
            "explain a few rows online (POST /models/{name}/predict with explain) instead",
            code="explain_too_costly",
            details={"method": explainer.method, "reason": explainer.fallback_reason},
        )
    return ExplainedColumns(
        method=explainer.method,
        exact=True,
        output=explainer.heads[0].output,
        columns=explanation_names(version),
    )


def explained_chunk_rows(explainer: Explainer) -> int:
    """The most rows one chunk may explain within the worker's time and memory; UnprocessableError
    when not even the smallest chunk would."""
    limit = EXPLAIN_CELLS_PER_CHUNK // max(1, explainer.n_features)
    if explainer.paths is not None:
        limit = min(limit, EXPLAIN_WORK_PER_CHUNK // max(1, explainer.paths.cost_per_row))
    if limit < MIN_CHUNK_ROWS:
        raise UnprocessableError(
            f"explaining a row of this model costs {explainer.paths.cost_per_row if explainer.paths else 0:,} "
            f"units of TreeSHAP work: a chunk of {MIN_CHUNK_ROWS} rows would not finish in time",
            code="explain_too_costly",
            details={"max_rows_per_chunk": limit, "min_chunk_rows": MIN_CHUNK_ROWS},
        )
    return min(limit, MAX_CHUNK_ROWS)


def score_parsed(parsed: ParsedChunk, inputs: ScoringInputs, scorer: Scorer) -> dict[str, np.ndarray]:
    """Predictions for the valid rows, scored ``batch_rows`` at a time (with their attributions
    when the job is explained)."""
    every_row = bool(parsed.valid.all())
    selected = None if every_row else np.flatnonzero(parsed.valid)
    count = parsed.rows if every_row else len(selected if selected is not None else ())
    names = prediction_outputs(inputs.signature)
    pieces: list[dict[str, np.ndarray]] = []
    step = inputs.batch_rows
    if inputs.explainer is not None:
        step = min(step, inputs.explainer.max_rows("auto") or step)
    for low in range(0, count, step):
        high = min(count, low + step)
        if selected is None:
            columns = {name: values[low:high] for name, values in parsed.features.items()}
        else:
            rows = selected[low:high]
            columns = {name: values[rows] for name, values in parsed.features.items()}
        feed = columns_to_feed(inputs.schema, columns)
        outputs = scorer.run(feed, names)
        piece = output_columns(inputs.signature, outputs)
        if inputs.explainer is not None and inputs.version is not None:
            labels = piece["label"].tolist() if "label" in piece else None
            explained = explain_feed(
                inputs.explainer, inputs.version, feed, labels, lambda perturbed: scorer.run(perturbed, names)
            )
            piece.update(explained.columns(inputs.schema.names, inputs.signature.class_labels))
        pieces.append(piece)
    if not pieces:
        return {}
    return {name: np.concatenate([piece[name] for piece in pieces]) for name in pieces[0]}


def _empty_predictions(inputs: ScoringInputs) -> dict[str, np.ndarray]:
    signature = inputs.signature
    if signature.task == "regression":
        columns: dict[str, np.ndarray] = {"value": np.zeros(0, dtype=np.float64)}
    else:
        labels = signature.class_labels or []
        label_type: Any = object if labels and isinstance(labels[0], str) else np.int64
        columns = {"label": np.zeros(0, dtype=label_type)}
        for label in labels:
            columns[f"proba_{label}"] = np.zeros(0, dtype=np.float64)
    if inputs.explainer is not None and inputs.version is not None:
        for name in explanation_names(inputs.version):
            columns[name] = np.zeros(0, dtype=np.str_ if name == "explain_class" else np.float64)
    return columns


def output_columns_of(
    parsed: ParsedChunk, predictions: dict[str, np.ndarray], inputs: ScoringInputs
) -> dict[str, np.ndarray | tabular.Column]:
    """Passthrough columns of the valid rows (renamed ``input_<name>`` on a clash), then predictions."""
    predicted = predictions or _empty_predictions(inputs)
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
