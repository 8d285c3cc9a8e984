"""The request formats predict speaks (MLflow's, mlambda's) and the Open Inference Protocol, on the service.

Request bodies follow MLflow's documented scoring formats (``dataframe_split``,
``dataframe_records``, ``instances``, ``inputs``) and the Open Inference Protocol's REST
specification (one ``[rows, features]`` tensor, or one tensor per feature).
"""

from __future__ import annotations

import base64
import json
import struct
from typing import Any

import numpy as np
import orjson
import pytest
from pydantic import ValidationError

from mlambda.errors import InvalidInputError, NotFoundError, UnprocessableError, UnsupportedMediaTypeError
from mlambda.observability import metrics
from mlambda.schemas.inference import PredictRequest
from mlambda.schemas.open_inference import InferRequest
from mlambda.schemas.prediction_log import PredictionBlock
from mlambda.schemas.registry import DecisionRule, Fallback, ServingRules, Shadow, Threshold
from mlambda.services.inference.open_inference import BinaryInferResponse, OpenInference, split_body
from mlambda.services.inference.prediction_log import PredictionLog
from tests.conftest import load_event
from tests.triton_support import Tensor, binary_answer, binary_request, recorded_requests
from tests.unit.fakes_predict import FEATURES, BrokenModel, RecordingOutput, classifier, regressor, row
from tests.unit.test_predict_service import Harness, endpoint, harness


def thousand_rows(X: np.ndarray) -> np.ndarray:
    """1,000 rows of the model's own data (repeated)."""
    return np.resize(X, (1000, X.shape[1]))


def split(X: np.ndarray, columns: list[str] = FEATURES) -> dict[str, Any]:
    return {"dataframe_split": {"columns": columns, "data": X.astype(np.float64).tolist()}}


def predict(h: Harness, body: dict[str, Any], model: str = "churn") -> dict[str, Any]:
    metrics.clear_metrics()
    return dict(h.service.predict(model, PredictRequest.model_validate(body)))


def infer(
    h: Harness, body: dict[str, Any], model: str = "churn", version: str | None = None
) -> dict[str, Any]:
    metrics.clear_metrics()
    return dict(OpenInference(h.service).infer(model, version, InferRequest.model_validate(body)))


def tensor(name: str, X: np.ndarray, datatype: str = "FP32") -> dict[str, Any]:
    return {
        "name": name,
        "shape": list(X.shape),
        "datatype": datatype,
        "data": X.astype(np.float64).ravel().tolist(),
    }


# ---------------------------------------------------------------- MLflow's formats


def test_dataframe_split_of_1000_rows_matches_sklearn_to_1e_5() -> None:
    # Given
    h = harness(max_instances=1000)
    _, model, X = classifier(0)
    rows = thousand_rows(X)
    # When
    body = predict(h, split(rows))
    # Then
    assert body["predictions"] == model.predict(rows.astype(np.float64)).tolist()
    assert body["classes"] == ["0", "1"]
    np.testing.assert_allclose(
        np.asarray(body["probabilities"]), model.predict_proba(rows.astype(np.float64)), atol=1e-5
    )


def test_dataframe_split_is_logged_as_one_columnar_record_the_archiver_expands_like_rows() -> None:
    # Given: the same 50 rows sent as dataframe_split and as instances, under one request id
    h = harness(max_instances=1000)
    _, _, X = classifier(0)
    rows = X[:50]

    def archived(body: dict[str, Any]) -> tuple[list[Any], list[dict[str, Any]]]:
        h.sink.lines.clear()
        predict(h, {**body, "request_id": "same"})
        return h.sink.records(), [
            {k: v for k, v in e.items() if k != "timestamp"} for e in h.sink.envelopes()
        ]

    # When
    columnar, columnar_rows = archived(split(rows))
    by_rows, rows_rows = archived({"instances": [row(x) for x in rows]})
    # Then: one v2 record with the predictions as columns, archived as the v1 record's rows are
    assert len(columnar) == 1 and columnar[0].v == 2
    assert isinstance(columnar[0].predictions, PredictionBlock)
    assert len(by_rows) == 1 and by_rows[0].v == 1
    assert len(columnar_rows) == len(rows_rows) == 50
    for ours, theirs in zip(columnar_rows, rows_rows, strict=True):
        assert ours["id"] == theirs["id"]
        assert {
            k: v for k, v in ours["payload"].items() if k not in ("features", "prediction", "latency_ms")
        } == {k: v for k, v in theirs["payload"].items() if k not in ("features", "prediction", "latency_ms")}
        assert ours["payload"]["prediction"]["label"] == theirs["payload"]["prediction"]["label"]
        np.testing.assert_allclose(
            list(ours["payload"]["prediction"]["probabilities"].values()),
            list(theirs["payload"]["prediction"]["probabilities"].values()),
            atol=1e-6,
        )
        assert ours["payload"]["features"] == pytest.approx(theirs["payload"]["features"])


