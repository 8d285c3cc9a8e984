"""The Open Inference Protocol (KServe / Triton "V2") REST bodies, as the predict function serves them.

``POST /v2/models/{name}[/versions/{v}]/infer`` takes ``InferRequest``: named input tensors, each
with a ``shape``, a ``datatype`` and its ``data`` (flat in row-major order, or nested). A model's
features arrive either as **one tensor** named after the model's ONNX input, shape ``[rows,
features]`` in the feature order ``GET /v2/models/{name}`` lists, or as **one tensor per
feature**, named after the feature, shape ``[rows]`` (or ``[rows, 1]``). Request ``parameters``
understood: ``explain`` (true or ``ExplainOptions``); others are ignored, as the protocol allows.

The answer (``InferResponse``) carries ``label`` (``INT64`` or ``BYTES``) and ``probabilities``
(``FP32``, ``[rows, classes]``, classes in ``parameters.classes``) for classifiers, ``value``
(``FP64``) for regressors, and with ``explain``: ``attributions`` (``FP64``, ``[rows,
features]``), ``baseline`` and ``explained_value`` (``FP64``, ``[rows]``). ``outputs`` in the
request picks among them. Errors are mlambda's ``{code, message, details}`` plus the protocol's
``error`` (the message), so clients of either read them.

The **binary tensor data extension** (Triton's and KServe's, tritonclient's default): a tensor
may carry ``"parameters": {"binary_data_size": n}`` instead of ``data``, its ``n`` bytes
(little-endian, row-major; ``BOOL`` one byte 0 or 1; ``BYTES`` each element a 4-byte length and
its UTF-8 bytes) following the JSON header in the body, in the inputs' order, the header's length
in the ``Inference-Header-Content-Length`` HTTP header. ``binary_data_output`` (request
parameters) or ``binary_data`` (per requested output) asks for outputs the same way.
"""

from __future__ import annotations

from typing import Any, Literal, NotRequired

from pydantic import BaseModel, ConfigDict, Field, StrictBool, model_validator
from typing_extensions import TypedDict

from mlambda.schemas.bounds import JsonObject
from mlambda.schemas.inference import MAX_ROWS, ExplainOptions

Datatype = Literal[
    "BOOL",
    "UINT8",
    "UINT16",
    "UINT32",
    "UINT64",
    "INT8",
    "INT16",
    "INT32",
    "INT64",
    "FP16",
    "FP32",
    "FP64",
    "BYTES",
]
INTEGER_TYPES = frozenset(("UINT8", "UINT16", "UINT32", "UINT64", "INT8", "INT16", "INT32", "INT64"))
FLOAT_TYPES = frozenset(("FP16", "FP32", "FP64"))
NUMERIC_TYPES = FLOAT_TYPES | INTEGER_TYPES
ACCEPTED_FOR_FEATURE: dict[str, frozenset[str]] = {
    "float": FLOAT_TYPES | INTEGER_TYPES,
    "int": INTEGER_TYPES,
    "string": frozenset(("BYTES",)),
    "bool": frozenset(("BOOL",)),
}
"""Which tensor datatypes a feature of each schema dtype takes."""
DATATYPE_OF_FEATURE = {"float": "FP32", "int": "INT64", "string": "BYTES", "bool": "BOOL"}
DATATYPE_OF_TENSOR = {
    "float32": "FP32",
    "float64": "FP64",
    "int64": "INT64",
    "int32": "INT32",
    "string": "BYTES",
    "bool": "BOOL",
}
OUTPUT_NAMES = ("label", "probabilities", "value", "attributions", "baseline", "explained_value")
BINARY_DTYPES: dict[str, str] = {
    "BOOL": "u1",
    "UINT8": "u1",
    "UINT16": "<u2",
    "UINT32": "<u4",
    "UINT64": "<u8",
    "INT8": "i1",
    "INT16": "<i2",
    "INT32": "<i4",
    "INT64": "<i8",
    "FP16": "<f2",
    "FP32": "<f4",
    "FP64": "<f8",
}
"""Each fixed-size datatype's bytes in the binary extension (``BOOL``: one byte, 0 or 1); ``BYTES`` is framed per element."""
INFERENCE_HEADER = "Inference-Header-Content-Length"
"""The HTTP header giving the JSON header's length in bytes when binary tensor data follows it."""
BINARY_DATA_SIZE = "binary_data_size"


