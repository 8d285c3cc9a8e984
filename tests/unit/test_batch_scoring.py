"""Scoring one chunk: every row scored or rejected with a reason, predictions equal the model's."""

from __future__ import annotations

import csv
import io
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from mlambda.adapters import tabular
from mlambda.adapters.onnx import OnnxModel
from mlambda.schemas.batch import ChunkRecord
from mlambda.schemas.registry import FeatureSchema, FeatureSpec
from mlambda.services.batch.planning import PlanningLimits, Source, plan_csv
from mlambda.services.batch.scoring import (
    MULTILINE_REASON,
    ParsedChunk,
    ScoredChunk,
    ScoringInputs,
    parse_csv_chunk,
    score_chunk,
)
from tests.unit.fakes_batch import (
    FEATURES,
    InMemoryObjects,
    classifier_model,
    make_frame,
    model_version,
)

HEADER = ",".join(["id", *FEATURES])


def inputs_for(columns: list[str], passthrough: list[str] | None = None) -> ScoringInputs:
    version = model_version()
    features = set(version.feature_schema.names)
    return ScoringInputs(
        columns=columns,
        schema=version.feature_schema,
        signature=version.signature,
        passthrough=passthrough if passthrough is not None else [c for c in columns if c not in features],
        batch_rows=64,
    )


def score_csv(
    body: bytes, *, start: int | None = None, end: int | None = None, index: int = 0
) -> ScoredChunk:
    objects = InMemoryObjects()
    stored = objects.upload("input/churn/x.csv", body)
    source = Source(objects, stored.key, stored.size, stored.etag)
    header_end = body.index(b"\n") + 1
    chunk = ChunkRecord(job_id="0" * 20, index=index, start=start or header_end, end=end or len(body))
    columns = body[:header_end].decode().strip().split(",")
    return score_chunk(source, "csv", chunk, inputs_for(columns), OnnxModel(classifier_model()[0]))


def table_of(scored: ScoredChunk) -> pa.Table:
    return pq.read_table(io.BytesIO(scored.output))


def rejects_of(scored: ScoredChunk) -> list[dict[str, str]]:
    assert scored.rejects is not None
    return list(csv.DictReader(io.StringIO(scored.rejects.decode())))


def passthrough_values(parsed: ParsedChunk, name: str) -> list[Any]:
    column = parsed.passthrough[name]
    return list(column.to_numpy() if isinstance(column, tabular.Column) else column)


def row(values: list[Any], ident: str = "x") -> str:
    return ",".join([ident, *(str(v) for v in values)])


def test_a_clean_chunk_is_scored_like_the_model_scores_it() -> None:
    # Given
    frame = make_frame(300)
    body = frame.to_csv(index=False).encode()
    # When
    scored = score_csv(body)
    # Then
    table = table_of(scored)
    _, model = classifier_model()
    expected = model.predict_proba(frame[FEATURES].to_numpy())
    assert (scored.rows_in, scored.rows_scored, scored.rows_rejected, scored.rejects) == (300, 300, 0, None)
    assert table.column_names == ["id", "label", "proba_0", "proba_1"]
    assert table.column("id").to_pylist() == frame["id"].tolist()
    np.testing.assert_allclose(table.column("proba_1").to_numpy(), expected[:, 1], atol=1e-5)
    assert table.column("label").to_pylist() == model.predict(frame[FEATURES].to_numpy()).tolist()


def test_bad_rows_are_rejected_with_reasons_and_the_rest_scored() -> None:
    # Given a good row between each bad one
    good = [0.1] * 20
    lines = [
        HEADER,
        row(good, "ok-0"),
        row([*good[:19], "abc"], "not-a-number"),
        row(good, "ok-1"),
        row([*good[:3], "", *good[4:]], "empty-cell"),
        row(good[:18], "too-few"),
        row([*good, 7], "too-many"),
        row([*good[:5], "inf", *good[6:]], "infinite"),
        row(good, "ok-2"),
    ]
    body = ("\n".join(lines) + "\n").encode()
    # When
    scored = score_csv(body)
    # Then
    rejects = rejects_of(scored)
    assert (scored.rows_in, scored.rows_scored, scored.rows_rejected) == (8, 3, 5)
    assert table_of(scored).column("id").to_pylist() == ["ok-0", "ok-1", "ok-2"]
    reasons = {body[int(r["byte_offset"]) :].split(b",", 1)[0].decode(): r["reason"] for r in rejects}
    assert reasons == {
        "not-a-number": "column 'f19': 'abc' is not a number",
        "empty-cell": "column 'f3' is empty",
        "too-few": "ragged row: expected 21 fields, got 19",
        "too-many": "ragged row: expected 21 fields, got 22",
        "infinite": "column 'f5': 'inf' is not finite",
    }
    assert [int(r["chunk_row"]) for r in rejects] == [1, 3, 4, 5, 6]
    assert all(r["row"] == "" and r["chunk"] == "0" for r in rejects)


