"""CSV and Parquet as numpy columns: the one module that knows which library reads and writes them.

Every Lambda reads and writes tables through here, as ``dict[str, numpy.ndarray]``. The library
behind it is arro3 (Rust Arrow: arrow-rs' CSV and Parquet readers and writer; arro3-core, -io,
-compute: 47 MB unzipped, imported in ~10 ms), chosen over DuckDB (70 MB, ~77 ms) and pyarrow
(170 MB) because it leaves every function, including the model validator (onnx + onnxruntime +
numpy + this), under 90% of Lambda's 250 MiB limit; parsing costs the same CPU per row as
pyarrow's and DuckDB's CSV readers (measured: README, "The data stack").

How columns come out (``Table.column``):

- integers: int64, or float64 with NaN where null; floats: float64 (NaN where null);
- booleans: bool, or object (True/False/None) where null; strings: object (str/None);
- timestamps: datetime64 in the file's unit (NaT where null), UTC; anything else: object
  (Python values).

Parquet row groups are read from byte ranges: ``ParquetFooter`` parses the footer (Thrift
compact protocol, the format's own encoding) from the file's tail, and ``read_row_groups``
assembles a small valid file from the row groups' bytes and a rewritten footer, so a worker
downloads only its row groups. The footer is parsed here before arrow-rs sees it: arro3 panics
(``pyo3_runtime.PanicException``, a ``BaseException``) rather than raising on some malformed
footers, and every call into it is guarded so that any failure is a ``TableError``.
"""

from __future__ import annotations

import io
import json
import struct
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from typing import Any, Literal, TypeVar

import numpy as np
from arro3 import compute
from arro3.core import Array, ChunkedArray, DataType
from arro3.core import Table as ArrowTable
from arro3.io import infer_csv_schema, read_csv, read_parquet, write_parquet

Columns = dict[str, np.ndarray]
CsvKind = Literal["float", "string"]
ColumnKind = Literal["numeric", "bool", "string", "other"]
T = TypeVar("T")

PARQUET_MAGIC = b"PAR1"
READ_BATCH_ROWS = 1 << 20
CSV_BATCH_ROWS = 8192
"""Rows per batch of arrow-rs's CSV reader, which allocates a whole batch's buffers up front: with
a million rows a batch, a 100,000-row chunk (18 MB) peaked at 370 MB more and parsed in 0.65 s of
CPU; with 8,192 it takes 25 MB more and 0.12 s (measured; the batches are combined per column)."""
INT64_RANGE = (-(2**63), 2**63 - 1)


class TableError(ValueError):
    """A CSV or Parquet input that cannot be read (the message says why)."""


def _guarded(call: Callable[[], T], what: str) -> T:
    """``call()``, any failure of the Arrow library (an exception or a Rust panic) as TableError."""
    try:
        return call()
    except TableError:
        raise
    except Exception as exc:
        raise TableError(f"{what}: {_reason(exc)}") from exc
    except BaseException as exc:  # a Rust panic surfaces as BaseException; nothing else is caught
        if type(exc).__name__ != "PanicException":
            raise
        raise TableError(f"{what}: {_reason(exc)}") from exc


def _reason(exc: BaseException) -> str:
    text = str(exc).removeprefix("C Data interface error: ")
    return text if len(text) <= 300 else text[:297] + "..."


# -- Arrow arrays to numpy ---------------------------------------------------------------------


def _single(column: ChunkedArray | Array) -> Array:
    if isinstance(column, Array):
        return column
    if column.num_chunks == 1:
        return column.chunk(0)
    return column.combine_chunks()


def _nulls(array: Array) -> np.ndarray:
    if array.null_count == 0:
        return np.zeros(len(array), dtype=bool)
    return np.asarray(compute.is_null(array))


def _present(array: Array, nulls: np.ndarray) -> np.ndarray:
    """The non-null values of ``array`` as numpy (Arrow refuses to export arrays with nulls)."""
    if not nulls.any():
        return np.asarray(array)
    return np.asarray(compute.filter(array, Array.from_numpy(~nulls)))


