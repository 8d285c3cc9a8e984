"""ONNX validation and introspection, and the row/column <-> feed <-> prediction conversions."""

from __future__ import annotations

from functools import cache
from typing import Any

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper
from skl2onnx import to_onnx
from sklearn.datasets import make_classification, make_regression
from sklearn.ensemble import GradientBoostingClassifier
from sklearn.linear_model import LinearRegression, LogisticRegression

from mlambda.adapters.onnx import OnnxModel, inspect_model
from mlambda.errors import InvalidInputError, PayloadTooLargeError, UnprocessableError
from mlambda.schemas.registry import FeatureSchema, FeatureSpec
from mlambda.services.inference.scoring import (
    columns_to_feed,
    matches,
    output_columns,
    predictions,
    rows_to_feed,
    validate_rows,
)

MAX = 50 * 1024 * 1024


@cache
def classifier(zipmap: bool = False) -> tuple[bytes, Any, np.ndarray]:
    X, y = make_classification(n_samples=300, n_features=5, random_state=0)
    model = LogisticRegression(max_iter=1000).fit(X, y)
    onx = to_onnx(model, X[:1].astype(np.float32), options={id(model): {"zipmap": zipmap}})
    return onx.SerializeToString(), model, X.astype(np.float32)


@cache
def regressor() -> tuple[bytes, Any, np.ndarray]:
    X, y = make_regression(n_samples=200, n_features=3, random_state=0)
    model = LinearRegression().fit(X, y)
    return to_onnx(model, X[:1].astype(np.float32)).SerializeToString(), model, X.astype(np.float32)


def tensor_schema(n: int, input_name: str = "X") -> FeatureSchema:
    return FeatureSchema(
        mode="tensor",
        features=[FeatureSpec(name=f"f{i}", dtype="float") for i in range(n)],
        tensor_input=input_name,
        tensor_dtype="float32",
    )


def test_classifier_signature_has_labels_and_probabilities() -> None:
    data, _, _ = classifier()
    signature = inspect_model(data, max_bytes=MAX)
    assert signature.task == "classification"
    assert signature.class_labels == [0, 1]
    assert signature.label_output == "label"
    assert signature.probability_output == "probabilities"
    assert signature.inputs[0].name == "X"
    assert signature.inputs[0].shape == [None, 5]


def test_regressor_signature_has_a_value_output() -> None:
    data, _, _ = regressor()
    signature = inspect_model(data, max_bytes=MAX)
    assert signature.task == "regression"
    assert signature.value_output == "variable"


@pytest.mark.parametrize("payload", [b"not an onnx file", b"\x08\x07" * 10, b""])
def test_non_onnx_bytes_are_rejected(payload: bytes) -> None:
    with pytest.raises(InvalidInputError) as error:
        inspect_model(payload, max_bytes=MAX)
    assert error.value.code == "invalid_model"


def test_oversized_model_is_rejected_before_parsing() -> None:
    data, _, _ = classifier()
    with pytest.raises(PayloadTooLargeError):
        inspect_model(data, max_bytes=100)


def test_model_with_external_data_is_rejected() -> None:
    # Given a graph whose initializer points at a file beside it
    weights = helper.make_tensor("w", TensorProto.FLOAT, [1], [0.0])
    weights.data_location = TensorProto.EXTERNAL
    entry = weights.external_data.add()
    entry.key, entry.value = "location", "../../etc/passwd"
    del weights.float_data[:]
    graph = helper.make_graph(
        [helper.make_node("Add", ["x", "w"], ["y"])],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])],
        [weights],
    )
    data = helper.make_model(graph).SerializeToString()
    # When / Then
    with pytest.raises(InvalidInputError) as error:
        inspect_model(data, max_bytes=MAX)
    assert error.value.code == "external_data"


def test_model_that_onnxruntime_cannot_load_is_rejected() -> None:
    graph = helper.make_graph(
        [helper.make_node("NoSuchOp", ["x"], ["y"], domain="made.up")],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])],
    )
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("made.up", 1)]
    )
    with pytest.raises(InvalidInputError):
        inspect_model(model.SerializeToString(), max_bytes=MAX)


def test_rows_score_like_sklearn() -> None:
    # Given
    data, model, X = classifier()
    signature = inspect_model(data, max_bytes=MAX)
    schema = tensor_schema(5)
    rows = [{f"f{i}": float(v) for i, v in enumerate(x)} for x in X[:10]]
    # When
    validate_rows(schema, rows)
    result = predictions(signature, OnnxModel(data).run(rows_to_feed(schema, rows)))
    # Then
    expected = model.predict_proba(X[:10])
    assert [r["label"] for r in result] == model.predict(X[:10]).tolist()
    np.testing.assert_allclose(
        [[r["probabilities"]["0"], r["probabilities"]["1"]] for r in result], expected, atol=1e-5
    )


