"""ONNX artifacts: validate and introspect on register, run with onnxruntime when serving.

Security: models are ONNX only and never unpickled. A model must parse, pass the ONNX checker,
keep all tensor data inside the artifact (no external-data paths), stay under the size cap and
load in onnxruntime.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import onnxruntime as ort

from mlambda.errors import InvalidInputError, PayloadTooLargeError, UnprocessableError, UpstreamError
from mlambda.schemas.registry import Signature, TensorSpec

if TYPE_CHECKING:
    # Only registration inspects a model's graph: predict and batch workers run sessions and do
    # not ship the onnx package (31 MB), so it is imported where it is used.
    import onnx

_ORT_TYPES = {
    "tensor(float)": "float32",
    "tensor(double)": "float64",
    "tensor(int64)": "int64",
    "tensor(int32)": "int32",
    "tensor(string)": "string",
    "tensor(bool)": "bool",
}
_LABEL_ATTRIBUTES = ("classlabels_ints", "classlabels_int64s", "classlabels_strings")


def _spec(arg: Any) -> TensorSpec:
    dtype = _ORT_TYPES.get(arg.type, "seq(map)" if str(arg.type).startswith("seq(map") else str(arg.type))
    shape = [dim if isinstance(dim, int) else None for dim in (arg.shape or [])]
    return TensorSpec(name=arg.name, dtype=dtype, shape=shape)


def _graphs(graph: onnx.GraphProto) -> Iterator[onnx.GraphProto]:
    """A graph and every subgraph (If/Loop/Scan bodies) inside it."""
    import onnx

    yield graph
    for node in graph.node:
        for attribute in node.attribute:
            if attribute.type == onnx.AttributeProto.GRAPH:
                yield from _graphs(attribute.g)
            for sub in attribute.graphs:
                yield from _graphs(sub)


def _class_labels(model: onnx.ModelProto) -> list[int] | list[str] | None:
    for graph in _graphs(model.graph):
        for node in graph.node:
            for attribute in node.attribute:
                if attribute.name in _LABEL_ATTRIBUTES:
                    if attribute.name == "classlabels_strings":
                        return [s.decode() for s in attribute.strings]
                    return [int(i) for i in attribute.ints]
    return None


def _uses_external_data(model: onnx.ModelProto) -> bool:
    import onnx

    for graph in _graphs(model.graph):
        tensors = list(graph.initializer) + [
            attribute.t for node in graph.node for attribute in node.attribute if attribute.HasField("t")
        ]
        if any(t.data_location == onnx.TensorProto.EXTERNAL for t in tensors):
            return True
    return False


def session_options(intra_op_threads: int = 1) -> ort.SessionOptions:
    """Serving options: one intra-op thread (stable p99 on a busy core), all graph optimisations."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = intra_op_threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3
    return options


def inspect_model(data: bytes, *, max_bytes: int) -> Signature:
    """Validate an uploaded artifact and read its signature; 4xx errors say what is wrong."""
    import onnx

    if len(data) > max_bytes:
        raise PayloadTooLargeError(
            f"model is {len(data)} bytes, over the {max_bytes}-byte cap", details={"size": len(data)}
        )
    if not data:
        raise InvalidInputError("model artifact is empty", code="invalid_model")
    try:
        model = onnx.load_model_from_string(data)
    except Exception as exc:  # protobuf raises DecodeError and friends; all mean "not ONNX"
        raise InvalidInputError(f"artifact is not an ONNX model: {exc}", code="invalid_model") from exc
    if not model.graph.node:
        raise InvalidInputError("artifact is not an ONNX model: empty graph", code="invalid_model")
    if _uses_external_data(model):
        raise InvalidInputError(
            "model references external tensor data; embed all tensors in the .onnx file", code="external_data"
        )
    try:
        onnx.checker.check_model(model)
    except onnx.checker.ValidationError as exc:
        raise InvalidInputError(f"model fails the ONNX checker: {exc}", code="invalid_model") from exc
    try:
        session = ort.InferenceSession(
            data, sess_options=session_options(), providers=["CPUExecutionProvider"]
        )
    except Exception as exc:  # onnxruntime raises its own untyped errors for unloadable graphs
        raise InvalidInputError(f"model does not load in onnxruntime: {exc}", code="invalid_model") from exc
    return _signature(session, _class_labels(model))


def _signature(session: ort.InferenceSession, class_labels: list[int] | list[str] | None) -> Signature:
    inputs = [_spec(arg) for arg in session.get_inputs()]
    outputs = [_spec(arg) for arg in session.get_outputs()]
    label = next((o for o in outputs if o.dtype in {"int64", "string"} and len(o.shape) == 1), None)
    probability = next(
        (o for o in outputs if o is not label and (o.dtype == "seq(map)" or o.dtype.startswith("float"))),
        None,
    )
    if label is not None and probability is not None:
        return Signature(
            inputs=inputs,
            outputs=outputs,
            task="classification",
            class_labels=class_labels,
            label_output=label.name,
            probability_output=probability.name,
        )
    value = next((o for o in outputs if o.dtype.startswith("float")), None)
    if value is None:
        raise UnprocessableError(
            "cannot tell what the model predicts: expected a label + probabilities output (classifier) "
            "or a float output (regressor)",
            code="unsupported_outputs",
            details={"outputs": [o.model_dump() for o in outputs]},
        )
    return Signature(inputs=inputs, outputs=outputs, task="regression", value_output=value.name)


class OnnxModel:
    """A loaded inference session with its signature, ready to serve."""

    def __init__(self, data: bytes, *, intra_op_threads: int = 1) -> None:
        try:
            self.session = ort.InferenceSession(
                data, sess_options=session_options(intra_op_threads), providers=["CPUExecutionProvider"]
            )
        except Exception as exc:  # a registered artifact that no longer loads is an upstream fault
            raise UpstreamError(
                f"model does not load in onnxruntime: {exc}", code="model_load_failed"
            ) from exc
        self.size_bytes = len(data)
        self.input_names = [arg.name for arg in self.session.get_inputs()]

    def run(self, feed: Mapping[str, np.ndarray], outputs: Sequence[str] | None = None) -> dict[str, Any]:
        """Score ``feed``; returns each requested output by name."""
        names = list(outputs) if outputs else [arg.name for arg in self.session.get_outputs()]
        try:
            values = self.session.run(names, dict(feed))
        except Exception as exc:  # onnxruntime's errors are untyped (InvalidArgument, Fail...)
            raise UnprocessableError(f"model rejected the input: {exc}", code="model_input_rejected") from exc
        return dict(zip(names, values, strict=True))