def to_numpy(column: ChunkedArray | Array) -> np.ndarray:
    """One Arrow column as numpy (see the module docstring for the types)."""
    array = _single(column)
    kind = array.type
    nulls = _nulls(array)
    size = len(array)
    if DataType.is_null(kind):
        return np.full(size, None, dtype=object)
    if DataType.is_integer(kind) and not nulls.any():
        return np.asarray(array.cast(DataType.int64()))
    if DataType.is_integer(kind) or DataType.is_floating(kind) or DataType.is_decimal(kind):
        floats = array.cast(DataType.float64())
        if not nulls.any():
            return np.asarray(floats)
        values = np.full(size, np.nan)
        values[~nulls] = _present(floats, nulls)
        return values
    if DataType.is_boolean(kind):
        if not nulls.any():
            return np.asarray(array)
        flags = np.full(size, None, dtype=object)
        flags[~nulls] = _present(array, nulls).astype(object)
        return flags
    if DataType.is_string(kind) or DataType.is_large_string(kind) or DataType.is_string_view(kind):
        texts = np.full(size, None, dtype=object)
        if nulls.all():
            return texts
        texts[~nulls] = _present(array, nulls)
        return texts
    if DataType.is_timestamp(kind):
        unit = kind.time_unit or "us"
        numbers = array.cast(DataType.int64())
        stamps = np.full(size, np.iinfo(np.int64).min, dtype=np.int64)
        stamps[~nulls] = _present(numbers, nulls)
        return stamps.view(f"datetime64[{unit}]")
    return np.asarray(array.to_pylist(), dtype=object)


@dataclass(frozen=True)
class Column:
    """An Arrow column carried through unchanged (a batch job's passthrough columns)."""

    array: Array

    def __len__(self) -> int:
        return len(self.array)

    def select(self, keep: np.ndarray) -> Column:
        """The rows where ``keep`` is True."""
        if bool(keep.all()):
            return self
        return Column(_guarded(lambda: compute.filter(self.array, Array.from_numpy(keep)), "filter"))

    def to_numpy(self) -> np.ndarray:
        """As numpy (see ``to_numpy``)."""
        return to_numpy(self.array)


