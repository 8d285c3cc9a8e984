"""The archive in the data bucket: Parquet objects written by the archiver, read back as frames.

Rows are flattened envelopes (``mlambda.schemas.archive.archive_row``); a column whose values do
not share one Arrow type (an int label here, a string label there) is stored as text rather
than failing the batch.
"""

from __future__ import annotations

import io
import json
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from mlambda.adapters.monitoring_store import S3ArchiveReader, Window, hours
from mlambda.adapters.s3 import ObjectStore

PARQUET_CONTENT_TYPE = "application/vnd.apache.parquet"


def _column(values: list[Any]) -> pa.Array:
    try:
        return pa.array(values)
    except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError):
        return pa.array(
            [None if v is None else v if isinstance(v, str) else json.dumps(v, default=str) for v in values],
            type=pa.string(),
        )


def rows_table(rows: Sequence[Mapping[str, Any]]) -> pa.Table:
    """The rows as an Arrow table; columns in first-seen order, absent values null."""
    names = list(dict.fromkeys(name for row in rows for name in row))
    return pa.table({name: _column([row.get(name) for row in rows]) for name in names})


def parquet_bytes(rows: Sequence[Mapping[str, Any]]) -> bytes:
    """The rows as one Parquet file (one row group; snappy)."""
    sink = io.BytesIO()
    pq.write_table(rows_table(rows), sink)
    return sink.getvalue()


class ParquetArchive:
    """``ports.ArchiveObjects`` on the data bucket."""

    def __init__(self, bucket: ObjectStore) -> None:
        self._bucket = bucket

    def put_rows(self, key: str, rows: Sequence[Mapping[str, Any]]) -> None:
        """Write the rows as Parquet at ``key``."""
        self._bucket.put(key, parquet_bytes(rows), content_type=PARQUET_CONTENT_TYPE)

    def delete(self, key: str) -> None:
        """Remove ``key``."""
        self._bucket.delete(key)


class ArchiveFrames(S3ArchiveReader):
    """Any archived type by time window (the point-in-time helper reads feature updates and labels)."""

    def events(self, archive_type: str, start: datetime, end: datetime) -> Window:
        """Rows of ``archive_type`` with ``start <= timestamp < end``, deduplicated by id."""
        return self._read(
            [f"type={archive_type}/{self._partition(h)}" for h in hours(start, end)], start, end
        )
