"""The protobuf-level walk of an ONNX model: every place a tensor can hide, and structures that would blow up."""

from __future__ import annotations

import pytest
from onnx import TensorProto, helper

from mlambda.adapters import onnx_structure
from mlambda.adapters.onnx_structure import MAX_GRAPH_DEPTH, read_structure
from mlambda.errors import InvalidInputError
from tests.onnx_exploits import PLACES, external_tensor, nested_ifs
from tests.unit.fakes_registry import breast_cancer, per_feature_regressor


def _key(number: int, wire: int) -> bytes:
    return _varint(number << 3 | wire)


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def _field(number: int, payload: bytes) -> bytes:
    return _key(number, 2) + _varint(len(payload)) + payload


@pytest.mark.parametrize("place", sorted(PLACES))
def test_external_data_is_found_wherever_the_tensor_hides(place: str) -> None:
    with pytest.raises(InvalidInputError) as error:
        read_structure(PLACES[place]("weights.bin"))
    assert error.value.code == "external_data"
    assert len(error.value.details["external_tensors"]) == 1


def test_the_refusal_names_where_the_tensor_is() -> None:
    with pytest.raises(InvalidInputError) as error:
        read_structure(PLACES["nested-subgraph-constant"]("weights.bin"))
    assert error.value.details["external_tensors"] == [
        "graph.node[0](If).then_branch.node[0](If).then_branch.node[0](Constant).value 'deep_value'"
    ]


def test_exported_models_pass_with_their_class_labels() -> None:
    classifier = read_structure(breast_cancer().onnx)
    regressor = read_structure(per_feature_regressor())
    assert (classifier.external, classifier.class_labels) == ([], [0, 1])
    assert (regressor.class_labels, regressor.nodes) == (None, 2)


def test_string_class_labels_are_read() -> None:
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 2])
    label = helper.make_tensor_value_info("label", TensorProto.STRING, [None])
    node = helper.make_node(
        "LinearClassifier",
        ["x"],
        ["label", "scores"],
        domain="ai.onnx.ml",
        coefficients=[1.0, -1.0, -1.0, 1.0],
        classlabels_strings=["no", "yes"],
    )
    graph = helper.make_graph([node], "g", [x], [label])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("ai.onnx.ml", 1)])
    assert read_structure(model.SerializeToString()).class_labels == ["no", "yes"]


def test_a_tensor_repeated_in_the_wire_format_is_judged_as_the_runtime_merges_it() -> None:
    # Given: a Constant's ``t`` attribute sent twice; protobuf merges them, so the second one's
    # missing data_location does not undo the first one's EXTERNAL
    clean = helper.make_tensor("w_value", TensorProto.FLOAT, [4], [0.0] * 4).SerializeToString()
    # When: the attribute (field 5 of the node) gains a second ``t`` (field 5 of AttributeProto)
    attribute = helper.make_attribute("value", external_tensor("w_value", "weights.bin"))
    doubled = attribute.SerializeToString() + _field(5, clean)
    node = helper.make_node("Constant", [], ["w"])
    node_bytes = node.SerializeToString() + _field(5, doubled)
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, 4])
    graph = helper.make_graph([helper.make_node("Add", ["x", "w"], ["y"])], "g", [x], [y])
    graph_bytes = _field(1, node_bytes) + graph.SerializeToString()
    model = _key(1, 0) + _varint(8) + _field(7, graph_bytes)
    # Then
    with pytest.raises(InvalidInputError) as error:
        read_structure(model)
    assert error.value.code == "external_data"


def test_subgraphs_nested_beyond_the_bound_are_refused() -> None:
    assert read_structure(nested_ifs(MAX_GRAPH_DEPTH)).depth == MAX_GRAPH_DEPTH
    with pytest.raises(InvalidInputError) as error:
        read_structure(nested_ifs(MAX_GRAPH_DEPTH + 1))
    assert error.value.code == "model_too_complex"


def test_a_nesting_bomb_is_refused_by_the_parser() -> None:
    # Given: 5,000 graphs nested in each other (node -> attribute -> graph), hand-encoded
    payload = b""
    for _ in range(5_000):
        payload = _field(1, _field(5, _field(6, payload)))  # graph.node.attribute.g
    model = _key(1, 0) + _varint(8) + _field(7, payload)
    # When
    with pytest.raises(InvalidInputError) as error:
        read_structure(model)
    # Then: protobuf's own recursion limit stops the parse; nothing recursed in Python
    assert error.value.code == "invalid_model"


def test_too_many_nodes_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(onnx_structure, "MAX_NODES", 1)
    with pytest.raises(InvalidInputError) as error:
        read_structure(per_feature_regressor())
    assert error.value.code == "model_too_complex"


@pytest.mark.parametrize(
    "data",
    [b"", b"garbage \xff\xfe", b"<html>not a model</html>", b"\x00" * 64, _key(1, 0) + _varint(8)],
    ids=["empty", "garbage", "html", "zeros", "no-graph"],
)
def test_what_is_not_an_onnx_model_is_refused(data: bytes) -> None:
    with pytest.raises(InvalidInputError) as error:
        read_structure(data)
    assert error.value.code == "invalid_model"