def test_dataframe_split_columns_in_any_order_are_matched_by_name() -> None:
    h = harness()
    _, model, X = classifier(0)
    reordered = list(reversed(FEATURES))
    body = predict(h, split(X[:10, ::-1], columns=reordered))
    assert body["predictions"] == model.predict(X[:10].astype(np.float64)).tolist()


def test_dataframe_records_and_tensor_instances_and_inputs_are_answered_in_mlflows_shape() -> None:
    h = harness()
    _, model, X = classifier(0)
    expected = model.predict(X[:5].astype(np.float64)).tolist()
    bodies = [
        {"dataframe_records": [row(x) for x in X[:5]]},
        {"instances": X[:5].astype(np.float64).tolist()},
        {"inputs": X[:5].astype(np.float64).tolist()},
        {"inputs": {name: X[:5, i].astype(np.float64).tolist() for i, name in enumerate(FEATURES)}},
    ]
    for body in bodies:
        answer = predict(h, body)
        assert answer["predictions"] == expected, body
        assert np.asarray(answer["probabilities"]).shape == (5, 2)


def test_instances_of_objects_keep_mlambdas_own_answer() -> None:
    h = harness()
    _, _, X = classifier(0)
    answer = predict(h, {"instances": [row(x) for x in X[:2]]})
    assert set(answer["predictions"][0]) == {"label", "probabilities"}
    assert "classes" not in answer


def test_regressor_dataframe_split_answers_values() -> None:
    h = harness()
    _, model, X = regressor()
    answer = predict(h, split(X[:7]), model="price")
    np.testing.assert_allclose(answer["predictions"], model.predict(X[:7].astype(np.float64)), rtol=1e-4)
    assert "probabilities" not in answer


def test_decision_rule_on_mlflow_format_is_an_annotation_per_row() -> None:
    # Given
    rules = ServingRules(
        decision=DecisionRule(
            score_of_class=1, thresholds=[Threshold(min_score=0.5, decision="yes")], default="no"
        )
    )
    h = harness(endpoint(rules=rules))
    _, model, X = classifier(0)
    # When
    answer = predict(h, split(X[:4]))
    # Then
    assert answer["predictions"] == model.predict(X[:4].astype(np.float64)).tolist()
    probability = model.predict_proba(X[:4].astype(np.float64))[:, 1]
    assert [a["decision"] for a in answer["annotations"]] == [
        "yes" if p >= 0.5 else "no" for p in probability
    ]


def test_fallback_on_the_columnar_path_answers_and_logs_every_row() -> None:
    # Given
    rules = ServingRules(fallback=Fallback(response={"label": 0, "probabilities": {"0": 1.0, "1": 0.0}}))
    h = harness(endpoint(rules=rules), broken={1: BrokenModel()})
    _, _, X = classifier(0)
    # When
    answer = predict(h, split(X[:3]))
    # Then
    assert answer["predictions"] == [0, 0, 0]
    assert [a["fallback"] for a in answer["annotations"]] == ["model_failed"] * 3
    envelopes = h.sink.envelopes()
    assert len(envelopes) == 3 and all(e["payload"]["fallback"] == "model_failed" for e in envelopes)


def test_shadow_on_the_columnar_path_is_logged_as_columns() -> None:
    h = harness(endpoint(shadow=Shadow(target="staging", sample_percent=100)))
    _, _, X = classifier(0)
    predict(h, split(X[:6]))
    record = h.sink.records()[0]
    assert isinstance(record.shadow_predictions, PredictionBlock) and len(record.shadow_predictions) == 6
    envelopes = h.sink.envelopes()
    assert sum(e["payload"]["shadow"] for e in envelopes) == 6 and len(envelopes) == 12


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"dataframe_split": {"columns": ["f0", "f1", "f2", "nope"], "data": [[1, 2, 3, 4]]}}, "columns[3]"),
        ({"dataframe_split": {"columns": ["f0", "f1", "f2"], "data": [[1, 2, 3]]}}, "'f3' is missing"),
        ({"dataframe_split": {"columns": FEATURES, "data": [[1, 2, "x", 4]]}}, "dataframe_split.data[0].f2"),
        ({"dataframe_split": {"columns": FEATURES, "data": [[1, 2, True, 4]]}}, "dataframe_split.data[0].f2"),
        ({"dataframe_split": {"columns": FEATURES, "data": [[1, 2, None, 4]]}}, "dataframe_split.data[0].f2"),
        ({"dataframe_records": [{"f0": 1, "f1": 2, "f2": 3}]}, "dataframe_records[0].f3"),
        ({"instances": [[1, 2, 3]]}, "instances[0]"),
        ({"inputs": [[1, 2, 3, float("nan")]]}, "inputs[0].f3"),
    ],
)
def test_malformed_mlflow_rows_are_422_naming_the_field(body: dict[str, Any], field: str) -> None:
    h = harness()
    with pytest.raises(UnprocessableError) as error:
        predict(h, body)
    assert field in error.value.message


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"instances": [{"f0": 1}, [1, 2, 3, 4]]}, "not a mix"),
        ({"dataframe_split": {"columns": FEATURES, "data": [[1, 2, 3]]}}, "data[0] must be a list of 4"),
        ({"dataframe_split": {"columns": ["f0", "f0"], "data": [[1, 2]]}}, "distinct"),
        ({"dataframe_records": [{"f0": 1}], "instances": [{"f0": 1}]}, "not instances and dataframe_records"),
        ({"inputs": {"f0": [1, 2], "f1": [1]}}, "same number of values"),
    ],
)
def test_malformed_envelopes_are_refused_by_the_schema(body: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError) as error:
        PredictRequest.model_validate(body)
    assert message in str(error.value)


