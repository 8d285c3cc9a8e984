"""Explanations: additive per-feature attributions of a prediction, from a precomputed explainer artifact.

Every explanation reads ``value = baseline + sum(attributions)``: ``baseline`` is the expected output
over the version's reference sample, ``value`` the output for the row, both on the scale named by
``output``. Which method answers depends on what the model is:

=============================  ==========================  =========================================
model (ONNX, as exported)      method                      explained output (additive in it)
=============================  ==========================  =========================================
linear regression              ``linear`` (exact)          ``value``
logistic regression (binary)   ``linear`` (exact)          ``log_odds`` of the class
logistic regression (multi)    ``linear`` (exact)          ``margin`` of the class (softmax input)
tree ensemble regressor        ``tree_shap_path_dependent``  ``value``
GBM classifier (binary)        ``tree_shap_path_dependent``  ``log_odds`` of the class
GBM classifier (multi-class)   ``tree_shap_path_dependent``  ``margin`` of the class (softmax input)
random forest classifier       ``tree_shap_path_dependent``  ``probability`` of the class
anything else                  ``kernel_shap`` (estimate)  ``probability`` of the class / ``value``
=============================  ==========================  =========================================

- ``linear``: the model's output is affine in the inputs (scalers and other affine steps folded
  in), so the interventional Shapley values are exact: ``coef_i * (x_i - mean_i)`` over the
  reference sample.
- ``tree_shap_path_dependent``: Lundberg et al.'s path-dependent TreeSHAP on the ONNX tree
  operators' own nodes. ONNX carries no training counts, so node covers are the counts of the
  reference sample's rows through each node (``covers: "reference"``); a node no reference row
  reached splits its cover evenly. Element-wise preprocessing (scalers) is replayed before the
  trees, so attributions are per input feature. Vectorised over every root-to-leaf path.
- ``kernel_shap``: a model-agnostic estimate against a fixed background sample of the reference,
  with a fixed budget (``BACKGROUND_ROWS`` x ``COALITIONS`` = 16,384 model rows per explained row,
  scored in one batched call); every coalition is enumerated (the estimate is then exact w.r.t. the
  background) when the features are few enough. It explains the served probability (or value).

For classifiers the explained class is the predicted one unless the request names another;
``output: "probability"`` asks for probability-scale attributions where the exact method is
additive in the margin (they are then estimated with ``kernel_shap``).

The artifact (``explainer.npz`` beside the model, written by ``explain_build.build_explainer``
when the version is registered) holds flattened numpy arrays and one JSON header; it is read with
``allow_pickle=False`` and checked against the version's sha256, so predict needs neither ``onnx``
nor heavy work at request time.
"""

from __future__ import annotations

import io
import json
import math
import threading
import zipfile
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from mlambda.errors import (
    ConflictError,
    MlambdaError,
    NotFoundError,
    PayloadTooLargeError,
    UnprocessableError,
)
from mlambda.ports import ArtifactStore
from mlambda.schemas.registry import FeatureSchema, ModelVersion, Signature
from mlambda.services.inference.scoring import columns_to_feed, probability_matrix

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
Scorer = Callable[[np.ndarray], FloatArray]
"""Scores a feature matrix with the model: [n, classes] probabilities, or [n, 1] values."""
OutputChoice = Literal["auto", "probability"]

FORMAT_VERSION = 1
METHOD_LINEAR = "linear"
METHOD_TREE = "tree_shap_path_dependent"
METHOD_KERNEL = "kernel_shap"
BACKGROUND_ROWS = 64
"""kernel_shap: reference rows each coalition is averaged over (the background)."""
COALITIONS = 256
"""kernel_shap: coalitions evaluated per explained row (all of them when 2**M - 2 fit)."""
KERNEL_SEED = 0
"""kernel_shap: a fixed seed, so one row always gets the same explanation."""
KERNEL_MAX_ROWS = 10
"""kernel_shap: explained rows per request at most (each costs BACKGROUND_ROWS x COALITIONS model rows)."""
TREE_WORK_BUDGET = 100_000_000
"""TreeSHAP: explained rows x path elements x depth per request at most (~1-2 s of numpy)."""
CHUNK_ELEMENTS = 1 << 20
"""TreeSHAP works on at most this many (row, path, element) cells at a time (memory bound)."""
TABLE_CELLS = 1 << 22
"""TreeSHAP precomputes shares per split pattern when 2**depth x paths x depth fits (32 MB)."""


