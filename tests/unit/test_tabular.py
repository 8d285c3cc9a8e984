"""CSV and Parquet as numpy columns: types, nulls, footers and row groups from byte ranges.

pyarrow (a test dependency, never shipped in a Lambda) writes the files real users send and
reads back what tabular writes, so both directions are checked against an independent reader.
"""

from __future__ import annotations

import io
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from mlambda.adapters import tabular
from mlambda.adapters.tabular import ParquetFooter, TableError


def parquet_of(table: pa.Table, **options: Any) -> bytes:
    sink = io.BytesIO()
    pq.write_table(table, sink, **options)
    return sink.getvalue()


def sample_table(rows: int = 1000) -> pa.Table:
    rng = np.random.default_rng(0)
    return pa.table(
        {
            "id": pa.array([f"id-{i}" for i in range(rows)]),
            "x": pa.array(rng.normal(size=rows)),
            "n": pa.array([None if i % 7 == 0 else i for i in range(rows)], type=pa.int64()),
            "city": pa.array([["a", "b", "c"][i % 3] for i in range(rows)]),  # dictionary-encoded
            "flag": pa.array([None if i % 5 == 0 else i % 2 == 0 for i in range(rows)]),
        }
    )


def test_a_footer_parsed_from_the_tail_gives_rows_and_row_groups_like_pyarrow() -> None:
    # Given a file of four row groups
    data = parquet_of(sample_table(1000), row_group_size=250)
    tail = data[-4096:]
    # When
    footer = ParquetFooter.parse(tail, len(data))
    # Then
    metadata = pq.ParquetFile(io.BytesIO(data)).metadata
    assert footer.rows == metadata.num_rows == 1000
    assert [g.rows for g in footer.row_groups] == [metadata.row_group(i).num_rows for i in range(4)]
    assert all(4 <= g.start < g.end <= len(data) for g in footer.row_groups)
    assert footer.schema_table().names == ["id", "x", "n", "city", "flag"]


def test_a_footer_is_written_back_byte_for_byte() -> None:
    data = parquet_of(sample_table(300), row_group_size=100)
    length = ParquetFooter.length(data)
    footer = ParquetFooter.parse(data, len(data))
    assert footer.encoded == data[len(data) - length : len(data) - 8]


def test_row_groups_read_from_their_bytes_alone_equal_pyarrows_read() -> None:
    # Given only the footer and the bytes of row groups 1 and 2 (the rest of the file is absent)
    data = parquet_of(sample_table(1000), row_group_size=250)
    footer = ParquetFooter.parse(data[-8192:], len(data))
    start, end = footer.row_groups[1].start, footer.row_groups[2].end
    regions = {start: data[start:end]}
    # When
    table = footer.read([1, 2], regions, ["id", "x", "n", "city", "flag"])
    # Then
    expected = pq.ParquetFile(io.BytesIO(data)).read_row_groups([1, 2]).to_pydict()
    assert table.rows == 500
    assert table.column("id").tolist() == expected["id"]
    assert table.column("x").tolist() == expected["x"]
    assert table.column("city").tolist() == expected["city"]
    n = table.column("n")
    assert [None if np.isnan(v) else int(v) for v in n] == expected["n"]
    assert table.column("flag").tolist() == expected["flag"]


def test_reading_row_groups_without_their_bytes_is_refused() -> None:
    data = parquet_of(sample_table(400), row_group_size=100)
    footer = ParquetFooter.parse(data, len(data))
    with pytest.raises(TableError, match="not fetched"):
        footer.read([3], {}, ["id"])


@pytest.mark.parametrize(
    "data",
    [
        b"PAR1garbagegarbagePAR1",
        b"hello",
        b"PAR1" + b"\x00" * 100 + b"\x10\x00\x00\x00PAR1",
        b"PAR1" + b"\x15\x04\x19\x2c" * 10 + b"\x28\x00\x00\x00PAR1",
    ],
    ids=["length-beyond-file", "too-short", "zero-footer", "truncated-struct"],
)
def test_a_malformed_footer_is_a_table_error_not_a_crash(data: bytes) -> None:
    with pytest.raises(TableError):
        tabular.read_parquet_table(data)


