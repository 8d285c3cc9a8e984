"""Explainers for sklearn models, and independent references to check them against.

Shared by the explanation tests and benchmarks/bench_predict.py: a model goes through skl2onnx and
``build_explainer`` exactly as a registered version would; the references never read the ONNX.
"""

from __future__ import annotations

import hashlib
import itertools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import onnxruntime as ort
from skl2onnx import to_onnx

from mlambda.adapters.onnx import inspect_model
from mlambda.ports import ArtifactStore
from mlambda.schemas.registry import FeatureSchema, FeatureSpec, ModelVersion, Signature
from mlambda.services.inference.explain import Explainer
from mlambda.services.inference.explain_build import build_explainer
from mlambda.services.inference.scoring import probability_matrix


@dataclass
class Explained:
    """A sklearn model exported to ONNX, its explainer, and the model's scorer (what predict runs)."""

    onnx: bytes
    signature: Signature
    schema: FeatureSchema
    artifact: bytes
    explainer: Explainer
    score: Callable[[np.ndarray], np.ndarray]
    dtype: Any


def export(model: Any, X: np.ndarray, dtype: Any = np.float32) -> bytes:
    """``model`` as ONNX the way users export it (no ZipMap for classifiers)."""
    options = {id(model): {"zipmap": False}} if hasattr(model, "predict_proba") else None
    return to_onnx(model, X[:1].astype(dtype), options=options).SerializeToString()


def explained(
    model: Any, X: np.ndarray, reference: np.ndarray | None = None, dtype: Any = np.float32
) -> Explained:
    """Export ``model``, register-style: signature, schema, and the explainer built on ``reference`` (default X)."""
    data = export(model, X, dtype)
    signature = inspect_model(data, max_bytes=1 << 30)
    schema = FeatureSchema(
        mode="tensor",
        features=[FeatureSpec(name=f"f{i}", dtype="float") for i in range(X.shape[1])],
        tensor_input=signature.inputs[0].name,
        tensor_dtype="float64" if dtype == np.float64 else "float32",
    )
    session = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]

    def run(feed: Any) -> dict[str, Any]:
        return dict(zip(names, session.run(None, dict(feed)), strict=True))

    digest = hashlib.sha256(data).hexdigest()
    artifact = build_explainer(
        data, signature, schema, X if reference is None else reference, run, model_sha256=digest
    )

    def score(matrix: np.ndarray) -> np.ndarray:
        outputs = run({schema.tensor_input: matrix.astype(dtype)})
        if signature.task == "classification":
            return probability_matrix(signature, outputs).astype(np.float64)
        return np.asarray(outputs[signature.value_output], dtype=np.float64).reshape(matrix.shape[0], -1)

    explainer = Explainer.from_bytes(artifact, model_sha256=digest)
    return Explained(data, signature, schema, artifact, explainer, score, dtype)


def shap_trees(trees: Sequence[Any], reference: np.ndarray, scale: float, output: int = 0) -> dict[str, Any]:
    """sklearn trees as a ``shap.TreeExplainer`` model whose covers are ``reference``'s counts (sklearn's own routing)."""
    converted = []
    for tree in trees:
        structure = tree.tree_
        counts = np.asarray(tree.decision_path(reference.astype(np.float32)).sum(axis=0)).ravel()
        converted.append(
            {
                "children_left": structure.children_left,
                "children_right": structure.children_right,
                "children_default": structure.children_left,
                "features": structure.feature,
                "thresholds": structure.threshold,
                "values": structure.value[:, 0, output : output + 1] * scale,
                "node_sample_weight": counts.astype(np.float64),
            }
        )
    return {"trees": converted, "base_offset": 0.0}


def path_dependent_shapley(tree: Any, reference: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Shapley values of E[f(x) | x_S] as Lundberg et al. define it for one sklearn tree, by enumeration.

    The conditional expectation follows x on features in S and splits by the reference's counts
    elsewhere (evenly where no reference row went). Exponential in the features: small M only.
    """
    structure = tree.tree_
    counts = np.asarray(tree.decision_path(reference.astype(np.float32)).sum(axis=0)).ravel()
    m = reference.shape[1]

    def expected(node: int, subset: frozenset[int]) -> float:
        left, right = structure.children_left[node], structure.children_right[node]
        if left == -1:
            return float(structure.value[node, 0, 0])
        feature = structure.feature[node]
        if feature in subset:
            goes_left = np.float32(x[feature]) <= structure.threshold[node]
            return expected(left if goes_left else right, subset)
        total = counts[node]
        share = counts[left] / total if total else 0.5
        return share * expected(left, subset) + (1 - share) * expected(right, subset)

    phi = np.zeros(m)
    for i in range(m):
        others = [j for j in range(m) if j != i]
        for size in range(m):
            weight = math.factorial(size) * math.factorial(m - size - 1) / math.factorial(m)
            for chosen in itertools.combinations(others, size):
                subset = frozenset(chosen)
                phi[i] += weight * (expected(0, subset | {i}) - expected(0, subset))
    return phi


def interventional_shapley(
    f: Callable[[np.ndarray], np.ndarray], background: np.ndarray, x: np.ndarray
) -> np.ndarray:
    """Exact Shapley values of mean_b f(x_S, b_rest) by enumerating every coalition (small M only)."""
    m = x.shape[0]
    cache: dict[frozenset[int], float] = {}

    def value(subset: frozenset[int]) -> float:
        if subset not in cache:
            rows = background.copy()
            rows[:, list(subset)] = x[list(subset)]
            cache[subset] = float(np.mean(f(rows)))
        return cache[subset]

    phi = np.zeros(m)
    for i in range(m):
        others = [j for j in range(m) if j != i]
        for size in range(m):
            weight = math.factorial(size) * math.factorial(m - size - 1) / math.factorial(m)
            for chosen in itertools.combinations(others, size):
                subset = frozenset(chosen)
                phi[i] += weight * (value(subset | {i}) - value(subset))
    return phi


def with_explainer(
    version: ModelVersion, data: bytes, X: np.ndarray, artifacts: ArtifactStore
) -> ModelVersion:
    """The version as the registry leaves it after a registration with reference sample ``X``."""
    session = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    artifact = build_explainer(
        data,
        version.signature,
        version.feature_schema,
        X,
        lambda feed: dict(zip(names, session.run(None, dict(feed)), strict=True)),
        model_sha256=hashlib.sha256(data).hexdigest(),
    )
    key = f"models/{version.model}/v{version.version}/explainer.npz"
    artifacts.put(key, artifact)
    return version.model_copy(update={"explainer_key": key})
