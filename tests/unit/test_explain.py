"""Explanations of sklearn models exported to ONNX, checked against references that never read the ONNX.

References and tolerances (``tol`` is relative to the largest reference attribution, floored at 1):

- linear models: sklearn's own coefficients, ``coef * (x - reference mean)`` (scalers folded by
  hand): tol 1e-6 (onnxruntime scores float32 inputs);
- tree ensembles: ``shap.TreeExplainer`` (path-dependent) on the sklearn trees with covers counted by
  sklearn's ``decision_path`` over the same reference: tol 1e-6;
- path-dependent definition (zero covers, repeated features): enumeration of E[f | x_S]: tol 1e-6
  (ONNX stores leaf values as float32);
- kernel_shap with every coalition enumerated: exact interventional Shapley values: tol 1e-6;
- kernel_shap sampled (20 features, 256 coalitions): ``shap.TreeExplainer`` interventional on the
  same background: max error under 2% of the largest attribution (0.4% measured).
"""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
import shap
from sklearn.calibration import CalibratedClassifierCV
from sklearn.datasets import make_classification, make_regression
from sklearn.ensemble import (
    GradientBoostingClassifier,
    GradientBoostingRegressor,
    RandomForestClassifier,
    RandomForestRegressor,
)
from sklearn.linear_model import LinearRegression, LogisticRegression
from sklearn.neural_network import MLPRegressor
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import MinMaxScaler, StandardScaler
from sklearn.tree import DecisionTreeRegressor

from mlambda.errors import PayloadTooLargeError, UnprocessableError
from mlambda.services.inference.explain import (
    COALITIONS,
    KERNEL_MAX_ROWS,
    METHOD_KERNEL,
    METHOD_LINEAR,
    METHOD_TREE,
    Explainer,
    ExplainerCorruptError,
    kernel_shap,
)
from mlambda.services.inference.explain_build import describe
from tests.explain_support import (
    explained,
    interventional_shapley,
    path_dependent_shapley,
    shap_trees,
)

ROWS = slice(0, 25)


def classification(classes: int = 2, features: int = 6, n: int = 800) -> tuple[np.ndarray, np.ndarray]:
    X, y = make_classification(
        n_samples=n, n_features=features, n_informative=3, n_redundant=1, n_classes=classes, random_state=0
    )
    return X.astype(np.float32), y


def regression(features: int = 6, n: int = 800) -> tuple[np.ndarray, np.ndarray]:
    X, y = make_regression(n_samples=n, n_features=features, noise=5.0, random_state=0)
    return X.astype(np.float32), y


def assert_close(actual: np.ndarray, expected: np.ndarray, tol: float) -> None:
    scale = max(1.0, float(np.abs(expected).max()))
    np.testing.assert_allclose(actual, expected, rtol=0, atol=tol * scale)


def assert_additive(explanation: object) -> None:
    e = explanation
    np.testing.assert_allclose(e.values, e.baselines + e.attributions.sum(axis=1), atol=1e-9)  # type: ignore[attr-defined]


# ---------------------------------------------------------------- linear models


def test_logistic_regression_attributions_are_the_coefficients_times_the_centred_inputs_in_log_odds() -> None:
    # Given
    X, y = classification()
    model = LogisticRegression().fit(X, y)
    e = explained(model, X)
    mean = X.astype(np.float64).mean(axis=0)
    # When
    positive = e.explainer.explain(X[ROWS], [1] * 25, score=e.score)
    negative = e.explainer.explain(X[ROWS], [0] * 25, score=e.score)
    # Then
    assert positive.method == METHOD_LINEAR and positive.exact and positive.output == "log_odds"
    assert_close(positive.attributions, model.coef_[0] * (X[ROWS] - mean), 1e-6)
    assert_close(negative.attributions, -model.coef_[0] * (X[ROWS] - mean), 1e-6)
    assert_close(positive.values, model.decision_function(X[ROWS]), 1e-5)
    assert_close(positive.baselines, model.intercept_[0] + mean @ model.coef_[0], 1e-6)
    assert_additive(positive)


