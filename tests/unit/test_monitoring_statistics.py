"""The numpy statistics and metrics monitoring uses in Lambda, checked against scipy and sklearn."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats
from scipy.spatial.distance import jensenshannon
from sklearn import metrics as skm

from mlambda.services.monitoring import statistics as st
from mlambda.services.monitoring.model_quality import (
    QualitySettings,
    average_ranks,
    canonical_metric,
    classification_estimates,
    compare,
    regression_estimates,
    roc_auc,
)

RNG = np.random.default_rng(42)


@pytest.mark.parametrize(
    ("a", "b"),
    [
        (RNG.normal(size=700), RNG.normal(0.1, 1.2, size=1300)),
        (RNG.integers(0, 5, 300).astype(float), RNG.integers(0, 6, 800).astype(float)),
        (RNG.exponential(size=50), RNG.exponential(2.0, size=5000)),
        (np.array([1.0, 1.0, 2.0]), np.array([1.0, 2.0, 2.0, 3.0])),
    ],
)
def test_ks_statistic_matches_scipy_including_ties(a: np.ndarray, b: np.ndarray) -> None:
    # Given two samples (continuous or with ties)
    # When the statistic is computed in numpy
    ours = st.ks_statistic(np.sort(a), np.sort(b))
    # Then it equals scipy's
    assert ours == pytest.approx(stats.ks_2samp(a, b).statistic, abs=1e-12)


@pytest.mark.parametrize("x", [0.05, 0.3, 0.8, 1.0, 1.17, 1.19, 1.5, 2.5, 4.0])
def test_kolmogorov_tail_matches_scipy(x: float) -> None:
    assert st.kolmogorov_sf(x) == pytest.approx(stats.kstwobign.sf(x), rel=1e-9, abs=1e-15)


def test_ks_pvalue_is_the_asymptotic_kolmogorov_tail_of_scaled_statistic() -> None:
    # Given a KS statistic between samples of 400 and 100,000 rows
    d, n, m = 0.07, 400, 100_000
    # Then the p-value is scipy's limiting distribution at sqrt(n m / (n + m)) d
    expected = stats.kstwobign.sf(np.sqrt(n * m / (n + m)) * d)
    assert st.ks_pvalue(d, n, m) == pytest.approx(expected, rel=1e-9)


@pytest.mark.parametrize(
    ("a", "b"),
    [
        (RNG.normal(size=500), RNG.normal(0.5, 2.0, size=900)),
        (RNG.integers(0, 4, 200).astype(float), RNG.integers(1, 6, 300).astype(float)),
    ],
)
def test_wasserstein_matches_scipy(a: np.ndarray, b: np.ndarray) -> None:
    assert st.wasserstein_distance(a, b) == pytest.approx(stats.wasserstein_distance(a, b), rel=1e-10)


@pytest.mark.parametrize(
    ("x", "k"), [(0.5, 1), (3.0, 2), (10.0, 5), (100.0, 80), (30.0, 10), (1e-3, 3), (250.0, 20)]
)
def test_chi2_tail_matches_scipy(x: float, k: int) -> None:
    assert st.chi2_sf(x, k) == pytest.approx(stats.chi2.sf(x, k), rel=1e-8, abs=1e-300)


def test_chi_square_goodness_of_fit_matches_scipy_when_no_cell_is_pooled() -> None:
    # Given counts and expected shares with every expected count >= 5
    observed = np.array([30, 50, 20, 12])
    shares = np.array([0.3, 0.4, 0.2, 0.1])
    # When tested
    statistic, dof, p = st.chi_square(observed, shares)
    # Then scipy agrees
    reference = stats.chisquare(observed, shares * observed.sum())
    assert statistic == pytest.approx(reference.statistic)
    assert dof == 3
    assert p == pytest.approx(reference.pvalue, rel=1e-9)


def test_chi_square_pools_cells_with_small_expected_counts() -> None:
    # Given two rare categories (expected counts 1 and 2)
    observed = np.array([50, 47, 2, 1])
    shares = np.array([0.5, 0.47, 0.02, 0.01])
    # When tested
    statistic, dof, _ = st.chi_square(observed, shares)
    # Then they form one cell: three cells, two degrees of freedom
    assert dof == 2
    pooled = stats.chisquare([50, 47, 3], [50, 47, 3])
    assert statistic == pytest.approx(pooled.statistic)


def test_jensen_shannon_matches_scipy_base_2() -> None:
    p, q = [1, 2, 3, 0], [2, 2, 1, 1]
    assert st.jensen_shannon(p, q) == pytest.approx(jensenshannon(p, q, base=2))


def test_benjamini_hochberg_matches_scipy_and_skips_nan() -> None:
    p_values = [0.01, 0.04, 0.03, 0.5, 0.002]
    expected = stats.false_discovery_control(p_values)
    adjusted = st.benjamini_hochberg([*p_values, float("nan")])
    assert adjusted[:5] == pytest.approx(list(expected))
    assert np.isnan(adjusted[5])


def test_psi_is_zero_for_identical_shares_and_grows_with_shift() -> None:
    shares = np.full(10, 0.1)
    assert st.psi(shares, np.full(10, 100)) == pytest.approx(0.0)
    assert st.psi(shares, [300, 200, 100, 100, 100, 100, 50, 30, 10, 10]) > 0.2


def test_two_proportion_z_matches_the_textbook_formula() -> None:
    # Given 80/100 vs 65/100 successes
    z, p = st.two_proportion_z(80, 100, 65, 100)
    pooled = 145 / 200
    expected_z = (0.65 - 0.80) / np.sqrt(pooled * (1 - pooled) * (2 / 100))
    assert z == pytest.approx(expected_z)
    assert p == pytest.approx(2 * stats.norm.sf(abs(expected_z)))


def test_binary_classification_metrics_match_sklearn() -> None:
    # Given labels, predictions and scores of a noisy binary classifier
    y = RNG.integers(0, 2, 800)
    score = np.clip(y * 0.3 + RNG.random(800) * 0.7, 0, 1)
    predicted = (score > 0.5).astype(np.int64)
    # When estimated
    estimates = classification_estimates(y, predicted, 2, np.c_[1 - score, score], QualitySettings())
    # Then the point values are sklearn's and the intervals contain them
    assert estimates["accuracy"][0] == pytest.approx(skm.accuracy_score(y, predicted))
    assert estimates["precision"][0] == pytest.approx(skm.precision_score(y, predicted))
    assert estimates["recall"][0] == pytest.approx(skm.recall_score(y, predicted))
    assert estimates["f1"][0] == pytest.approx(skm.f1_score(y, predicted))
    assert estimates["auc"][0] == pytest.approx(skm.roc_auc_score(y, score))
    for value, low, high in estimates.values():
        assert low is not None and high is not None
        assert low <= value <= high


def test_multiclass_metrics_are_sklearn_macro_averages() -> None:
    y = RNG.integers(0, 3, 600)
    predicted = np.where(RNG.random(600) < 0.7, y, RNG.integers(0, 3, 600))
    probabilities = RNG.dirichlet([1, 1, 1], 600)
    estimates = classification_estimates(y, predicted, 3, probabilities, QualitySettings())
    assert estimates["f1"][0] == pytest.approx(skm.f1_score(y, predicted, average="macro"))
    assert estimates["precision"][0] == pytest.approx(skm.precision_score(y, predicted, average="macro"))
    assert estimates["auc"][0] == pytest.approx(skm.roc_auc_score(y, probabilities, multi_class="ovr"))


def test_auc_handles_tied_scores_like_sklearn() -> None:
    y = np.array([0, 0, 1, 1, 1, 0, 1])
    score = np.array([0.1, 0.5, 0.5, 0.9, 0.5, 0.2, 0.9])
    assert roc_auc(y == 1, score) == pytest.approx(skm.roc_auc_score(y, score))
    assert list(average_ranks(np.array([3.0, 1.0, 3.0]))) == [2.5, 1.0, 2.5]


def test_regression_metrics_match_sklearn_with_intervals() -> None:
    truth = RNG.normal(size=400)
    predicted = truth + RNG.normal(0, 0.3, 400)
    estimates = regression_estimates(truth, predicted, QualitySettings(resamples=100))
    assert estimates["mae"][0] == pytest.approx(skm.mean_absolute_error(truth, predicted))
    assert estimates["rmse"][0] == pytest.approx(skm.root_mean_squared_error(truth, predicted))
    assert estimates["r2"][0] == pytest.approx(skm.r2_score(truth, predicted))
    low, high = estimates["mae"][1], estimates["mae"][2]
    assert low is not None and high is not None and low < estimates["mae"][0] < high


def test_degradation_needs_the_tolerance_and_the_interval_to_exclude_the_registered_value() -> None:
    # Given registered metrics under their usual names
    registered = {"test_roc_auc": 0.95, "accuracy": 0.90, "mae": 1.0}
    estimates = {
        "auc": (0.80, 0.78, 0.82),  # far below, interval excludes: degraded
        "accuracy": (0.84, 0.70, 0.95),  # below by more than 0.05, but the interval includes 0.90
        "mae": (1.2, 1.15, 1.25),  # 20% worse error: degraded
    }
    metrics, degraded = compare(estimates, registered, tolerance=0.05)
    assert degraded == ["auc", "mae"]
    assert metrics["auc"].registered == 0.95
    assert canonical_metric("val_R2_score") == "r2"
