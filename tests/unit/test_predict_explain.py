"""``explain`` on the inference service: explanations on the response, never in the log, bounded per request."""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import pytest

from mlambda.adapters.model_sessions import ModelSessions
from mlambda.errors import ConflictError, PayloadTooLargeError, UnprocessableError
from mlambda.observability import metrics
from mlambda.schemas.inference import PredictRequest
from mlambda.schemas.registry import EndpointConfig, Fallback, ModelVersion, ServingRules, Variant
from mlambda.services.inference.explain import KERNEL_MAX_ROWS, ExplainerCorruptError, Explainers
from mlambda.services.inference.prediction_log import PredictionLog
from mlambda.services.inference.service import InferenceService, ServingModel
from tests.explain_support import with_explainer
from tests.unit.fakes_predict import (
    FEATURES,
    BrokenModel,
    InMemoryArtifacts,
    InMemoryCatalog,
    RecordingOutput,
    classifier,
    regressor,
    row,
    version_of,
)


class Models:
    def __init__(self, real: ModelSessions, broken: dict[str, ServingModel]) -> None:
        self.real, self.broken = real, broken

    def get(self, version: ModelVersion) -> ServingModel:
        return self.broken.get(version.model) or self.real.get(version)


class World:
    def __init__(
        self, *, broken: dict[str, ServingModel] | None = None, endpoint: EndpointConfig | None = None
    ):
        self.catalog, self.artifacts, self.sink = InMemoryCatalog(), InMemoryArtifacts(), RecordingOutput()
        data, self.classifier, self.X = classifier(0)
        self.catalog.add(
            with_explainer(version_of("churn", 1, data), data, self.X, self.artifacts), "production"
        )
        self.artifacts.put(version_of("churn", 1, data).artifact_key, data)
        data, self.regressor, self.Xr = regressor()
        self.catalog.add(
            with_explainer(version_of("price", 1, data), data, self.Xr, self.artifacts), "production"
        )
        self.artifacts.put(version_of("price", 1, data).artifact_key, data)
        data, _, _ = classifier(1)
        self.catalog.add(version_of("plain", 1, data), "production")
        self.artifacts.put(version_of("plain", 1, data).artifact_key, data)
        if endpoint is not None:
            self.catalog.endpoints[endpoint.model] = endpoint
        self.service = InferenceService(
            self.catalog,
            Models(ModelSessions(self.artifacts), broken or {}),
            PredictionLog(self.sink.write),
            explainers=Explainers(self.artifacts),
            rng=random.Random(0),
        )

    def predict(self, body: dict[str, Any], model: str = "churn") -> dict[str, Any]:
        metrics.clear_metrics()
        return self.service.predict(model, PredictRequest.model_validate(body))


def test_each_prediction_carries_an_additive_explanation_of_its_predicted_class_in_log_odds() -> None:
    # Given
    world = World()
    X = world.X[:5]
    # When
    body = world.predict({"instances": [row(x) for x in X], "explain": True})
    # Then
    mean = world.X.astype(np.float64).mean(axis=0)
    for prediction, x in zip(body["predictions"], X, strict=True):
        explanation = prediction["explanation"]
        assert explanation["method"] == "linear" and explanation["exact"] is True
        assert explanation["output"] == "log_odds"
        assert explanation["class"] == str(prediction["label"])
        assert list(explanation["attributions"]) == FEATURES
        total = explanation["baseline"] + sum(explanation["attributions"].values())
        assert total == pytest.approx(explanation["value"], abs=1e-9)
        probability = prediction["probabilities"][explanation["class"]]
        assert 1 / (1 + np.exp(-explanation["value"])) == pytest.approx(probability, abs=1e-5)
        sign = 1 if prediction["label"] == 1 else -1
        expected = sign * world.classifier.coef_[0] * (x - mean)
        np.testing.assert_allclose(list(explanation["attributions"].values()), expected, atol=1e-5)


def test_a_named_class_is_explained_for_every_row() -> None:
    world = World()
    body = world.predict({"instances": [row(x) for x in world.X[:6]], "explain": {"class": "1"}})
    assert {p["explanation"]["class"] for p in body["predictions"]} == {"1"}


def test_explanations_reach_the_caller_but_not_the_prediction_log() -> None:
    world = World()
    world.predict({"instances": [row(world.X[0])], "explain": True})
    envelopes = world.sink.envelopes()
    assert envelopes and all("explanation" not in e["payload"]["prediction"] for e in envelopes)


def test_without_explain_predictions_carry_no_explanation() -> None:
    world = World()
    body = world.predict({"instances": [row(world.X[0])]})
    assert "explanation" not in body["predictions"][0]


def test_a_regressor_explains_its_value() -> None:
    world = World()
    body = world.predict({"instances": [row(x) for x in world.Xr[:3]], "explain": True}, model="price")
    for prediction in body["predictions"]:
        explanation = prediction["explanation"]
        assert explanation["output"] == "value" and "class" not in explanation
        assert explanation["value"] == pytest.approx(prediction["value"], rel=1e-5)