def test_zipmap_outputs_decode_like_tensor_outputs() -> None:
    plain_data, _, X = classifier(zipmap=False)
    zip_data, _, _ = classifier(zipmap=True)
    feed = columns_to_feed(tensor_schema(5), {f"f{i}": X[:20, i] for i in range(5)})
    plain = predictions(inspect_model(plain_data, max_bytes=MAX), OnnxModel(plain_data).run(feed))
    zipped = predictions(inspect_model(zip_data, max_bytes=MAX), OnnxModel(zip_data).run(feed))
    assert all(matches(a, b, tolerance=1e-6) for a, b in zip(plain, zipped, strict=True))


def test_output_columns_for_batches() -> None:
    data, model, X = regressor()
    signature = inspect_model(data, max_bytes=MAX)
    schema = FeatureSchema(
        mode="tensor", features=[FeatureSpec(name=c, dtype="float") for c in "abc"], tensor_input="X"
    )
    columns = output_columns(
        signature, OnnxModel(data).run(columns_to_feed(schema, dict(zip("abc", X.T, strict=True))))
    )
    np.testing.assert_allclose(columns["value"], model.predict(X), rtol=1e-4)


@pytest.mark.parametrize(
    ("row", "field", "fragment"),
    [
        ({"f0": 1.0}, "f1", "is missing"),
        ({"f0": "high", "f1": 1.0}, "f0", "must be a number"),
        ({"f0": float("nan"), "f1": 1.0}, "f0", "finite"),
        ({"f0": float("inf"), "f1": 1.0}, "f0", "finite"),
        ({"f0": True, "f1": 1.0}, "f0", "must be a number"),
        ({"f0": None, "f1": 1.0}, "f0", "null"),
        ({"f0": 1.0, "f1": 1.0, "surprise": 3}, "surprise", "not a feature"),
    ],
)
def test_bad_rows_name_row_and_field(row: dict[str, Any], field: str, fragment: str) -> None:
    with pytest.raises(UnprocessableError) as error:
        validate_rows(tensor_schema(2), [{"f0": 0.0, "f1": 0.0}, row])
    assert error.value.details[0]["row"] == 1
    assert error.value.details[0]["field"] == field
    assert fragment in error.value.details[0]["message"]


def test_per_feature_inputs_get_one_column_each() -> None:
    schema = FeatureSchema(
        mode="per_feature",
        features=[FeatureSpec(name="age", dtype="float"), FeatureSpec(name="city", dtype="string")],
    )
    feed = rows_to_feed(schema, [{"age": 3, "city": "Oslo"}, {"age": 4.5, "city": "Rome"}])
    assert feed["age"].shape == (2, 1)
    assert feed["age"].dtype == np.float32
    assert feed["city"].tolist() == [["Oslo"], ["Rome"]]


def test_matches_compares_labels_exactly_and_numbers_within_tolerance() -> None:
    recorded = {"label": 1, "probabilities": {"0": 0.25, "1": 0.75}}
    assert matches(recorded, {"label": 1, "probabilities": {"0": 0.25004, "1": 0.74996}})
    assert not matches(recorded, {"label": 0, "probabilities": {"0": 0.25, "1": 0.75}})
    assert not matches(recorded, {"label": 1, "probabilities": {"0": 0.3, "1": 0.7}})
    assert matches({"value": 2.0}, {"value": 2.00001})


def test_gradient_boosting_models_load_and_score() -> None:
    X, y = make_classification(n_samples=200, n_features=20, random_state=1)
    model = GradientBoostingClassifier(n_estimators=10, random_state=0).fit(X, y)
    data = to_onnx(
        model, X[:1].astype(np.float32), options={id(model): {"zipmap": False}}
    ).SerializeToString()
    signature = inspect_model(data, max_bytes=MAX)
    assert onnx.load_model_from_string(data).graph.node
    outputs = OnnxModel(data).run({"X": X[:5].astype(np.float32)})
    np.testing.assert_allclose(probability_of(signature, outputs), model.predict_proba(X[:5]), atol=1e-5)


def probability_of(signature: Any, outputs: dict[str, Any]) -> np.ndarray:
    return np.array([[p["probabilities"][k] for k in ("0", "1")] for p in predictions(signature, outputs)])
