"""Rows by feature name in, ONNX feeds out; ONNX outputs in, predictions out.

Shared by online inference (a few JSON rows), batch (columns of a chunk) and the registry's
smoke tests, so that a model scores the same everywhere.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from mlambda.errors import UnprocessableError
from mlambda.schemas.registry import FeatureSchema, FeatureSpec, Signature

NUMPY_TYPES: dict[str, Any] = {
    "float32": np.float32,
    "float64": np.float64,
    "int64": np.int64,
    "int32": np.int32,
    "string": np.str_,
    "bool": np.bool_,
}
_FEATURE_INPUT_TYPES = {"float": np.float32, "int": np.int64, "string": np.str_, "bool": np.bool_}
FLOAT32_MAX = float(np.finfo(np.float32).max)
INT64_LIMIT = 2.0**63
"""Python ints a request carries must be below this in magnitude: they become int64 arrays, and the
prediction log (orjson) writes 64-bit integers only."""
INPUT_LIMITS: dict[str, float] = {
    "float32": FLOAT32_MAX,
    "float64": math.inf,
    "int64": INT64_LIMIT,
    "int32": 2.0**31,
}
"""Magnitude a value must stay within to be what it was once cast to the model input's type."""
MAX_REPORTED_PROBLEMS = 20
TRUE_CELLS = frozenset({"true", "1", "yes", "t"})
FALSE_CELLS = frozenset({"false", "0", "no", "f"})


def cell_value(spec: FeatureSpec, cell: str) -> tuple[Any, str | None]:
    """The feature value of a text cell (CSV), or the reason it is not one."""
    text = cell.strip()
    if spec.dtype == "string":
        return (cell, None) if text else (None, f"column '{spec.name}' is empty")
    if not text:
        return None, f"column '{spec.name}' is empty"
    if spec.dtype == "bool":
        lowered = text.lower()
        if lowered in TRUE_CELLS or lowered in FALSE_CELLS:
            return lowered in TRUE_CELLS, None
        return None, f"column '{spec.name}': {_shown(text)} is not true/false"
    try:
        value = float(text)
    except ValueError:
        return None, f"column '{spec.name}': {_shown(text)} is not a number"
    if not math.isfinite(value):
        return None, f"column '{spec.name}': {_shown(text)} is not finite"
    if spec.dtype == "int" and not value.is_integer():
        return None, f"column '{spec.name}': {_shown(text)} is not an integer"
    return value, None


def _shown(text: str) -> str:
    return repr(text if len(text) <= 40 else text[:37] + "...")


def _problem(row: int, field: str, message: str) -> dict[str, Any]:
    return {"row": row, "field": field, "message": message}


def input_limit(schema: FeatureSchema, spec: FeatureSpec) -> float:
    """The magnitude a numeric value of ``spec`` must stay within to survive the cast to its input."""
    if schema.mode == "tensor":
        return INPUT_LIMITS.get(schema.tensor_dtype or "float32", math.inf)
    return FLOAT32_MAX if spec.dtype == "float" else INT64_LIMIT


def _check_value(spec: FeatureSpec, value: Any, limit: float = math.inf) -> str | None:
    """Why ``value`` does not fit ``spec`` (fed to an input within ``limit`` in magnitude), or None."""
    if value is None:
        return "is missing (null)"
    if spec.dtype in ("float", "int"):
        if isinstance(value, bool) or not isinstance(value, int | float):
            return f"must be a number, got {type(value).__name__}"
        if isinstance(value, float) and not math.isfinite(value):
            return "must be finite (NaN and infinity are refused)"
        if spec.dtype == "int" and isinstance(value, float) and not value.is_integer():
            return "must be an integer"
        if isinstance(value, int) and not -INT64_LIMIT <= value < INT64_LIMIT:
            return "must be within the 64-bit integer range"
        if limit <= INT64_LIMIT:  # an integer input: [-limit, limit)
            if not -limit <= value < limit:
                return f"must be within the model input's integer range (magnitude below {limit:.0f})"
        elif abs(value) > limit:
            return f"must be at most {limit:.4g} in magnitude (what the model's input type holds)"
        return None
    if spec.dtype == "string":
        return None if isinstance(value, str) else f"must be a string, got {type(value).__name__}"
    return None if isinstance(value, bool) else f"must be true or false, got {type(value).__name__}"


