"""Plan a batch job without reading the file: the key names the model, the edges give the chunks.

- **Key**: ``input/<model>/<anything>.csv|.parquet``; anything else is refused with a reason.
- **CSV**: the head (``sample_bytes``) gives the header, the encoding check and the bytes per
  row; each chunk boundary is then moved to the next line start by reading a small probe around
  it (a few KiB, grown up to ``max_line_bytes`` for long lines). Only the head and the probes are
  read, whatever the file size. Rows are physical lines: a quoted field that spans lines cannot
  be split safely by byte range, so workers reject such lines explicitly (see batch_scoring).
- **Parquet**: the footer (one ranged GET of the tail, two when it is larger) gives the schema
  and the row groups; consecutive row groups are grouped into chunks of about ``chunk_rows``
  rows. Row counts are exact.
"""

from __future__ import annotations

import csv
import itertools
import math
import re
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from mlambda.adapters import tabular
from mlambda.errors import InvalidInputError, NotFoundError, PayloadTooLargeError, UnprocessableError
from mlambda.schemas.batch import INPUT_PREFIX, MAX_CHUNK_ROWS, InputFormat
from mlambda.schemas.registry import MODEL_NAME_PATTERN, FeatureSchema
from mlambda.services.batch.ports import BatchObjects

_EXTENSIONS: dict[str, InputFormat] = {".csv": "csv", ".parquet": "parquet", ".pq": "parquet"}
_UTF8_BOM = b"\xef\xbb\xbf"
_WIDE_BOMS = (b"\xff\xfe", b"\xfe\xff")
_PARQUET_MAGIC = b"PAR1"
_FIRST_PROBE_BYTES = 8192
FOOTER_READ_BYTES = 64 * 1024
PROBE_THREADS = 8
SUPPORTED_FEATURE_TYPES = frozenset({"float", "int", "string", "bool"})


@dataclass(frozen=True)
class Source:
    """One input object, pinned to the etag it was planned on: every read checks it."""

    objects: BatchObjects
    key: str
    size: int
    etag: str

    def read(self, start: int, end: int) -> bytes:
        """Bytes ``start``..``end`` inclusive (a ranged GET)."""
        return self.objects.get_range(self.key, start, end, etag=self.etag)


@dataclass(frozen=True)
class InputKey:
    """What an input key says: the model and the file format."""

    model: str
    format: InputFormat


@dataclass(frozen=True)
class PlanningLimits:
    """How files are split, and the bounds that keep a job's plan small."""

    chunk_rows: int = 100_000
    sample_bytes: int = 1024 * 1024
    max_line_bytes: int = 1024 * 1024
    max_chunks: int = 10_000
    max_chunk_rows: int = MAX_CHUNK_ROWS
    """The largest chunk a worker can finish in time (lower for explained jobs)."""


@dataclass(frozen=True)
class ChunkSpan:
    """One planned chunk: a CSV byte range [start, end) or a run of Parquet row groups."""

    start: int | None = None
    end: int | None = None
    row_groups: tuple[int, ...] = ()
    first_row: int | None = None
    rows_estimate: int = 0


@dataclass(frozen=True)
class Plan:
    """A file's columns, its (estimated) row count and its chunks."""

    format: InputFormat
    columns: list[str]
    rows_expected: int
    rows_exact: bool
    chunk_rows: int
    chunks: list[ChunkSpan] = field(default_factory=list)


def parse_input_key(key: str) -> InputKey:
    """The model and format an input key names; InvalidInputError saying what is wrong otherwise."""
    if not key.startswith(INPUT_PREFIX):
        raise InvalidInputError(
            f"key {key!r} is outside {INPUT_PREFIX}: batch inputs go to {INPUT_PREFIX}<model>/<file>",
            code="key_outside_input",
        )
    parts = key[len(INPUT_PREFIX) :].split("/")
    if len(parts) < 2 or not parts[-1]:
        raise InvalidInputError(
            f"key {key!r} names no model: use {INPUT_PREFIX}<model>/<file>.csv|.parquet",
            code="no_model_in_key",
        )
    if any(part in ("", ".", "..") for part in parts):
        raise InvalidInputError(f"key {key!r} has an empty, '.' or '..' segment", code="invalid_key")
    model = parts[0]
    if not re.match(MODEL_NAME_PATTERN, model):
        raise InvalidInputError(f"'{model}' is not a model name", code="no_model_in_key")
    name = parts[-1].lower()
    for extension, kind in _EXTENSIONS.items():
        if name.endswith(extension):
            return InputKey(model=model, format=kind)
    raise InvalidInputError(
        f"{parts[-1]!r} is neither CSV nor Parquet: name the file *.csv or *.parquet",
        code="unsupported_format",
    )