class Table:
    """Columns read from a CSV or Parquet input, converted to numpy on first use."""

    def __init__(self, table: ArrowTable) -> None:
        self._table = table
        self._cache: Columns = {}

    @property
    def names(self) -> list[str]:
        """Column names in file order."""
        return list(self._table.column_names)

    @property
    def rows(self) -> int:
        """Row count."""
        return int(self._table.num_rows)

    def column(self, name: str) -> np.ndarray:
        """One column as numpy."""
        if name not in self._cache:
            self._cache[name] = _guarded(lambda: to_numpy(self._table.column(name)), f"column {name!r}")
        return self._cache[name]

    def arrow(self, name: str) -> Column:
        """One column as an opaque Arrow column (to write back without a numpy round trip)."""
        return Column(_single(self._table.column(name)))

    def numbers(self, name: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(float64 values, missing mask, unparseable mask) of a numeric or text column.

        Text is parsed as numbers (Arrow's cast: no surrounding spaces); a null cell is missing,
        a cell that is not a number is unparseable; both hold NaN.
        """
        array = _single(self._table.column(name))
        nulls = _nulls(array)
        if DataType.is_boolean(array.type):
            array = array.cast(DataType.int8())
        floats = _guarded(lambda: array.cast(DataType.float64()), f"column {name!r}")
        failed = _nulls(floats)
        values = np.full(len(array), np.nan)
        values[~failed] = _present(floats, failed)
        return values, nulls, failed & ~nulls

    def to_columns(self) -> Columns:
        """Every column as numpy."""
        return {name: self.column(name) for name in self.names}

    def kinds(self) -> dict[str, tuple[ColumnKind, str]]:
        """Per column: what it can hold as feature types see it, and its Arrow type's name."""
        kinds: dict[str, tuple[ColumnKind, str]] = {}
        for name in self.names:
            kind = self._table.field(name).type
            kinds[name] = (_kind(kind), _type_name(kind))
        return kinds


def nulls(values: np.ndarray) -> np.ndarray:
    """Which cells of a text (object) column are None."""
    return np.fromiter((value is None for value in values.tolist()), dtype=bool, count=len(values))


def _kind(kind: DataType) -> ColumnKind:
    if DataType.is_boolean(kind):
        return "bool"
    if DataType.is_integer(kind) or DataType.is_floating(kind) or DataType.is_decimal(kind):
        return "numeric"
    if DataType.is_string(kind) or DataType.is_large_string(kind) or DataType.is_string_view(kind):
        return "string"
    return "other"


def _type_name(kind: DataType) -> str:
    text = repr(kind)
    return text[text.find("<") + 1 : text.rfind(">")] if "<" in text else text


def timestamps(values: np.ndarray) -> np.ndarray:
    """A timestamp column as UTC datetime64[us]: Parquet timestamps as they are, ISO text parsed
    (NaT where it is not a timestamp)."""
    if values.dtype.kind == "M":
        return values.astype("datetime64[us]")
    parsed = np.full(len(values), np.datetime64("NaT"), dtype="datetime64[us]")
    for index, value in enumerate(values.tolist()):
        stamp = _timestamp(value)
        if stamp is not None:
            parsed[index] = np.datetime64(stamp, "us")
    return parsed


def _timestamp(value: object) -> datetime | None:
    if isinstance(value, datetime):
        stamp = value
    elif isinstance(value, str):
        try:
            stamp = datetime.fromisoformat(value)
        except ValueError:
            return None
    else:
        return None
    return stamp.astimezone(UTC).replace(tzinfo=None) if stamp.tzinfo else stamp


def utc64(at: datetime) -> np.datetime64:
    """``at`` (aware or UTC-naive) as datetime64[us]."""
    return np.datetime64(at.astimezone(UTC).replace(tzinfo=None) if at.tzinfo else at, "us")


# -- CSV ---------------------------------------------------------------------------------------


def read_csv_columns(data: bytes, names: Sequence[str], kinds: Mapping[str, CsvKind]) -> Table:
    """A headerless CSV chunk, each column parsed as its kind (``string`` when not named).

    Strict: a cell that is not a number in a ``float`` column, a line with the wrong number of
    fields, or bytes that are not UTF-8 fail the whole read (TableError). An empty cell is null;
    blank lines are skipped.
    """
    from arro3.core import Field, Schema

    fields = [
        Field(name, DataType.float64() if kinds.get(name) == "float" else DataType.string(), nullable=True)
        for name in names
    ]
    schema = Schema(fields)
    return Table(
        _guarded(
            lambda: read_csv(data, schema, has_header=False, batch_size=CSV_BATCH_ROWS).read_all(), "CSV"
        )
    )


def read_csv_table(data: bytes) -> Table:
    """A CSV file with a header, column types inferred from every row (numbers, booleans, text)."""
    schema = _guarded(lambda: infer_csv_schema(data, has_header=True), "CSV")
    return Table(
        _guarded(lambda: read_csv(data, schema, has_header=True, batch_size=CSV_BATCH_ROWS).read_all(), "CSV")
    )


# -- Parquet: whole files ------------------------------------------------------------------------


def read_parquet_table(data: bytes) -> Table:
    """A whole Parquet file held in memory."""
    ParquetFooter.parse(data, len(data))  # refuses malformed footers before arrow-rs reads them
    return Table(_guarded(lambda: read_parquet(data, batch_size=READ_BATCH_ROWS).read_all(), "Parquet"))


def _infer(values: Sequence[Any]) -> tuple[Array, bool]:
    """An Arrow array for Python values, and whether it had to fall back to text."""
    kinds = {type(v) for v in values if v is not None}
    if not kinds:
        return Array([None] * len(values), DataType.string()), False
    if kinds <= {str}:
        return Array(list(values), DataType.string()), False
    if kinds <= {bool, np.bool_}:
        return Array([None if v is None else bool(v) for v in values], DataType.bool()), False
    integers_fit = all(
        INT64_RANGE[0] <= v <= INT64_RANGE[1] for v in values if isinstance(v, int | np.integer)
    )
    if kinds <= {int, np.int64} and integers_fit:
        return Array([None if v is None else int(v) for v in values], DataType.int64()), False
    if kinds <= {int, float, np.int64, np.float64} and integers_fit:
        return Array([None if v is None else float(v) for v in values], DataType.float64()), False
    if kinds <= {datetime}:
        micros = [None if v is None else _micros(v) for v in values]
        stamps = Array(micros, DataType.int64()).cast(DataType.timestamp("us", tz="UTC"))
        return stamps, False
    text = [None if v is None else v if isinstance(v, str) else json.dumps(v, default=str) for v in values]
    return Array(text, DataType.string()), True


def _micros(value: datetime) -> int:
    aware = value if value.tzinfo else value.replace(tzinfo=UTC)
    delta = aware - datetime(1970, 1, 1, tzinfo=UTC)
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def _array(values: np.ndarray | Column | Sequence[Any]) -> Array:
    if isinstance(values, Column):
        return values.array
    if isinstance(values, np.ndarray) and values.dtype.kind in "biuf":
        return Array.from_numpy(np.ascontiguousarray(values))
    if isinstance(values, np.ndarray) and values.dtype.kind == "M":
        found = np.datetime_data(values.dtype)[0]
        unit: Literal["s", "ms", "us", "ns"] = found if found in ("s", "ms", "us", "ns") else "us"  # type: ignore[assignment]
        numbers = values.astype(f"datetime64[{unit}]").view(np.int64)
        nat = np.isnat(values)
        array = Array([None if n else int(v) for v, n in zip(numbers, nat, strict=True)], DataType.int64())
        return array.cast(DataType.timestamp(unit, tz="UTC"))
    if isinstance(values, np.ndarray) and values.dtype.kind == "U":
        return Array.from_numpy(values)
    return _infer(list(values))[0]


def rows_to_columns(rows: Sequence[Mapping[str, Any]]) -> dict[str, list[Any]]:
    """Rows as columns, names in first-seen order, absent values None."""
    names = list(dict.fromkeys(name for row in rows for name in row))
    return {name: [row.get(name) for row in rows] for name in names}


def parquet_bytes(
    columns: Mapping[str, np.ndarray | Column | Sequence[Any]],
    *,
    dictionary: Iterable[str] = (),
    max_row_group_rows: int | None = None,
) -> bytes:
    """``columns`` as one Parquet file (snappy), dictionary encoding only for ``dictionary``.

    numpy arrays keep their type; Python values (object arrays, lists) get one Arrow type per
    column, and a column whose values share none (an int here, a string there) is stored as
    text rather than failing the write.
    """
    arrays: dict[str, Any] = {}
    for name, values in columns.items():
        arrays[name] = _guarded(partial(_array, values), f"column {name!r}")
    if not arrays:
        raise TableError("a Parquet file needs at least one column")
    table = ArrowTable.from_pydict(arrays)
    chosen = set(dictionary)
    sink = io.BytesIO()
    _guarded(
        lambda: write_parquet(
            table,
            sink,
            compression="snappy",
            dictionary_enabled=False,
            column_dictionary_enabled={name: True for name in arrays if name in chosen},
            max_row_group_size=max_row_group_rows,
        ),
        "Parquet write",
    )
    return sink.getvalue()


def concat(tables: Sequence[Columns]) -> Columns:
    """Tables stacked by column name; a column missing from a table is null there.

    Numbers stay numbers (int64 when every part is int64 without gaps, else float64); any other
    mix becomes object.
    """
    names = list(dict.fromkeys(name for table in tables for name in table))
    sizes = [len(next(iter(table.values()))) if table else 0 for table in tables]
    stacked: Columns = {}
    for name in names:
        parts = [table.get(name) for table in tables]
        kinds = {part.dtype.kind for part in parts if part is not None}
        if all(part is not None for part in parts) and len({p.dtype for p in parts if p is not None}) == 1:
            stacked[name] = np.concatenate([p for p in parts if p is not None])
        elif kinds <= {"i", "u", "f"}:
            stacked[name] = np.concatenate(
                [
                    p.astype(np.float64) if p is not None else np.full(size, np.nan)
                    for p, size in zip(parts, sizes, strict=True)
                ]
            )
        elif kinds == {"M"}:
            stacked[name] = np.concatenate(
                [
                    p.astype("datetime64[us]") if p is not None else np.full(size, "NaT", "datetime64[us]")
                    for p, size in zip(parts, sizes, strict=True)
                ]
            )
        else:
            stacked[name] = np.concatenate(
                [
                    _objects(p) if p is not None else np.full(size, None, dtype=object)
                    for p, size in zip(parts, sizes, strict=True)
                ]
            )
    return stacked


def _objects(values: np.ndarray) -> np.ndarray:
    if values.dtype == object:
        return values
    if values.dtype.kind == "f":
        out = values.astype(object)
        out[np.isnan(values)] = None
        return out
    return values.astype(object)


# -- Parquet: the footer and row groups from byte ranges ----------------------------------------


_STOP, _TRUE, _FALSE, _BYTE, _I16, _I32, _I64, _DOUBLE, _BINARY, _LIST, _SET, _MAP, _STRUCT = range(13)
_MAX_DEPTH = 32
_MAX_ITEMS = 10_000_000


@dataclass
class _Field:
    """One field of a Thrift struct as read (kept whole so it can be written back unchanged)."""

    id: int
    type: int
    value: Any


class _Reader:
    """Thrift compact protocol, generically: structs become lists of ``_Field``."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.at = 0

    def byte(self) -> int:
        if self.at >= len(self.data):
            raise TableError("the Parquet footer is truncated")
        value = self.data[self.at]
        self.at += 1
        return value

    def varint(self) -> int:
        shift = result = 0
        while True:
            byte = self.byte()
            result |= (byte & 0x7F) << shift
            if not byte & 0x80:
                return result
            shift += 7
            if shift > 63:
                raise TableError("the Parquet footer has a malformed integer")

    def zigzag(self) -> int:
        value = self.varint()
        return (value >> 1) ^ -(value & 1)

    def value(self, kind: int, depth: int) -> Any:
        if depth > _MAX_DEPTH:
            raise TableError("the Parquet footer nests too deeply")
        if kind in (_TRUE, _FALSE):
            return kind == _TRUE
        if kind == _BYTE:
            return self.byte()
        if kind in (_I16, _I32, _I64):
            return self.zigzag()
        if kind == _DOUBLE:
            chunk = self.data[self.at : self.at + 8]
            if len(chunk) < 8:
                raise TableError("the Parquet footer is truncated")
            self.at += 8
            return struct.unpack("<d", chunk)[0]
        if kind == _BINARY:
            size = self.varint()
            if self.at + size > len(self.data):
                raise TableError("the Parquet footer is truncated")
            chunk = self.data[self.at : self.at + size]
            self.at += size
            return chunk
        if kind in (_LIST, _SET):
            header = self.byte()
            size = header >> 4
            if size == 15:
                size = self.varint()
            element = header & 0x0F
            if size > _MAX_ITEMS:
                raise TableError("the Parquet footer holds an oversized list")
            items = []
            for _ in range(size):
                if element in (_TRUE, _FALSE):
                    items.append(self.byte() == _TRUE)
                else:
                    items.append(self.value(element, depth + 1))
            return (element, items)
        if kind == _MAP:
            size = self.varint()
            if size > _MAX_ITEMS:
                raise TableError("the Parquet footer holds an oversized map")
            types = self.byte() if size else 0
            pairs = [
                (self.value(types >> 4, depth + 1), self.value(types & 0x0F, depth + 1)) for _ in range(size)
            ]
            return (types, pairs)
        if kind == _STRUCT:
            return self.fields(depth + 1)
        raise TableError(f"the Parquet footer has an unknown Thrift type {kind}")

    def fields(self, depth: int = 0) -> list[_Field]:
        fields: list[_Field] = []
        last = 0
        while True:
            header = self.byte()
            kind = header & 0x0F
            if kind == _STOP:
                return fields
            delta = header >> 4
            number = last + delta if delta else self.zigzag()
            fields.append(_Field(number, kind, self.value(kind, depth)))
            last = number


class _Writer:
    """Thrift compact protocol writer for what ``_Reader`` read."""

    def __init__(self) -> None:
        self.out = bytearray()

    def varint(self, value: int) -> None:
        while True:
            byte = value & 0x7F
            value >>= 7
            if value:
                self.out.append(byte | 0x80)
            else:
                self.out.append(byte)
                return

    def zigzag(self, value: int) -> None:
        self.varint((value << 1) ^ (value >> 63))

    def value(self, kind: int, value: Any) -> None:
        if kind == _BYTE:
            self.out.append(value & 0xFF)
        elif kind in (_I16, _I32, _I64):
            self.zigzag(value)
        elif kind == _DOUBLE:
            self.out += struct.pack("<d", value)
        elif kind == _BINARY:
            self.varint(len(value))
            self.out += value
        elif kind in (_LIST, _SET):
            element, items = value
            if len(items) < 15:
                self.out.append(len(items) << 4 | element)
            else:
                self.out.append(0xF0 | element)
                self.varint(len(items))
            for item in items:
                if element in (_TRUE, _FALSE):
                    self.out.append(_TRUE if item else _FALSE)
                else:
                    self.value(element, item)
        elif kind == _MAP:
            types, pairs = value
            self.varint(len(pairs))
            if pairs:
                self.out.append(types)
                for key, item in pairs:
                    self.value(types >> 4, key)
                    self.value(types & 0x0F, item)
        elif kind == _STRUCT:
            self.fields(value)

    def fields(self, fields: Sequence[_Field]) -> None:
        last = 0
        for field in sorted(fields, key=lambda f: f.id):
            kind = field.type
            if kind in (_TRUE, _FALSE):
                kind = _TRUE if field.value else _FALSE
            delta = field.id - last
            if 0 < delta <= 15:
                self.out.append(delta << 4 | kind)
            else:
                self.out.append(kind)
                self.zigzag(field.id)
            if kind not in (_TRUE, _FALSE):
                self.value(kind, field.value)
            last = field.id
        self.out.append(_STOP)


def _get(fields: Sequence[_Field], number: int, default: Any = None) -> Any:
    for field in fields:
        if field.id == number:
            return field.value
    return default


# FileMetaData: 2 schema, 3 num_rows, 4 row_groups. RowGroup: 1 columns, 3 num_rows, 5 file_offset.
# ColumnChunk: 1 file_path, 2 file_offset, 3 meta_data, 4-7 page index. ColumnMetaData: 3 path,
# 7 total_compressed_size, 9 data_page_offset, 10 index_page_offset, 11 dictionary_page_offset,
# 14-15 bloom filter.
_PAGE_INDEX_FIELDS = frozenset({4, 5, 6, 7})
_BLOOM_FIELDS = frozenset({14, 15})
_SHIFTED_METADATA_FIELDS = frozenset({9, 10, 11})


@dataclass(frozen=True)
class RowGroup:
    """One row group: its rows and the bytes ``[start, end)`` holding its column chunks."""

    rows: int
    start: int
    end: int


class ParquetFooter:
    """A Parquet file's footer, parsed from the file's tail (no other byte is needed)."""

    def __init__(self, metadata: list[_Field], size: int) -> None:
        self._metadata = metadata
        self.size = size
        groups = _get(metadata, 4, (_STRUCT, []))[1]
        self._groups: list[list[_Field]] = groups
        self.row_groups = [self._span(index, group) for index, group in enumerate(groups)]
        self.rows = int(_get(metadata, 3, 0))
        if sum(group.rows for group in self.row_groups) != self.rows:
            raise TableError("the Parquet footer's row groups do not add up to its row count")

    @staticmethod
    def length(tail: bytes) -> int:
        """Bytes the footer and its trailer take at the end of the file (from the last 8 bytes)."""
        if len(tail) < 8 or tail[-4:] != PARQUET_MAGIC:
            raise TableError("not a Parquet file (no PAR1 trailer; encrypted footers are not supported)")
        return int.from_bytes(tail[-8:-4], "little") + 8

    @classmethod
    def parse(cls, tail: bytes, size: int) -> ParquetFooter:
        """The footer of a file of ``size`` bytes whose last ``len(tail)`` bytes are ``tail``."""
        needed = cls.length(tail)
        if needed + 4 > size:
            raise TableError("the Parquet footer is longer than the file")
        if needed > len(tail):
            raise TableError(f"the Parquet footer needs the last {needed} bytes, {len(tail)} given")
        reader = _Reader(tail[len(tail) - needed : len(tail) - 8])
        return cls(reader.fields(), size)

    def _span(self, index: int, group: list[_Field]) -> RowGroup:
        starts: list[int] = []
        ends: list[int] = []
        for chunk in _get(group, 1, (_STRUCT, []))[1]:
            if _get(chunk, 1) is not None:
                raise TableError("the Parquet file refers to column data in other files")
            meta = _get(chunk, 3)
            if meta is None:
                raise TableError(f"row group {index} has a column without metadata")
            start = int(_get(meta, 9, -1))
            dictionary = _get(meta, 11)
            if dictionary is not None and 0 < int(dictionary) < start:
                start = int(dictionary)
            length = int(_get(meta, 7, -1))
            if start < 4 or length < 0 or start + length > self.size:
                raise TableError(f"row group {index} points outside the file")
            starts.append(start)
            ends.append(start + length)
        if not starts:
            return RowGroup(rows=int(_get(group, 3, 0)), start=4, end=4)
        return RowGroup(rows=int(_get(group, 3, 0)), start=min(starts), end=max(ends))

    @property
    def encoded(self) -> bytes:
        """The footer as written (for tests and round trips)."""
        writer = _Writer()
        writer.fields(self._metadata)
        return bytes(writer.out)

    def subfile(self, row_groups: Sequence[int], regions: Mapping[int, bytes]) -> bytes:
        """A valid Parquet file holding only ``row_groups``, from fetched ``regions`` (start -> bytes).

        The row groups' bytes are copied after the magic and every offset in their metadata is
        shifted to match; page indexes and bloom filters (stored elsewhere) are dropped.
        """
        chosen = [self.row_groups[i] for i in row_groups]
        start = min((g.start for g in chosen), default=4)
        end = max((g.end for g in chosen), default=4)
        body = _slice(regions, start, end)
        shift = 4 - start
        groups = [_shifted_group(self._groups[i], shift) for i in row_groups]
        metadata = [
            _Field(f.id, f.type, (_STRUCT, groups))
            if f.id == 4
            else _Field(f.id, f.type, sum(g.rows for g in chosen))
            if f.id == 3
            else f
            for f in self._metadata
        ]
        writer = _Writer()
        writer.fields(metadata)
        footer = bytes(writer.out)
        return PARQUET_MAGIC + body + footer + len(footer).to_bytes(4, "little") + PARQUET_MAGIC

    def schema_table(self) -> Table:
        """The file's columns with no rows (their Arrow types)."""
        empty = self.subfile([], {})
        return Table(_guarded(lambda: read_parquet(empty).read_all(), "Parquet schema"))

    def read(self, row_groups: Sequence[int], regions: Mapping[int, bytes], columns: Sequence[str]) -> Table:
        """The ``columns`` of ``row_groups``, from fetched ``regions``."""
        data = self.subfile(row_groups, regions)
        table = _guarded(lambda: read_parquet(data, batch_size=READ_BATCH_ROWS).read_all(), "Parquet")
        missing = [name for name in columns if name not in table.column_names]
        if missing:
            raise TableError(f"the Parquet file lacks column(s) {', '.join(missing)}")
        return Table(table.select(list(columns)))


def _slice(regions: Mapping[int, bytes], start: int, end: int) -> bytes:
    if end <= start:
        return b""
    for offset, data in regions.items():
        if offset <= start and end <= offset + len(data):
            return data[start - offset : end - offset]
    raise TableError(f"bytes {start}..{end} of the Parquet file were not fetched")


def _shifted_group(group: list[_Field], shift: int) -> list[_Field]:
    shifted: list[_Field] = []
    for field in group:
        if field.id == 1:
            element, chunks = field.value
            shifted.append(_Field(1, field.type, (element, [_shifted_chunk(c, shift) for c in chunks])))
        elif field.id == 5:
            shifted.append(_Field(5, field.type, field.value + shift))
        else:
            shifted.append(field)
    return shifted


def _shifted_chunk(chunk: list[_Field], shift: int) -> list[_Field]:
    shifted: list[_Field] = []
    for field in chunk:
        if field.id in _PAGE_INDEX_FIELDS:
            continue
        if field.id == 2:
            shifted.append(_Field(2, field.type, max(0, field.value + shift) if field.value else 0))
        elif field.id == 3:
            meta = [
                _Field(m.id, m.type, m.value + shift) if m.id in _SHIFTED_METADATA_FIELDS and m.value else m
                for m in field.value
                if m.id not in _BLOOM_FIELDS
            ]
            shifted.append(_Field(3, field.type, meta))
        else:
            shifted.append(field)
    return shifted
