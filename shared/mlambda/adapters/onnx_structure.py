"""What an ONNX file holds, read at the protobuf level before any runtime sees it.

Security first: a tensor can declare its bytes EXTERNAL, at a path that a runtime resolves on the
machine that loads the model. Such a tensor can sit anywhere a tensor can: graph initializers,
sparse initializers (values and indices), node attributes (``t``, ``tensors``,
``sparse_tensor``, ``sparse_tensors``), the subgraphs of control-flow nodes (``g``, ``graphs``)
at any depth, model-local functions (their nodes and attribute defaults) and training graphs.
``read_structure`` visits every one of them and refuses the model if any tensor is external,
and refuses structures absurd enough to blow up the walk (subgraph depth, node count).

The schema below is the subset of ``onnx.proto`` that can carry a tensor, with ONNX's own field
numbers, parsed by protobuf's C parser (upb): the same merge rules as onnxruntime's parser (a
repeated singular message is merged, a scalar's last value wins), so what we check is what the
runtime sees. Fields outside the subset are skipped as unknown fields. ``data_location`` is read
as a plain integer so that no value can hide as an "unknown enum". The ``onnx`` package is not
needed (31 MB in a Lambda whose size is counted); protobuf comes with onnxruntime.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cache
from typing import Any

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from google.protobuf.message import DecodeError

from mlambda.errors import InvalidInputError

MAX_GRAPH_DEPTH = 16
"""Control-flow subgraphs nested deeper than this are refused (real models nest 1-3 levels)."""
MAX_NODES = 250_000
"""Nodes over every graph and function; far above real models (a transformer has ~10k)."""
EXTERNAL = 1
"""``TensorProto.DataLocation.EXTERNAL``."""
LABEL_ATTRIBUTES = ("classlabels_ints", "classlabels_int64s", "classlabels_strings")

_INT32 = descriptor_pb2.FieldDescriptorProto.TYPE_INT32
_INT64 = descriptor_pb2.FieldDescriptorProto.TYPE_INT64
_STRING = descriptor_pb2.FieldDescriptorProto.TYPE_STRING
_BYTES = descriptor_pb2.FieldDescriptorProto.TYPE_BYTES
_MESSAGE = descriptor_pb2.FieldDescriptorProto.TYPE_MESSAGE
_OPTIONAL = descriptor_pb2.FieldDescriptorProto.LABEL_OPTIONAL
_REPEATED = descriptor_pb2.FieldDescriptorProto.LABEL_REPEATED

# message -> [(field, number, type, label, message type)], numbers as in onnx/onnx.in.proto.
_SCHEMA: dict[str, list[tuple[str, int, int, int, str | None]]] = {
    "StringStringEntryProto": [
        ("key", 1, _STRING, _OPTIONAL, None),
        ("value", 2, _STRING, _OPTIONAL, None),
    ],
    "TensorProto": [
        ("name", 8, _STRING, _OPTIONAL, None),
        ("external_data", 13, _MESSAGE, _REPEATED, "StringStringEntryProto"),
        ("data_location", 14, _INT32, _OPTIONAL, None),
    ],
    "SparseTensorProto": [
        ("values", 1, _MESSAGE, _OPTIONAL, "TensorProto"),
        ("indices", 2, _MESSAGE, _OPTIONAL, "TensorProto"),
    ],
    "AttributeProto": [
        ("name", 1, _STRING, _OPTIONAL, None),
        ("t", 5, _MESSAGE, _OPTIONAL, "TensorProto"),
        ("g", 6, _MESSAGE, _OPTIONAL, "GraphProto"),
        ("ints", 8, _INT64, _REPEATED, None),
        ("strings", 9, _BYTES, _REPEATED, None),
        ("tensors", 10, _MESSAGE, _REPEATED, "TensorProto"),
        ("graphs", 11, _MESSAGE, _REPEATED, "GraphProto"),
        ("sparse_tensor", 22, _MESSAGE, _OPTIONAL, "SparseTensorProto"),
        ("sparse_tensors", 23, _MESSAGE, _REPEATED, "SparseTensorProto"),
    ],
    "NodeProto": [
        ("op_type", 4, _STRING, _OPTIONAL, None),
        ("attribute", 5, _MESSAGE, _REPEATED, "AttributeProto"),
        ("domain", 7, _STRING, _OPTIONAL, None),
    ],
    "GraphProto": [
        ("node", 1, _MESSAGE, _REPEATED, "NodeProto"),
        ("initializer", 5, _MESSAGE, _REPEATED, "TensorProto"),
        ("sparse_initializer", 15, _MESSAGE, _REPEATED, "SparseTensorProto"),
    ],
    "FunctionProto": [
        ("name", 1, _STRING, _OPTIONAL, None),
        ("node", 7, _MESSAGE, _REPEATED, "NodeProto"),
        ("attribute_proto", 11, _MESSAGE, _REPEATED, "AttributeProto"),
    ],
    "TrainingInfoProto": [
        ("initialization", 1, _MESSAGE, _OPTIONAL, "GraphProto"),
        ("algorithm", 2, _MESSAGE, _OPTIONAL, "GraphProto"),
    ],
    "ModelProto": [
        ("ir_version", 1, _INT64, _OPTIONAL, None),
        ("graph", 7, _MESSAGE, _OPTIONAL, "GraphProto"),
        ("training_info", 20, _MESSAGE, _REPEATED, "TrainingInfoProto"),
        ("functions", 25, _MESSAGE, _REPEATED, "FunctionProto"),
    ],
}
_PACKAGE = "mlambda_onnx_subset"


@cache
def _model_class() -> Any:
    """The ModelProto class of the subset schema, built once per process."""
    file = descriptor_pb2.FileDescriptorProto(name=f"{_PACKAGE}.proto", package=_PACKAGE, syntax="proto2")
    for message_name, fields in _SCHEMA.items():
        message = file.message_type.add(name=message_name)
        for name, number, kind, label, type_name in fields:
            declared = message.field.add(name=name, number=number, type=kind, label=label)
            if type_name is not None:
                declared.type_name = f".{_PACKAGE}.{type_name}"
    pool = descriptor_pool.DescriptorPool()
    pool.Add(file)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName(f"{_PACKAGE}.ModelProto"))


@dataclass
class ModelStructure:
    """What the walk found: external tensors (by path in the model), class labels, sizes."""

    external: list[str] = field(default_factory=list)
    class_labels: list[int] | list[str] | None = None
    nodes: int = 0
    graphs: int = 0
    functions: int = 0
    depth: int = 0


def _is_external(tensor: Any) -> bool:
    """EXTERNAL, or any external_data entry at all (a legitimate embedded tensor has none)."""
    return bool(tensor.data_location == EXTERNAL or len(tensor.external_data))


class _Walk:
    """One iterative walk (no recursion: a hostile model cannot exhaust the stack)."""

    def __init__(self) -> None:
        self.found = ModelStructure()
        self._graphs: list[tuple[Any, str, int]] = []

    def tensor(self, tensor: Any, where: str) -> None:
        if _is_external(tensor):
            label = f"{where} '{tensor.name}'" if tensor.name else where
            self.found.external.append(label)

    def sparse(self, sparse: Any, where: str) -> None:
        if sparse.HasField("values"):
            self.tensor(sparse.values, f"{where}.values")
        if sparse.HasField("indices"):
            self.tensor(sparse.indices, f"{where}.indices")

    def attribute(self, attribute: Any, where: str, depth: int) -> None:
        here = f"{where}.{attribute.name or 'attribute'}"
        if attribute.HasField("t"):
            self.tensor(attribute.t, here)
        for index, tensor in enumerate(attribute.tensors):
            self.tensor(tensor, f"{here}[{index}]")
        if attribute.HasField("sparse_tensor"):
            self.sparse(attribute.sparse_tensor, here)
        for index, sparse in enumerate(attribute.sparse_tensors):
            self.sparse(sparse, f"{here}[{index}]")
        if attribute.HasField("g"):
            self._graphs.append((attribute.g, here, depth + 1))
        for index, graph in enumerate(attribute.graphs):
            self._graphs.append((graph, f"{here}[{index}]", depth + 1))
        if self.found.class_labels is None and attribute.name in LABEL_ATTRIBUTES:
            if attribute.name == "classlabels_strings":
                if attribute.strings:
                    self.found.class_labels = [s.decode("utf-8", "replace") for s in attribute.strings]
            elif attribute.ints:
                self.found.class_labels = [int(i) for i in attribute.ints]

    def nodes(self, nodes: Any, where: str, depth: int) -> None:
        self.found.nodes += len(nodes)
        if self.found.nodes > MAX_NODES:
            raise InvalidInputError(f"the model has more than {MAX_NODES} nodes", code="model_too_complex")
        for index, node in enumerate(nodes):
            for attribute in node.attribute:
                self.attribute(attribute, f"{where}.node[{index}]({node.op_type})", depth)

    def graph(self, graph: Any, where: str, depth: int) -> None:
        if depth > MAX_GRAPH_DEPTH:
            raise InvalidInputError(
                f"subgraphs nest more than {MAX_GRAPH_DEPTH} levels deep ({where})",
                code="model_too_complex",
            )
        self.found.graphs += 1
        self.found.depth = max(self.found.depth, depth)
        for index, tensor in enumerate(graph.initializer):
            self.tensor(tensor, f"{where}.initializer[{index}]")
        for index, sparse in enumerate(graph.sparse_initializer):
            self.sparse(sparse, f"{where}.sparse_initializer[{index}]")
        self.nodes(graph.node, where, depth)

    def drain(self) -> None:
        while self._graphs:
            self.graph(*self._graphs.pop())

    def model(self, model: Any) -> ModelStructure:
        """The main graph first (class labels come from its nodes), then training graphs and functions."""
        self.graph(model.graph, "graph", 0)
        self.drain()
        for index, training in enumerate(model.training_info):
            for part in ("initialization", "algorithm"):
                if training.HasField(part):
                    self._graphs.append((getattr(training, part), f"training_info[{index}].{part}", 0))
        self.drain()
        for index, function in enumerate(model.functions):
            where = f"functions[{index}]({function.name})"
            self.found.functions += 1
            for attribute in function.attribute_proto:
                self.attribute(attribute, f"{where}.attribute_proto", 0)
            self.nodes(function.node, where, 0)
            self.drain()
        return self.found


def read_structure(data: bytes) -> ModelStructure:
    """Parse ``data`` as an ONNX model and walk every tensor; InvalidInputError names the problem."""
    model = _model_class()()
    try:
        model.ParseFromString(data)
    except (DecodeError, RuntimeError, ValueError) as exc:
        raise InvalidInputError(f"artifact is not an ONNX model: {exc}", code="invalid_model") from exc
    if not model.HasField("graph") or not model.ir_version:
        raise InvalidInputError(
            "artifact is not an ONNX model: no graph or no IR version", code="invalid_model"
        )
    found = _Walk().model(model)
    if found.nodes == 0:
        raise InvalidInputError("artifact is not an ONNX model: empty graph", code="invalid_model")
    if found.external:
        raise InvalidInputError(
            "model references external tensor data; embed all tensors in the .onnx file "
            f"({len(found.external)} external: {', '.join(found.external[:5])})",
            code="external_data",
            details={"external_tensors": found.external[:50]},
        )
    return found