def test_a_file_whose_columns_live_in_other_files_is_refused() -> None:
    # Given a footer whose column chunk names an external file (ColumnChunk.file_path)
    data = parquet_of(pa.table({"x": [1.0, 2.0]}))
    footer = ParquetFooter.parse(data, len(data))
    chunk = footer._groups[0][0].value[1][0]
    chunk.insert(0, tabular._Field(1, tabular._BINARY, b"/etc/passwd"))
    encoded = footer.encoded
    body = data[: len(data) - ParquetFooter.length(data)]
    forged = body + encoded + len(encoded).to_bytes(4, "little") + tabular.PARQUET_MAGIC
    # When / Then
    with pytest.raises(TableError, match="other files"):
        ParquetFooter.parse(forged, len(forged))


def test_columns_come_out_with_numpy_types_and_nulls_as_nan_none_or_nat() -> None:
    stamps = [datetime(2025, 3, 1, 12, tzinfo=UTC), None]
    data = parquet_of(
        pa.table(
            {
                "i": pa.array([1, 2], type=pa.int32()),
                "i_null": pa.array([1, None], type=pa.int64()),
                "f": pa.array([1.5, None]),
                "b": pa.array([True, False]),
                "b_null": pa.array([True, None]),
                "s": pa.array(["a", None]),
                "t": pa.array(stamps, type=pa.timestamp("us", tz="UTC")),
                "d": pa.array([Decimal("1.25"), Decimal(2)], type=pa.decimal128(5, 2)),
            }
        )
    )
    columns = tabular.read_parquet_table(data).to_columns()
    assert columns["i"].dtype == np.int64 and columns["i"].tolist() == [1, 2]
    assert columns["i_null"].dtype == np.float64 and np.isnan(columns["i_null"][1])
    assert columns["f"].tolist()[0] == 1.5 and np.isnan(columns["f"][1])
    assert columns["b"].dtype == bool
    assert columns["b_null"].tolist() == [True, None]
    assert columns["s"].tolist() == ["a", None]
    assert columns["t"].dtype == np.dtype("datetime64[us]")
    assert columns["t"][0] == np.datetime64("2025-03-01T12:00:00") and np.isnat(columns["t"][1])
    assert columns["d"].tolist() == [1.25, 2.0]


def test_written_parquet_reads_back_in_pyarrow_with_one_type_per_column() -> None:
    # Given Python values of every kind the archive holds
    columns = tabular.rows_to_columns(
        [
            {"id": "a", "n": 1, "x": 1.5, "ok": True, "at": datetime(2025, 1, 1, tzinfo=UTC), "mixed": 1},
            {"id": "b", "n": None, "x": 2, "ok": None, "at": None, "mixed": "one", "late": "z"},
            {"id": "c", "n": 2**70, "x": None, "ok": False, "at": datetime(2025, 1, 2), "mixed": None},
        ]
    )
    # When
    table = pq.read_table(io.BytesIO(tabular.parquet_bytes(columns)))
    # Then
    assert table.column_names == ["id", "n", "x", "ok", "at", "mixed", "late"]
    assert table.column("n").to_pylist() == ["1", None, str(2**70)]  # beyond int64: kept exactly, as text
    assert table.column("x").to_pylist() == [1.5, 2.0, None]
    assert table.column("ok").to_pylist() == [True, None, False]
    assert table.schema.field("at").type == pa.timestamp("us", tz="UTC")
    assert table.column("at").to_pylist()[2] == datetime(2025, 1, 2, tzinfo=UTC)  # naive is UTC
    assert table.column("mixed").to_pylist() == ["1", "one", None]
    assert table.column("late").to_pylist() == [None, "z", None]