class ExplainerCorruptError(MlambdaError):
    """The stored explainer does not parse or does not belong to the version: never use it."""

    status = 500
    default_code = "explainer_corrupt"


@dataclass(frozen=True, slots=True)
class Head:
    """How one class's (or the regression value's) explained output reads off the raw columns."""

    column: int
    alpha: float
    beta: float
    output: str


@dataclass(frozen=True, slots=True)
class Preprocessing:
    """Element-wise steps from the model input to the trees' input, replayed as onnxruntime runs them."""

    ops: tuple[tuple[str, np.ndarray], ...]

    def apply(self, matrix: np.ndarray) -> np.ndarray:
        """The trees' input for ``matrix`` (same dtype arithmetic as the graph)."""
        out = matrix
        for op, operand in self.ops:
            if op == "cast":
                out = out.astype(operand.dtype)
            elif op == "add":
                out = out + operand.astype(out.dtype)
            elif op == "sub":
                out = out - operand.astype(out.dtype)
            elif op == "rsub":
                out = operand.astype(out.dtype) - out
            elif op == "mul":
                out = out * operand.astype(out.dtype)
            elif op == "div":
                out = out / operand.astype(out.dtype)
            else:  # "scaler": ai.onnx.ml Scaler, (x - offset) * scale, computed and returned in float32
                out = (out.astype(np.float32) - operand[0]) * operand[1]
        return out


@dataclass(frozen=True, slots=True)
class ColumnPaths:
    """The paths feeding one raw column, with their Shapley weights and (when small enough) share table."""

    features: npt.NDArray[np.int32]
    lower: np.ndarray
    upper: np.ndarray
    zero: FloatArray
    weights: FloatArray
    values: FloatArray
    table: FloatArray | None
    """[2**D * P, D]: element shares of every path for every pattern of followed splits, or None."""


@dataclass(frozen=True)
class TreePaths:
    """Every root-to-leaf path of a tree ensemble, each feature merged once per path.

    Row ``p`` is one leaf: ``features[p, j]`` the j-th distinct feature on its path (``n_features``
    pads), the interval ``(lower, upper]`` a row's value must fall in to follow the path on that
    feature, ``zero[p, j]`` the product of the reference covers' fractions along those splits,
    ``length[p]`` the number of distinct features, ``values[p]`` the leaf's raw output per column.
    """

    features: npt.NDArray[np.int32]
    lower: np.ndarray
    upper: np.ndarray
    zero: FloatArray
    length: npt.NDArray[np.int32]
    values: FloatArray
    n_features: int
    _by_column: dict[int, ColumnPaths] = field(default_factory=dict, repr=False, compare=False)

    def for_column(self, column: int) -> ColumnPaths:
        """The paths whose leaf feeds ``column``, prepared once (weights, share table)."""
        found = self._by_column.get(column)
        if found is None:
            keep = np.flatnonzero(self.values[:, column] != 0)
            depth = max(1, int(self.length[keep].max()) if keep.size else 1)
            length = self.length[keep]
            zero = np.ascontiguousarray(self.zero[keep, :depth])
            weights = _shapley_weights(length, depth)
            values = np.ascontiguousarray(self.values[keep, column])
            table = None
            if keep.size and (1 << depth) * keep.size * depth <= TABLE_CELLS:
                bits = (np.arange(1 << depth)[:, None] >> np.arange(depth)) & 1  # [2**D, D]
                real = np.arange(depth)[None, :] < length[:, None]  # pads never follow
                one = (bits[:, None, :] * real[None]).astype(np.float64)
                table = _shares(one, zero, weights, values).reshape(-1, depth)
            found = ColumnPaths(
                features=np.ascontiguousarray(self.features[keep, :depth]),
                lower=np.ascontiguousarray(self.lower[keep, :depth]),
                upper=np.ascontiguousarray(self.upper[keep, :depth]),
                zero=zero,
                weights=weights,
                values=values,
                table=table,
            )
            self._by_column[column] = found
        return found

    @property
    def cost_per_row(self) -> int:
        """Work units one explained row costs (path elements x depth)."""
        return int(self.features.size * max(1, self.features.shape[1]))