def test_linear_regression_attributions_are_the_coefficients_times_the_centred_inputs() -> None:
    X, y = regression()
    model = LinearRegression().fit(X, y)
    e = explained(model, X)
    mean = X.astype(np.float64).mean(axis=0)
    result = e.explainer.explain(X[ROWS], None, score=e.score)
    assert result.method == METHOD_LINEAR and result.output == "value" and result.classes is None
    assert_close(result.attributions, model.coef_ * (X[ROWS] - mean), 1e-6)
    assert_close(result.values, model.predict(X[ROWS]), 1e-6)
    assert_close(result.baselines, model.predict(X).mean(), 1e-6)


def test_float64_exports_read_as_matmul_and_add_are_exact_too() -> None:
    # Given: skl2onnx writes float64 linear models as MatMul + Add (+ Sigmoid for classifiers)
    X, y = classification()
    X64 = X.astype(np.float64)
    model = LogisticRegression().fit(X64, y)
    e = explained(model, X64, dtype=np.float64)
    # When
    result = e.explainer.explain(X64[ROWS], [1] * 25, score=e.score)
    # Then
    assert result.method == METHOD_LINEAR and result.output == "log_odds"
    assert_close(result.attributions, model.coef_[0] * (X64[ROWS] - X64.mean(axis=0)), 1e-9)


def test_a_scaler_before_a_linear_model_is_folded_so_attributions_are_per_input_feature() -> None:
    X, y = classification()
    pipeline = make_pipeline(StandardScaler(), LogisticRegression()).fit(X, y)
    e = explained(pipeline, X)
    weights = pipeline[-1].coef_[0] / pipeline[0].scale_
    result = e.explainer.explain(X[ROWS], [1] * 25, score=e.score)
    assert result.method == METHOD_LINEAR
    assert_close(result.attributions, weights * (X[ROWS] - X.astype(np.float64).mean(axis=0)), 1e-6)
    assert_close(result.values, pipeline.decision_function(X[ROWS]), 1e-5)


def test_multiclass_logistic_regression_explains_the_chosen_class_margin() -> None:
    X, y = classification(classes=3)
    model = LogisticRegression().fit(X, y)
    e = explained(model, X)
    classes = [0, 1, 2, 2, 1] * 5
    result = e.explainer.explain(X[ROWS], classes, score=e.score)
    assert result.output == "margin"
    expected = model.coef_[classes] * (X[ROWS] - X.astype(np.float64).mean(axis=0))
    assert_close(result.attributions, expected, 1e-6)
    assert_close(result.values, model.decision_function(X[ROWS])[np.arange(25), classes], 1e-5)


# ---------------------------------------------------------------- tree ensembles


def test_gradient_boosting_classifier_matches_shap_tree_explainer_in_log_odds() -> None:
    # Given: no subsampling, so the training covers shap reads are the reference's counts
    X, y = classification()
    model = GradientBoostingClassifier(n_estimators=40, max_depth=3, random_state=0).fit(X, y)
    e = explained(model, X)
    reference = shap.TreeExplainer(model)
    # When
    result = e.explainer.explain(X[ROWS], [1] * 25, score=e.score)
    negative = e.explainer.explain(X[ROWS], [0] * 25, score=e.score)
    # Then
    assert result.method == METHOD_TREE and result.covers == "reference" and result.output == "log_odds"
    assert_close(result.attributions, reference.shap_values(X[ROWS]), 1e-6)
    assert_close(result.baselines, np.full(25, reference.expected_value), 1e-6)
    assert_close(result.values, model.decision_function(X[ROWS]), 1e-5)
    assert_close(negative.attributions, -result.attributions, 1e-12)
    assert_additive(result)


def test_gradient_boosting_regressor_matches_shap_tree_explainer() -> None:
    X, y = regression()
    model = GradientBoostingRegressor(n_estimators=40, max_depth=3, random_state=0).fit(X, y)
    e = explained(model, X)
    reference = shap.TreeExplainer(model)
    result = e.explainer.explain(X[ROWS], None, score=e.score)
    assert result.method == METHOD_TREE and result.output == "value"
    assert_close(result.attributions, reference.shap_values(X[ROWS]), 1e-6)
    assert_close(result.values, model.predict(X[ROWS]), 1e-5)


