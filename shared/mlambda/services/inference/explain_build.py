"""Building a version's explainer artifact once, where the model and its reference sample are at hand.

``build_explainer(model, signature, schema, reference, run)`` is the one entry point: the registry
calls it when a version is registered with a reference sample (and the validator function will,
once validation moves there). It reads the ONNX graph with the ``onnx`` package, so predict never
has to: predict only loads the ``.npz`` it writes (``mlambda.services.inference.explain``).

What is read exactly from the graph:

- **Affine steps** from the input (Identity, Cast, Scaler, Add/Sub/Mul/Div by constants, MatMul and
  Gemm by constant matrices, Reshape/Flatten keeping rows) are folded into one ``x @ A + b``, so a
  scaler -> linear model pipeline (or sklearn's MatMul/Add export of a float64 model) is one
  linear model over the input features.
- **LinearClassifier / LinearRegressor** (ai.onnx.ml): their coefficients, folded after those steps.
- **TreeEnsembleClassifier / TreeEnsembleRegressor** (ai.onnx.ml opsets 1-3): nodes, thresholds,
  modes (``BRANCH_LEQ``/``LT``/``GTE``/``GT``), leaf weights, base values, SUM/AVERAGE aggregation;
  preceded only by element-wise steps (scalers), which are replayed at explain time. The opset-5
  ``TreeEnsemble`` operator is not read: the installed skl2onnx (1.20) never emits it, so such a
  model falls back to kernel_shap.

Whatever was read is **checked numerically** before it is trusted: the raw scores it computes,
mapped through each candidate link (identity, logistic, softmax, one-vs-rest, the binary
one-score forms onnxruntime uses), must reproduce onnxruntime's outputs on the reference rows and
on rows whose columns were shuffled independently. The first link that matches fixes which
output each class's attributions add up to; when none does (a calibrated classifier, a graph
with steps this reader does not know), the version gets the model-agnostic kernel_shap
explainer, and the header says why.
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import onnx
from onnx import helper, numpy_helper

from mlambda.schemas.registry import FeatureSchema, Signature
from mlambda.services.inference.explain import (
    BACKGROUND_ROWS,
    FORMAT_VERSION,
    METHOD_KERNEL,
    METHOD_LINEAR,
    METHOD_TREE,
    Explainer,
    FloatArray,
    Head,
    Preprocessing,
    TreePaths,
)
from mlambda.services.inference.scoring import columns_to_feed, probability_matrix

Run = Callable[[Mapping[str, np.ndarray]], Mapping[str, Any]]
"""Runs the model: every output for a feed (onnxruntime behind it)."""
COVER_ROWS = 10_000
"""Reference rows routed through the trees for covers and the baseline (a seeded sample if more)."""
SHUFFLED_ROWS = 256
"""Rows with independently shuffled columns, added to the check so that more leaves are visited."""
CHECK_TOLERANCE = 1e-4
MAX_LEAVES = 500_000
"""Tree ensembles with more leaves get kernel_shap: the artifact would pass ~50 MB."""
_AFFINE_PASS = {"Identity", "Cast", "Reshape", "Flatten"}
_MODES: dict[str, tuple[bool, bool]] = {
    "BRANCH_LEQ": (True, False),
    "BRANCH_LT": (True, True),
    "BRANCH_GT": (False, False),
    "BRANCH_GTE": (False, True),
}
"""Mode -> (the true branch is the ``<=`` side, the threshold moves one step down)."""


class UnsupportedModelError(Exception):
    """The graph holds something the exact readers do not handle (the reason is the message)."""


@dataclass
class _Affine:
    """A tensor that is ``input @ a + b`` (rows of the input), with element-wise replay steps when it is one."""

    a: FloatArray
    b: FloatArray
    steps: list[tuple[str, np.ndarray]] | None
    dtype: Any


@dataclass
class _Forest:
    """A tree ensemble with canonical splits: a row goes to ``left`` iff x[feature] <= threshold."""

    feature: np.ndarray
    threshold: np.ndarray
    left: np.ndarray
    right: np.ndarray
    is_leaf: np.ndarray
    leaf_values: FloatArray
    roots: np.ndarray
    base: FloatArray
    post_transform: str

    def route(self, matrix: np.ndarray, counted: int) -> tuple[FloatArray, np.ndarray]:
        """(raw scores per column for every row, node visit counts of the first ``counted`` rows).

        Raw scores are the leaf weights summed over trees plus the base values; all rows descend
        all trees together, one level per step.
        """
        n_rows, n_trees = matrix.shape[0], self.roots.size
        flat = np.ascontiguousarray(matrix).ravel()
        node = np.tile(self.roots, n_rows)  # row r, tree t at r * n_trees + t
        row_start = np.repeat(np.arange(n_rows) * matrix.shape[1], n_trees)
        limit = counted * n_trees
        counts = np.bincount(node[:limit], minlength=self.feature.size)
        active = np.flatnonzero(~self.is_leaf[node])
        while active.size:
            at = node[active]
            goes_left = flat.take(row_start[active] + self.feature[at]) <= self.threshold[at]
            moved = np.where(goes_left, self.left[at], self.right[at])
            node[active] = moved
            counts += np.bincount(moved[active < limit], minlength=self.feature.size)
            active = active[~self.is_leaf[moved]]
        current = node.reshape(n_rows, n_trees)
        raw = np.asarray(self.leaf_values[current].sum(axis=1) + self.base, dtype=np.float64)
        return raw, counts


def _attributes(node: onnx.NodeProto) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for attribute in node.attribute:
        value = helper.get_attribute_value(attribute)
        if isinstance(value, onnx.TensorProto):
            value = numpy_helper.to_array(value)
        elif isinstance(value, bytes):
            value = value.decode()
        values[attribute.name] = value
    return values


def _constants(graph: onnx.GraphProto) -> dict[str, np.ndarray]:
    found = {tensor.name: numpy_helper.to_array(tensor) for tensor in graph.initializer}
    for node in graph.node:
        if node.op_type == "Constant" and node.output:
            attrs = _attributes(node)
            if "value" in attrs:
                found[node.output[0]] = np.asarray(attrs["value"])
    return found


def _columns(vector: np.ndarray, width: int) -> np.ndarray:
    """A constant that broadcasts along a [rows, width] tensor's columns, as a [width] vector."""
    flat = np.asarray(vector, dtype=np.float64)
    if flat.ndim > 2 or (flat.ndim == 2 and flat.shape[0] != 1):
        raise UnsupportedModelError("constant does not broadcast over columns")
    flat = flat.reshape(-1)
    if flat.size == 1:
        return np.full(width, flat[0])
    if flat.size != width:
        raise UnsupportedModelError("constant does not match the tensor's width")
    return flat