def _shapley_weights(length: npt.NDArray[np.int32], depth: int) -> FloatArray:
    """[P, D]: k! (d-1-k)! / d! for a coalition of size k on a path of d distinct features."""
    table = np.zeros((depth + 1, depth))
    for d in range(1, depth + 1):
        for k in range(d):
            table[d, k] = math.factorial(k) * math.factorial(d - 1 - k) / math.factorial(d)
    return table[length]


def _shares(one: FloatArray, zero: FloatArray, weights: FloatArray, values: FloatArray) -> FloatArray:
    """[N, P, D]: each path element's share of the attributions, given which splits each row follows.

    For one path with distinct features j (cover fraction z_j, o_j = 1 when the row follows the
    path on j), feature i's share is v (o_i - z_i) sum_k c_k k!(d-1-k)!/d!, where c_k are the
    coefficients of prod_{j != i} (z_j + o_j t): the product is built once per path and divided
    by (z_i + o_i t) for every i at once (descending synthetic division, stable as 0 <= z <= 1).
    """
    depth = one.shape[2]
    poly = np.zeros((*one.shape[:2], depth + 1))
    poly[..., 0] = 1.0
    for j in range(depth):
        poly[..., 1 : j + 2] = (
            poly[..., 1 : j + 2] * zero[None, :, j : j + 1] + poly[..., : j + 1] * one[:, :, j : j + 1]
        )
        poly[..., 0] *= zero[None, :, j]
    z = zero[None]
    quotient = np.broadcast_to(poly[..., depth : depth + 1], one.shape).copy()
    summed = quotient * weights[None, :, depth - 1 : depth]
    for k in range(depth - 1, 0, -1):
        quotient = poly[..., k : k + 1] - z * quotient
        summed += quotient * weights[None, :, k - 1 : k]
    # o_i = 0: the quotient is poly / z_i (and when z_i = 0 the factor (o_i - z_i) is 0 anyway).
    at_zero = (poly[..., :depth] * weights[None]).sum(axis=-1, keepdims=True) / np.where(z > 0, z, 1.0)
    return np.asarray(values[None, :, None] * (one - z) * np.where(one > 0, summed, at_zero))