def validate_rows(
    schema: FeatureSchema,
    rows: Sequence[Mapping[str, Any]],
    *,
    allow_extra: bool = False,
    field: str = "instances",
) -> None:
    """Raise UnprocessableError naming every offending row and field (missing, extra, type, NaN/inf,
    a magnitude the model's input type cannot hold, an int beyond 64 bits).

    ``field`` is the request field the rows came in (``instances``, ``dataframe_split.data``...).
    """
    problems: list[dict[str, Any]] = []
    expected = set(schema.names)
    limits = [(spec, input_limit(schema, spec)) for spec in schema.features]
    for index, row in enumerate(rows):
        for spec, limit in limits:
            if spec.name not in row:
                problems.append(_problem(index, spec.name, "is missing"))
                continue
            reason = _check_value(spec, row[spec.name], limit)
            if reason:
                problems.append(_problem(index, spec.name, reason))
        if not allow_extra:
            problems.extend(
                _problem(
                    index, name if len(name) <= 128 else f"{name[:125]}...", "is not a feature of this model"
                )
                for name in row
                if name not in expected
            )
        if len(problems) >= MAX_REPORTED_PROBLEMS:
            break
    if problems:
        first = problems[0]
        raise UnprocessableError(
            f"{field}[{first['row']}].{first['field']} {first['message']}",
            code="invalid_features",
            details=problems[:MAX_REPORTED_PROBLEMS],
        )


def rows_to_feed(schema: FeatureSchema, rows: Sequence[Mapping[str, Any]]) -> dict[str, np.ndarray]:
    """The ONNX feed for validated ``rows`` (call ``validate_rows`` first)."""
    names = schema.names
    if schema.mode == "tensor":
        dtype = NUMPY_TYPES[schema.tensor_dtype or "float32"]
        matrix = np.array([[row[name] for name in names] for row in rows], dtype=dtype)
        return {schema.tensor_input or "input": matrix}
    return {
        spec.name: np.array([[row[spec.name]] for row in rows], dtype=_FEATURE_INPUT_TYPES[spec.dtype])
        for spec in schema.features
    }