# ---------------------------------------------------------------- the Open Inference Protocol


def test_v2_one_tensor_of_1000_rows_matches_sklearn_to_1e_5() -> None:
    # Given: the protocol's own shape, one [rows, features] tensor named as the model's input
    h = harness(max_instances=1000)
    _, model, X = classifier(0)
    rows = thousand_rows(X)
    version = h.catalog.resolve("churn", "production")
    name = version.feature_schema.tensor_input
    assert name is not None
    # When
    answer = infer(h, {"id": "42", "inputs": [tensor(name, rows)]})
    # Then
    assert answer["id"] == "42" and answer["model_name"] == "churn" and answer["model_version"] == "1"
    outputs = {o["name"]: o for o in answer["outputs"]}
    assert outputs["label"]["datatype"] == "INT64" and outputs["label"]["shape"] == [1000]
    assert np.asarray(outputs["label"]["data"]).tolist() == model.predict(rows.astype(np.float64)).tolist()
    assert outputs["probabilities"]["shape"] == [1000, 2]
    np.testing.assert_allclose(
        np.asarray(outputs["probabilities"]["data"]).reshape(1000, 2),
        model.predict_proba(rows.astype(np.float64)),
        atol=1e-5,
    )
    assert h.sink.records()[0].v == 2


def test_v2_one_tensor_per_feature_and_nested_data_are_accepted() -> None:
    h = harness()
    _, model, X = classifier(0)
    per_feature = {"inputs": [tensor(name, X[:3, i]) for i, name in enumerate(FEATURES)]}
    answer = infer(h, per_feature)
    labels = next(o for o in answer["outputs"] if o["name"] == "label")
    assert np.asarray(labels["data"]).tolist() == model.predict(X[:3].astype(np.float64)).tolist()
    name = h.catalog.resolve("churn", "production").feature_schema.tensor_input
    nested = {
        "inputs": [
            {"name": name, "shape": [3, 4], "datatype": "FP64", "data": X[:3].astype(np.float64).tolist()}
        ]
    }
    answer = infer(h, nested)
    assert (
        np.asarray(answer["outputs"][0]["data"]).tolist() == model.predict(X[:3].astype(np.float64)).tolist()
    )


def test_v2_versioned_infer_serves_that_version_and_outputs_can_be_picked() -> None:
    h = harness()
    _, model, X = classifier(1)
    body = {
        "inputs": [tensor(n, X[:2, i]) for i, n in enumerate(FEATURES)],
        "outputs": [{"name": "probabilities"}],
    }
    answer = infer(h, body, version="2")
    assert answer["model_version"] == "2"
    assert [o["name"] for o in answer["outputs"]] == ["probabilities"]
    np.testing.assert_allclose(
        np.asarray(answer["outputs"][0]["data"]).reshape(2, 2),
        model.predict_proba(X[:2].astype(np.float64)),
        atol=1e-5,
    )
    assert h.sink.records()[0].served.version == 2


def test_v2_regressor_answers_value() -> None:
    h = harness()
    _, model, X = regressor()
    answer = infer(h, {"inputs": [tensor(n, X[:3, i]) for i, n in enumerate(FEATURES)]}, model="price")
    assert answer["outputs"][0]["name"] == "value" and answer["outputs"][0]["datatype"] == "FP64"
    np.testing.assert_allclose(
        answer["outputs"][0]["data"], model.predict(X[:3].astype(np.float64)), rtol=1e-4
    )


