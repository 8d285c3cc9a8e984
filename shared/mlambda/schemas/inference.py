"""``POST /models/{name}/predict``: the request and response bodies.

A request carries either ``instances`` (rows of features by name) or one entity's ``features``;
``entity_id`` names the caller's entity (user, account...): its latest online features are
merged under each row (request values win), it pins the caller to a variant when the endpoint
is sticky on ``entity_id``, and serving rules (opt-out, recently seen) look it up.

Feature values are typed ``Any`` on purpose: the model's feature schema, not this envelope,
decides what is valid, and ``mlambda.services.inference.scoring.validate_rows`` names every offending
row and field (missing, extra, wrong type, NaN/infinity).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator
from typing_extensions import TypedDict  # pydantic reads typing's TypedDict only from Python 3.12


class ExplainOptions(BaseModel):
    """What to explain: the class (default: each row's predicted class) and the output scale.

    Shared by every predict protocol: a request format carries ``explain: true`` or these options.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    class_label: int | str | None = Field(
        None,
        alias="class",
        description="classifiers: the class whose output is explained (default: the predicted class)",
    )
    output: Literal["auto", "probability"] = Field(
        "auto",
        description="'auto': the scale the exact method is additive in (log-odds or margin for logistic "
        "regression and gradient boosting, probability for random forests, value for regressors); "
        "'probability': the class probability, estimated with kernel_shap where the exact method is "
        "additive in the margin",
    )

    @model_validator(mode="after")
    def _bounded(self) -> ExplainOptions:
        if isinstance(self.class_label, str) and not 1 <= len(self.class_label) <= 128:
            raise ValueError("class must be 1-128 characters")
        return self


DEFAULT_EXPLAIN = ExplainOptions()
"""What ``explain: true`` means: the predicted class, on the exact method's scale."""


class PredictRequest(BaseModel):
    """What a client sends: ``instances``, or ``entity_id`` (+ ``features``), plus optional overrides."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    instances: list[dict[str, Any]] | None = Field(
        None, min_length=1, description="rows to score, each {feature: value}; capped by MAX_INSTANCES (413)"
    )
    entity_id: str | None = Field(
        None, min_length=1, max_length=256, description="the entity whose online features fill the gaps"
    )
    features: dict[str, Any] | None = Field(
        None, description="one row for ``entity_id``, merged over its online features (request values win)"
    )
    variant: str | None = Field(
        None, pattern=r"^[A-Za-z0-9_-]{1,32}$", description="serve this variant, bypassing the traffic split"
    )
    request_id: str | None = Field(
        None,
        pattern=r"^[A-Za-z0-9._:-]{1,128}$",
        description="caller's id for this request (echoed, logged); generated when absent",
    )
    explain: bool | ExplainOptions = Field(
        False,
        description="true (or options): each prediction carries an 'explanation' with additive per-feature "
        "attributions, the baseline and the method (see mlambda.services.inference.explain)",
    )

    @model_validator(mode="after")
    def _one_shape(self) -> PredictRequest:
        if self.instances is not None and self.features is not None:
            raise ValueError("send either 'instances' or 'features', not both")
        if self.instances is None and self.entity_id is None:
            raise ValueError("send 'instances', or 'entity_id' with optional 'features'")
        return self

    @property
    def explain_options(self) -> ExplainOptions | None:
        """The explanation asked for, or None."""
        if self.explain is True:
            return DEFAULT_EXPLAIN
        return self.explain or None

    @property
    def rows(self) -> list[dict[str, Any]]:
        """The rows to score, before any online features are merged in."""
        if self.instances is not None:
            return self.instances
        return [dict(self.features or {})]


class PredictResponse(TypedDict):
    """What the caller gets: one prediction per row, in request order.

    Each prediction is ``{"label", "probabilities"}`` (classifiers) or ``{"value"}``
    (regressors), plus ``"decision"`` when the model has a decision rule, and ``"explanation"``
    when the request asked for one (``Explanation``). A row the serving
    rules removed is ``{"excluded": "<reason>"}``; a row answered by the model's fallback
    carries the fallback's keys and ``"fallback": "<reason>"``. ``cached`` is true when every
    scored row came from the prediction cache.

    A TypedDict, not a pydantic model: the service builds it from values it produced itself
    and orjson writes it, which costs a microsecond where constructing and dumping a model
    cost seven on every request (benchmarks/bench_predict.py).
    """

    model: str
    version: int
    variant: str
    request_id: str
    cached: bool
    predictions: list[dict[str, Any]]


Explanation = TypedDict(
    "Explanation",
    {
        "method": str,
        "exact": bool,
        "output": str,
        "covers": str,
        "coalitions": int,
        "reference_rows": int,
        "class": str,
        "value": float,
        "baseline": float,
        "attributions": dict[str, float],
    },
    total=False,
)
"""One prediction's explanation: ``value == baseline + sum(attributions.values())``.

``method``: ``linear``, ``tree_shap_path_dependent`` or ``kernel_shap``; ``exact`` is false for
kernel_shap estimates. ``output`` names the scale value, baseline and attributions are on:
``value`` (regressors), ``probability``, ``log_odds`` (binary classifiers: the probability is its
logistic) or ``margin`` (the class's raw score before the softmax or one-vs-rest normalisation).
``class`` is the explained class (classifiers). ``covers`` (TreeSHAP) says where node covers come
from (``reference``: the reference sample's counts); ``coalitions`` (kernel_shap) how many
coalitions were evaluated; ``reference_rows`` how many reference rows the baseline averages.
"""