class _GraphReader:
    """Walks the graph once, tracking which tensors are affine in the input and where the models are."""

    def __init__(self, model: onnx.ModelProto, n_features: int, input_name: str, input_dtype: Any) -> None:
        self.graph = model.graph
        self.constants = _constants(self.graph)
        self.tracked: dict[str, _Affine] = {
            input_name: _Affine(np.eye(n_features), np.zeros(n_features), [], input_dtype)
        }
        self.forests: list[tuple[onnx.NodeProto, _Affine]] = []
        self.linear_heads: list[_Affine] = []
        self.frontier: list[_Affine] = []
        for node in self.graph.node:
            self._visit(node)

    def _visit(self, node: onnx.NodeProto) -> None:
        inputs = [self.tracked.get(name) for name in node.input]
        source = next((t for t in inputs if t is not None), None)
        if source is None:
            return
        op = node.op_type
        if op in ("TreeEnsembleClassifier", "TreeEnsembleRegressor"):
            self.forests.append((node, source))
            return
        try:
            result = self._affine(node, op, inputs, source)
        except UnsupportedModelError:
            result = None
        if result is None:
            self.frontier.append(source)
            return
        if op == "LinearClassifier":
            self.linear_heads.append(result)
            return
        self.tracked[node.output[0]] = result

    def _const(self, name: str) -> np.ndarray:
        if name not in self.constants:
            raise UnsupportedModelError(f"input {name!r} is neither tracked nor constant")
        return self.constants[name]

    def _affine(
        self, node: onnx.NodeProto, op: str, inputs: list[_Affine | None], source: _Affine
    ) -> _Affine | None:
        attrs = _attributes(node)
        width = source.a.shape[1]
        steps = source.steps
        if op in _AFFINE_PASS:
            if op == "Cast":
                dtype = helper.tensor_dtype_to_np_dtype(attrs["to"])
                if dtype not in (np.float32, np.float64):
                    return None
                return _Affine(
                    source.a,
                    source.b,
                    None if steps is None else [*steps, ("cast", np.zeros(1, dtype))],
                    dtype,
                )
            if op == "Reshape":
                shape = self._const(node.input[1]).reshape(-1).tolist()
                if not (shape in ([-1, width], [0, width]) or (width == 1 and shape in ([-1], [-1, 1]))):
                    return None
            if op == "Flatten" and attrs.get("axis", 1) != 1:
                return None
            return source
        if op == "Scaler":
            offset = _columns(np.asarray(attrs.get("offset", [0.0])), width)
            scale = _columns(np.asarray(attrs.get("scale", [1.0])), width)
            operand = np.stack([offset, scale]).astype(np.float32)
            return _Affine(
                source.a * scale,
                (source.b - offset) * scale,
                None if steps is None else [*steps, ("scaler", operand)],
                np.float32,
            )
        if op in ("Add", "Sub", "Mul", "Div"):
            if len(inputs) != 2 or all(t is not None for t in inputs):
                return None
            tracked_first = inputs[0] is not None
            raw = self._const(node.input[1] if tracked_first else node.input[0])
            constant = _columns(raw, width)
            kind = op.lower() if tracked_first or op in ("Add", "Mul") else ("rsub" if op == "Sub" else "")
            if not kind:
                return None
            new_steps = None if steps is None else [*steps, (kind, raw.reshape(-1).astype(raw.dtype))]
            if kind == "add":
                return _Affine(source.a, source.b + constant, new_steps, source.dtype)
            if kind == "sub":
                return _Affine(source.a, source.b - constant, new_steps, source.dtype)
            if kind == "rsub":
                return _Affine(-source.a, constant - source.b, new_steps, source.dtype)
            if kind == "mul":
                return _Affine(source.a * constant, source.b * constant, new_steps, source.dtype)
            return _Affine(source.a / constant, source.b / constant, new_steps, source.dtype)
        if op in ("MatMul", "Gemm"):
            if inputs[0] is None or any(t is not None for t in inputs[1:]):
                return None
            weight = np.asarray(self._const(node.input[1]), dtype=np.float64)
            if op == "Gemm":
                if attrs.get("transA", 0):
                    return None
                if attrs.get("transB", 0):
                    weight = weight.T
                weight = weight * float(attrs.get("alpha", 1.0))
            if weight.ndim != 2 or weight.shape[0] != width:
                return None
            bias = np.zeros(weight.shape[1])
            if op == "Gemm" and len(node.input) > 2 and node.input[2]:
                bias = _columns(self._const(node.input[2]), weight.shape[1]) * float(attrs.get("beta", 1.0))
            return _Affine(source.a @ weight, source.b @ weight + bias, None, source.dtype)
        if op in ("LinearRegressor", "LinearClassifier"):
            if op == "LinearRegressor" and attrs.get("post_transform", "NONE") != "NONE":
                return None
            coefficients = np.asarray(attrs["coefficients"], dtype=np.float64).reshape(-1, width)
            intercepts = np.asarray(attrs.get("intercepts", [0.0] * coefficients.shape[0]), dtype=np.float64)
            return _Affine(
                source.a @ coefficients.T, source.b @ coefficients.T + intercepts, None, np.float32
            )
        return None