@pytest.mark.parametrize(
    ("inputs", "code", "field"),
    [
        (
            [{"name": "f0", "shape": [2], "datatype": "INT64", "data": [1.5, 2]}],
            "wrong_datatype",
            "inputs[0].data",
        ),
        (
            [{"name": "X", "shape": [1, 4], "datatype": "BYTES", "data": ["a", "b", "c", "d"]}],
            "wrong_datatype",
            "inputs[0].datatype",
        ),
        (
            [{"name": "X", "shape": [2, 4], "datatype": "FP32", "data": [1, 2, 3, 4]}],
            "shape_mismatch",
            "inputs[0].shape",
        ),
        (
            [{"name": "X", "shape": [1, 3], "datatype": "FP32", "data": [1, 2, 3]}],
            "shape_mismatch",
            "inputs[0].shape",
        ),
        (
            [{"name": "pixels", "shape": [1, 4], "datatype": "FP32", "data": [1, 2, 3, 4]}],
            "unknown_input",
            "inputs[0].name",
        ),
        (
            [{"name": n, "shape": [1], "datatype": "FP32", "data": [1.0]} for n in ["f0", "f1", "f2", "zz"]],
            "unknown_input",
            "inputs[3].name",
        ),
        (
            [{"name": n, "shape": [1], "datatype": "FP32", "data": [1.0]} for n in ["f0", "f1", "f2"]],
            "missing_input",
            "'f3' is missing",
        ),
        (
            [{"name": "f0", "shape": [2], "datatype": "FP32", "data": [1.0, 2.0]}]
            + [{"name": n, "shape": [1], "datatype": "FP32", "data": [1.0]} for n in ["f1", "f2", "f3"]],
            "shape_mismatch",
            "inputs[1].shape",
        ),
    ],
)
def test_v2_malformed_requests_are_422_naming_the_field(
    inputs: list[dict[str, Any]], code: str, field: str
) -> None:
    h = harness()
    name = h.catalog.resolve("churn", "production").feature_schema.tensor_input
    inputs = [{**t, "name": name} if t["name"] == "X" else t for t in inputs]
    with pytest.raises(UnprocessableError) as error:
        infer(h, {"inputs": inputs})
    assert error.value.code == code
    assert field in error.value.message


def test_v2_unknown_output_and_datatype_are_refused() -> None:
    with pytest.raises(ValidationError):
        InferRequest.model_validate(
            {"inputs": [{"name": "f0", "shape": [1], "datatype": "FP8", "data": [1]}]}
        )
    with pytest.raises(ValidationError):
        InferRequest.model_validate(
            {
                "inputs": [{"name": "f0", "shape": [1], "datatype": "FP32", "data": [1]}],
                "outputs": [{"name": "x"}],
            }
        )


def test_v2_metadata_lists_the_models_tensor_input_and_outputs() -> None:
    h = harness()
    version = h.catalog.resolve("churn", "production")
    metadata = OpenInference(h.service).metadata("churn", None)
    assert metadata["name"] == "churn" and metadata["versions"] == ["1"]
    assert metadata["inputs"] == [
        {"name": version.feature_schema.tensor_input, "datatype": "FP32", "shape": [-1, 4]}
    ]
    assert [o["name"] for o in metadata["outputs"]] == ["label", "probabilities"]
    assert metadata["parameters"]["features"] == FEATURES
    assert OpenInference(h.service).metadata("churn", "v2")["versions"] == ["2"]


def test_v2_ready_loads_the_model_and_unknown_models_are_404() -> None:
    h = harness()
    assert OpenInference(h.service).ready("churn", None) == {"name": "churn", "ready": True}
    assert OpenInference(h.service).ready("churn", "2") == {"name": "churn", "ready": True}
    with pytest.raises(NotFoundError):
        OpenInference(h.service).ready("nobody", None)
    with pytest.raises(NotFoundError):
        OpenInference(h.service).ready("churn", "../etc")


# ---------------------------------------------------------------- the columnar log record in pieces


def test_a_columnar_record_over_the_event_limit_is_cut_into_pieces_that_expand_to_every_row_once() -> None:
    # Given: a log whose pieces hold far fewer bytes than 1,000 rows take
    h = harness(max_instances=1000)
    output = RecordingOutput()
    h.service._log = PredictionLog(output.write, piece_bytes=20_000)
    _, _, X = classifier(0)
    rows = thousand_rows(X)
    # When
    predict(h, {**split(rows), "request_id": "big"})
    # Then
    records = output.records()
    assert len(records) > 1 and all(r.pieces == len(records) for r in records)
    assert all(len(line) <= 20_000 for line in output.lines)
    ids = [e["id"] for e in output.envelopes()]
    assert sorted(ids) == sorted(f"big:{i}" for i in range(1000))


def test_request_bodies_made_by_mlflow_and_pandas_are_served_alike() -> None:
    # Given: bodies MLflow's own serving-input helper and pandas produced (tests/events)
    samples = {k: v for k, v in load_event("mlflow_scoring_requests").items() if not k.startswith("_")}
    h = harness()
    _, model, _ = classifier(0)
    rows = np.array([[0.5, -1.25, 2.0, 0.75], [1.5, 0.25, -2.0, 3.0]])
    expected = model.predict(rows).tolist()
    # When / Then
    for name, body in samples.items():
        answer = predict(h, body)
        predictions = answer["predictions"]
        labels = [p["label"] for p in predictions] if isinstance(predictions[0], dict) else predictions
        assert labels == expected, name


def test_request_bodies_made_by_tritonclient_are_served_like_sklearn() -> None:
    # Given: bodies tritonclient[http] built (tests/events), the model's ONNX input being 'X'
    samples = {k: v for k, v in load_event("open_inference_requests").items() if not k.startswith("_")}
    h = harness()
    _, model, _ = classifier(0)
    rows = np.array([[0.5, -1.25, 2.0, 0.75], [1.5, 0.25, -2.0, 3.0]])
    assert h.catalog.resolve("churn", "production").feature_schema.tensor_input == "X"
    # When / Then
    for name, body in samples.items():
        outputs = {o["name"]: o for o in infer(h, body)["outputs"]}
        wanted = [o["name"] for o in body.get("outputs", [])] or ["label", "probabilities"]
        assert list(outputs) == wanted, name
        if "label" in outputs:
            assert np.asarray(outputs["label"]["data"]).tolist() == model.predict(rows).tolist(), name
        if "probabilities" in outputs:
            np.testing.assert_allclose(
                np.asarray(outputs["probabilities"]["data"]).reshape(2, 2),
                model.predict_proba(rows),
                atol=1e-5,
            )


