"""The Open Inference Protocol (V2) on the inference service: same routing, rules, log and explanations.

Tensors in, a ``RequestTable`` out, then ``InferenceService.serve`` as for every protocol; the
answer's columns (or rows, when rules or explanations went per row) out as tensors. What the
protocol's bodies look like and how features map to tensors: ``mlambda.schemas.open_inference``.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from itertools import chain
from typing import Annotated, Any

import numpy as np
from pydantic import Strict, TypeAdapter, ValidationError

import mlambda
from mlambda.errors import NotFoundError, UnprocessableError, UpstreamError
from mlambda.schemas.inference import DEFAULT_EXPLAIN, RequestTable
from mlambda.schemas.open_inference import (
    DATATYPE_OF_FEATURE,
    DATATYPE_OF_TENSOR,
    FLOAT_TYPES,
    INTEGER_TYPES,
    NUMERIC_TYPES,
    InferInput,
    InferRequest,
    InferResponse,
    MetadataTensor,
    OutputTensor,
)
from mlambda.schemas.registry import ModelVersion
from mlambda.services.inference.service import InferenceService, Served

EXPLANATION_KEYS = ("method", "exact", "output", "covers", "coalitions", "reference_rows")
"""What one request's explanations share, answered once in the response parameters."""
_ELEMENTS: dict[str, TypeAdapter[list[Any]]] = {
    "float": TypeAdapter(list[Annotated[float, Strict()]]),
    "int": TypeAdapter(list[Annotated[int, Strict()]]),
    "BOOL": TypeAdapter(list[Annotated[bool, Strict()]]),
    "BYTES": TypeAdapter(list[Annotated[str, Strict()]]),
}
"""What each kind of tensor's data may hold (JSON numbers for FP, integers for INT and UINT)."""
_VERSION_PATH = re.compile(r"^(?:v?(\d{1,9})|([A-Za-z][A-Za-z0-9_-]{0,31}))$")


def version_ref(version: str | None) -> str | None:
    """The registry ref a ``/versions/{v}`` path names: ``3`` or ``v3`` -> ``v3``, an alias as is."""
    if version is None:
        return None
    match = _VERSION_PATH.match(version)
    if match is None:
        raise NotFoundError(
            f"no version '{version[:64]}'", code="version_not_found", details={"version": version[:64]}
        )
    return f"v{int(match.group(1))}" if match.group(1) else match.group(2)


def server_metadata() -> dict[str, Any]:
    """``GET /v2``: the server's name, version and extensions (none)."""
    return {"name": "mlambda", "version": mlambda.__version__, "extensions": []}


def _flat(tensor: InferInput, field: str) -> list[Any]:
    """The tensor's data flat in row-major order, its values checked against its datatype and shape."""
    data = tensor.data
    while data and isinstance(data[0], list):
        if not all(isinstance(item, list) for item in data):
            raise UnprocessableError(
                f"{field}.data: nested lists must all be lists at the same depth",
                code="invalid_tensor",
                details=[{"field": f"{field}.data", "message": "ragged nesting"}],
            )
        data = list(chain.from_iterable(data))
    expected = int(np.prod(tensor.shape))
    if len(data) != expected:
        raise UnprocessableError(
            f"{field}.shape: {tensor.shape} holds {expected} values, and data has {len(data)}",
            code="shape_mismatch",
            details=[{"field": f"{field}.shape", "message": f"{expected} values expected, {len(data)} sent"}],
        )
    datatype = tensor.datatype
    kind = "float" if datatype in FLOAT_TYPES else "int" if datatype in INTEGER_TYPES else datatype
    try:
        _ELEMENTS[kind].validate_python(data)  # in Rust: ints and floats for FP, ints for INT, no bools
    except ValidationError as exc:
        index = exc.errors()[0]["loc"][0]
        raise UnprocessableError(
            f"{field}.data[{index}]: {datatype} data holds {type(data[int(index)]).__name__} values",
            code="wrong_datatype",
            details=[{"field": f"{field}.data[{index}]", "message": f"not a {datatype} value"}],
        ) from exc
    if datatype.startswith("UINT") and data and min(data) < 0:
        raise UnprocessableError(
            f"{field}.data: {datatype} data holds negative values",
            code="wrong_datatype",
            details=[{"field": f"{field}.data", "message": "negative value in unsigned data"}],
        )
    return data