def test_a_non_numeric_cell_alone_keeps_the_fast_path_and_names_the_column() -> None:
    # Given (no ragged line: pandas parses the chunk, the cell is found afterwards)
    lines = [HEADER, row([0.2] * 20, "a"), row([0.2] * 19 + ["n/a"], "b")]
    scored = score_csv(("\n".join(lines) + "\n").encode())
    assert [r["reason"] for r in rejects_of(scored)] == ["column 'f19': 'n/a' is not a number"]
    assert scored.rows_scored == 1


def test_quoted_fields_parse_and_multiline_quoted_fields_are_rejected_explicitly() -> None:
    good = ",".join(["0.3"] * 20)
    body = (f'{HEADER}\n"quoted, id",{good}\n"spans\nlines",{good}\nplain,{good}\n').encode()
    scored = score_csv(body)
    rejects = rejects_of(scored)
    assert [r["reason"] for r in rejects] == [MULTILINE_REASON, MULTILINE_REASON]
    assert table_of(scored).column("id").to_pylist() == ["quoted, id", "plain"]
    assert scored.rows_in == scored.rows_scored + scored.rows_rejected == 4


def test_a_line_that_is_not_utf8_is_rejected_alone() -> None:
    good = ",".join(["0.4"] * 20)
    body = (
        f"{HEADER}\nfine,{good}\n".encode() + b"caf\xe9," + good.encode() + b"\n" + f"fine2,{good}\n".encode()
    )
    scored = score_csv(body)
    assert [r["reason"] for r in rejects_of(scored)] == ["not valid UTF-8 (byte 3 of the line)"]
    assert table_of(scored).column("id").to_pylist() == ["fine", "fine2"]


def test_blank_lines_are_not_rows_and_crlf_is_understood() -> None:
    good = ",".join(["0.5"] * 20)
    body = f"{HEADER}\r\na,{good}\r\n\r\n\nb,{good}\r\n".encode()
    scored = score_csv(body)
    assert (scored.rows_in, scored.rows_scored) == (2, 2)


def test_an_empty_chunk_writes_an_empty_part_with_the_schema() -> None:
    scored = score_csv(f"{HEADER}\n".encode() + b"\n\n")
    assert (scored.rows_in, scored.rows_scored, scored.rows_rejected) == (0, 0, 0)
    assert table_of(scored).column_names == ["id", "label", "proba_0", "proba_1"]


def test_every_chunk_of_a_plan_scores_each_row_exactly_once() -> None:
    # Given a file whose boundaries fall inside lines, including a bad row near a boundary
    frame = make_frame(2000, seed=3)
    frame["f4"] = frame["f4"].astype(object)
    frame.loc[777, "f4"] = "bad"
    body = frame.to_csv(index=False).encode()
    objects = InMemoryObjects()
    stored = objects.upload("input/churn/x.csv", body)
    source = Source(objects, stored.key, stored.size, stored.etag)
    plan = plan_csv(source, PlanningLimits(chunk_rows=170, sample_bytes=4096))
    model = OnnxModel(classifier_model()[0])
    # When
    results = [
        score_chunk(
            source,
            "csv",
            ChunkRecord(job_id="0" * 20, index=i, start=span.start, end=span.end),
            inputs_for(plan.columns),
            model,
        )
        for i, span in enumerate(plan.chunks)
    ]
    # Then
    ids = [i for r in results for i in table_of(r).column("id").to_pylist()]
    assert len(plan.chunks) > 10
    assert ids == [f"row-{i}" for i in range(2000) if i != 777]
    assert sum(r.rows_in for r in results) == 2000
    assert sum(r.rows_rejected for r in results) == 1


def test_a_passthrough_column_named_like_a_prediction_is_renamed() -> None:
    body = f"label,{','.join(FEATURES)}\ntruth,{','.join(['0.1'] * 20)}\n".encode()
    table = table_of(score_csv(body))
    assert table.column_names == ["input_label", "label", "proba_0", "proba_1"]
    assert table.column("input_label").to_pylist() == ["truth"]