def split_columns(
    columns: Sequence[str], schema: FeatureSchema, passthrough: Sequence[str] | None
) -> tuple[list[str], list[str]]:
    """The feature columns (schema order) and the passthrough columns (file order by default)."""
    present = set(columns)
    missing = [name for name in schema.names if name not in present]
    if missing:
        raise UnprocessableError(
            f"the file lacks {len(missing)} feature column(s) of the model: {', '.join(missing[:10])}",
            code="missing_columns",
            details={"missing": missing, "found": list(columns[:100])},
        )
    unsupported = [f.name for f in schema.features if f.dtype not in SUPPORTED_FEATURE_TYPES]
    if unsupported:
        raise UnprocessableError(f"unsupported feature types: {unsupported}", code="unsupported_features")
    features = list(schema.names)
    if passthrough is None:
        feature_set = set(features)
        return features, [name for name in columns if name not in feature_set]
    unknown = [name for name in passthrough if name not in present]
    if unknown:
        raise UnprocessableError(
            f"passthrough column(s) not in the file: {', '.join(unknown)}",
            code="unknown_passthrough",
            details={"unknown": unknown},
        )
    return features, list(dict.fromkeys(passthrough))


def _effective_chunk_rows(rows: int, limits: PlanningLimits) -> int:
    """``chunk_rows`` (at most ``max_chunk_rows``), raised when the file would need more than ``max_chunks`` chunks."""
    needed = max(min(limits.chunk_rows, limits.max_chunk_rows), math.ceil(rows / limits.max_chunks))
    if needed > limits.max_chunk_rows:
        raise PayloadTooLargeError(
            f"about {rows} rows would need chunks of {needed} rows, over the {limits.max_chunk_rows} cap "
            f"({limits.max_chunks} chunks at most per job)",
            code="file_too_large",
            details={"rows": rows, "chunk_rows": needed, "max_chunk_rows": limits.max_chunk_rows},
        )
    return needed


# -- CSV -----------------------------------------------------------------------------------------


def _check_text(sample: bytes) -> int:
    """Where the text starts (after a UTF-8 BOM); InvalidInputError for what is not UTF-8 CSV."""
    if sample.startswith(_PARQUET_MAGIC):
        raise InvalidInputError("the file is Parquet, not CSV: name it *.parquet", code="not_csv")
    if sample.startswith(_WIDE_BOMS):
        raise InvalidInputError("the file is UTF-16/32 encoded; save it as UTF-8", code="wrong_encoding")
    if b"\x00" in sample:
        raise InvalidInputError("the file holds binary data (NUL bytes), not CSV text", code="not_csv")
    return len(_UTF8_BOM) if sample.startswith(_UTF8_BOM) else 0


def parse_header(line: bytes) -> list[str]:
    """The column names of a CSV header line."""
    try:
        text = line.decode("utf-8").rstrip("\r\n")
    except UnicodeDecodeError as exc:
        raise InvalidInputError(
            f"the header is not valid UTF-8 (byte {exc.start}); save the file as UTF-8", code="wrong_encoding"
        ) from exc
    columns = [name.strip() for name in next(csv.reader([text]), [])]
    if not columns or any(not name for name in columns):
        raise InvalidInputError("the header has an empty column name", code="invalid_header")
    duplicates = sorted({name for name in columns if columns.count(name) > 1})
    if duplicates:
        raise InvalidInputError(
            f"the header repeats column(s) {', '.join(duplicates)}", code="duplicate_columns"
        )
    return columns


def _count_rows(text: bytes) -> int:
    """Non-blank lines of ``text`` (the rows of a CSV body)."""
    return sum(1 for line in text.split(b"\n") if line.strip(b"\r"))


def _align(source: Source, position: int, max_line: int) -> int:
    """The first line start at or after ``position``: read a small probe from ``position - 1``."""
    probe = _FIRST_PROBE_BYTES
    while True:
        start = position - 1
        data = source.read(start, min(source.size, start + probe) - 1)
        newline = data.find(b"\n")
        if newline >= 0:
            return start + newline + 1
        if start + len(data) >= source.size:
            return source.size
        if probe >= max_line:
            raise InvalidInputError(
                f"a line near byte {position} is longer than {max_line} bytes", code="line_too_long"
            )
        probe = min(probe * 4, max_line)