def table_of(request: InferRequest) -> RequestTable:
    """The request's tensors as rows: one ``[rows, features]`` tensor, or one ``[rows]`` tensor per feature."""
    inputs = request.inputs
    if len(inputs) == 1 and len(inputs[0].shape) == 2 and inputs[0].shape[1] != 1:
        tensor = inputs[0]
        flat = _flat(tensor, "inputs[0]")
        rows, width = tensor.shape
        return RequestTable(
            "inputs",
            "open_inference",
            values=[flat[i * width : (i + 1) * width] for i in range(rows)],
            tensor_name=tensor.name,
            datatypes=[tensor.datatype],
            numbers_checked=tensor.datatype in NUMERIC_TYPES,
        )
    columns = []
    for index, tensor in enumerate(inputs):
        field = f"inputs[{index}]"
        if len(tensor.shape) == 2 and tensor.shape[1] != 1:
            raise UnprocessableError(
                f"{field}.shape: send one [rows, features] tensor alone, or one [rows] tensor per feature",
                code="shape_mismatch",
                details=[{"field": f"{field}.shape", "message": "a matrix among per-feature inputs"}],
            )
        if tensor.shape[0] != inputs[0].shape[0]:
            raise UnprocessableError(
                f"{field}.shape: {tensor.shape[0]} rows, and inputs[0] has {inputs[0].shape[0]}",
                code="shape_mismatch",
                details=[{"field": f"{field}.shape", "message": "inputs disagree on the number of rows"}],
            )
        columns.append(_flat(tensor, field))
    return RequestTable(
        "inputs",
        "open_inference",
        names=[tensor.name for tensor in inputs],
        values=list(zip(*columns, strict=True)),
        name_fields=[f"inputs[{i}].name" for i in range(len(inputs))],
        datatypes=[tensor.datatype for tensor in inputs],
        numbers_checked=all(tensor.datatype in NUMERIC_TYPES for tensor in inputs),
    )


def _tensor(name: str, datatype: str, shape: list[int], data: Any) -> OutputTensor:
    return OutputTensor(name=name, datatype=datatype, shape=shape, data=data)


def _label_datatype(labels: Sequence[Any] | np.ndarray) -> str:
    if isinstance(labels, np.ndarray):
        return "INT64" if labels.dtype.kind in "iu" else "BYTES"
    return (
        "INT64"
        if all(isinstance(label, int) and not isinstance(label, bool) for label in labels)
        else "BYTES"
    )


def _outputs(served: Served) -> tuple[list[OutputTensor], dict[str, Any]]:
    """The answer as tensors, and the response parameters (classes, fallback, explanation method)."""
    signature = served.version.signature
    parameters: dict[str, Any] = {"variant": served.variant, "cached": served.cached}
    columns = served.columns
    if columns is not None:
        rows = len(columns)
        if columns.values is not None:
            return [_tensor("value", "FP64", [rows], columns.values)], parameters
        assert columns.labels is not None and columns.probabilities is not None
        labels = columns.labels if columns.labels.dtype.kind in "iu" else columns.labels.tolist()
        parameters["classes"] = columns.classes
        return [
            _tensor("label", _label_datatype(columns.labels), [rows], labels),
            _tensor(
                "probabilities", "FP32", list(columns.probabilities.shape), columns.probabilities.ravel()
            ),
        ], parameters
    answers = served.rows or []
    fallbacks = {row["fallback"] for row in answers if "fallback" in row}
    if fallbacks:
        parameters["fallback"] = sorted(fallbacks)
    outputs: list[OutputTensor]
    rows = len(answers)
    try:
        if signature.task == "regression":
            outputs = [_tensor("value", "FP64", [rows], [float(row["value"]) for row in answers])]
        else:
            labels = [row["label"] for row in answers]
            classes = [str(label) for label in signature.class_labels or []] or list(
                answers[0]["probabilities"]
            )
            parameters["classes"] = classes
            matrix = [float(row["probabilities"][c]) for row in answers for c in classes]
            outputs = [
                _tensor("label", _label_datatype(labels), [rows], labels),
                _tensor("probabilities", "FP32", [rows, len(classes)], matrix),
            ]
    except (KeyError, TypeError, ValueError, IndexError) as exc:
        raise UpstreamError(
            "the endpoint's fallback answer cannot be written as the model's output tensors",
            code="fallback_not_tensor",
        ) from exc
    explained: list[dict[str, Any]] = [row.get("explanation") or {} for row in answers]
    if rows and all(explained):
        first = explained[0]
        names = list(first["attributions"])
        method = {key: first[key] for key in EXPLANATION_KEYS if key in first}
        method["features"] = names
        if "class" in first:
            method["classes"] = [e["class"] for e in explained]
        parameters["explanation"] = method
        outputs += [
            _tensor(
                "attributions",
                "FP64",
                [rows, len(names)],
                [e["attributions"][n] for e in explained for n in names],
            ),
            _tensor("baseline", "FP64", [rows], [e["baseline"] for e in explained]),
            _tensor("explained_value", "FP64", [rows], [e["value"] for e in explained]),
        ]
    return outputs, parameters