def test_the_line_by_line_path_gives_the_same_predictions_as_the_fast_path() -> None:
    frame = make_frame(50, seed=9)
    body = frame.to_csv(index=False).encode()
    data = body[body.index(b"\n") + 1 :]
    inputs = inputs_for(["id", *FEATURES])
    fast = parse_csv_chunk(data, 0, inputs)
    slow = parse_csv_chunk(data + b"extra,1,2\n", 0, inputs)
    assert slow.rows == 51
    assert [r.reason for r in slow.rejects] == ["ragged row: expected 21 fields, got 3"]
    for name in FEATURES:
        np.testing.assert_allclose(slow.features[name][:50], fast.features[name])


def parquet_chunk(table: pa.Table, row_groups: list[int], first_row: int) -> ScoredChunk:
    sink = io.BytesIO()
    pq.write_table(table, sink, row_group_size=4)
    objects = InMemoryObjects()
    stored = objects.upload("input/churn/x.parquet", sink.getvalue())
    source = Source(objects, stored.key, stored.size, stored.etag)
    chunk = ChunkRecord(job_id="0" * 20, index=1, row_groups=row_groups, first_row=first_row)
    return score_chunk(
        source, "parquet", chunk, inputs_for(table.column_names), OnnxModel(classifier_model()[0])
    )


def test_parquet_rows_with_null_or_infinite_features_are_rejected_with_file_row_numbers() -> None:
    # Given 12 rows in row groups of 4; the chunk is row groups 1 and 2 (file rows 4..11)
    columns: dict[str, Any] = {"id": [f"r{i}" for i in range(12)]}
    for name in FEATURES:
        columns[name] = [0.1 * i for i in range(12)]
    columns["f2"][5] = None
    columns["f7"][9] = float("inf")
    table = pa.table(columns)
    # When
    scored = parquet_chunk(table, [1, 2], first_row=4)
    # Then
    rejects = rejects_of(scored)
    assert [(r["row"], r["chunk_row"], r["reason"]) for r in rejects] == [
        ("5", "1", "column 'f2' is null"),
        ("9", "5", "column 'f7': inf is not finite"),
    ]
    assert table_of(scored).column("id").to_pylist() == ["r4", "r6", "r7", "r8", "r10", "r11"]
    assert (scored.rows_in, scored.rows_scored, scored.rows_rejected) == (8, 6, 2)


@pytest.mark.parametrize(("cell", "accepted"), [("3", True), ("3.0", True), ("3.5", False)])
def test_integer_features_refuse_fractions(cell: str, accepted: bool) -> None:
    schema = FeatureSchema(
        mode="per_feature",
        features=[FeatureSpec(name="n", dtype="int"), FeatureSpec(name="s", dtype="string")],
    )
    inputs = ScoringInputs(
        columns=["n", "s"], schema=schema, signature=model_version().signature, passthrough=[]
    )
    parsed = parse_csv_chunk(f"{cell},abc\n".encode(), 0, inputs)
    assert bool(parsed.valid[0]) is accepted


def test_typed_and_text_reads_parse_a_clean_mixed_chunk_alike(monkeypatch: pytest.MonkeyPatch) -> None:
    from mlambda.adapters import tabular

    schema = FeatureSchema(
        mode="per_feature",
        features=[
            FeatureSpec(name="x", dtype="float"),
            FeatureSpec(name="n", dtype="int"),
            FeatureSpec(name="s", dtype="string"),
            FeatureSpec(name="b", dtype="bool"),
        ],
    )
    inputs = ScoringInputs(
        columns=["id", "x", "n", "s", "b", "note"],
        schema=schema,
        signature=model_version().signature,
        passthrough=["id"],
    )
    data = b'u1,1.5,3,"a, b",true,\nu2,,4.0,,False,x\r\n\nu3,inf,2.5,c,maybe,y\n"",-2e3,7,d,1,"z"\n'
    # When the numbers are typed by the reader, then read as text and parsed afterwards
    typed = parse_csv_chunk(data, 10, inputs)
    read = tabular.read_csv_columns
    monkeypatch.setattr(tabular, "read_csv_columns", lambda data, names, kinds: read(data, names, {}))
    text = parse_csv_chunk(data, 10, inputs)
    # Then
    assert typed.rows == text.rows == 4
    assert typed.valid.tolist() == text.valid.tolist() == [True, False, False, True]
    assert [(r.chunk_row, r.reason) for r in typed.rejects] == [(r.chunk_row, r.reason) for r in text.rejects]
    for name in ("x", "n", "s", "b"):
        assert typed.features[name].tolist() == text.features[name].tolist(), name
    assert passthrough_values(typed, "id") == passthrough_values(text, "id") == ["u1", "u2", "u3", None]
