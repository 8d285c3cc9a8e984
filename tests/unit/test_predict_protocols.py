"""The request formats predict speaks (MLflow's, mlambda's) and the Open Inference Protocol, on the service.

Request bodies follow MLflow's documented scoring formats (``dataframe_split``,
``dataframe_records``, ``instances``, ``inputs``) and the Open Inference Protocol's REST
specification (one ``[rows, features]`` tensor, or one tensor per feature).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from pydantic import ValidationError

from mlambda.errors import NotFoundError, UnprocessableError
from mlambda.observability import metrics
from mlambda.schemas.inference import PredictRequest
from mlambda.schemas.open_inference import InferRequest
from mlambda.schemas.prediction_log import PredictionBlock
from mlambda.schemas.registry import DecisionRule, Fallback, ServingRules, Shadow, Threshold
from mlambda.services.inference.open_inference import OpenInference
from mlambda.services.inference.prediction_log import PredictionLog
from tests.conftest import load_event
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