def test_multiclass_gradient_boosting_explains_each_class_margin_like_shap() -> None:
    X, y = classification(classes=3)
    model = GradientBoostingClassifier(n_estimators=20, max_depth=3, random_state=0).fit(X, y)
    e = explained(model, X)
    for chosen in range(3):
        reference = shap.TreeExplainer(shap_trees(model.estimators_[:, chosen], X, model.learning_rate))
        result = e.explainer.explain(X[ROWS], [chosen] * 25, score=e.score)
        assert result.output == "margin"
        assert_close(result.attributions, reference.shap_values(X[ROWS]), 1e-6)
        assert_close(result.values, model.decision_function(X[ROWS])[:, chosen], 1e-5)


def test_random_forest_classifier_is_exact_in_probability_like_shap() -> None:
    # Given: bootstrapped trees; covers are the reference's counts on both sides
    X, y = classification()
    model = RandomForestClassifier(n_estimators=15, max_depth=6, random_state=0).fit(X, y)
    e = explained(model, X)
    reference = shap.TreeExplainer(shap_trees(model.estimators_, X, 1 / 15, output=1))
    # When
    result = e.explainer.explain(X[ROWS], [1] * 25, score=e.score)
    # Then
    assert result.method == METHOD_TREE and result.output == "probability"
    assert_close(result.attributions, reference.shap_values(X[ROWS]), 1e-6)
    assert_close(result.values, model.predict_proba(X[ROWS])[:, 1], 1e-5)
    assert_close(result.baselines, np.full(25, model.predict_proba(X)[:, 1].mean()), 1e-6)


def test_multiclass_random_forest_explains_the_predicted_class_probability() -> None:
    X, y = classification(classes=3)
    model = RandomForestClassifier(n_estimators=10, max_depth=6, random_state=0).fit(X, y)
    e = explained(model, X)
    predicted = model.predict(X[ROWS]).tolist()
    result = e.explainer.explain(X[ROWS], predicted, score=e.score)
    for chosen in range(3):
        rows = [i for i, c in enumerate(predicted) if c == chosen]
        reference = shap.TreeExplainer(shap_trees(model.estimators_, X, 1 / 10, output=chosen))
        assert_close(result.attributions[rows], reference.shap_values(X[ROWS][rows]), 1e-6)
    assert_close(result.values, model.predict_proba(X[ROWS]).max(axis=1), 1e-5)


def test_random_forest_regressor_matches_shap_tree_explainer() -> None:
    X, y = regression()
    model = RandomForestRegressor(n_estimators=10, max_depth=8, random_state=0).fit(X, y)
    e = explained(model, X)
    reference = shap.TreeExplainer(shap_trees(model.estimators_, X, 1 / 10))
    result = e.explainer.explain(X[ROWS], None, score=e.score)
    assert_close(result.attributions, reference.shap_values(X[ROWS]), 1e-6)
    assert_close(result.values, model.predict(X[ROWS]), 1e-5)


def test_a_scaler_before_trees_is_replayed_so_attributions_are_per_input_feature() -> None:
    X, y = classification()
    pipeline = make_pipeline(
        MinMaxScaler(), GradientBoostingClassifier(n_estimators=30, max_depth=3, random_state=0)
    ).fit(X, y)
    e = explained(pipeline, X)
    reference = shap.TreeExplainer(pipeline[-1])
    result = e.explainer.explain(X[ROWS], [1] * 25, score=e.score)
    assert result.method == METHOD_TREE and describe(e.artifact)["preprocessing"]
    assert_close(result.attributions, reference.shap_values(pipeline[0].transform(X[ROWS])), 1e-6)


def test_nodes_no_reference_row_reached_still_give_the_path_dependent_shapley_values() -> None:
    # Given: a deep tree (features repeat along paths) and a reference of 20 rows (most leaves unreached)
    X, y = regression(features=5)
    tree = DecisionTreeRegressor(max_depth=8, random_state=0).fit(X, y)
    reference = X[:20]
    e = explained(tree, X, reference=reference)
    # When
    result = e.explainer.explain(X[100:106], None, score=e.score)
    # Then
    for row, attributions in zip(X[100:106], result.attributions, strict=True):
        assert_close(attributions, path_dependent_shapley(tree, reference, row), 1e-6)
    assert_close(result.baselines, np.full(6, tree.predict(reference).mean()), 1e-6)
    assert_additive(result)