def columns_to_feed(schema: FeatureSchema, columns: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The ONNX feed for whole columns (batch scoring), in the schema's order and types."""
    if schema.mode == "tensor":
        dtype = NUMPY_TYPES[schema.tensor_dtype or "float32"]
        matrix = np.column_stack([np.asarray(columns[name], dtype=dtype) for name in schema.names])
        return {schema.tensor_input or "input": matrix}
    return {
        spec.name: np.asarray(columns[spec.name], dtype=_FEATURE_INPUT_TYPES[spec.dtype]).reshape(-1, 1)
        for spec in schema.features
    }


def probability_matrix(signature: Signature, outputs: Mapping[str, Any]) -> np.ndarray:
    """Class probabilities as an [n, classes] float array (ZipMap outputs converted)."""
    raw = outputs[signature.probability_output or ""]
    if isinstance(raw, np.ndarray):
        return raw.reshape(raw.shape[0], -1)
    labels = signature.class_labels or (list(raw[0].keys()) if raw else [])
    return np.array([[row[label] for label in labels] for row in raw], dtype=np.float32)


def output_columns(signature: Signature, outputs: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """Predictions as columns: ``label`` + ``proba_<class>`` for classifiers, ``value`` for regressors."""
    if signature.task == "regression":
        values = np.asarray(outputs[signature.value_output or ""], dtype=np.float64)
        return {"value": values.reshape(values.shape[0], -1)[:, 0]}
    probabilities = probability_matrix(signature, outputs)
    labels = signature.class_labels or list(range(probabilities.shape[1]))
    columns: dict[str, np.ndarray] = {"label": np.asarray(outputs[signature.label_output or ""]).ravel()}
    for index, label in enumerate(labels):
        columns[f"proba_{label}"] = probabilities[:, index].astype(np.float64)
    return columns


@dataclass(frozen=True, slots=True)
class PredictionColumns:
    """One run's predictions as columns: ``labels`` + ``probabilities`` (classifiers) or ``values``.

    What the columnar request path answers and logs without building an object per row;
    ``as_rows`` gives the per-row form (``{label, probabilities}`` or ``{value}``) where one is needed.
    """

    labels: np.ndarray | None = None
    probabilities: np.ndarray | None = None
    classes: list[str] | None = None
    values: np.ndarray | None = None

    def __len__(self) -> int:
        column = self.values if self.values is not None else self.labels
        return 0 if column is None else len(column)

    def take(self, index: Sequence[int] | slice) -> PredictionColumns:
        """The predictions of the rows at ``index``."""
        pick = index if isinstance(index, slice) else np.asarray(index, dtype=np.intp)
        if self.values is not None:
            return PredictionColumns(values=self.values[pick])
        assert self.labels is not None and self.probabilities is not None
        return PredictionColumns(
            labels=self.labels[pick], probabilities=self.probabilities[pick], classes=self.classes
        )

    def label_list(self) -> list[Any]:
        """One label (classifiers) or value (regressors) per row, as Python values."""
        column = self.values if self.values is not None else self.labels
        assert column is not None
        values: list[Any] = column.tolist()
        return values

    def as_rows(self) -> list[dict[str, Any]]:
        """One JSON-ready prediction per row: ``{label, probabilities}`` or ``{value}``.

        Arrays are turned into Python values with one ``tolist()`` each, not per element: this
        runs on every online request.
        """
        if self.values is not None:
            return [{"value": v} for v in self.values.tolist()]
        assert self.labels is not None and self.probabilities is not None
        keys = self.classes or []
        # Not strict: rows and labels come from the same run, and the strict check costs a third
        # of the conversion on a 1,000-row request.
        return [
            {"label": label, "probabilities": dict(zip(keys, row, strict=False))}
            for label, row in zip(self.labels.tolist(), self.probabilities.tolist(), strict=False)
        ]


def prediction_columns(signature: Signature, outputs: Mapping[str, Any]) -> PredictionColumns:
    """The model's outputs as ``PredictionColumns`` (probabilities as float32, as ONNX gives them)."""
    if signature.task == "regression":
        values = np.asarray(outputs[signature.value_output or ""], dtype=np.float64)
        return PredictionColumns(values=np.ascontiguousarray(values.reshape(values.shape[0], -1)[:, 0]))
    probabilities = probability_matrix(signature, outputs)
    labels = signature.class_labels or range(probabilities.shape[1])
    return PredictionColumns(
        labels=np.asarray(outputs[signature.label_output or ""]).ravel(),
        probabilities=probabilities,
        classes=[str(label) for label in labels],
    )


def predictions(signature: Signature, outputs: Mapping[str, Any]) -> list[dict[str, Any]]:
    """One JSON-ready prediction per row: ``{label, probabilities}`` or ``{value}``."""
    return prediction_columns(signature, outputs).as_rows()


def matches(expected: Mapping[str, Any], actual: Mapping[str, Any], *, tolerance: float = 1e-4) -> bool:
    """Whether a prediction equals a recorded one: labels exactly, numbers within ``tolerance``."""
    if "value" in expected:
        return math.isclose(float(expected["value"]), float(actual.get("value", math.nan)), abs_tol=tolerance)
    if expected.get("label") != actual.get("label"):
        return False
    want: Mapping[str, float] = expected.get("probabilities", {})
    got: Mapping[str, float] = actual.get("probabilities", {})
    return want.keys() == got.keys() and all(math.isclose(want[k], got[k], abs_tol=tolerance) for k in want)