def _forest(node: onnx.NodeProto, width: int, dtype: Any, n_columns: int) -> _Forest:
    """The ensemble's nodes as flat arrays with every split canonicalised to ``x <= t``."""
    attrs = _attributes(node)
    classifier = node.op_type == "TreeEnsembleClassifier"
    aggregate = attrs.get("aggregate_function", "SUM")
    if aggregate not in ("SUM", "AVERAGE"):
        raise UnsupportedModelError(f"aggregate_function {aggregate} is not additive")
    tree_ids = np.asarray(attrs["nodes_treeids"], dtype=np.int64)
    node_ids = np.asarray(attrs["nodes_nodeids"], dtype=np.int64)
    features = np.asarray(attrs["nodes_featureids"], dtype=np.int64)
    modes = list(attrs["nodes_modes"])
    modes = [m.decode() if isinstance(m, bytes) else str(m) for m in modes]
    thresholds = np.asarray(
        attrs["nodes_values"] if "nodes_values" in attrs else attrs["nodes_values_as_tensor"],
        dtype=np.float64,
    )
    true_ids = np.asarray(attrs["nodes_truenodeids"], dtype=np.int64)
    false_ids = np.asarray(attrs["nodes_falsenodeids"], dtype=np.int64)
    prefix = "class" if classifier else "target"
    weight_trees = np.asarray(attrs[f"{prefix}_treeids"], dtype=np.int64)
    weight_nodes = np.asarray(attrs[f"{prefix}_nodeids"], dtype=np.int64)
    weight_ids = np.asarray(attrs[f"{prefix}_ids"], dtype=np.int64)
    weights = np.asarray(
        attrs[f"{prefix}_weights"] if f"{prefix}_weights" in attrs else attrs[f"{prefix}_weights_as_tensor"],
        dtype=np.float64,
    )
    count = tree_ids.size
    width_ids = int(node_ids.max()) + 1 if count else 1
    keys = tree_ids * width_ids + node_ids
    order = np.argsort(keys, kind="stable")
    sorted_keys = keys[order]
    if np.any(sorted_keys[1:] == sorted_keys[:-1]):
        raise UnsupportedModelError("duplicate tree nodes")

    def lookup(trees: np.ndarray, nodes: np.ndarray) -> np.ndarray:
        wanted = trees * width_ids + nodes
        position = np.clip(np.searchsorted(sorted_keys, wanted), 0, max(count - 1, 0))
        if (
            not np.array_equal(sorted_keys[position], wanted)
            or np.any(nodes >= width_ids)
            or np.any(nodes < 0)
        ):
            raise UnsupportedModelError("a reference points at a missing tree node")
        return np.asarray(order[position])

    mode_names = np.array(modes)
    is_leaf = mode_names == "LEAF"
    unknown = sorted(set(mode_names[~is_leaf].tolist()) - set(_MODES))
    if unknown:
        raise UnsupportedModelError(f"split mode {unknown[0]} is not an interval split")
    inner = np.flatnonzero(~is_leaf)
    if inner.size and (features[inner].min() < 0 or features[inner].max() >= width):
        raise UnsupportedModelError("split on a feature outside the input")
    true_is_le = np.isin(mode_names, ["BRANCH_LEQ", "BRANCH_LT"])
    step_down = np.isin(mode_names, ["BRANCH_LT", "BRANCH_GTE"])
    grid = np.dtype(dtype).type
    threshold = thresholds.astype(dtype)
    threshold = np.where(step_down, np.nextafter(threshold, grid(-np.inf)), threshold).astype(dtype)
    threshold[is_leaf] = 0
    feature = np.where(is_leaf, 0, features)
    left = np.arange(count)
    right = np.arange(count)
    true_child = lookup(tree_ids[inner], true_ids[inner])
    false_child = lookup(tree_ids[inner], false_ids[inner])
    left[inner] = np.where(true_is_le[inner], true_child, false_child)
    right[inner] = np.where(true_is_le[inner], false_child, true_child)
    trees = np.unique(tree_ids)
    # Roots are the nodes no split points at.
    pointed = np.zeros(count, dtype=bool)
    pointed[left[inner]] = True
    pointed[right[inner]] = True
    roots = np.flatnonzero(~pointed)
    if roots.size != trees.size:
        raise UnsupportedModelError("the trees do not each have one root")
    leaf_values = np.zeros((count, n_columns))
    if weight_ids.size:
        leaf = lookup(weight_trees, weight_nodes)
        if not is_leaf[leaf].all() or weight_ids.min() < 0 or weight_ids.max() >= n_columns:
            raise UnsupportedModelError("a leaf weight points at no leaf")
        np.add.at(leaf_values, (leaf, weight_ids), weights)
    if aggregate == "AVERAGE":
        leaf_values /= trees.size
    base_raw = attrs.get("base_values") if "base_values" in attrs else attrs.get("base_values_as_tensor")
    base = np.zeros(n_columns)
    if base_raw is not None and len(base_raw):
        values = np.asarray(base_raw, dtype=np.float64).reshape(-1)
        if values.size == n_columns:
            base = values
        elif values.size == 1:
            base[0] = values[0]
        else:
            raise UnsupportedModelError("base_values do not match the outputs")
    return _Forest(
        feature=feature,
        threshold=threshold,
        left=left,
        right=right,
        is_leaf=is_leaf,
        leaf_values=leaf_values,
        roots=roots,
        base=base,
        post_transform=str(attrs.get("post_transform", "NONE")),
    )


