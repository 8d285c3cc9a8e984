"""CBPE (performance estimated without labels): its intervals hold the realised metric as often as
they say, on seeded simulations of a calibrated model."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest

from mlambda.schemas.monitoring import MetricEstimate, ProbabilityCalibration, ReferenceProfile
from mlambda.services.monitoring import performance as pf
from tests.unit import fakes_monitoring as fm

CLASSES = ["0", "1"]


def _model(x: np.ndarray) -> np.ndarray:
    return 1 / (1 + np.exp(-(1.2 * x[:, 0] - 0.8 * x[:, 1])))


def _sample(rng: np.random.Generator, rows: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(probabilities, predicted class, labels drawn from the probabilities: a calibrated model)."""
    p = _model(rng.normal(size=(rows, 2)))
    return np.c_[1 - p, p], (p > 0.5).astype(np.int64), (rng.random(rows) < p).astype(np.int64)


def _trial(
    seed: int, reference_rows: int, window_rows: int
) -> tuple[dict[str, MetricEstimate], dict[str, float]]:
    rng = np.random.default_rng(seed)
    probabilities, _, truth = _sample(rng, reference_rows)
    maps = pf.calibration_maps(truth, probabilities, CLASSES)
    window, predicted, window_truth = _sample(rng, window_rows)
    estimates = pf.estimate(window, predicted, CLASSES, maps, resamples=2000, rng=rng)
    return estimates, pf.realised(window_truth, predicted, window, 2)


def test_cbpe_interval_holds_the_realised_accuracy_when_the_reference_is_as_large_as_the_window() -> None:
    # Given 150 windows of 4,000 rows, each estimated with a map fitted on its own 4,000-row reference
    hits = {"accuracy": 0, "f1": 0, "auc": 0}
    for trial in range(150):
        estimates, realised = _trial(trial, 4000, 4000)
        for name in hits:
            low, high = estimates[name].low, estimates[name].high
            assert low is not None and high is not None
            hits[name] += low <= realised[name] <= high
    # Then the 95% intervals hold the realised values ~95% of the time: the calibration's own error
    # counts (with the labels' chance alone they held it ~82% of the time, the variance halved)
    for name, count in hits.items():
        assert count / 150 >= 0.90, (name, count)


def test_a_small_reference_does_not_make_the_estimated_auc_optimistic() -> None:
    # Given 200 windows of 200 rows estimated with maps fitted on 400 reference rows
    errors = [_trial(1000 + trial, 400, 200) for trial in range(200)]
    bias = np.mean([estimates["auc"].value - realised["auc"] for estimates, realised in errors])
    # Then the estimate is unbiased within noise (sd of the mean ~0.0025): the map's small extreme
    # steps are shrunk, which read 0 or 1 as fitted and lifted the estimate by 0.015
    assert abs(bias) < 0.008


def test_the_calibrations_step_counts_are_kept_and_shrink_small_steps() -> None:
    # Given a map fitted on 1,000 rows
    rng = np.random.default_rng(3)
    probabilities, _, truth = _sample(rng, 1000)
    calibration = pf.calibration_maps(truth, probabilities, CLASSES)["1"]
    # Then every step records its reference rows, and a step of 10 hits reads 10.5 / 11, not 1
    assert sum(calibration.counts) == 1000 and len(calibration.counts) == len(calibration.values)
    few = ProbabilityCalibration(upper=[0.5], values=[0.0, 1.0], counts=[990, 10])
    assert pf.apply_calibration(few, np.array([0.9]))[0] == pytest.approx(10.5 / 11)
    # And a map from an older profile (no counts) applies as fitted, with no calibration term
    old = ProbabilityCalibration(upper=[0.5], values=[0.0, 1.0])
    assert pf.apply_calibration(old, np.array([0.9]))[0] == 1.0
    assert pf.step_variances(old) is None