def plan_csv(source: Source, limits: PlanningLimits) -> Plan:
    """Split a CSV into byte ranges of about ``chunk_rows`` lines, each starting at a line start."""
    size = source.size
    if size == 0:
        raise InvalidInputError("the file is empty", code="empty_file")
    sample = source.read(0, min(size, limits.sample_bytes) - 1)
    whole = len(sample) >= size
    offset = _check_text(sample)
    header_end = sample.find(b"\n", offset)
    if header_end < 0:
        if whole:
            raise InvalidInputError("the file has a header but no rows", code="no_rows")
        raise InvalidInputError(
            f"no line break in the first {len(sample)} bytes: the header is too long or this is not CSV",
            code="not_csv",
        )
    columns = parse_header(sample[offset:header_end])
    data_start = header_end + 1
    body = sample[data_start:] if whole else sample[data_start : sample.rfind(b"\n") + 1]
    sampled_rows = _count_rows(body)
    if whole and sampled_rows == 0:
        raise InvalidInputError("the file has a header but no rows", code="no_rows")
    bytes_per_row = max(1.0, len(body) / sampled_rows) if sampled_rows else float(len(sample) - data_start)
    rows_expected = sampled_rows if whole else max(1, round((size - data_start) / bytes_per_row))
    chunk_rows = _effective_chunk_rows(rows_expected, limits)
    target = max(1, int(chunk_rows * bytes_per_row))
    # A tail shorter than half a chunk joins the last chunk rather than making a tiny one.
    nominals = list(range(data_start + target, size - target // 2, target))
    # The probes are independent small reads: in parallel, planning takes about one round trip.
    with ThreadPoolExecutor(max_workers=PROBE_THREADS) as pool:
        aligned = list(pool.map(lambda position: _align(source, position, limits.max_line_bytes), nominals))
    cuts = sorted({data_start, *(cut for cut in aligned if data_start < cut < size), size})
    chunks = [
        ChunkSpan(start=start, end=end, rows_estimate=max(1, round((end - start) / bytes_per_row)))
        for start, end in itertools.pairwise(cuts)
        if end > start
    ]
    if whole and len(chunks) == 1:
        chunks = [ChunkSpan(start=chunks[0].start, end=chunks[0].end, rows_estimate=sampled_rows)]
    return Plan(
        format="csv",
        columns=columns,
        rows_expected=rows_expected,
        rows_exact=whole,
        chunk_rows=chunk_rows,
        chunks=chunks,
    )


# -- Parquet -------------------------------------------------------------------------------------


def group_row_groups(sizes: Sequence[int], chunk_rows: int) -> list[ChunkSpan]:
    """Consecutive row groups gathered until each chunk holds at least ``chunk_rows`` rows (the last may hold fewer)."""
    chunks: list[ChunkSpan] = []
    current: list[int] = []
    rows = 0
    first = 0
    for index, count in enumerate(sizes):
        current.append(index)
        rows += count
        if rows >= chunk_rows:
            chunks.append(ChunkSpan(row_groups=tuple(current), first_row=first, rows_estimate=rows))
            first += rows
            current, rows = [], 0
    if current:
        chunks.append(ChunkSpan(row_groups=tuple(current), first_row=first, rows_estimate=rows))
    return chunks


def read_footer(source: Source) -> tuple[tabular.ParquetFooter, dict[int, bytes]]:
    """The footer (one GET of the tail, two if the footer is larger) and the bytes fetched for it."""
    tail = source.read(max(0, source.size - FOOTER_READ_BYTES), source.size - 1)
    needed = tabular.ParquetFooter.length(tail)
    if needed > len(tail):
        tail = source.read(max(0, source.size - needed), source.size - 1)
    return tabular.ParquetFooter.parse(tail, source.size), {source.size - len(tail): tail}


def plan_parquet(source: Source, limits: PlanningLimits) -> Plan:
    """Split a Parquet file by row groups, read from its footer only."""
    size = source.size
    if size == 0:
        raise InvalidInputError("the file is empty", code="empty_file")
    if size < 12 or source.read(size - 4, size - 1) != _PARQUET_MAGIC:
        raise InvalidInputError("the file is not Parquet (no PAR1 footer)", code="not_parquet")
    try:
        footer, _ = read_footer(source)
        columns = footer.schema_table().names
    except tabular.TableError as exc:
        raise InvalidInputError(f"the Parquet footer is unreadable: {exc}", code="not_parquet") from exc
    if footer.rows == 0:
        raise InvalidInputError("the file has a schema but no rows", code="no_rows")
    chunk_rows = _effective_chunk_rows(footer.rows, limits)
    return Plan(
        format="parquet",
        columns=columns,
        rows_expected=footer.rows,
        rows_exact=True,
        chunk_rows=chunk_rows,
        chunks=group_row_groups([group.rows for group in footer.row_groups], chunk_rows),
    )


def check_parquet_types(source: Source, schema: FeatureSchema) -> None:
    """Refuse the job when a feature column's Parquet type cannot hold the feature (no row could score)."""
    footer, _ = read_footer(source)
    types = footer.schema_table().kinds()
    wrong: list[str] = []
    for feature in schema.features:
        kind, described = types.get(feature.name, ("other", "absent"))
        fits = {
            "float": kind == "numeric",
            "int": kind == "numeric",
            "bool": kind == "bool" or described.startswith(("Int", "UInt")),
            "string": kind == "string",
        }[feature.dtype]
        if not fits:
            wrong.append(f"{feature.name} is {described}, the model expects {feature.dtype}")
    if wrong:
        raise UnprocessableError(
            f"feature column types do not fit the model: {'; '.join(wrong)}",
            code="wrong_column_types",
            details={"columns": wrong},
        )


def plan_file(source: Source, fmt: InputFormat, limits: PlanningLimits) -> Plan:
    """The plan for ``source``; InvalidInputError (with a code) when it cannot be scored."""
    try:
        if fmt == "csv":
            return plan_csv(source, limits)
        return plan_parquet(source, limits)
    except NotFoundError as exc:
        raise InvalidInputError(f"the input {source.key!r} no longer exists", code="input_missing") from exc