# ---------------------------------------------------------------- the binary tensor data extension


def infer_binary(
    h: Harness,
    body: bytes,
    header_length: int | None,
    *,
    model: str = "churn",
    version: str | None = None,
    binary_outputs: bool = True,
    delivered_as_bytes: bool = True,
) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """The body split as the predict function splits it, served, and the answer read as tritonclient reads it."""
    metrics.clear_metrics()
    lengths = [] if header_length is None else [str(header_length)]
    header, binary = split_body(body, lengths, delivered_as_bytes=delivered_as_bytes)
    result = OpenInference(h.service).infer(
        model, version, InferRequest.model_validate_json(header), binary=binary, binary_outputs=binary_outputs
    )
    if isinstance(result, BinaryInferResponse):
        written = orjson.dumps(result.header, option=orjson.OPT_SERIALIZE_NUMPY)
        response = {
            "multiValueHeaders": {"Inference-Header-Content-Length": [str(len(written))]},
            "body": base64.b64encode(written + b"".join(result.chunks)).decode(),
            "isBase64Encoded": True,
        }
    else:
        response = {
            "body": orjson.dumps(result, option=orjson.OPT_SERIALIZE_NUMPY).decode(),
            "isBase64Encoded": False,
        }
    return binary_answer(response)


def test_the_binary_request_builder_writes_what_tritonclient_sent_byte_for_byte() -> None:
    # Given: tritonclient's own binary requests, captured on the wire (tests/events)
    recorded = recorded_requests()
    rows = np.array([[0.5, -1.25, 2.0, 0.75], [1.5, 0.25, -2.0, 3.0]])
    # When: the same calls rebuilt by tests/triton_support
    rebuilt = {
        "one tensor, binary input, all outputs binary (tritonclient's defaults)": binary_request(
            [Tensor("X", rows.astype(np.float32))], request_id="triton-bin-1"
        ),
        "one tensor per feature, two binary and two JSON, label binary, probabilities JSON": binary_request(
            [Tensor(f"f{i}", rows[:, i].astype(np.float32), binary=i < 2) for i in range(4)],
            outputs=[("label", True), ("probabilities", False)],
        ),
        "one FP64 tensor, binary input, probabilities binary, version 1": binary_request(
            [Tensor("X", rows, "FP64")], outputs=[("probabilities", True)]
        ),
    }
    # Then
    assert set(rebuilt) == set(recorded)
    for name, (body, length) in rebuilt.items():
        _, headers, sent = recorded[name]
        assert body == sent, name
        assert str(length) == headers["Inference-Header-Content-Length"], name


def test_binary_requests_tritonclient_sent_are_served_like_sklearn_with_the_outputs_they_ask_for() -> None:
    # Given
    h = harness()
    _, model, _ = classifier(0)
    rows = np.array([[0.5, -1.25, 2.0, 0.75], [1.5, 0.25, -2.0, 3.0]])
    # When / Then
    for name, (line, headers, body) in recorded_requests().items():
        version = "1" if "/versions/1/" in line else None
        answer, outputs = infer_binary(
            h, body, int(headers["Inference-Header-Content-Length"]), version=version
        )
        requested = json.loads(body[: int(headers["Inference-Header-Content-Length"])]).get("outputs")
        wanted = {o["name"]: o["parameters"]["binary_data"] for o in requested or []} or {
            "label": True,
            "probabilities": True,
        }
        assert list(outputs) == list(wanted), name
        for tensor in answer["outputs"]:
            assert ("binary_data_size" in tensor.get("parameters", {})) is wanted[tensor["name"]], name
            assert ("data" in tensor) is not wanted[tensor["name"]], name
        if "label" in outputs:
            assert outputs["label"].tolist() == model.predict(rows).tolist(), name
        if "probabilities" in outputs:
            np.testing.assert_allclose(outputs["probabilities"], model.predict_proba(rows), atol=1e-5)


def test_v2_binary_tensor_of_1000_rows_matches_sklearn_to_1e_5_and_is_logged_as_columns() -> None:
    # Given: tritonclient's default request, one FP32 tensor of 1,000 rows as bytes
    h = harness(max_instances=1000)
    _, model, X = classifier(0)
    rows = thousand_rows(X).astype(np.float32)
    body, length = binary_request([Tensor("X", rows)], request_id="bin-1000")
    # When
    answer, outputs = infer_binary(h, body, length)
    # Then
    assert answer["id"] == "bin-1000"
    assert {o["name"]: o["datatype"] for o in answer["outputs"]} == {
        "label": "INT64",
        "probabilities": "FP32",
    }
    assert outputs["label"].tolist() == model.predict(rows.astype(np.float64)).tolist()
    np.testing.assert_allclose(
        outputs["probabilities"], model.predict_proba(rows.astype(np.float64)), atol=1e-5
    )
    (record,) = h.sink.records()
    assert record.v == 2 and record.row_count == 1000
    assert sorted(e["id"] for e in h.sink.envelopes()) == sorted(f"bin-1000:{i}" for i in range(1000))


