"""ONNX artifacts: validate and introspect on register, run with onnxruntime when serving.

Security: models are ONNX only and never unpickled. A model must parse, keep all tensor data
inside the artifact (``onnx_structure`` walks every place a tensor can hide), stay under the size
cap and load in onnxruntime. Defence in depth: every session (validator, gate, predict, batch)
is created from bytes with external data confined to an empty private directory, so even a model
the check missed cannot make onnxruntime read a file (onnxruntime >= 1.27 refuses absolute and
escaping paths there for dense and sparse tensors alike; measured: 1.24-1.26 still followed them
for sparse tensors), and the structure is checked again before every session is created.
"""

from __future__ import annotations

import tempfile
from collections.abc import Mapping, Sequence
from functools import cache
from typing import Any

import numpy as np
import onnxruntime as ort

from mlambda.adapters.onnx_structure import ModelStructure, read_structure
from mlambda.errors import (
    InvalidInputError,
    MlambdaError,
    PayloadTooLargeError,
    UnprocessableError,
    UpstreamError,
)
from mlambda.schemas.registry import Signature, TensorSpec

_ORT_TYPES = {
    "tensor(float)": "float32",
    "tensor(double)": "float64",
    "tensor(int64)": "int64",
    "tensor(int32)": "int32",
    "tensor(string)": "string",
    "tensor(bool)": "bool",
}
EXTERNAL_DATA_FOLDER = "session.model_external_initializers_file_folder_path"


def _spec(arg: Any) -> TensorSpec:
    dtype = _ORT_TYPES.get(arg.type, "seq(map)" if str(arg.type).startswith("seq(map") else str(arg.type))
    shape = [dim if isinstance(dim, int) else None for dim in (arg.shape or [])]
    return TensorSpec(name=arg.name, dtype=dtype, shape=shape)


@cache
def no_external_data_folder() -> str:
    """An empty directory only this process can write (0700): where external data would be looked up."""
    return tempfile.mkdtemp(prefix="mlambda-no-external-data-")


def session_options(intra_op_threads: int = 1) -> ort.SessionOptions:
    """Serving options: one intra-op thread (stable p99 on a busy core), all graph optimisations,
    and external data confined to an empty directory (a model from bytes cannot name a file)."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = intra_op_threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3
    options.add_session_config_entry(EXTERNAL_DATA_FOLDER, no_external_data_folder())
    return options


def create_session(
    data: bytes, *, intra_op_threads: int = 1, checked: ModelStructure | None = None
) -> ort.InferenceSession:
    """The one way mlambda turns model bytes into a session: structure checked (unless ``checked``
    says it just was), external data confined.

    InvalidInputError when the structure is refused; any onnxruntime failure propagates.
    """
    if checked is None:
        read_structure(data)
    return ort.InferenceSession(
        data, sess_options=session_options(intra_op_threads), providers=["CPUExecutionProvider"]
    )


def check_artifact(data: bytes, *, max_bytes: int) -> ModelStructure:
    """Size cap, then the protobuf-level structure (no external data, bounded nesting); 4xx on failure."""
    if len(data) > max_bytes:
        raise PayloadTooLargeError(
            f"model is {len(data)} bytes, over the {max_bytes}-byte cap", details={"size": len(data)}
        )
    if not data:
        raise InvalidInputError("model artifact is empty", code="invalid_model")
    return read_structure(data)


def validated_model(data: bytes, *, max_bytes: int) -> ValidatedModel:
    """Check an uploaded artifact, load it once and read its signature; 4xx errors say what is wrong."""
    structure = check_artifact(data, max_bytes=max_bytes)
    try:
        session = create_session(data, checked=structure)
    except MlambdaError:
        raise
    except Exception as exc:  # onnxruntime raises its own untyped errors for unloadable graphs
        raise InvalidInputError(f"model does not load in onnxruntime: {exc}", code="invalid_model") from exc
    return ValidatedModel(session, len(data), _signature(session, structure.class_labels), structure)


def inspect_model(data: bytes, *, max_bytes: int) -> Signature:
    """The signature of an artifact that passes ``validated_model``."""
    return validated_model(data, max_bytes=max_bytes).signature


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
    """A loaded inference session, ready to serve."""

    def __init__(self, data: bytes, *, intra_op_threads: int = 1) -> None:
        try:
            session = create_session(data, intra_op_threads=intra_op_threads)
        except MlambdaError as exc:  # refused by the structure check: never loaded
            raise UpstreamError(
                f"model refused before loading: {exc.message}", code="model_load_failed"
            ) from exc
        except Exception as exc:  # a registered artifact that no longer loads is an upstream fault
            raise UpstreamError(
                f"model does not load in onnxruntime: {exc}", code="model_load_failed"
            ) from exc
        self._serve(session, len(data))

    def _serve(self, session: ort.InferenceSession, size_bytes: int) -> None:
        self.session = session
        self.size_bytes = size_bytes
        self.input_names = [arg.name for arg in session.get_inputs()]

    def run(self, feed: Mapping[str, np.ndarray], outputs: Sequence[str] | None = None) -> dict[str, Any]:
        """Score ``feed``; returns each requested output by name."""
        names = list(outputs) if outputs else [arg.name for arg in self.session.get_outputs()]
        try:
            values = self.session.run(names, dict(feed))
        except Exception as exc:  # onnxruntime's errors are untyped (InvalidArgument, Fail...)
            raise UnprocessableError(f"model rejected the input: {exc}", code="model_input_rejected") from exc
        return dict(zip(names, values, strict=True))


class ValidatedModel(OnnxModel):
    """An uploaded artifact that passed the checks and loaded: its session, signature and structure."""

    def __init__(
        self, session: ort.InferenceSession, size_bytes: int, signature: Signature, structure: ModelStructure
    ) -> None:
        self._serve(session, size_bytes)
        self.signature = signature
        self.structure = structure