def tree_shap(matrix: np.ndarray, paths: TreePaths, column: int) -> FloatArray:
    """Path-dependent TreeSHAP (Lundberg et al.) of raw column ``column``: [N, n_features] attributions.

    A row only decides, per path element, whether it follows the path (o_j in {0, 1}); so when
    the paths are short, every element's share is precomputed for each of the 2**D patterns
    (``ColumnPaths.table``, the idea of Yang's FastTreeSHAP v2) and a row costs one gather per
    path. Deeper ensembles evaluate ``_shares`` per row, in blocks bounded by ``CHUNK_ELEMENTS``.
    Either way this is a few numpy operations over (row, path, element) arrays, not a recursion
    per tree.
    """
    prepared = paths.for_column(column)
    n_rows, width = matrix.shape[0], paths.n_features
    n_paths, depth = prepared.features.shape
    out = np.zeros((n_rows, width + 1))
    if n_paths == 0:
        return out[:, :width]
    padded = np.concatenate([matrix, np.zeros((n_rows, 1), dtype=matrix.dtype)], axis=1)
    per_row = n_paths * depth
    row_step = max(1, CHUNK_ELEMENTS // per_row)
    path_step = n_paths if per_row <= CHUNK_ELEMENTS else max(1, CHUNK_ELEMENTS // depth)
    for start in range(0, n_rows, row_step):
        rows = padded[start : start + row_step]
        block = out[start : start + rows.shape[0]]
        for first in range(0, n_paths, path_step):
            part = slice(first, first + path_step)
            features = prepared.features[part]
            taken = np.take(rows, features, axis=1)
            follows = (taken > prepared.lower[part]) & (taken <= prepared.upper[part])
            if prepared.table is not None:
                powers: np.ndarray = (1 << np.arange(depth)).astype(np.uint8 if depth <= 8 else np.int64)
                bits: np.ndarray = follows.reshape(-1, depth).view(np.uint8)
                pattern = np.matmul(bits, powers).reshape(rows.shape[0], n_paths)
                shares = np.take(
                    prepared.table, (pattern.astype(np.intp) * n_paths + np.arange(n_paths)).ravel(), axis=0
                )
            else:
                shares = _shares(
                    follows.astype(np.float64),
                    prepared.zero[part],
                    prepared.weights[part],
                    prepared.values[part],
                )
            index = (np.arange(rows.shape[0])[:, None] * (width + 1) + features.reshape(1, -1)).ravel()
            block += np.bincount(index, weights=shares.ravel(), minlength=block.size).reshape(block.shape)
    return out[:, :width]


@lru_cache(maxsize=64)
def kernel_coalitions(n_features: int, budget: int, seed: int = KERNEL_SEED) -> tuple[FloatArray, FloatArray]:
    """KernelSHAP's coalitions and weights: whole coalition sizes while the budget allows, then sampled.

    Sizes are taken in complementary pairs from the edges inward (1 and M-1 carry the most
    Shapley-kernel weight); what the budget cannot enumerate is sampled in complementary pairs
    with the kernel's size distribution, sharing the remaining weight equally (as shap does).
    Returns ([S, M] 0/1 masks, [S] weights).
    """
    m = n_features
    sizes = np.arange(1, m)
    mass = (m - 1) / (sizes * (m - sizes))  # kernel weight of a whole size, up to a constant
    masks: list[np.ndarray] = []
    weights: list[float] = []
    remaining = budget
    size = 1
    done: set[int] = set()
    while size <= m - size:
        pair = {size, m - size}
        count = sum(math.comb(m, s) for s in pair)
        if count > remaining:
            break
        for s in sorted(pair):
            for subset in _combinations(m, s):
                masks.append(subset)
                weights.append(float(mass[s - 1]) / math.comb(m, s))
        remaining -= count
        done |= pair
        size += 1
    left = [s for s in range(1, m) if s not in done]
    if left and remaining >= 2:
        rng = np.random.default_rng(seed)
        half = [s for s in left if s <= m - s]
        probabilities = np.array([mass[s - 1] * (1 if s == m - s else 2) for s in half])
        total_left = float(sum(mass[s - 1] for s in left))
        drawn = rng.choice(len(half), size=remaining // 2, p=probabilities / probabilities.sum())
        share = total_left / (2 * len(drawn))
        for choice in drawn:
            s = half[int(choice)]
            mask = np.zeros(m)
            mask[rng.choice(m, size=s, replace=False)] = 1.0
            masks.extend((mask, 1.0 - mask))
            weights.extend((share, share))
    return np.array(masks, dtype=np.float64).reshape(-1, m), np.array(weights)


def _combinations(m: int, size: int) -> list[np.ndarray]:
    from itertools import combinations

    rows = []
    for chosen in combinations(range(m), size):
        mask = np.zeros(m)
        mask[list(chosen)] = 1.0
        rows.append(mask)
    return rows


def kernel_shap(
    matrix: np.ndarray,
    columns: IntArray,
    background: np.ndarray,
    background_outputs: FloatArray,
    score: Scorer,
) -> tuple[FloatArray, FloatArray, FloatArray, int]:
    """KernelSHAP of output ``columns[n]`` for each row: (attributions, values, baselines, coalitions).

    Every perturbed row of every explained row goes to the model in one call. The weighted least
    squares carries the efficiency constraint exactly (sum = value - baseline).
    """
    n_rows, m = matrix.shape
    masks, weights = kernel_coalitions(m, COALITIONS)
    n_masks, n_background = masks.shape[0], background.shape[0]
    keep = masks.astype(bool)[None, :, None, :]  # [1, S, 1, M]
    perturbed = np.where(keep, matrix[:, None, None, :], background[None, None, :, :])
    stacked = np.concatenate([perturbed.reshape(-1, m), matrix], axis=0).astype(matrix.dtype)
    outputs = score(stacked)
    picked = outputs[
        np.arange(outputs.shape[0]), np.concatenate([np.repeat(columns, n_masks * n_background), columns])
    ]
    coalition_values = (
        picked[: n_rows * n_masks * n_background].reshape(n_rows, n_masks, n_background).mean(axis=2)
    )
    values = picked[n_rows * n_masks * n_background :].astype(np.float64)
    baselines = background_outputs[:, columns].mean(axis=0)
    attributions = np.zeros((n_rows, m))
    # Eliminate the last feature with the constraint: phi_M = total - sum(phi_<M).
    design = masks[:, :-1] - masks[:, -1:]
    root = np.sqrt(weights)[:, None]
    for n in range(n_rows):
        total = values[n] - baselines[n]
        target = coalition_values[n] - baselines[n] - masks[:, -1] * total
        solution, *_ = np.linalg.lstsq(design * root, target * root[:, 0], rcond=None)
        attributions[n, :-1] = solution
        attributions[n, -1] = total - solution.sum()
    return attributions, values, baselines, n_masks


@dataclass(frozen=True)
class Explanations:
    """Attributions for a matrix of rows, as arrays: what JSON responses and batch columns are made of."""

    method: str
    exact: bool
    output: str
    attributions: FloatArray
    values: FloatArray
    baselines: FloatArray
    classes: IntArray | None
    reference_rows: int
    covers: str | None = None
    coalitions: int | None = None

    def columns(self, names: Sequence[str], class_labels: Sequence[Any] | None) -> dict[str, np.ndarray]:
        """The attributions as output columns for a batch file: ``explain_<feature>`` per feature,
        ``explain_baseline``, ``explain_value`` (and ``explain_class`` for classifiers), row-aligned."""
        columns = {f"explain_{name}": self.attributions[:, i] for i, name in enumerate(names)}
        columns["explain_baseline"] = self.baselines
        columns["explain_value"] = self.values
        if self.classes is not None:
            labels = [str(label) for label in class_labels] if class_labels is not None else None
            columns["explain_class"] = np.array(
                [labels[c] if labels is not None else str(c) for c in self.classes.tolist()], dtype=np.str_
            )
        return columns

    def as_json(self, names: Sequence[str], class_labels: Sequence[Any] | None) -> list[dict[str, Any]]:
        """One ``explanation`` object per row (see the module doc)."""
        header: dict[str, Any] = {"method": self.method, "exact": self.exact, "output": self.output}
        if self.covers is not None:
            header["covers"] = self.covers
        if self.coalitions is not None:
            header["coalitions"] = self.coalitions
        header["reference_rows"] = self.reference_rows
        answers = []
        labels = [str(label) for label in class_labels] if class_labels is not None else None
        classes = self.classes.tolist() if self.classes is not None else None
        for n, (row, value, baseline) in enumerate(
            zip(self.attributions.tolist(), self.values.tolist(), self.baselines.tolist(), strict=True)
        ):
            answer = dict(header)
            if classes is not None:
                answer["class"] = labels[classes[n]] if labels is not None else str(classes[n])
            answer["value"] = value
            answer["baseline"] = baseline
            answer["attributions"] = dict(zip(names, row, strict=True))
            answers.append(answer)
        return answers


class Explainer:
    """A version's explainer, loaded from its artifact: ``explain(matrix, classes, ...)``."""

    def __init__(self, header: Mapping[str, Any], arrays: Mapping[str, np.ndarray]) -> None:
        self.header = dict(header)
        self.method: str = header["method"]
        self.task: str = header["task"]
        self.n_features: int = int(header["n_features"])
        self.n_classes: int = int(header.get("n_classes") or 0)
        self.reference_rows: int = int(header["reference_rows"])
        self.fallback_reason: str | None = header.get("fallback_reason")
        self.heads = [Head(**head) for head in header.get("heads", [])]
        self.background = arrays["background"]
        self.background_outputs = arrays["background_outputs"].astype(np.float64)
        self.baseline_raw = arrays["baseline_raw"].astype(np.float64) if "baseline_raw" in arrays else None
        self.coef = arrays.get("coef")
        self.reference_mean = arrays.get("reference_mean")
        self.preprocessing = Preprocessing(
            tuple((op, arrays[f"pre_{i}"]) for i, op in enumerate(header.get("preprocessing", [])))
        )
        self.paths: TreePaths | None = None
        if self.method == METHOD_TREE:
            self.paths = TreePaths(
                features=arrays["path_features"].astype(np.int32),
                lower=arrays["path_lower"],
                upper=arrays["path_upper"],
                zero=arrays["path_zero"].astype(np.float64),
                length=arrays["path_length"].astype(np.int32),
                values=arrays["path_values"].astype(np.float64),
                n_features=self.n_features,
            )
        self._check()

    def _check(self) -> None:
        m = self.n_features
        if self.background.ndim != 2 or self.background.shape[1] != m or self.background.shape[0] < 1:
            raise ValueError("background must be [rows, features]")
        if self.background_outputs.shape[0] != self.background.shape[0]:
            raise ValueError("background outputs do not match the background")
        if self.method == METHOD_LINEAR:
            if self.coef is None or self.reference_mean is None or self.coef.shape[0] != m:
                raise ValueError("linear explainer lacks coefficients")
            if self.reference_mean.shape != (m,):
                raise ValueError("reference mean has the wrong shape")
        if self.paths is not None:
            paths = self.paths
            shape = paths.features.shape
            if not (paths.lower.shape == paths.upper.shape == paths.zero.shape == shape):
                raise ValueError("path arrays disagree in shape")
            if paths.length.shape != shape[:1] or paths.values.shape[0] != shape[0]:
                raise ValueError("path lengths or values disagree with the paths")
            if shape[0] and (paths.features.min() < 0 or paths.features.max() > m):
                raise ValueError("path features out of range")
            if shape[0] and (paths.length.min() < 0 or paths.length.max() > shape[1]):
                raise ValueError("path lengths out of range")
        columns = self.coef.shape[1] if self.coef is not None else None
        if self.paths is not None:
            columns = self.paths.values.shape[1]
        for head in self.heads:
            if columns is None or not 0 <= head.column < columns:
                raise ValueError("output head names a missing column")

    # ------------------------------------------------------------------ persistence

    def to_bytes(self) -> bytes:
        """The artifact: one JSON header and flat arrays in an uncompressed ``.npz``."""
        arrays: dict[str, np.ndarray] = {
            "background": self.background,
            "background_outputs": self.background_outputs,
        }
        if self.baseline_raw is not None:
            arrays["baseline_raw"] = self.baseline_raw
        if self.coef is not None and self.reference_mean is not None:
            arrays["coef"] = self.coef
            arrays["reference_mean"] = self.reference_mean
        for i, (_, operand) in enumerate(self.preprocessing.ops):
            arrays[f"pre_{i}"] = operand
        if self.paths is not None:
            arrays.update(
                path_features=self.paths.features,
                path_lower=self.paths.lower,
                path_upper=self.paths.upper,
                path_zero=self.paths.zero,
                path_length=self.paths.length,
                path_values=self.paths.values,
            )
        header = {**self.header, "preprocessing": [op for op, _ in self.preprocessing.ops]}
        buffer = io.BytesIO()
        arrays["header"] = np.array(json.dumps(header))
        save: Callable[..., None] = np.savez_compressed  # its **arrays overlap allow_pickle for mypy
        save(buffer, **arrays)
        return buffer.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes, *, model_sha256: str) -> Explainer:
        """Load an artifact; ExplainerCorruptError unless it parses and was built for ``model_sha256``."""
        try:
            with np.load(io.BytesIO(data), allow_pickle=False) as archive:
                arrays = {name: archive[name] for name in archive.files}
            header = json.loads(str(arrays.pop("header")))
            if header.get("format") != FORMAT_VERSION:
                raise ValueError(f"unknown explainer format {header.get('format')!r}")
            if header.get("model_sha256") != model_sha256:
                raise ValueError("explainer was built for another model artifact")
            return cls(header, arrays)
        except (ValueError, KeyError, TypeError, OSError, EOFError, zipfile.BadZipFile) as exc:
            raise ExplainerCorruptError(f"explainer artifact is unusable: {exc}") from exc

    # ------------------------------------------------------------------ explaining

    def exact_method(self, output: OutputChoice) -> bool:
        """Whether ``output`` is answered exactly (else by kernel_shap)."""
        if self.method == METHOD_KERNEL:
            return False
        return output == "auto" or all(head.output == "probability" for head in self.heads)

    def max_rows(self, output: OutputChoice) -> int | None:
        """How many rows one request may explain with the method ``output`` selects (None: no limit)."""
        if not self.exact_method(output):
            return KERNEL_MAX_ROWS
        if self.paths is not None:
            return max(1, TREE_WORK_BUDGET // max(1, self.paths.cost_per_row))
        return None

    def check_budget(self, rows: int, output: OutputChoice) -> None:
        """PayloadTooLargeError (413) when ``rows`` explanations exceed one request's budget."""
        limit = self.max_rows(output)
        if limit is not None and rows > limit:
            method = self.method if self.exact_method(output) else METHOD_KERNEL
            raise PayloadTooLargeError(
                f"explaining {rows} rows with {method} exceeds one request's budget; "
                f"send at most {limit} instances with explain",
                code="too_many_explanations",
                details={"rows": rows, "limit": limit, "method": method},
            )

    def class_index(self, name: int | str | None, labels: Sequence[Any] | None) -> int | None:
        """The index of class ``name`` among ``labels``; UnprocessableError naming the choices."""
        if name is None:
            return None
        if self.task != "classification":
            raise UnprocessableError(
                "explain.class applies to classifiers only", code="invalid_explain_class"
            )
        known = (
            [str(label) for label in labels]
            if labels is not None
            else [str(i) for i in range(self.n_classes)]
        )
        if str(name) not in known:
            raise UnprocessableError(
                f"explain.class {str(name)[:40]!r} is not a class of this model",
                code="invalid_explain_class",
                details={"classes": known},
            )
        return known.index(str(name))

    def explain(
        self,
        matrix: np.ndarray,
        classes: Sequence[int] | None,
        *,
        score: Scorer,
        output: OutputChoice = "auto",
    ) -> Explanations:
        """Attributions for ``matrix`` (the model's input rows, in feature order).

        ``classes`` gives each row's explained class index (classifiers); ``score`` runs the model
        on a matrix and is called (once) only by the kernel_shap method.
        """
        if matrix.ndim != 2 or matrix.shape[1] != self.n_features:
            raise UnprocessableError("rows do not match the explainer's features", code="explain_mismatch")
        if output == "probability" and self.task != "classification":
            raise UnprocessableError(
                "explain.output 'probability' applies to classifiers only", code="invalid_explain_output"
            )
        n_rows = matrix.shape[0]
        columns = np.zeros(n_rows, dtype=np.int64) if classes is None else np.asarray(classes, dtype=np.int64)
        explained_classes = columns if self.task == "classification" else None
        if not self.exact_method(output):
            attributions, values, baselines, coalitions = kernel_shap(
                matrix, columns, self.background, self.background_outputs, score
            )
            return Explanations(
                method=METHOD_KERNEL,
                exact=False,
                output="probability" if self.task == "classification" else "value",
                attributions=attributions,
                values=values,
                baselines=baselines,
                classes=explained_classes,
                reference_rows=self.background.shape[0],
                coalitions=coalitions,
            )
        assert self.baseline_raw is not None
        attributions = np.zeros((n_rows, self.n_features))
        values = np.zeros(n_rows)
        baselines = np.zeros(n_rows)
        one_class = n_rows > 0 and bool((columns == columns[0]).all())
        for index in [int(columns[0])] if one_class else np.unique(columns).tolist():
            head = self.heads[index]
            rows = slice(None) if one_class else np.flatnonzero(columns == index)
            raw = self._raw_attributions(matrix[rows], head.column)
            baseline = head.alpha * float(self.baseline_raw[head.column]) + head.beta
            attributions[rows] = raw if head.alpha == 1.0 else head.alpha * raw
            baselines[rows] = baseline
            values[rows] = baseline + attributions[rows].sum(axis=1)
        return Explanations(
            method=self.method,
            exact=True,
            output=self.heads[int(columns[0])].output if n_rows else self.heads[0].output,
            attributions=attributions,
            values=values,
            baselines=baselines,
            classes=explained_classes,
            reference_rows=self.reference_rows,
            covers="reference" if self.method == METHOD_TREE else None,
        )

    def _raw_attributions(self, matrix: np.ndarray, column: int) -> FloatArray:
        if self.paths is not None:
            return tree_shap(
                self.preprocessing.apply(matrix) if self.preprocessing.ops else matrix, self.paths, column
            )
        assert self.coef is not None and self.reference_mean is not None
        return np.asarray(
            (matrix.astype(np.float64) - self.reference_mean) * self.coef[:, column], dtype=np.float64
        )


Run = Callable[[dict[str, np.ndarray]], Mapping[str, Any]]
"""Runs the model on an ONNX feed: its outputs by name."""


def feature_matrix(schema: FeatureSchema, feed: Mapping[str, np.ndarray]) -> np.ndarray:
    """The rows as the explainer reads them, [rows, features] in schema order, from the feed the model scored."""
    if schema.mode == "tensor":
        return feed[schema.tensor_input or "input"]
    return np.column_stack([feed[name].reshape(-1) for name in schema.names])


def model_scorer(schema: FeatureSchema, signature: Signature, dtype: Any, run: Run) -> Scorer:
    """A ``Scorer`` over ``run``: a perturbed matrix fed as the model takes it (tensor of ``dtype``, or
    one input per feature), class probabilities or values out."""

    def score(perturbed: np.ndarray) -> FloatArray:
        feed = (
            {schema.tensor_input or "input": perturbed.astype(dtype)}
            if schema.mode == "tensor"
            else columns_to_feed(schema, {name: perturbed[:, j] for j, name in enumerate(schema.names)})
        )
        outputs = run(feed)
        if signature.task == "classification":
            return probability_matrix(signature, outputs).astype(np.float64)
        return np.asarray(outputs[signature.value_output or ""], dtype=np.float64).reshape(
            perturbed.shape[0], -1
        )

    return score


def explain_feed(
    explainer: Explainer,
    version: ModelVersion,
    feed: Mapping[str, np.ndarray],
    labels: Sequence[Any] | None,
    run: Run,
    *,
    class_index: int | None = None,
    output: OutputChoice = "auto",
) -> Explanations:
    """Attributions of the rows of ``feed`` (the model's input, as scored): classifiers explain each
    row's predicted class ``labels[i]``, or class ``class_index`` for every row; ``run`` scores the
    perturbed rows kernel_shap needs. Predict, batch and evaluations explain through this."""
    signature = version.signature
    matrix = feature_matrix(version.feature_schema, feed)
    classes: list[int] | None = None
    if signature.task == "classification":
        if class_index is not None:
            classes = [class_index] * matrix.shape[0]
        else:
            known = {
                str(label): i for i, label in enumerate(signature.class_labels or range(explainer.n_classes))
            }
            classes = [known[str(label)] for label in labels or ()]
    score = model_scorer(version.feature_schema, signature, matrix.dtype, run)
    return explainer.explain(matrix, classes, score=score, output=output)


def explainer_key(version: ModelVersion) -> str:
    """Where a version's explainer lives: beside its model, ``models/<name>/v<N>/explainer.npz``."""
    folder, _, _ = version.artifact_key.rpartition("/")
    return f"{folder}/explainer.npz"


class Explainers:
    """Loaded explainers by version: fetched from the artifacts bucket on first use, kept in a small LRU."""

    def __init__(self, artifacts: ArtifactStore, *, max_explainers: int = 8) -> None:
        self._artifacts = artifacts
        self._max = max_explainers
        self._loaded: OrderedDict[tuple[str, int], Explainer] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, version: ModelVersion) -> Explainer:
        """The version's explainer; ConflictError (409) when it has none, with the reason."""
        key = (version.model, version.version)
        with self._lock:
            found = self._loaded.get(key)
            if found is not None:
                self._loaded.move_to_end(key)
                return found
        stored = version.explainer_key
        if not stored:
            raise ConflictError(
                f"{version.model} v{version.version} has no explainer: versions registered with a "
                "reference sample (reference_key) and numeric features have one",
                code="explainer_unavailable",
                details={"model": version.model, "version": version.version},
            )
        try:
            data = self._artifacts.get(stored)
        except NotFoundError as exc:
            raise ExplainerCorruptError(
                f"the explainer of {version.model} v{version.version} is missing from the artifacts bucket",
                details={"model": version.model, "version": version.version},
            ) from exc
        explainer = Explainer.from_bytes(data, model_sha256=version.artifact_sha256)
        with self._lock:
            self._loaded[key] = explainer
            while len(self._loaded) > self._max:
                self._loaded.popitem(last=False)
        return explainer