def test_binary_and_json_tensors_of_the_same_rows_get_the_same_answer_and_log() -> None:
    # Given: 40 rows per feature, as bytes (INT32, FP64, FP16-exact values) and as JSON
    h = harness()
    _, _, X = classifier(0)
    rows = np.round(X[:40] * 4) / 4  # quarters: exact in FP16 and as integers after scaling
    kinds = ["FP32", "FP64", "FP16", "FP32"]
    as_bytes, length = binary_request(
        [Tensor(f"f{i}", rows[:, i], kinds[i]) for i in range(4)],
        request_id="same",
        outputs=[("label", True)],
    )
    as_json = {
        "id": "same",
        "inputs": [tensor(f"f{i}", rows[:, i], kinds[i]) for i in range(4)],
        "outputs": [{"name": "label"}],
    }
    # When
    _, binary_outputs = infer_binary(h, as_bytes, length)
    binary_log = [{k: v for k, v in e.items() if k != "timestamp"} for e in h.sink.envelopes()]
    h.sink.lines.clear()
    json_answer = infer(h, as_json)
    json_log = [{k: v for k, v in e.items() if k != "timestamp"} for e in h.sink.envelopes()]
    # Then
    assert binary_outputs["label"].tolist() == np.asarray(json_answer["outputs"][0]["data"]).tolist()
    strip = [
        {**e, "payload": {k: v for k, v in e["payload"].items() if k != "latency_ms"}} for e in binary_log
    ]
    assert strip == [
        {**e, "payload": {k: v for k, v in e["payload"].items() if k != "latency_ms"}} for e in json_log
    ]


def test_binary_outputs_are_json_when_the_caller_cannot_receive_bytes() -> None:
    # Given: binary outputs asked for, and a caller whose Accept is not application/octet-stream
    h = harness()
    _, model, X = classifier(0)
    body, length = binary_request([Tensor("X", X[:5].astype(np.float32))])
    # When
    answer, outputs = infer_binary(h, body, length, binary_outputs=False)
    # Then
    assert all("data" in o and "parameters" not in o for o in answer["outputs"])
    assert outputs["label"].tolist() == model.predict(X[:5].astype(np.float64)).tolist()


def test_binary_outputs_of_string_labels_and_explanations_are_written_as_bytes() -> None:
    # Given: a fallback answer with a string label (the row path) and every output asked as bytes
    rules = ServingRules(fallback=Fallback(response={"label": "no", "probabilities": {"0": 1.0, "1": 0.0}}))
    h = harness(endpoint(rules=rules), broken={1: BrokenModel()})
    _, _, X = classifier(0)
    body, length = binary_request([Tensor("X", X[:3].astype(np.float32))])
    # When
    answer, outputs = infer_binary(h, body, length)
    # Then
    assert {o["name"]: o["datatype"] for o in answer["outputs"]}["label"] == "BYTES"
    assert outputs["label"].tolist() == ["no", "no", "no"]
    np.testing.assert_array_equal(outputs["probabilities"], [[1.0, 0.0]] * 3)
    assert answer["parameters"]["fallback"] == ["model_failed"]


def framed(header: dict[str, Any], payload: bytes = b"") -> tuple[bytes, int]:
    """A body as the extension frames it: the JSON header, then ``payload``."""
    written = orjson.dumps(header)
    return written + payload, len(written)


FOUR = np.array([[0.5, -1.25, 2.0, 0.75]], dtype=np.float32).tobytes()


