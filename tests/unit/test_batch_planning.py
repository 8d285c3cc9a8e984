"""Planning a batch job: input keys, CSV byte ranges aligned to lines, Parquet row groups."""

from __future__ import annotations

import io

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from mlambda.errors import InvalidInputError, PayloadTooLargeError, UnprocessableError
from mlambda.schemas.registry import FeatureSchema, FeatureSpec
from mlambda.services.batch.planning import (
    PlanningLimits,
    Source,
    group_row_groups,
    parse_input_key,
    plan_csv,
    plan_parquet,
    split_columns,
)
from tests.unit.fakes_batch import InMemoryObjects, csv_bytes


def source_of(body: bytes, key: str = "input/churn/data.csv") -> tuple[Source, InMemoryObjects]:
    objects = InMemoryObjects()
    stored = objects.upload(key, body)
    return Source(objects, key, stored.size, stored.etag), objects


def lines_of(body: bytes, start: int, end: int) -> list[bytes]:
    return [line for line in body[start:end].split(b"\n") if line.strip(b"\r")]


@pytest.mark.parametrize(
    ("key", "model", "fmt"),
    [
        ("input/churn/2025/03/file.csv", "churn", "csv"),
        ("input/churn/file.PARQUET", "churn", "parquet"),
        ("input/my-model_2/x y.csv", "my-model_2", "csv"),
    ],
)
def test_input_keys_name_the_model_and_the_format(key: str, model: str, fmt: str) -> None:
    parsed = parse_input_key(key)
    assert (parsed.model, parsed.format) == (model, fmt)


@pytest.mark.parametrize(
    ("key", "code"),
    [
        ("output/churn/file.csv", "key_outside_input"),
        ("input/file.csv", "no_model_in_key"),
        ("input/churn/", "no_model_in_key"),
        ("input/Churn!/file.csv", "no_model_in_key"),
        ("input/churn/../secrets.csv", "invalid_key"),
        ("input/churn/file.json", "unsupported_format"),
        ("input/churn/file.csv.gz", "unsupported_format"),
    ],
)
def test_bad_input_keys_are_refused_with_a_reason(key: str, code: str) -> None:
    with pytest.raises(InvalidInputError) as error:
        parse_input_key(key)
    assert error.value.code == code


def test_csv_chunks_start_at_line_starts_and_cover_every_row_once() -> None:
    # Given rows of uneven length, so nominal boundaries fall inside lines
    rows = [f"id{i},{'x' * (i % 37)},{i}" for i in range(2000)]
    body = ("id,pad,f0\n" + "\n".join(rows) + "\n").encode()
    source, _ = source_of(body)
    # When
    plan = plan_csv(source, PlanningLimits(chunk_rows=150, sample_bytes=4096))
    # Then
    assert plan.columns == ["id", "pad", "f0"]
    assert len(plan.chunks) > 5
    assert plan.chunks[0].start == len(b"id,pad,f0\n")
    assert plan.chunks[-1].end == len(body)
    for before, after in zip(plan.chunks, plan.chunks[1:], strict=False):
        assert before.end == after.start
        assert body[after.start - 1 : after.start] == b"\n"
    seen = [line for c in plan.chunks for line in lines_of(body, c.start or 0, c.end or 0)]
    assert seen == [row.encode() for row in rows]


def test_csv_planning_reads_only_the_head_and_small_probes() -> None:
    # Given a file much larger than the sample
    body = csv_bytes(20_000)
    source, objects = source_of(body)
    # When
    plan = plan_csv(source, PlanningLimits(chunk_rows=1000, sample_bytes=16_384))
    # Then
    assert len(plan.chunks) >= 15
    assert objects.bytes_read < 16_384 + len(plan.chunks) * 8192
    assert objects.bytes_read < len(body) / 10
    assert not plan.rows_exact
    assert plan.rows_expected == pytest.approx(20_000, rel=0.05)


def test_a_one_row_file_is_one_chunk_with_an_exact_count() -> None:
    source, _ = source_of(b"id,f0\n1,0.5")
    plan = plan_csv(source, PlanningLimits(chunk_rows=100))
    assert [(c.start, c.end, c.rows_estimate) for c in plan.chunks] == [(6, 11, 1)]
    assert (plan.rows_expected, plan.rows_exact) == (1, True)


def test_the_last_chunk_ends_at_eof_even_without_a_final_newline() -> None:
    body = csv_bytes(3000).rstrip(b"\n")
    source, _ = source_of(body)
    plan = plan_csv(source, PlanningLimits(chunk_rows=500, sample_bytes=8192))
    last = plan.chunks[-1]
    assert last.end == len(body)
    assert lines_of(body, last.start or 0, last.end or 0)[-1] == body.rsplit(b"\n", 1)[-1]


def test_a_utf8_bom_and_crlf_line_endings_are_understood() -> None:
    source, _ = source_of(b"\xef\xbb\xbfid,f0\r\n1,0.5\r\n2,0.7\r\n")
    plan = plan_csv(source, PlanningLimits(chunk_rows=100))
    assert plan.columns == ["id", "f0"]
    assert plan.rows_expected == 2