def test_deep_forests_use_the_per_row_algorithm_with_the_same_answers() -> None:
    # Given: paths too deep for the per-pattern table
    X, y = regression(features=12, n=600)
    model = RandomForestRegressor(n_estimators=3, random_state=0).fit(X, y)
    e = explained(model, X)
    prepared = e.explainer.paths.for_column(0)  # type: ignore[union-attr]
    assert prepared.table is None
    reference = shap.TreeExplainer(shap_trees(model.estimators_, X, 1 / 3))
    # When
    result = e.explainer.explain(X[:5], None, score=e.score)
    # Then
    assert_close(result.attributions, reference.shap_values(X[:5]), 1e-6)


# ---------------------------------------------------------------- model-agnostic fallback


def test_a_model_without_an_exact_reader_falls_back_to_kernel_shap_exact_when_coalitions_fit() -> None:
    # Given: an MLP on 5 features (2**5 - 2 coalitions fit the budget)
    X, y = regression(features=5)
    model = MLPRegressor(hidden_layer_sizes=(8,), solver="lbfgs", max_iter=500, random_state=0).fit(X, y)
    e = explained(model, X)
    header = describe(e.artifact)
    assert header["method"] == METHOD_KERNEL and header["fallback_reason"]
    background = e.explainer.background.astype(np.float32)
    # When
    result = e.explainer.explain(X[:4], None, score=e.score)
    # Then
    assert result.method == METHOD_KERNEL and not result.exact and result.coalitions == 30
    for row, attributions in zip(X[:4], result.attributions, strict=True):
        expected = interventional_shapley(
            lambda rows: model.predict(rows.astype(np.float32)), background, row
        )
        assert_close(attributions, expected, 1e-5)
    assert_additive(result)


def test_a_calibrated_classifier_is_not_read_as_trees_and_explains_its_probability() -> None:
    X, y = classification()
    model = CalibratedClassifierCV(LogisticRegression(), cv=3).fit(X, y)
    e = explained(model, X)
    result = e.explainer.explain(X[:3], [1] * 3, score=e.score)
    assert result.method == METHOD_KERNEL and result.output == "probability"
    assert_close(result.values, model.predict_proba(X[:3])[:, 1], 1e-5)


def test_probability_output_on_a_margin_model_is_estimated_with_kernel_shap() -> None:
    X, y = classification(features=5)
    model = GradientBoostingClassifier(n_estimators=20, max_depth=2, random_state=0).fit(X, y)
    e = explained(model, X)
    background = e.explainer.background.astype(np.float32)
    result = e.explainer.explain(X[:3], [1] * 3, score=e.score, output="probability")
    assert result.method == METHOD_KERNEL and result.output == "probability"
    for row, attributions in zip(X[:3], result.attributions, strict=True):
        expected = interventional_shapley(lambda rows: model.predict_proba(rows)[:, 1], background, row)
        assert_close(attributions, expected, 1e-5)


def test_sampled_kernel_shap_on_twenty_features_is_within_two_percent_of_exact() -> None:
    # Given: exact interventional values from shap's TreeExplainer on the same background
    X, y = regression(features=20, n=1500)
    model = GradientBoostingRegressor(n_estimators=50, max_depth=3, random_state=0).fit(X, y)
    e = explained(model, X)
    background = e.explainer.background
    exact = shap.TreeExplainer(
        model, data=background.astype(np.float32), feature_perturbation="interventional"
    )
    # When
    attributions, values, baselines, coalitions = kernel_shap(
        X[:10], np.zeros(10, dtype=np.int64), background, e.explainer.background_outputs, e.score
    )
    # Then
    expected = exact.shap_values(X[:10])
    assert coalitions == COALITIONS
    assert np.abs(attributions - expected).max() <= 0.02 * np.abs(expected).max()
    np.testing.assert_allclose(values - baselines, attributions.sum(axis=1), atol=1e-9)


# ---------------------------------------------------------------- the artifact and the request's bounds