def _paths(forest: _Forest, counts: np.ndarray, width: int, dtype: Any) -> TreePaths:
    """Every root-to-leaf path with its features merged: interval, cover fraction, leaf values.

    Vectorised: each leaf walks up to its root one level per step (all leaves at once), then the
    (leaf, feature) groups are merged with ``reduceat`` (max of lower bounds, min of upper bounds,
    product of cover fractions).
    """
    size = forest.feature.size
    inner = np.flatnonzero(~forest.is_leaf)
    parent = np.full(size, -1)
    parent[forest.left[inner]] = inner
    parent[forest.right[inner]] = inner
    went_left = np.zeros(size, dtype=bool)
    went_left[forest.left[inner]] = True
    leaves = np.flatnonzero(forest.is_leaf & forest.leaf_values.any(axis=1))
    if leaves.size > MAX_LEAVES:
        raise UnsupportedModelError(f"{leaves.size} leaves, over the {MAX_LEAVES} an exact explainer keeps")
    totals = counts.astype(np.float64)
    owner_parts, feature_parts, lower_parts, upper_parts, share_parts = [], [], [], [], []
    node, owner = leaves.copy(), np.arange(leaves.size)
    while True:
        up = parent[node]
        active = up >= 0
        if not active.any():
            break
        node, owner, up = node[active], owner[active], up[active]
        threshold = forest.threshold[up].astype(np.float64)
        left = went_left[node]
        owner_parts.append(owner)
        feature_parts.append(forest.feature[up])
        lower_parts.append(np.where(left, -np.inf, threshold))
        upper_parts.append(np.where(left, threshold, np.inf))
        share_parts.append(
            np.where(totals[up] > 0, totals[node] / np.where(totals[up] > 0, totals[up], 1.0), 0.5)
        )
        node = up
    n = leaves.size
    values = forest.leaf_values[leaves]
    if not owner_parts:
        empty = np.zeros((n, 1))
        return TreePaths(
            np.full((n, 1), width, dtype=np.int32),
            np.full((n, 1), np.inf, dtype=dtype),
            np.full((n, 1), np.inf, dtype=dtype),
            np.ones_like(empty),
            np.zeros(n, dtype=np.int32),
            values,
            width,
        )
    owners = np.concatenate(owner_parts)
    features = np.concatenate(feature_parts)
    order = np.lexsort((features, owners))
    owners, features = owners[order], features[order]
    starts = np.flatnonzero(np.r_[True, (owners[1:] != owners[:-1]) | (features[1:] != features[:-1])])
    group_owner, group_feature = owners[starts], features[starts]
    group_lower = np.maximum.reduceat(np.concatenate(lower_parts)[order], starts)
    group_upper = np.minimum.reduceat(np.concatenate(upper_parts)[order], starts)
    group_zero = np.multiply.reduceat(np.concatenate(share_parts)[order], starts)
    length = np.bincount(group_owner, minlength=n).astype(np.int32)
    first = np.r_[0, np.cumsum(length)[:-1]]
    slot = np.arange(starts.size) - first[group_owner]
    depth = max(1, int(length.max()))
    path_features = np.full((n, depth), width, dtype=np.int32)
    lower = np.full((n, depth), np.inf, dtype=dtype)
    upper = np.full((n, depth), np.inf, dtype=dtype)
    zero = np.ones((n, depth))
    path_features[group_owner, slot] = group_feature
    lower[group_owner, slot] = group_lower.astype(dtype)
    upper[group_owner, slot] = group_upper.astype(dtype)
    zero[group_owner, slot] = group_zero
    return TreePaths(path_features, lower, upper, zero, length, values, width)


