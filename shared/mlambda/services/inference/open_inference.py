"""The Open Inference Protocol (V2) on the inference service: same routing, rules, log and explanations.

Tensors in, a ``RequestTable`` out, then ``InferenceService.serve`` as for every protocol; the
answer's columns (or rows, when rules or explanations went per row) out as tensors. What the
protocol's bodies look like and how features map to tensors: ``mlambda.schemas.open_inference``.

Tensor data comes as JSON or, with the binary tensor data extension, as bytes after the JSON
header (``split_body``): numeric tensors of either kind become one numpy block (``np.frombuffer``
for bytes: no parse at all), which the columnar path scores and logs as it is. The body is
checked as an attacker would write it: the header's length and every ``binary_data_size`` must
account for the body exactly (a lie is a 400 naming the header or the input), each tensor's
bytes must be its shape times its datatype's size (422 ``shape_mismatch``), ``BOOL`` bytes 0 or
1 and ``BYTES`` elements framed within their tensor and UTF-8; sizes are Python integers (no
overflow) and every count is bounded by the bytes actually sent or by ``max_instances``.
"""

from __future__ import annotations

import math
import re
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import chain
from typing import Annotated, Any

import numpy as np
from pydantic import Strict, TypeAdapter, ValidationError

import mlambda
from mlambda.errors import (
    InvalidInputError,
    NotFoundError,
    PayloadTooLargeError,
    UnprocessableError,
    UnsupportedMediaTypeError,
    UpstreamError,
)
from mlambda.schemas.inference import DEFAULT_EXPLAIN, RequestTable
from mlambda.schemas.open_inference import (
    BINARY_DATA_SIZE,
    BINARY_DTYPES,
    DATATYPE_OF_FEATURE,
    DATATYPE_OF_TENSOR,
    FLOAT_TYPES,
    INFERENCE_HEADER,
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
_LENGTH = re.compile(r"^[0-9]{1,12}$")
_INTEGER_RANGES = {
    datatype: (int(np.iinfo(BINARY_DTYPES[datatype]).min), int(np.iinfo(BINARY_DTYPES[datatype]).max))
    for datatype in INTEGER_TYPES
}
"""What each integer datatype holds (JSON integers are unbounded)."""
_ELEMENT_LENGTH = struct.Struct("<I")


@dataclass(frozen=True, slots=True)
class BinaryInferResponse:
    """An answer with binary outputs: the JSON header, then each binary output's bytes in order."""

    header: InferResponse
    chunks: list[bytes]


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
    """``GET /v2``: the server's name, version and extensions (Triton's name for the binary one)."""
    return {"name": "mlambda", "version": mlambda.__version__, "extensions": ["binary_tensor_data"]}


def _binary_error(field: str, message: str) -> InvalidInputError:
    return InvalidInputError(
        f"{field}: {message}", code="invalid_binary_data", details=[{"field": field, "message": message}]
    )


def split_body(
    body: bytes | str, lengths: Sequence[str], *, delivered_as_bytes: bool
) -> tuple[bytes | str, memoryview | None]:
    """The JSON header and the binary tensor data after it, or the body and None when it is all JSON.

    ``lengths`` are the request's ``Inference-Header-Content-Length`` values; ``delivered_as_bytes``
    whether the body reached the function as bytes (API Gateway base64-encodes only its binary
    media types: any other body is UTF-8 text, whose bytes cannot be trusted). 400
    ``invalid_binary_data`` for a header that does not fit the body, 415 for binary data that
    came as text.
    """
    if not lengths:
        return body, None
    if len(lengths) > 1:
        raise _binary_error(INFERENCE_HEADER, f"sent {len(lengths)} times; send it once")
    if not delivered_as_bytes:
        raise UnsupportedMediaTypeError(
            f"binary tensor data ({INFERENCE_HEADER}) must be sent with Content-Type: "
            "application/octet-stream: API Gateway passes any other body as text, which does not keep bytes",
            details=[{"field": "Content-Type", "message": "application/octet-stream for binary tensor data"}],
        )
    value = lengths[0].strip()
    if not _LENGTH.match(value):
        raise _binary_error(INFERENCE_HEADER, f"{value[:32]!r} is not a byte count")
    raw = body if isinstance(body, bytes) else body.encode()
    length = int(value)
    if length == 0:
        raise _binary_error(INFERENCE_HEADER, "0: a body without its JSON header is not supported")
    if length > len(raw):
        raise _binary_error(INFERENCE_HEADER, f"{length} bytes of JSON, and the body is {len(raw)} bytes")
    return raw[:length], memoryview(raw)[length:]


def _binary_tensors(request: InferRequest, binary: memoryview | None) -> dict[int, np.ndarray | list[str]]:
    """The inputs sent as bytes, by position: every size checked against the body before any is decoded."""
    declared = [(index, tensor) for index, tensor in enumerate(request.inputs) if tensor.binary]
    if binary is None:
        if declared:
            index = declared[0][0]
            raise _binary_error(
                f"inputs[{index}].parameters.{BINARY_DATA_SIZE}",
                f"declared, and no binary data follows the JSON (no {INFERENCE_HEADER} header)",
            )
        return {}
    total = len(binary)
    if not declared:
        raise _binary_error(
            INFERENCE_HEADER,
            f"{total} bytes follow the JSON header, and no input declares {BINARY_DATA_SIZE}",
        )
    spans: list[tuple[int, InferInput, int, int]] = []
    offset = 0
    for index, tensor in declared:
        field = f"inputs[{index}].parameters.{BINARY_DATA_SIZE}"
        size = (tensor.parameters or {})[BINARY_DATA_SIZE]
        if type(size) is not int or size < 0:
            raise _binary_error(field, f"{str(size)[:32]!r} is not a byte count (an integer, 0 or more)")
        if size > total - offset:
            raise _binary_error(
                field,
                f"{size} bytes declared, and {total - offset} remain after the JSON header"
                + (" and the inputs before it" if offset else ""),
            )
        spans.append((index, tensor, offset, offset + size))
        offset += size
    if offset != total:
        raise _binary_error(
            INFERENCE_HEADER,
            f"{total - offset} bytes follow the last input's binary data: the declared sizes "
            f"({offset} bytes) must account for the {total} bytes after the JSON header",
        )
    return {
        index: _decoded(tensor, binary[start:stop], f"inputs[{index}]")
        for index, tensor, start, stop in spans
    }


def _decoded(tensor: InferInput, chunk: memoryview, field: str) -> np.ndarray | list[str]:
    """One tensor's bytes as a flat array (``BYTES``: a list of strings), checked against its shape and datatype."""
    count = math.prod(tensor.shape)
    if tensor.datatype == "BYTES":
        return _byte_elements(chunk, count, tensor.shape, field)
    dtype = np.dtype(BINARY_DTYPES[tensor.datatype])
    expected = count * dtype.itemsize
    if len(chunk) != expected:
        raise UnprocessableError(
            f"{field}.shape: {tensor.shape} of {tensor.datatype} is {expected} bytes, "
            f"and {BINARY_DATA_SIZE} is {len(chunk)}",
            code="shape_mismatch",
            details=[{"field": f"{field}.shape", "message": f"{expected} bytes expected, {len(chunk)} sent"}],
        )
    array = np.frombuffer(chunk, dtype=dtype)
    if tensor.datatype == "BOOL":
        bad = np.flatnonzero(array > 1)
        if bad.size:
            raise UnprocessableError(
                f"{field}.data[{int(bad[0])}]: BOOL data holds the byte {int(array[bad[0]])} (0 or 1 only)",
                code="wrong_datatype",
                details=[{"field": f"{field}.data[{int(bad[0])}]", "message": "not a BOOL value"}],
            )
        return array.view(np.bool_)
    return array


def _byte_elements(chunk: memoryview, count: int, shape: list[int], field: str) -> list[str]:
    """``BYTES`` elements (a 4-byte little-endian length, then the bytes), each UTF-8 text."""
    values: list[str] = []
    position, end = 0, len(chunk)
    size_field = f"{field}.parameters.{BINARY_DATA_SIZE}"
    while position < end and len(values) <= count:
        if end - position < _ELEMENT_LENGTH.size:
            raise _binary_error(
                size_field, f"BYTES element {len(values)} is cut short: {end - position} bytes of its length"
            )
        (length,) = _ELEMENT_LENGTH.unpack_from(chunk, position)
        position += _ELEMENT_LENGTH.size
        if length > end - position:
            raise _binary_error(
                size_field,
                f"BYTES element {len(values)} declares {length} bytes, and {end - position} remain",
            )
        try:
            values.append(str(chunk[position : position + length], "utf-8"))
        except UnicodeDecodeError as exc:
            raise UnprocessableError(
                f"{field}.data[{len(values)}]: BYTES data holds bytes that are not UTF-8 text",
                code="wrong_datatype",
                details=[{"field": f"{field}.data[{len(values)}]", "message": "not UTF-8 text"}],
            ) from exc
        position += length
    if len(values) != count or position != end:
        raise _shape_mismatch(
            field, shape, count, "its binary data", "more" if position != end else len(values)
        )
    return values


def _shape_mismatch(
    field: str, shape: Any, expected: int, source: str, sent: int | str
) -> UnprocessableError:
    """422 ``shape_mismatch``: the shape's count of values is not what ``source`` holds."""
    return UnprocessableError(
        f"{field}.shape: {shape} holds {expected} values, and {source} has {sent}",
        code="shape_mismatch",
        details=[{"field": f"{field}.shape", "message": f"{expected} values expected, {sent} sent"}],
    )


def _flat(tensor: InferInput, field: str) -> list[Any]:
    """The tensor's data flat in row-major order, its values checked against its datatype and shape."""
    data = tensor.data or []
    while data and isinstance(data[0], list):
        if not all(isinstance(item, list) for item in data):
            raise UnprocessableError(
                f"{field}.data: nested lists must all be lists at the same depth",
                code="invalid_tensor",
                details=[{"field": f"{field}.data", "message": "ragged nesting"}],
            )
        data = list(chain.from_iterable(data))
    expected = math.prod(tensor.shape)  # Python integers: numpy's product wraps around past 2**63
    if len(data) != expected:
        raise _shape_mismatch(field, tensor.shape, expected, "data", len(data))
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
    if kind == "int" and data:
        low, high = _INTEGER_RANGES[datatype]
        smallest, largest = min(data), max(data)
        if smallest < low or largest > high:
            raise UnprocessableError(
                f"{field}.data: {datatype} data holds {smallest if smallest < low else largest}, "
                f"outside {datatype}'s range [{low}, {high}]",
                code="wrong_datatype",
                details=[{"field": f"{field}.data", "message": f"a value outside {datatype}'s range"}],
            )
    return data


def _numeric(data: list[Any] | np.ndarray, datatype: str) -> np.ndarray | None:
    """A numeric tensor's checked values as an array (integers kept exact as int64), else None."""
    if isinstance(data, np.ndarray):
        return data if data.dtype.kind in "fiu" else None
    if datatype not in NUMERIC_TYPES:
        return None
    try:
        return np.fromiter(data, dtype=np.float64 if datatype in FLOAT_TYPES else np.int64, count=len(data))
    except OverflowError:  # UINT64 values past int64
        return np.fromiter(data, dtype=np.float64, count=len(data))


def _rows_of(data: list[Any] | np.ndarray, rows: int, width: int) -> list[Any]:
    if isinstance(data, np.ndarray):
        listed: list[Any] = data.reshape(rows, width).tolist()
        return listed
    return [data[i * width : (i + 1) * width] for i in range(rows)]


def table_of(request: InferRequest, binary: memoryview | None = None) -> RequestTable:
    """The request's tensors as rows: one ``[rows, features]`` tensor, or one ``[rows]`` tensor per feature.

    ``binary`` is the body after the JSON header (the binary extension). Numeric tensors become
    one array block, whether they came as bytes or as JSON numbers (one conversion of the flat
    list: no list per row); other datatypes stay Python values.
    """
    decoded = _binary_tensors(request, binary)
    inputs = request.inputs
    if len(inputs) == 1 and len(inputs[0].shape) == 2 and inputs[0].shape[1] != 1:
        tensor = inputs[0]
        rows, width = tensor.shape
        if width == 0:
            raise UnprocessableError(
                "inputs[0].shape: a [rows, 0] tensor carries no features",
                code="shape_mismatch",
                details=[{"field": "inputs[0].shape", "message": "no features"}],
            )
        data = decoded[0] if 0 in decoded else _flat(tensor, "inputs[0]")
        numeric = _numeric(data, tensor.datatype)
        return RequestTable(
            "inputs",
            "open_inference",
            values=_rows_of(data, rows, width) if numeric is None else numeric.reshape(rows, width),
            tensor_name=tensor.name,
            datatypes=[tensor.datatype],
            numbers_checked=tensor.datatype in NUMERIC_TYPES,
        )
    columns: list[list[Any] | np.ndarray] = []
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
        columns.append(decoded[index] if index in decoded else _flat(tensor, field))
    arrays = [
        array
        for column, tensor in zip(columns, inputs, strict=True)
        if (array := _numeric(column, tensor.datatype)) is not None
    ]
    values: np.ndarray | list[tuple[Any, ...]]
    if len(arrays) == len(columns):
        values = np.column_stack(arrays)
    else:
        values = list(zip(*(c.tolist() if isinstance(c, np.ndarray) else c for c in columns), strict=True))
    return RequestTable(
        "inputs",
        "open_inference",
        names=[tensor.name for tensor in inputs],
        values=values,
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


def _output_bytes(tensor: OutputTensor) -> bytes:
    """An output tensor's data as the binary extension writes it (``BYTES``: length-prefixed UTF-8)."""
    data = tensor["data"]
    if tensor["datatype"] == "BYTES":
        items = data.tolist() if isinstance(data, np.ndarray) else data
        encoded = [str(item).encode() for item in items]
        return b"".join(_ELEMENT_LENGTH.pack(len(item)) + item for item in encoded)
    return np.ascontiguousarray(data, dtype=BINARY_DTYPES[tensor["datatype"]]).tobytes()


class OpenInference:
    """``/v2/...``: the Open Inference Protocol's model routes, served by ``InferenceService``."""

    def __init__(self, inference: InferenceService) -> None:
        self._inference = inference

    def infer(
        self,
        model: str,
        version: str | None,
        request: InferRequest,
        *,
        binary: memoryview | None = None,
        binary_outputs: bool = False,
    ) -> InferResponse | BinaryInferResponse:
        """``POST /v2/models/{name}[/versions/{v}]/infer``: the traffic split, or the version named.

        ``binary`` is the body after the JSON header; ``binary_outputs`` whether the answer can be
        bytes (the caller's first ``Accept`` type is binary: else API Gateway would hand it the
        base64 text). Outputs asked for as binary data (``binary_data_output``, ``binary_data``)
        are then written as bytes after the JSON; without it they are JSON, which every client of
        the protocol reads.
        """
        limit = self._inference.max_instances
        for index, tensor in enumerate(request.inputs):
            if tensor.shape[0] > limit:  # before anything is decoded or built
                raise PayloadTooLargeError(
                    f"inputs[{index}].shape: {tensor.shape[0]} rows, over the limit of {limit} per request",
                    code="too_many_instances",
                    details={"instances": tensor.shape[0], "limit": limit, "field": f"inputs[{index}].shape"},
                )
        options = request.parameters.explain
        served = self._inference.serve(
            model,
            table_of(request, binary),
            version_ref=version_ref(version),
            request_id=request.id,
            explain=None if options is False else DEFAULT_EXPLAIN if options is True else options,
        )
        outputs, parameters = _outputs(served)
        default = request.parameters.binary_data_output
        as_binary = [default] * len(outputs)
        if request.outputs is not None:
            by_name = {tensor["name"]: tensor for tensor in outputs}
            wanted = []
            as_binary = []
            for index, requested in enumerate(request.outputs):
                if requested.name not in by_name:
                    raise UnprocessableError(
                        f"outputs[{index}].name: this answer has no output '{requested.name}' "
                        f"(it has: {', '.join(by_name)})",
                        code="unknown_output",
                        details=[{"field": f"outputs[{index}].name", "message": "no such output"}],
                    )
                wanted.append(by_name[requested.name])
                as_binary.append(default if requested.binary_data is None else requested.binary_data)
            outputs = wanted
        answer = InferResponse(
            model_name=model,
            model_version=str(served.version.version),
            id=served.request_id,
            parameters=parameters,
            outputs=outputs,
        )
        if not (binary_outputs and any(as_binary)):
            return answer
        chunks = []
        written: list[OutputTensor] = []
        for output, to_bytes in zip(outputs, as_binary, strict=True):
            if not to_bytes:
                written.append(output)
                continue
            chunk = _output_bytes(output)
            chunks.append(chunk)
            written.append(
                OutputTensor(
                    name=output["name"],
                    datatype=output["datatype"],
                    shape=output["shape"],
                    parameters={BINARY_DATA_SIZE: len(chunk)},
                )
            )
        answer["outputs"] = written
        return BinaryInferResponse(answer, chunks)

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