@pytest.mark.parametrize(
    ("body", "code"),
    [
        (b"", "empty_file"),
        (b"id,f0\n", "no_rows"),
        (b"id,f0", "no_rows"),
        (b"id,f0\n\n\r\n", "no_rows"),
        ("id,f0\n1,2\n".encode("utf-16"), "wrong_encoding"),
        (b"id,f\xe9\n1,2\n", "wrong_encoding"),
        (b"PAR1\x00\x00binary", "not_csv"),
        (b"\x1f\x8b\x08\x00\x00\x00\x00\x00", "not_csv"),
        (b"id,id\n1,2\n", "duplicate_columns"),
        (b"id,,f0\n1,2,3\n", "invalid_header"),
    ],
)
def test_csv_that_cannot_be_planned_says_why(body: bytes, code: str) -> None:
    source, _ = source_of(body)
    with pytest.raises(InvalidInputError) as error:
        plan_csv(source, PlanningLimits())
    assert error.value.code == code


def test_a_line_longer_than_the_cap_is_refused() -> None:
    body = b"id,f0\n" + b"1,2\n" * 2000 + b"9," + b"9" * 50_000 + b"\n" + b"1,2\n" * 2000
    source, _ = source_of(body)
    with pytest.raises(InvalidInputError) as error:
        plan_csv(source, PlanningLimits(chunk_rows=100, sample_bytes=4096, max_line_bytes=16_384))
    assert error.value.code == "line_too_long"


def test_chunks_grow_when_the_file_would_need_too_many() -> None:
    source, _ = source_of(csv_bytes(5000))
    plan = plan_csv(source, PlanningLimits(chunk_rows=100, max_chunks=5, sample_bytes=1 << 20))
    assert plan.chunk_rows == 1000
    assert len(plan.chunks) == 5


def test_a_file_beyond_the_chunk_cap_is_refused() -> None:
    # Given a 200 GB object (only its head is ever read) and at most 10 chunks
    small, objects = source_of(csv_bytes(1000))
    huge = Source(objects, small.key, 200 * 1024**3, small.etag)
    # When / Then
    with pytest.raises(PayloadTooLargeError) as error:
        plan_csv(huge, PlanningLimits(chunk_rows=100, max_chunks=10, sample_bytes=8192))
    assert error.value.code == "file_too_large"


def test_uneven_row_groups_are_grouped_into_chunks_of_about_n_rows() -> None:
    chunks = group_row_groups([10, 250, 3, 40, 1, 0, 70], chunk_rows=50)
    assert [c.row_groups for c in chunks] == [(0, 1), (2, 3, 4, 5, 6)]
    assert [c.first_row for c in chunks] == [0, 260]
    assert [c.rows_estimate for c in chunks] == [260, 114]


def parquet_with_groups(sizes: list[int]) -> bytes:
    sink = io.BytesIO()
    schema = pa.schema([("id", pa.string()), ("f0", pa.float64())])
    with pq.ParquetWriter(sink, schema) as writer:
        start = 0
        for size in sizes:
            ids = [f"r{i}" for i in range(start, start + size)]
            writer.write_table(pa.table({"id": ids, "f0": [float(i) for i in range(size)]}, schema=schema))
            start += size
    return sink.getvalue()


def test_parquet_is_planned_from_the_footer_by_row_groups() -> None:
    # Given a file with uneven row groups
    body = parquet_with_groups([12_000, 500, 30_000, 700, 700])
    source, objects = source_of(body, "input/churn/data.parquet")
    # When
    plan = plan_parquet(source, PlanningLimits(chunk_rows=10_000))
    # Then
    assert plan.columns == ["id", "f0"]
    assert (plan.rows_expected, plan.rows_exact) == (43_900, True)
    assert [c.row_groups for c in plan.chunks] == [(0,), (1, 2), (3, 4)]
    assert [c.first_row for c in plan.chunks] == [0, 12_000, 42_500]
    assert objects.bytes_read < len(body) / 2


@pytest.mark.parametrize(
    ("body", "code"),
    [(b"", "empty_file"), (b"id,f0\n1,2\n", "not_parquet"), (b"PAR1garbagegarbagePAR1", "not_parquet")],
)
def test_a_parquet_key_without_a_parquet_file_is_refused(body: bytes, code: str) -> None:
    source, _ = source_of(body, "input/churn/data.parquet")
    with pytest.raises(InvalidInputError) as error:
        plan_parquet(source, PlanningLimits())
    assert error.value.code == code


def test_a_parquet_file_without_rows_is_refused() -> None:
    source, _ = source_of(parquet_with_groups([]), "input/churn/data.parquet")
    with pytest.raises(InvalidInputError) as error:
        plan_parquet(source, PlanningLimits())
    assert error.value.code == "no_rows"


SCHEMA = FeatureSchema(mode="tensor", features=[FeatureSpec(name=n, dtype="float") for n in ("a", "b")])


def test_passthrough_defaults_to_every_column_outside_the_features() -> None:
    assert split_columns(["id", "b", "ts", "a"], SCHEMA, None) == (["a", "b"], ["id", "ts"])
    assert split_columns(["id", "b", "ts", "a"], SCHEMA, ["ts"]) == (["a", "b"], ["ts"])
    assert split_columns(["id", "b", "a"], SCHEMA, []) == (["a", "b"], [])


def test_missing_feature_columns_and_unknown_passthrough_are_refused() -> None:
    with pytest.raises(UnprocessableError) as missing:
        split_columns(["id", "a"], SCHEMA, None)
    assert missing.value.code == "missing_columns"
    assert missing.value.details["missing"] == ["b"]
    with pytest.raises(UnprocessableError) as unknown:
        split_columns(["a", "b"], SCHEMA, ["nope"])
    assert unknown.value.code == "unknown_passthrough"