def _sigmoid(x: FloatArray) -> FloatArray:
    return np.asarray(1.0 / (1.0 + np.exp(-x)))


def _softmax(x: FloatArray) -> FloatArray:
    shifted = np.exp(x - x.max(axis=1, keepdims=True))
    return np.asarray(shifted / shifted.sum(axis=1, keepdims=True))


def _candidates(raw: FloatArray, n_classes: int) -> list[tuple[FloatArray, list[Head]]]:
    """(predicted probabilities, heads) for each way the raw columns may become the model's output."""
    k = raw.shape[1]
    found: list[tuple[FloatArray, list[Head]]] = []
    if k == n_classes:
        for link, output in (
            (lambda r: r, "probability"),
            (_softmax, "margin"),
            (_sigmoid, "log_odds"),
            (lambda r: _sigmoid(r) / _sigmoid(r).sum(axis=1, keepdims=True), "margin"),
        ):
            found.append((link(raw), [Head(c, 1.0, 0.0, output) for c in range(n_classes)]))
    if n_classes == 2:
        used = [c for c in range(k) if raw[:, c].any()] or [0]
        for column in used if len(used) == 1 else []:
            s = raw[:, column]
            for positive in (1, 0):
                negative = 1 - positive
                for link, output, beta in ((_sigmoid, "log_odds", 0.0), (lambda r: r, "probability", 1.0)):
                    probabilities = np.zeros((raw.shape[0], 2))
                    probabilities[:, positive] = link(s)
                    probabilities[:, negative] = 1.0 - link(s)
                    heads = [Head(column, 1.0, 0.0, output), Head(column, -1.0, beta, output)]
                    found.append((probabilities, heads if positive == 0 else heads[::-1]))
    return found