def test_numpy_columns_and_carried_arrow_columns_write_as_they_are() -> None:
    table = tabular.read_csv_columns(b"a,1.5\nb,2.5\n", ["id", "x"], {"x": "float"})
    keep = np.array([False, True])
    data = tabular.parquet_bytes(
        {"id": table.arrow("id").select(keep), "label": np.array([7]), "p": np.array([0.25])},
        dictionary=["label"],
    )
    assert pq.read_table(io.BytesIO(data)).to_pydict() == {"id": ["b"], "label": [7], "p": [0.25]}


def test_a_strict_csv_read_refuses_a_cell_that_is_not_a_number() -> None:
    with pytest.raises(TableError, match="Float64"):
        tabular.read_csv_columns(b"1.5,a\nx,b\n", ["x", "s"], {"x": "float"})


def test_a_csv_longer_than_a_reader_batch_reads_every_row_in_order() -> None:
    # Given: more rows than one batch of the reader, an empty cell in the last batch
    rows = 3 * tabular.CSV_BATCH_ROWS + 17
    lines = [f"id-{n},{n / 4}" for n in range(rows - 1)] + [f"id-{rows - 1},"]
    data = ("\n".join(lines) + "\n").encode()
    # When
    table = tabular.read_csv_columns(data, ["id", "x"], {"x": "float"})
    values, missing, _ = table.numbers("x")
    # Then: one row per line, in order, the batches joined
    assert table.rows == rows
    assert table.column("id")[[0, tabular.CSV_BATCH_ROWS, rows - 1]].tolist() == [
        "id-0",
        f"id-{tabular.CSV_BATCH_ROWS}",
        f"id-{rows - 1}",
    ]
    assert values[: rows - 1].tolist() == [n / 4 for n in range(rows - 1)]
    assert missing.tolist() == [False] * (rows - 1) + [True]


def test_numbers_from_text_tell_missing_from_unparseable() -> None:
    table = tabular.read_csv_columns(b'1.5\n""\nabc\n-2\n', ["x"], {})
    values, missing, unparseable = table.numbers("x")
    assert values[0] == 1.5 and values[3] == -2.0
    assert missing.tolist() == [False, True, False, False]
    assert unparseable.tolist() == [False, False, True, False]


def test_a_csv_with_a_header_gets_its_types_inferred() -> None:
    table = tabular.read_csv_table(b"a,b,c,d\n1,2.5,x,true\n2,,y,false\n")
    columns = table.to_columns()
    assert columns["a"].dtype == np.int64
    assert columns["b"][0] == 2.5 and np.isnan(columns["b"][1])
    assert columns["c"].tolist() == ["x", "y"]
    assert columns["d"].tolist() == [True, False]


def test_concat_fills_absent_columns_and_widens_types() -> None:
    stacked = tabular.concat(
        [
            {"id": np.array(["a"], dtype=object), "n": np.array([1]), "x": np.array([0.5])},
            {
                "id": np.array(["b", "c"], dtype=object),
                "n": np.array([2.5, np.nan]),
                "s": np.array(["u", "v"]),
            },
        ]
    )
    assert stacked["id"].tolist() == ["a", "b", "c"]
    assert stacked["n"].dtype == np.float64 and stacked["n"][:2].tolist() == [1.0, 2.5]
    assert stacked["x"][0] == 0.5 and np.isnan(stacked["x"][1:]).all()
    assert stacked["s"].tolist() == [None, "u", "v"]


def test_timestamps_parse_iso_text_and_keep_parquet_timestamps() -> None:
    text = np.array(["2025-03-01T12:00:00+02:00", "2025-03-01T10:00:00Z", "soon", None], dtype=object)
    parsed = tabular.timestamps(text)
    assert parsed[0] == parsed[1] == np.datetime64("2025-03-01T10:00:00")
    assert np.isnat(parsed[2]) and np.isnat(parsed[3])
    assert tabular.utc64(datetime(2025, 3, 1, 12, tzinfo=UTC)) == np.datetime64("2025-03-01T12:00:00")