@pytest.mark.parametrize("classes", [2, 3])
def test_the_calibration_sensitivity_is_the_derivative_of_the_expected_metrics(classes: int) -> None:
    # Given a window, its maps, and one step of one map moved by a little
    rng = np.random.default_rng(classes)
    names = [str(c) for c in range(classes)]
    truth = rng.integers(0, classes, 3000)
    probabilities = rng.dirichlet(np.ones(classes), 3000) + np.eye(classes)[truth]
    probabilities /= probabilities.sum(axis=1, keepdims=True)
    maps = pf.calibration_maps(truth, probabilities, names)
    predicted = probabilities.argmax(axis=1)
    q = pf.calibrated(probabilities, names, maps)
    sensitivity = pf._sensitivity(probabilities, q, predicted, names, maps)
    assert sensitivity is not None
    moved_class = names[-1]
    step = 1
    offset = 0 if classes == 2 else sum(len(maps[n].values) for n in names[:-1])
    calibration = maps[moved_class]
    # (the map applies shrunk values: move the fitted value so the shrunk one moves by eps)
    eps = 1e-6
    counts = calibration.counts[step]
    values = list(calibration.values)
    values[step] += eps * (counts + 1) / counts
    moved = {**maps, moved_class: calibration.model_copy(update={"values": values})}
    q_moved = pf.calibrated(probabilities, names, moved)
    # Then the linearised change of the expected confusion matrix and AUC is the finite difference
    matrix = (
        pf.expected_confusion(q_moved, predicted, classes) - pf.expected_confusion(q, predicted, classes)
    ) / eps
    auc = (pf._macro_auc(probabilities, q_moved) - pf._macro_auc(probabilities, q)) / eps
    assert sensitivity.matrix[offset + step] == pytest.approx(matrix.ravel(), rel=1e-3, abs=1e-3)
    assert sensitivity.auc[offset + step] == pytest.approx(auc, rel=1e-3, abs=1e-6)


def test_normal_draws_take_a_covariance_singular_up_to_rounding_without_a_warning() -> None:
    # Given a multinomial covariance of 10^5 rows (singular: its rows sum to 0) whose rounding left an
    # eigenvalue of -1e-6 (numpy's multivariate_normal warns below -1e-8 and draws from it anyway)
    a = 25_000.0
    covariance = np.array([[a, -a], [-a, a - 1e-6]])
    with pytest.warns(RuntimeWarning, match="positive-semidefinite"):
        np.random.default_rng(0).multivariate_normal(np.zeros(2), covariance, size=10, method="eigh")
    # When drawn here
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        draws = pf.normal_draws(np.array([1e5, 0.0]), covariance, 20_000, np.random.default_rng(1))
    # Then there is no warning, the draws keep the sum fixed and have the matrix's variance
    assert np.allclose(draws.sum(axis=1), 1e5)
    assert draws[:, 0].var() == pytest.approx(a, rel=0.05)


def test_a_profile_stored_before_step_counts_still_loads_and_estimates() -> None:
    # Given a stored profile with a target whose calibration maps carry no "counts" (older format)
    stored = json.loads(fm.reference_profile_json(np.random.default_rng(5), 2000, target=True))
    for calibration in stored["baseline"]["calibration"].values():
        del calibration["counts"]
    profile = ReferenceProfile.from_json(json.dumps(stored))
    baseline = profile.baseline
    assert baseline is not None and all(not c.counts for c in baseline.calibration.values())
    # When CBPE estimates a window with its maps
    rng = np.random.default_rng(6)
    window, predicted, _ = _sample(rng, 3000)
    estimates = pf.estimate(
        window, predicted, baseline.classes, baseline.calibration, resamples=2000, rng=rng
    )
    # Then the maps apply as fitted, with intervals from the labels' chance alone
    q = pf.calibrated(window, baseline.classes, baseline.calibration)
    assert pf._sensitivity(window, q, predicted, baseline.classes, baseline.calibration) is None
    for name in ("accuracy", "f1", "auc"):
        low, high = estimates[name].low, estimates[name].high
        assert low is not None and high is not None and low < estimates[name].value < high