def _choose_heads(
    raw: FloatArray, signature: Signature, outputs: Mapping[str, Any]
) -> tuple[list[Head] | None, str]:
    """The heads whose link reproduces the model's outputs, or None and why not."""
    if signature.task == "regression":
        expected = np.asarray(outputs[signature.value_output or ""], dtype=np.float64).reshape(
            raw.shape[0], -1
        )
        if raw.shape[1] != 1 or expected.shape[1] != 1:
            return None, "the model predicts several values"
        scale = max(1.0, float(np.abs(expected).max()))
        if np.allclose(raw[:, 0], expected[:, 0], rtol=CHECK_TOLERANCE, atol=CHECK_TOLERANCE * scale):
            return [Head(0, 1.0, 0.0, "value")], ""
        return None, "the parsed model does not reproduce the model's values"
    probabilities = probability_matrix(signature, outputs).astype(np.float64)
    for predicted, heads in _candidates(raw, probabilities.shape[1]):
        if predicted.shape == probabilities.shape and np.allclose(
            predicted, probabilities, atol=CHECK_TOLERANCE
        ):
            return heads, ""
    return None, "the parsed model does not reproduce the model's probabilities"


def _check_rows(reference: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    shuffled = np.column_stack(
        [rng.choice(reference[:, j], size=SHUFFLED_ROWS) for j in range(reference.shape[1])]
    )
    return np.concatenate([reference, shuffled.astype(reference.dtype)])


def build_explainer(
    model: bytes,
    signature: Signature,
    schema: FeatureSchema,
    reference: np.ndarray,
    run: Run,
    *,
    model_sha256: str,
    seed: int = 0,
) -> bytes:
    """The explainer artifact (``.npz`` bytes) for a version: exact when the graph allows, else kernel_shap.

    ``reference`` is the reference sample's complete rows in feature order; ``run`` scores a feed
    with the model (it is called twice: once on the background, once on the check rows).
    UnsupportedModelError when the features are not all numeric (nothing to perturb or to split on).
    """
    if any(spec.dtype not in ("float", "int", "bool") for spec in schema.features):
        raise UnsupportedModelError("explanations need numeric features")
    rng = np.random.default_rng(seed)
    names = schema.names
    dtype = np.float64 if schema.tensor_dtype == "float64" else np.float32
    rows = np.asarray(reference, dtype=np.float64).astype(dtype)
    if rows.ndim != 2 or rows.shape[1] != len(names) or rows.shape[0] == 0:
        raise UnsupportedModelError("the reference sample has no complete rows")
    if rows.shape[0] > COVER_ROWS:
        rows = rows[np.sort(rng.choice(rows.shape[0], size=COVER_ROWS, replace=False))]

    def feed(matrix: np.ndarray) -> dict[str, np.ndarray]:
        return columns_to_feed(schema, {name: matrix[:, i] for i, name in enumerate(names)})

    background = rows[
        np.sort(rng.choice(rows.shape[0], size=min(BACKGROUND_ROWS, rows.shape[0]), replace=False))
    ]
    check = _check_rows(rows, rng)
    outputs = run(feed(np.concatenate([background, check])))
    if signature.task == "classification":
        scored = probability_matrix(signature, outputs).astype(np.float64)
    else:
        scored = np.asarray(outputs[signature.value_output or ""], dtype=np.float64).reshape(-1, 1)
    split = background.shape[0]
    check_outputs = {name: value[split:] for name, value in outputs.items()}
    header: dict[str, Any] = {
        "format": FORMAT_VERSION,
        "model_sha256": model_sha256,
        "task": signature.task,
        "n_features": len(names),
        "n_classes": scored.shape[1] if signature.task == "classification" else 0,
        "reference_rows": int(rows.shape[0]),
    }
    arrays: dict[str, np.ndarray] = {
        "background": background.astype(np.float64),
        "background_outputs": scored[:split],
    }
    reason = _exact(model, _Build(signature, schema, rows, check, check_outputs, header, arrays))
    if reason:
        header.update(method=METHOD_KERNEL, fallback_reason=reason)
    explainer = Explainer(header, arrays)
    return explainer.to_bytes()


@dataclass
class _Build:
    """What the exact readers need, and the header and arrays they fill."""

    signature: Signature
    schema: FeatureSchema
    rows: np.ndarray
    check: np.ndarray
    check_outputs: Mapping[str, Any]
    header: dict[str, Any]
    arrays: dict[str, np.ndarray]


def _exact(model: bytes, build: _Build) -> str:
    """Fill the build's header and arrays for an exact method and return "", or return why there is none."""
    if build.schema.mode != "tensor":
        return "the model takes one input per feature; exact readers need one tensor input"
    width = build.rows.shape[1]
    try:
        graph = onnx.load_model_from_string(model)
        reader = _GraphReader(graph, width, build.schema.tensor_input or "input", build.rows.dtype)
    except (UnsupportedModelError, ValueError, KeyError, IndexError, TypeError) as exc:
        return f"the graph could not be read: {exc}"
    reasons: list[str] = []
    if len(reader.forests) > 1:
        reasons.append("several tree ensembles")
    elif reader.forests:
        node, source = reader.forests[0]
        if source.steps is None or not np.array_equal(source.a != 0, np.eye(width, dtype=bool)):
            reasons.append("the trees' input is not an element-wise transform of the features")
        else:
            try:
                reason = _exact_trees(node, source.steps, build)
            except (UnsupportedModelError, ValueError, KeyError, IndexError, TypeError) as exc:
                reason = f"the trees could not be read: {exc}"
            if not reason:
                return ""
            reasons.append(reason)
    candidates = [
        *reader.linear_heads,
        *reversed(reader.frontier),
        *_regression_outputs(reader, build.signature),
    ]
    for candidate in candidates:
        raw = build.check.astype(np.float64) @ candidate.a + candidate.b
        heads, reason = _choose_heads(raw, build.signature, build.check_outputs)
        if heads is None:
            reasons.append(reason)
            continue
        mean = build.rows.astype(np.float64).mean(axis=0)
        build.header.update(method=METHOD_LINEAR, heads=[_head(head) for head in heads])
        build.arrays.update(
            coef=candidate.a, reference_mean=mean, baseline_raw=mean @ candidate.a + candidate.b
        )
        return ""
    return "; ".join(dict.fromkeys(reasons)) or "no linear model or tree ensemble was found in the graph"


def _head(head: Head) -> dict[str, Any]:
    return {"column": head.column, "alpha": head.alpha, "beta": head.beta, "output": head.output}


def _regression_outputs(reader: _GraphReader, signature: Signature) -> list[_Affine]:
    if signature.task != "regression":
        return []
    found = reader.tracked.get(signature.value_output or "")
    return [found] if found is not None else []


def _exact_trees(node: onnx.NodeProto, steps: list[tuple[str, np.ndarray]], build: _Build) -> str:
    preprocessing = Preprocessing(tuple(steps))
    # The check rows start with the reference rows: one descent gives the raw scores and the covers.
    tree_input = preprocessing.apply(build.check)
    dtype = tree_input.dtype
    n_classes = int(build.header["n_classes"]) or 1
    classifier = node.op_type == "TreeEnsembleClassifier"
    n_columns = n_classes if classifier else int(_attributes(node).get("n_targets", 1))
    forest = _forest(node, build.rows.shape[1], dtype, n_columns)
    raw, counts = forest.route(tree_input, build.rows.shape[0])
    heads, reason = _choose_heads(raw, build.signature, build.check_outputs)
    if heads is None:
        return reason
    paths = _paths(forest, counts, build.rows.shape[1], dtype)
    baseline = (paths.values * paths.zero.prod(axis=1)[:, None]).sum(axis=0) + forest.base
    build.header.update(
        method=METHOD_TREE, heads=[_head(head) for head in heads], preprocessing=[op for op, _ in steps]
    )
    build.arrays.update(
        path_features=paths.features,
        path_lower=paths.lower,
        path_upper=paths.upper,
        path_zero=paths.zero,
        path_length=paths.length,
        path_values=paths.values,
        baseline_raw=baseline,
    )
    for i, (_, operand) in enumerate(steps):
        build.arrays[f"pre_{i}"] = operand
    return ""


def describe(data: bytes) -> dict[str, Any]:
    """The artifact's header (method, heads, fallback reason...): for logs and tests."""
    with np.load(io.BytesIO(data), allow_pickle=False) as archive:
        return dict(json.loads(str(archive["header"])))