def test_probability_output_estimates_with_kernel_shap_through_the_served_model() -> None:
    world = World()
    body = world.predict({"instances": [row(world.X[0])], "explain": {"class": 1, "output": "probability"}})
    prediction = body["predictions"][0]
    explanation = prediction["explanation"]
    assert explanation["method"] == "kernel_shap" and explanation["exact"] is False
    assert explanation["output"] == "probability" and explanation["coalitions"] == 14
    assert explanation["value"] == pytest.approx(prediction["probabilities"]["1"], abs=1e-6)


def test_more_rows_than_kernel_shaps_budget_is_a_413() -> None:
    world = World()
    rows = [row(x) for x in world.X[: KERNEL_MAX_ROWS + 1]]
    with pytest.raises(PayloadTooLargeError) as raised:
        world.predict({"instances": rows, "explain": {"output": "probability"}})
    assert raised.value.code == "too_many_explanations"


def test_a_version_without_an_explainer_is_a_409_saying_why() -> None:
    world = World()
    with pytest.raises(ConflictError) as raised:
        world.predict({"instances": [row(world.X[0])], "explain": True}, model="plain")
    assert raised.value.code == "explainer_unavailable" and "reference sample" in raised.value.message


@pytest.mark.parametrize(
    ("explain", "code"),
    [({"class": "7"}, "invalid_explain_class"), ({"output": "probability"}, "invalid_explain_output")],
)
def test_a_class_the_model_lacks_or_probability_on_a_regressor_is_a_422(
    explain: dict[str, Any], code: str
) -> None:
    world = World()
    model = "churn" if code == "invalid_explain_class" else "price"
    X = world.X if model == "churn" else world.Xr
    with pytest.raises(UnprocessableError) as raised:
        world.predict({"instances": [row(X[0])], "explain": explain}, model=model)
    assert raised.value.code == code


def test_fallback_answers_are_not_explained() -> None:
    fallback = Fallback(response={"label": 0, "probabilities": {"0": 1.0, "1": 0.0}})
    world = World(
        broken={"churn": BrokenModel()},
        endpoint=EndpointConfig(
            model="churn",
            variants=[Variant(name="main", target="production", weight=100)],
            rules=ServingRules(fallback=fallback),
        ),
    )
    body = world.predict({"instances": [row(world.X[0])], "explain": True})
    assert body["predictions"][0]["fallback"] == "model_failed"
    assert "explanation" not in body["predictions"][0]


def test_explain_options_are_validated_before_anything_runs() -> None:
    with pytest.raises(ValueError, match="extra"):
        PredictRequest.model_validate({"instances": [{"f0": 1}], "explain": {"method": "lime"}})
    with pytest.raises(ValueError, match="class"):
        PredictRequest.model_validate({"instances": [{"f0": 1}], "explain": {"class": "x" * 129}})


def test_an_explainer_missing_from_the_bucket_is_a_500_not_a_404() -> None:
    # Given: the version names an explainer whose object is gone
    world = World()
    version = world.catalog.versions[("churn", 1)]
    del world.artifacts.objects[version.explainer_key or ""]
    # When / Then
    with pytest.raises(ExplainerCorruptError) as raised:
        world.predict({"instances": [row(world.X[0])], "explain": True})
    assert raised.value.status == 500 and raised.value.code == "explainer_corrupt"


def test_mlflow_formats_carry_the_explanations_as_annotations() -> None:
    # Given
    world = World()
    X = world.X[:4].astype(np.float64)
    # When
    body = world.predict({"dataframe_split": {"columns": FEATURES, "data": X.tolist()}, "explain": True})
    # Then: the same explanations instances of objects get, one annotation per row
    rows = world.predict({"instances": [row(x) for x in world.X[:4]], "explain": True})["predictions"]
    assert body["predictions"] == [p["label"] for p in rows]
    assert [a["explanation"] for a in body["annotations"]] == [p["explanation"] for p in rows]


def test_open_inference_protocol_explains_as_tensors() -> None:
    # Given
    from mlambda.schemas.open_inference import InferRequest
    from mlambda.services.inference.open_inference import OpenInference

    world = World()
    X = world.X[:3].astype(np.float64)
    request = InferRequest.model_validate(
        {
            "inputs": [{"name": "X", "shape": [3, 4], "datatype": "FP32", "data": X.ravel().tolist()}],
            "parameters": {"explain": True},
        }
    )
    # When
    metrics.clear_metrics()
    answer = OpenInference(world.service).infer("churn", None, request)
    # Then: attributions [rows, features] add up to explained_value - baseline
    outputs = {o["name"]: o for o in answer["outputs"]}
    attributions = np.reshape(outputs["attributions"]["data"], (3, 4))
    np.testing.assert_allclose(
        attributions.sum(axis=1) + outputs["baseline"]["data"], outputs["explained_value"]["data"], atol=1e-9
    )
    explanation = answer["parameters"]["explanation"]
    assert explanation["method"] == "linear" and explanation["features"] == FEATURES
    rows = world.predict({"instances": [row(x) for x in world.X[:3]], "explain": True})["predictions"]
    expected = [[p["explanation"]["attributions"][f] for f in FEATURES] for p in rows]
    np.testing.assert_allclose(attributions, expected, atol=1e-12)
    assert explanation["classes"] == [p["explanation"]["class"] for p in rows]