class OpenInference:
    """``/v2/...``: the Open Inference Protocol's model routes, served by ``InferenceService``."""

    def __init__(self, inference: InferenceService) -> None:
        self._inference = inference

    def infer(self, model: str, version: str | None, request: InferRequest) -> InferResponse:
        """``POST /v2/models/{name}[/versions/{v}]/infer``: the traffic split, or the version named."""
        options = request.parameters.explain
        served = self._inference.serve(
            model,
            table_of(request),
            version_ref=version_ref(version),
            request_id=request.id,
            explain=None if options is False else DEFAULT_EXPLAIN if options is True else options,
        )
        outputs, parameters = _outputs(served)
        if request.outputs is not None:
            by_name = {tensor["name"]: tensor for tensor in outputs}
            wanted = []
            for index, requested in enumerate(request.outputs):
                if requested.name not in by_name:
                    raise UnprocessableError(
                        f"outputs[{index}].name: this answer has no output '{requested.name}' "
                        f"(it has: {', '.join(by_name)})",
                        code="unknown_output",
                        details=[{"field": f"outputs[{index}].name", "message": "no such output"}],
                    )
                wanted.append(by_name[requested.name])
            outputs = wanted
        return InferResponse(
            model_name=model,
            model_version=str(served.version.version),
            id=served.request_id,
            parameters=parameters,
            outputs=outputs,
        )

    def metadata(self, model: str, version: str | None) -> dict[str, Any]:
        """``GET /v2/models/{name}[/versions/{v}]``: the inputs it takes and the outputs it gives."""
        served = self._inference.version_for(model, version_ref(version))
        return {
            "name": model,
            "versions": [str(served.version)],
            "platform": "onnxruntime_onnx",
            "inputs": _input_metadata(served),
            "outputs": _output_metadata(served),
            "parameters": {"features": served.feature_schema.names},
        }

    def ready(self, model: str, version: str | None) -> dict[str, Any]:
        """``GET /v2/models/{name}[/versions/{v}]/ready``: the version resolves and its model loads."""
        self._inference.load(self._inference.version_for(model, version_ref(version)))
        return {"name": model, "ready": True}


def _input_metadata(version: ModelVersion) -> list[MetadataTensor]:
    schema = version.feature_schema
    if schema.mode == "tensor":
        return [
            MetadataTensor(
                name=schema.tensor_input or "input",
                datatype=DATATYPE_OF_TENSOR.get(schema.tensor_dtype or "float32", "FP32"),
                shape=[-1, len(schema.names)],
            )
        ]
    return [
        MetadataTensor(name=spec.name, datatype=DATATYPE_OF_FEATURE[spec.dtype], shape=[-1])
        for spec in schema.features
    ]


def _output_metadata(version: ModelVersion) -> list[MetadataTensor]:
    signature = version.signature
    if signature.task == "regression":
        return [MetadataTensor(name="value", datatype="FP64", shape=[-1])]
    labels = signature.class_labels or []
    numeric = all(isinstance(label, int) and not isinstance(label, bool) for label in labels)
    return [
        MetadataTensor(name="label", datatype="INT64" if numeric else "BYTES", shape=[-1]),
        MetadataTensor(name="probabilities", datatype="FP32", shape=[-1, len(labels) or -1]),
    ]
