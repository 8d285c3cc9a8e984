"""The data of ``make bench-monitor-calibration``, generated identically in both virtualenvs.

numpy only (plus sklearn's bundled breast-cancer data), so the project's venv (mlambda) and
``.venv-bench-evidently`` (Evidently) draw the same reference and windows from the same seeds
without passing megabytes between processes. Each trial draws one reference and five windows:
unchanged, x0 shifted by +0.1 / +0.25 / +0.5 sd, and category "a" going from 20% to 30%.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

NUMERIC = 20
CATEGORIES = np.array(["a", "b", "c", "d", "e"])
SYNTHETIC_SIZES = ((400, 200), (5_000, 2_000), (100_000, 100_000))
SHIFTS = (0.1, 0.25, 0.5)
SCENARIOS = ("unchanged", "x0 +0.1 sd", "x0 +0.25 sd", "x0 +0.5 sd", "category a 20% -> 30%")
Columns = dict[str, npt.NDArray[Any]]


@dataclass
class Trial:
    """One reference and its windows (features plus the model's outputs; target where known)."""

    reference: Columns
    windows: dict[str, Columns]
    numeric: list[str]
    categorical: list[str]
    reference_target: npt.NDArray[np.int64] | None = None
    window_targets: dict[str, npt.NDArray[np.int64]] | None = None


def _model(columns: Columns) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float64]]:
    """A fixed logistic model on x1 and x2 (x0 is not one of its inputs)."""
    probability = 1 / (1 + np.exp(-(1.2 * columns["x1"] - 0.8 * columns["x2"])))
    return (probability > 0.5).astype(np.int64), probability


def _synthetic(rng: np.random.Generator, rows: int, *, shift: float = 0.0, share: float = 0.2) -> Columns:
    columns: Columns = {f"x{i}": rng.normal(shift if i == 0 else 0.0, 1.0, rows) for i in range(NUMERIC)}
    rest = (1 - share) / 4
    columns["c"] = CATEGORIES[rng.choice(5, rows, p=[share, rest, rest, rest, rest])]
    label, probability = _model(columns)
    columns["prediction.label"] = label.astype(str)
    columns["prediction.probabilities.1"] = probability
    return columns


def _target(rng: np.random.Generator, columns: Columns) -> npt.NDArray[np.int64]:
    """Labels drawn from the model's own probabilities: a calibrated model, as CBPE assumes."""
    return (rng.random(columns["x1"].size) < columns["prediction.probabilities.1"]).astype(np.int64)


def synthetic_trials(reference_rows: int, window_rows: int, trials: int, seed: int) -> Iterator[Trial]:
    """Trials of the 20 numeric + 1 categorical setting."""
    for trial in range(trials):
        rng = np.random.default_rng([seed, reference_rows, window_rows, trial])
        reference = _synthetic(rng, reference_rows)
        windows = {"unchanged": _synthetic(rng, window_rows)}
        for shift in SHIFTS:
            windows[f"x0 +{shift:g} sd"] = _synthetic(rng, window_rows, shift=shift)
        windows["category a 20% -> 30%"] = _synthetic(rng, window_rows, share=0.3)
        yield Trial(
            reference=reference,
            windows=windows,
            numeric=[*(f"x{i}" for i in range(NUMERIC)), "prediction.probabilities.1"],
            categorical=["c", "prediction.label"],
            reference_target=_target(rng, reference),
            window_targets={name: _target(rng, w) for name, w in windows.items()},
        )


def unchanged_trials(reference_rows: int, window_rows: int, trials: int, seed: int) -> Iterator[Trial]:
    """A reference and one unchanged window per trial, on seeds of their own: the many runs a
    rate near 1% needs (mlambda's side only; Evidently's rates are far from it)."""
    for trial in range(trials):
        rng = np.random.default_rng([seed, reference_rows, window_rows, trial, 1])
        reference = _synthetic(rng, reference_rows)
        window = _synthetic(rng, window_rows)
        yield Trial(
            reference=reference,
            windows={"unchanged": window},
            numeric=[*(f"x{i}" for i in range(NUMERIC)), "prediction.probabilities.1"],
            categorical=["c", "prediction.label"],
            reference_target=_target(rng, reference),
            window_targets={"unchanged": _target(rng, window)},
        )


def breast_cancer_trials(trials: int, seed: int, *, first: int = 0) -> Iterator[Trial]:
    """Random 70/30 splits of sklearn's breast-cancer data (30 numeric features, no model), from split ``first``."""
    from sklearn.datasets import load_breast_cancer

    data = load_breast_cancer()
    names = [f"f{i}" for i in range(data.data.shape[1])]
    for trial in range(first, first + trials):
        order = np.random.default_rng([seed, 569, trial]).permutation(data.data.shape[0])
        cut = round(0.7 * order.size)
        reference = {n: data.data[order[:cut], i] for i, n in enumerate(names)}
        window = {n: data.data[order[cut:], i] for i, n in enumerate(names)}
        yield Trial(reference=reference, windows={"unchanged": window}, numeric=names, categorical=[])


def checksum(trial: Trial) -> str:
    """A short digest of a trial's data, printed by both processes to show they saw the same rows."""
    digest = hashlib.sha256()
    for columns in (trial.reference, *trial.windows.values()):
        for name in sorted(columns):
            digest.update(np.asarray(columns[name][:256]).astype(str).tobytes())
    return digest.hexdigest()[:12]