@pytest.mark.parametrize(
    ("case", "field", "named"),
    [
        ("header longer than the body", "Inference-Header-Content-Length", "and the body is"),
        ("header not a number", "Inference-Header-Content-Length", "not a byte count"),
        ("header negative", "Inference-Header-Content-Length", "not a byte count"),
        ("header zero", "Inference-Header-Content-Length", "without its JSON header"),
        ("header twice", "Inference-Header-Content-Length", "sent 2 times"),
        ("size negative", "inputs[0].parameters.binary_data_size", "not a byte count"),
        ("size a string", "inputs[0].parameters.binary_data_size", "not a byte count"),
        ("size a bool", "inputs[0].parameters.binary_data_size", "not a byte count"),
        ("size a float", "inputs[0].parameters.binary_data_size", "not a byte count"),
        ("size huge", "inputs[0].parameters.binary_data_size", "remain after the JSON header"),
        ("second size past the end", "inputs[1].parameters.binary_data_size", "and the inputs before it"),
        ("bytes left over", "Inference-Header-Content-Length", "bytes follow the last input"),
        ("binary declared, no header", "inputs[0].parameters.binary_data_size", "no binary data follows"),
        ("bytes, no input declares them", "Inference-Header-Content-Length", "no input declares"),
        ("BYTES element past its tensor", "inputs[0].parameters.binary_data_size", "declares 1000 bytes"),
        ("BYTES length cut short", "inputs[0].parameters.binary_data_size", "cut short"),
    ],
)
def test_a_binary_body_that_lies_about_its_lengths_is_a_400_naming_the_header_or_input(
    case: str, field: str, named: str
) -> None:
    # Given
    h = harness()
    one = {"name": "X", "shape": [1, 4], "datatype": "FP32"}
    per_feature = [{"name": f"f{i}", "shape": [1], "datatype": "FP32"} for i in range(4)]
    sized = {**one, "parameters": {"binary_data_size": 16}}
    bodies: dict[str, tuple[bytes, list[str]]] = {}

    def add(name: str, header: dict[str, Any], payload: bytes, length: int | str | None = None) -> None:
        body, real = framed(header, payload)
        bodies[name] = (body, [] if length == "none" else [str(real if length is None else length)])

    add("header longer than the body", {"inputs": [sized]}, FOUR, 10_000)
    add("header not a number", {"inputs": [sized]}, FOUR, "12a")
    add("header negative", {"inputs": [sized]}, FOUR, "-5")
    add("header zero", {"inputs": [sized]}, FOUR, 0)
    add("size negative", {"inputs": [{**one, "parameters": {"binary_data_size": -16}}]}, FOUR)
    add("size a string", {"inputs": [{**one, "parameters": {"binary_data_size": "16"}}]}, FOUR)
    add("size a bool", {"inputs": [{**one, "parameters": {"binary_data_size": True}}]}, FOUR)
    add("size a float", {"inputs": [{**one, "parameters": {"binary_data_size": 16.0}}]}, FOUR)
    add("size huge", {"inputs": [{**one, "parameters": {"binary_data_size": 2**62}}]}, FOUR)
    add(
        "second size past the end",
        {
            "inputs": [
                {**t, "parameters": {"binary_data_size": 4 if i == 0 else 8}}
                for i, t in enumerate(per_feature)
            ]
        },
        FOUR[:8],
    )
    add("bytes left over", {"inputs": [sized]}, FOUR + b"\x00\x00")
    add("binary declared, no header", {"inputs": [sized]}, b"", "none")
    add("bytes, no input declares them", {"inputs": [{**one, "data": [0.5, -1.25, 2.0, 0.75]}]}, FOUR)
    strings = {"name": "X", "shape": [1, 4], "datatype": "BYTES"}
    add(
        "BYTES element past its tensor",
        {"inputs": [{**strings, "parameters": {"binary_data_size": 8}}]},
        struct.pack("<I", 1000) + b"abcd",
    )
    add(
        "BYTES length cut short",
        {"inputs": [{**strings, "parameters": {"binary_data_size": 6}}]},
        b"\x01\x00\x00\x00a\x00",
    )
    body, real = framed({"inputs": [sized]}, FOUR)
    bodies["header twice"] = (body, [str(real), str(real + 1)])
    payload, lengths = bodies[case]
    # When
    with pytest.raises(InvalidInputError) as error:
        header, binary = split_body(payload, lengths, delivered_as_bytes=True)
        OpenInference(h.service).infer("churn", None, InferRequest.model_validate_json(header), binary=binary)
    # Then
    assert (error.value.status, error.value.code) == (400, "invalid_binary_data"), error.value.message
    assert error.value.details[0]["field"] == field
    assert error.value.message.startswith(field) and named in error.value.message
    assert h.sink.records() == []