def test_the_artifact_round_trips_and_is_refused_for_another_model() -> None:
    X, y = classification()
    e = explained(LogisticRegression().fit(X, y), X)
    with pytest.raises(ExplainerCorruptError):
        Explainer.from_bytes(e.artifact, model_sha256="0" * 64)
    with pytest.raises(ExplainerCorruptError):
        Explainer.from_bytes(e.artifact[: len(e.artifact) // 2], model_sha256="0" * 64)


def test_an_artifact_holding_pickled_objects_is_refused_without_unpickling() -> None:
    # Given: an npz whose background is an object array (loading it would unpickle)
    X, y = classification()
    e = explained(LogisticRegression().fit(X, y), X)
    with np.load(io.BytesIO(e.artifact)) as archive:
        arrays = {name: archive[name] for name in archive.files}
    header = json.loads(str(arrays["header"]))
    arrays["background"] = np.array([object()], dtype=object)
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    # When / Then
    with pytest.raises(ExplainerCorruptError, match="unusable"):
        Explainer.from_bytes(buffer.getvalue(), model_sha256=header["model_sha256"])


def test_an_artifact_with_paths_pointing_outside_the_features_is_refused() -> None:
    X, y = regression()
    e = explained(GradientBoostingRegressor(n_estimators=5, random_state=0).fit(X, y), X)
    with np.load(io.BytesIO(e.artifact)) as archive:
        arrays = {name: archive[name] for name in archive.files}
    header = json.loads(str(arrays["header"]))
    arrays["path_features"] = arrays["path_features"] + 100
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    with pytest.raises(ExplainerCorruptError, match="out of range"):
        Explainer.from_bytes(buffer.getvalue(), model_sha256=header["model_sha256"])


def test_too_many_rows_for_the_budget_is_a_413_naming_the_limit() -> None:
    X, y = classification()
    e = explained(GradientBoostingClassifier(n_estimators=5, random_state=0).fit(X, y), X)
    e.explainer.check_budget(1000, "auto")
    with pytest.raises(PayloadTooLargeError) as raised:
        e.explainer.check_budget(KERNEL_MAX_ROWS + 1, "probability")
    assert raised.value.code == "too_many_explanations"
    assert raised.value.details == {
        "rows": KERNEL_MAX_ROWS + 1,
        "limit": KERNEL_MAX_ROWS,
        "method": METHOD_KERNEL,
    }
    e.explainer.check_budget(KERNEL_MAX_ROWS, "probability")


def test_an_unknown_class_or_a_probability_output_on_a_regressor_is_a_422() -> None:
    X, y = classification()
    e = explained(LogisticRegression().fit(X, y), X)
    with pytest.raises(UnprocessableError) as raised:
        e.explainer.class_index("7", [0, 1])
    assert raised.value.details == {"classes": ["0", "1"]}
    assert e.explainer.class_index(1, [0, 1]) == 1
    Xr, yr = regression()
    r = explained(LinearRegression().fit(Xr, yr), Xr)
    with pytest.raises(UnprocessableError):
        r.explainer.explain(Xr[:1], None, score=r.score, output="probability")
    with pytest.raises(UnprocessableError):
        r.explainer.class_index("1", None)


def test_a_matrix_of_rows_gives_row_aligned_attribution_columns_for_batch_output() -> None:
    # Given
    X, y = classification()
    model = GradientBoostingClassifier(n_estimators=10, random_state=0).fit(X, y)
    e = explained(model, X)
    predicted = model.predict(X[:300])
    # When
    columns = e.explainer.explain(X[:300], predicted.tolist(), score=e.score).columns(
        [f"f{i}" for i in range(6)], [0, 1]
    )
    # Then
    assert list(columns) == [
        *(f"explain_f{i}" for i in range(6)),
        "explain_baseline",
        "explain_value",
        "explain_class",
    ]
    assert all(len(column) == 300 for column in columns.values())
    assert columns["explain_class"].tolist() == [str(c) for c in predicted]
    total = columns["explain_baseline"] + sum(columns[f"explain_f{i}"] for i in range(6))
    np.testing.assert_allclose(total, columns["explain_value"], atol=1e-9)
