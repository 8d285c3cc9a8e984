"""The archive in the data bucket: Parquet objects written by the archiver, read back as columns.

Rows are flattened envelopes (``mlambda.schemas.archive.archive_row``); a column whose values do
not share one type (an int label here, a string label there) is stored as text rather than
failing the batch (``mlambda.adapters.tabular.parquet_bytes``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from mlambda.adapters import tabular
from mlambda.adapters.monitoring_store import S3ArchiveReader, Window, hours
from mlambda.adapters.s3 import ObjectStore

PARQUET_CONTENT_TYPE = "application/vnd.apache.parquet"


def parquet_bytes(rows: Sequence[Mapping[str, Any]]) -> bytes:
    """The rows as one Parquet file (one row group; snappy), columns in first-seen order."""
    return tabular.parquet_bytes(tabular.rows_to_columns(rows))


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