@pytest.mark.parametrize(
    ("inputs", "payload", "code", "field"),
    [
        (
            [{"name": "X", "shape": [2, 4], "datatype": "FP32", "parameters": {"binary_data_size": 16}}],
            FOUR,
            "shape_mismatch",
            "inputs[0].shape",
        ),
        (
            [{"name": "X", "shape": [1, 4], "datatype": "FP64", "parameters": {"binary_data_size": 16}}],
            FOUR,
            "shape_mismatch",
            "inputs[0].shape",
        ),
        (
            [{"name": "X", "shape": [1, 4], "datatype": "BOOL", "parameters": {"binary_data_size": 4}}],
            b"\x00\x01\x02\x01",
            "wrong_datatype",
            "inputs[0].data[2]",
        ),
        (
            [{"name": "X", "shape": [1, 2], "datatype": "BYTES", "parameters": {"binary_data_size": 10}}],
            b"\x01\x00\x00\x00a\x01\x00\x00\x00\xff",
            "wrong_datatype",
            "inputs[0].data[1]",
        ),
        (
            [{"name": "X", "shape": [1, 3], "datatype": "BYTES", "parameters": {"binary_data_size": 10}}],
            b"\x01\x00\x00\x00a\x01\x00\x00\x00b",
            "shape_mismatch",
            "inputs[0].shape",
        ),
        (
            [{"name": "X", "shape": [1, 1], "datatype": "BYTES", "parameters": {"binary_data_size": 10}}],
            b"\x01\x00\x00\x00a\x01\x00\x00\x00b",
            "shape_mismatch",
            "inputs[0].shape",
        ),
        (
            [{"name": "X", "shape": [1, 4], "datatype": "BYTES", "parameters": {"binary_data_size": 20}}],
            b"".join(b"\x01\x00\x00\x00" + letter for letter in (b"a", b"b", b"c", b"d")),
            "wrong_datatype",
            "inputs[0].datatype",
        ),
        (
            [{"name": "pixels", "shape": [1, 4], "datatype": "FP32", "parameters": {"binary_data_size": 16}}],
            FOUR,
            "unknown_input",
            "inputs[0].name",
        ),
        (
            [{"name": "X", "shape": [1, 4], "datatype": "FP32", "parameters": {"binary_data_size": 16}}],
            np.array([0.5, np.nan, 2, 1], dtype=np.float32).tobytes(),
            "invalid_features",
            "inputs[0].f1",
        ),
        (
            [{"name": "X", "shape": [1, 4], "datatype": "FP32", "parameters": {"binary_data_size": 16}}],
            np.array([0.5, np.inf, 2, 1], dtype=np.float32).tobytes(),
            "invalid_features",
            "inputs[0].f1",
        ),
    ],
)
def test_binary_tensors_that_do_not_fit_their_shape_datatype_or_model_are_422_naming_the_field(
    inputs: list[dict[str, Any]], payload: bytes, code: str, field: str
) -> None:
    # Given
    h = harness()
    body, length = framed({"inputs": inputs}, payload)
    # When
    with pytest.raises(UnprocessableError) as error:
        infer_binary(h, body, length)
    # Then
    assert error.value.code == code, error.value.message
    assert field in error.value.message


def test_binary_data_that_came_as_text_is_a_415_saying_to_send_octet_stream() -> None:
    # Given: tritonclient's own binary request as API Gateway passes a body of another type (text)
    _, headers, body = next(iter(recorded_requests().values()))
    # When
    with pytest.raises(UnsupportedMediaTypeError) as error:
        split_body(
            body.decode("utf-8", errors="replace"),
            [headers["Inference-Header-Content-Length"]],
            delivered_as_bytes=False,
        )
    # Then
    assert error.value.status == 415 and error.value.code == "unsupported_media_type"
    assert "application/octet-stream" in error.value.message


def test_a_tensor_with_data_and_a_binary_size_or_neither_is_refused_by_the_schema() -> None:
    base = {"name": "X", "shape": [1, 4], "datatype": "FP32"}
    with pytest.raises(ValidationError, match="not both"):
        InferRequest.model_validate(
            {"inputs": [{**base, "data": [1, 2, 3, 4], "parameters": {"binary_data_size": 16}}]}
        )
    with pytest.raises(ValidationError, match="binary_data_size"):
        InferRequest.model_validate({"inputs": [base]})
    with pytest.raises(ValidationError, match="binary_data"):
        InferRequest.model_validate(
            {
                "inputs": [{**base, "data": [1, 2, 3, 4]}],
                "outputs": [{"name": "label", "parameters": {"binary_data": "yes"}}],
            }
        )


@pytest.mark.parametrize(
    ("shape", "code", "said"),
    [
        ([2**32, 2**32], "too_many_instances", "4294967296 rows, over the limit of 100"),
        ([2**62, 0], "too_many_instances", "4611686018427387904 rows"),
        ([4, 2**62], "shape_mismatch", "holds 18446744073709551616 values, and data has 0"),
    ],
)
def test_a_shape_declaring_more_than_the_body_can_hold_is_refused_before_anything_is_built(
    shape: list[int], code: str, said: str
) -> None:
    # Given: a tiny body whose shape declares 2**64 values (numpy's product of it wraps around to 0)
    h = harness()
    body = {"inputs": [{"name": "X", "shape": shape, "datatype": "FP32", "data": []}]}
    # When
    with pytest.raises(InvalidInputError) as error:
        infer(h, body)
    # Then
    assert error.value.code == code
    assert error.value.message.startswith("inputs[0].shape") and said in error.value.message


@pytest.mark.parametrize(
    ("datatype", "value"),
    [("INT64", 10**400), ("INT64", 2**63), ("UINT64", 2**64), ("UINT8", 256), ("UINT32", -1), ("INT8", -129)],
)
def test_json_integers_outside_their_datatypes_range_are_422_not_a_crash(datatype: str, value: int) -> None:
    # Given: a JSON integer the datatype cannot hold (JSON integers are unbounded)
    h = harness()
    body = {"inputs": [{"name": "X", "shape": [1, 4], "datatype": datatype, "data": [1, 2, 3, value]}]}
    # When
    with pytest.raises(UnprocessableError) as error:
        infer(h, body)
    # Then
    assert error.value.code == "wrong_datatype"
    assert error.value.message.startswith("inputs[0].data") and f"{datatype}'s range" in error.value.message
