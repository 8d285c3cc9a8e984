"""``POST /models/{name}/predict``: the request and response bodies, in every format it speaks.

A request carries its rows in exactly one of these fields:

- ``instances``: a list of objects ``{feature: value}`` (mlambda's own format, and the row form of
  MLflow's and TF Serving's ``instances``: the two coincide), or a list of arrays, each row's
  values in the model's feature order (MLflow's tensor ``instances``). The items tell the two
  apart: all objects or all arrays, never mixed;
- ``dataframe_split``: MLflow's pandas "split" orient, ``{"columns": [...], "data": [[...], ...]}``
  (``index`` accepted and ignored): the columnar format, scored without building a row object;
- ``dataframe_records``: MLflow's pandas "records" orient, a list of ``{column: value}``;
- ``inputs``: MLflow's (TF Serving's) columnar tensor input, ``{feature: [values...]}``, or rows of
  values in the model's feature order;
- ``features`` with ``entity_id``: one entity's row, merged over its online features.

``entity_id`` names the caller's entity (user, account...) with any of them: its latest online
features are merged under each row (request values win), it pins the caller to a variant when the
endpoint is sticky on ``entity_id``, and serving rules (opt-out, recently seen) look it up.

The answer's shape follows the request's: ``instances`` of objects and ``features`` get
``PredictResponse`` (one object per row); the MLflow formats get ``MlflowResponse``, whose
``predictions`` is what ``mlflow models serve`` returns for a scikit-learn model (a label or a value
per row) with the probabilities beside it as columns.

Feature values are typed ``Any`` on purpose: the model's feature schema, not this envelope,
decides what is valid, and ``mlambda.services.inference.scoring`` names every offending row and
field (missing, extra, wrong type, NaN/infinity) under the field the client used.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator
from typing_extensions import TypedDict  # pydantic reads typing's TypedDict only from Python 3.12

from mlambda.errors import UnprocessableError
from mlambda.schemas.bounds import Int64

if TYPE_CHECKING:
    import numpy as np


class ExplainOptions(BaseModel):
    """What to explain: the class (default: each row's predicted class) and the output scale.

    Shared by every predict protocol: a request format carries ``explain: true`` or these options.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    class_label: Int64 | str | None = Field(
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


MAX_ROWS = 10_000
"""Rows any request format may carry (the schema's bound; the function's ``MAX_INSTANCES`` is lower: 413)."""
MAX_COLUMNS = 10_000
"""Columns (features and row fields) a request may name."""
Row = Annotated[dict[str, Any], Field(max_length=MAX_COLUMNS)]
Values = Annotated[list[Any], Field(max_length=MAX_COLUMNS)]
ROW_FIELDS = ("instances", "dataframe_split", "dataframe_records", "inputs")
"""The request fields that carry rows (``features`` carries one entity's row)."""
MLFLOW_FORMATS = frozenset({"dataframe_split", "dataframe_records", "inputs", "instances_tensor"})
"""Request formats answered in MLflow's shape (``instances`` of objects is mlambda's own)."""


class DataframeSplit(BaseModel):
    """MLflow's ``dataframe_split``: pandas' "split" orient (``index`` is accepted and ignored)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    columns: list[Annotated[str, Field(max_length=256)]] = Field(
        min_length=1, max_length=MAX_COLUMNS, description="feature names, in data's order"
    )
    data: list[Any] = Field(
        min_length=1, max_length=MAX_ROWS, description="rows, each a list of one value per column"
    )
    index: list[Any] | None = Field(
        None, max_length=MAX_ROWS, description="pandas' row index: accepted, not used"
    )

    @model_validator(mode="after")
    def _rectangular(self) -> DataframeSplit:
        if len(set(self.columns)) != len(self.columns):
            raise ValueError("columns must be distinct")
        width = len(self.columns)
        # Two C-level passes over the rows: a Python loop costs more than the model on 1,000 rows.
        if set(map(type, self.data)) != {list} or set(map(len, self.data)) != {width}:
            index = next(i for i, v in enumerate(self.data) if not isinstance(v, list) or len(v) != width)
            raise ValueError(f"data[{index}] must be a list of {width} values, one per column")
        return self


@dataclass(frozen=True, slots=True)
class RequestTable:
    """A request's rows as the client sent them, before any model is known.

    ``field`` is the request field they came in (error messages name it). Either ``records``
    (one mapping per row) or ``values`` (one sequence per row, or a numeric ``[rows, columns]``
    array decoded from tensors) is set; ``names`` are the columns of ``values``, or None when
    the rows are in the model's feature order.
    """

    field: str
    format: str
    records: list[dict[str, Any]] | None = None
    names: list[str] | None = None
    values: Sequence[Sequence[Any]] | np.ndarray | None = None
    name_fields: list[str] | None = None
    """Where each of ``names`` came from (``dataframe_split.columns[2]``, ``inputs[1].name``), for errors."""
    tensor_name: str | None = None
    """Positional rows sent as one named tensor (Open Inference Protocol): the name the client gave."""
    datatypes: list[str] | None = None
    """Declared tensor datatypes, one per name (or one for the positional tensor), checked against the schema."""
    numbers_checked: bool = False
    """Every value is already known to be an int or a float (tensors validated against their datatype)."""

    def __len__(self) -> int:
        if self.records is not None:
            return len(self.records)
        return 0 if self.values is None else len(self.values)

    def value_rows(self) -> Sequence[Sequence[Any]]:
        """``values`` as rows of Python values (an array's one ``tolist()``; numpy is not imported here)."""
        if self.values is None:
            return []
        tolist = getattr(self.values, "tolist", None)
        if tolist is not None:
            listed: Sequence[Sequence[Any]] = tolist()
            return listed
        return self.values  # type: ignore[return-value]  # not an array: the rows themselves

    def as_records(self, feature_names: Sequence[str]) -> list[dict[str, Any]]:
        """One mapping per row (positional rows named after ``feature_names``)."""
        if self.records is not None:
            return self.records
        names = self.names if self.names is not None else list(feature_names)
        rows = self.value_rows()
        if self.names is None:
            for index, values in enumerate(rows):
                if len(values) != len(names):
                    raise UnprocessableError(
                        f"{self.field}[{index}] has {len(values)} values; the model takes {len(names)} "
                        f"features, in this order: {', '.join(names[:20])}",
                        code="invalid_features",
                        details=[{"row": index, "field": self.field, "message": "wrong number of values"}],
                    )
        return [dict(zip(names, values, strict=True)) for values in rows]


class PredictRequest(BaseModel):
    """What a client sends: rows in one of ``ROW_FIELDS``, or ``entity_id`` (+ ``features``), plus options."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    instances: list[Row | Values] | None = Field(
        None,
        min_length=1,
        max_length=MAX_ROWS,
        description="rows to score: each {feature: value}, or each a list of values in the model's feature "
        "order; capped by MAX_INSTANCES (413)",
    )
    dataframe_split: DataframeSplit | None = Field(
        None, description="MLflow's columnar format: {columns, data}; answered in MLflow's shape"
    )
    dataframe_records: list[Row] | None = Field(
        None,
        min_length=1,
        max_length=MAX_ROWS,
        description="MLflow's records format: [{column: value}]; answered in MLflow's shape",
    )
    inputs: (
        Annotated[dict[str, Annotated[list[Any], Field(max_length=MAX_ROWS)]], Field(max_length=MAX_COLUMNS)]
        | Annotated[list[Values], Field(max_length=MAX_ROWS)]
        | None
    ) = Field(
        None,
        description="MLflow's tensor input: {feature: [values]} (columns) or rows of values in the model's "
        "feature order; answered in MLflow's shape",
    )
    entity_id: str | None = Field(
        None, min_length=1, max_length=256, description="the entity whose online features fill the gaps"
    )
    features: Row | None = Field(
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
        given = [name for name in ROW_FIELDS if getattr(self, name) is not None]
        if self.features is not None:
            given.append("features")
        if len(given) > 1:
            raise ValueError(f"send rows in one field, not {' and '.join(given)}")
        if not given and self.entity_id is None:
            raise ValueError(
                "send 'instances', 'dataframe_split', 'dataframe_records' or 'inputs', "
                "or 'entity_id' with optional 'features'"
            )
        if self.instances is not None:
            kinds = {type(item) for item in self.instances}
            if len(kinds) > 1:
                raise ValueError(
                    "instances must be all objects (rows by feature name) or all arrays (rows of values in "
                    "the model's feature order), not a mix"
                )
        if isinstance(self.inputs, dict):
            lengths = {len(values) for values in self.inputs.values()}
            if not self.inputs or len(lengths) != 1 or 0 in lengths:
                raise ValueError(
                    "inputs as columns must name at least one feature, each with the same number of values"
                )
        elif self.inputs is not None and not self.inputs:
            raise ValueError("inputs must hold at least one row")
        return self

    @property
    def explain_options(self) -> ExplainOptions | None:
        """The explanation asked for, or None."""
        if self.explain is True:
            return DEFAULT_EXPLAIN
        return self.explain or None

    @cached_property
    def table(self) -> RequestTable:
        """The rows to score, before any online features are merged in."""
        if self.dataframe_split is not None:
            split = self.dataframe_split
            return RequestTable(
                "dataframe_split.data",
                "dataframe_split",
                names=split.columns,
                values=split.data,
                name_fields=[f"dataframe_split.columns[{i}]" for i in range(len(split.columns))],
            )
        if self.dataframe_records is not None:
            return RequestTable("dataframe_records", "dataframe_records", records=self.dataframe_records)
        if isinstance(self.inputs, dict):
            names = list(self.inputs)
            return RequestTable(
                "inputs",
                "inputs",
                names=names,
                values=list(zip(*self.inputs.values(), strict=True)),
                name_fields=[f"inputs.{name}" for name in names],
            )
        if self.inputs is not None:
            return RequestTable("inputs", "inputs", values=self.inputs)
        if self.instances is not None:
            if isinstance(self.instances[0], dict):
                return RequestTable("instances", "instances", records=self.instances)  # type: ignore[arg-type]
            return RequestTable("instances", "instances_tensor", values=self.instances)  # type: ignore[arg-type]
        return RequestTable("features", "features", records=[dict(self.features or {})])

    @property
    def mlflow_shaped(self) -> bool:
        """Whether the answer takes MLflow's shape (the request used one of MLflow's formats)."""
        return self.table.format in MLFLOW_FORMATS


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


class MlflowResponse(TypedDict, total=False):
    """The answer to a request in one of MLflow's formats.

    ``predictions`` is what ``mlflow models serve`` answers for a scikit-learn model: one label
    (classifiers) or value (regressors) per row, None for a row the serving rules removed. What
    MLflow does not return comes beside it: ``classes`` and ``probabilities`` (one list per row,
    in ``classes`` order) for classifiers, and ``annotations`` (one object per row: ``decision``,
    ``excluded``, ``fallback``, ``explanation``, ``item``) when any row has one. MLflow clients
    read ``predictions`` and ignore the rest.
    """

    predictions: list[Any]
    model: str
    version: int
    variant: str
    request_id: str
    cached: bool
    classes: list[str]
    probabilities: Any  # [rows][classes] floats (a numpy matrix on the columnar path; orjson writes it)
    annotations: list[dict[str, Any]]


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
