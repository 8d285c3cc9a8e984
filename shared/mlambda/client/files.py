"""Writing a batch job's output where the caller wants it: Parquet or CSV by the file's extension
(pyarrow, imported here and only here: the rest of the SDK needs none), and the rejects CSV."""

from __future__ import annotations

import csv
from collections.abc import Iterable, Mapping
from pathlib import Path
from types import TracebackType
from typing import Any

from mlambda.client.errors import MlambdaClientError

REJECTS_COLUMNS = ("row", "chunk", "chunk_row", "byte_offset", "reason")
FORMATS = {".parquet": "parquet", ".pq": "parquet", ".csv": "csv"}


class TableWriter:
    """Appends Parquet parts (bytes) to one Parquet or CSV file, a part at a time."""

    def __init__(self, path: Path, kind: str) -> None:
        try:
            import pyarrow  # noqa: F401
        except ImportError as exc:
            raise MlambdaClientError(
                "writing a job's output needs pyarrow: pip install 'mlambda[data]' (or pyarrow)"
            ) from exc
        self.path = path
        self.kind = kind
        self._writer: Any = None

    def __enter__(self) -> TableWriter:
        return self

    def write_parquet_part(self, data: bytes) -> int:
        """Append one part; its row count."""
        import pyarrow as pa
        import pyarrow.csv as pacsv
        import pyarrow.parquet as pq

        table = pq.read_table(pa.BufferReader(data))
        if self._writer is None:
            if self.kind == "parquet":
                self._writer = pq.ParquetWriter(self.path, table.schema)
            else:
                self._writer = pacsv.CSVWriter(self.path, table.schema)
        self._writer.write_table(table)
        return int(table.num_rows)

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._writer is not None:
            self._writer.close()
        elif exc_type is None:
            self.path.write_bytes(b"")  # a job with no scored rows: an empty file, as asked


def table_writer(path: Path) -> TableWriter:
    """A writer for ``path``'s format; MlambdaClientError for an extension that is neither."""
    kind = FORMATS.get(path.suffix.lower())
    if kind is None:
        raise MlambdaClientError(f"{path}: name the output *.parquet or *.csv (the format follows the name)")
    return TableWriter(path, kind)


def write_rejects_csv(path: Path, rows: Iterable[Mapping[str, Any]]) -> int:
    """The rejected rows as CSV (``row`` = 0-based data row of the input); how many."""
    count = 0
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(REJECTS_COLUMNS)
        for row in rows:
            writer.writerow(["" if row.get(c) is None else row[c] for c in REJECTS_COLUMNS])
            count += 1
    return count
