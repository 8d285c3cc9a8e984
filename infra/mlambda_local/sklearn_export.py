"""Fitted scikit-learn estimators and pipelines -> ONNX bytes the registry accepts.

Runs on the user's side (training notebooks, CI, the demo), never in a Lambda: the registry
only ever sees ONNX. Classifiers are exported without ZipMap, so probabilities come out as a
plain float tensor (faster to serve, and what the registry's signature reader expects).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

INPUT_NAME = "input"


def _classifiers(estimator: Any) -> list[Any]:
    """Every classifier in ``estimator`` that skl2onnx would wrap in a ZipMap (pipelines, unions, stacks)."""
    from sklearn.base import is_classifier

    found: list[Any] = []
    if is_classifier(estimator):
        found.append(estimator)
    for attribute in ("steps", "transformer_list", "transformers"):
        for part in getattr(estimator, attribute, None) or []:
            found.extend(_classifiers(part[1]))
    return found


def feature_names(estimator: Any) -> list[str] | None:
    """The column names the estimator was fitted on (when fitted on a DataFrame), else None."""
    names = getattr(estimator, "feature_names_in_", None)
    return [str(name) for name in names] if names is not None else None


def to_onnx(
    estimator: Any,
    n_features: int | None = None,
    *,
    input_name: str = INPUT_NAME,
    dtype: str = "float32",
    target_opset: int | None = None,
) -> bytes:
    """Serialised ONNX for a fitted ``estimator``: one ``[rows, n_features]`` tensor named ``input_name``.

    ``n_features`` defaults to the estimator's ``n_features_in_``; ``dtype`` is ``float32``
    (the default, what most converters support) or ``float64``.
    """
    from skl2onnx import convert_sklearn
    from skl2onnx.common.data_types import DoubleTensorType, FloatTensorType

    width = n_features if n_features is not None else getattr(estimator, "n_features_in_", None)
    if width is None:
        raise ValueError("pass n_features: the estimator does not record n_features_in_ (is it fitted?)")
    tensor = {"float32": FloatTensorType, "float64": DoubleTensorType}.get(dtype)
    if tensor is None:
        raise ValueError(f"dtype must be float32 or float64, got {dtype!r}")
    options = {id(classifier): {"zipmap": False} for classifier in _classifiers(estimator)}
    model = convert_sklearn(
        estimator,
        initial_types=[(input_name, tensor([None, int(width)]))],
        options=options or None,
        target_opset=target_opset,
    )
    return bytes(model.SerializeToString())


def save_onnx(estimator: Any, path: str, n_features: int | None = None, **kwargs: Any) -> str:
    """Write ``to_onnx(estimator)`` to ``path``; returns the path."""
    from pathlib import Path

    Path(path).write_bytes(to_onnx(estimator, n_features, **kwargs))
    return path


def snake_case(names: Sequence[str]) -> list[str]:
    """Column names as safe feature names (``"mean radius"`` -> ``"mean_radius"``)."""
    import re

    return [re.sub(r"[^0-9a-zA-Z]+", "_", name).strip("_").lower() for name in names]