class InferInput(BaseModel):
    """One input tensor: its name, shape, datatype and data (flat row-major, or nested), or its binary size.

    ``parameters.binary_data_size`` says the data follows the JSON header as bytes; its value is
    checked against the body when the body is split (a size the body does not hold is a 400).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1, max_length=256)
    # Dimensions are not capped here: the service refuses a shape whose rows pass ``MAX_ROWS`` (413
    # too_many_instances) or whose product differs from the data (shape_mismatch), exactly.
    shape: list[int] = Field(min_length=1, max_length=2)
    datatype: Datatype
    parameters: JsonObject | None = None
    data: list[Any] | None = Field(default=None, max_length=MAX_ROWS * 10_000)

    @model_validator(mode="after")
    def _shape(self) -> InferInput:
        if any(dimension < 0 for dimension in self.shape):
            raise ValueError("shape dimensions must be 0 or more")
        binary = self.binary
        if self.data is None and not binary:
            raise ValueError(
                "send the tensor's data, or parameters.binary_data_size and its bytes after the JSON"
            )
        if self.data is not None and binary:
            raise ValueError("send data or parameters.binary_data_size, not both")
        return self

    @property
    def binary(self) -> bool:
        """Whether the tensor's data comes as bytes after the JSON header."""
        return self.parameters is not None and BINARY_DATA_SIZE in self.parameters


class RequestedOutput(BaseModel):
    """An output the caller wants (all of them when ``outputs`` is absent)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: Literal["label", "probabilities", "value", "attributions", "baseline", "explained_value"]
    parameters: JsonObject | None = None

    @model_validator(mode="after")
    def _binary_flag(self) -> RequestedOutput:
        if self.parameters is not None and not isinstance(self.parameters.get("binary_data", False), bool):
            raise ValueError("parameters.binary_data must be true or false")
        return self

    @property
    def binary_data(self) -> bool | None:
        """``parameters.binary_data`` when given (it overrides the request's ``binary_data_output``)."""
        value = (self.parameters or {}).get("binary_data")
        return value if isinstance(value, bool) else None


class InferParameters(BaseModel):
    """The request parameters mlambda reads; any other key is ignored, as the protocol allows."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    explain: bool | ExplainOptions = False
    binary_data_output: StrictBool = False
    """Every output as binary data (unless its ``binary_data`` says otherwise), when the transport carries it."""


class InferRequest(BaseModel):
    """``$inference_request``: ``id`` (echoed, logged), ``parameters``, ``inputs``, ``outputs``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str | None = Field(None, pattern=r"^[A-Za-z0-9._:-]{1,128}$")
    parameters: InferParameters = Field(default_factory=InferParameters)
    inputs: list[InferInput] = Field(min_length=1, max_length=10_000)
    outputs: list[RequestedOutput] | None = Field(None, max_length=len(OUTPUT_NAMES))

    @model_validator(mode="after")
    def _distinct(self) -> InferRequest:
        names = [tensor.name for tensor in self.inputs]
        if len(set(names)) != len(names):
            raise ValueError("input names must be distinct")
        return self


class OutputTensor(TypedDict):
    """``$response_output``: data flat in row-major order (numpy arrays are written by orjson).

    A binary output has no ``data``: ``parameters.binary_data_size`` gives its bytes' length.
    """

    name: str
    datatype: str
    shape: list[int]
    data: NotRequired[Any]
    parameters: NotRequired[dict[str, Any]]


class InferResponse(TypedDict):
    """``$inference_response``; ``parameters`` carries mlambda's variant, classes and explanation method."""

    model_name: str
    model_version: str
    id: str
    parameters: dict[str, Any]
    outputs: list[OutputTensor]


class MetadataTensor(TypedDict):
    """``$metadata_tensor``: variable dimensions are -1."""

    name: str
    datatype: str
    shape: list[int]
