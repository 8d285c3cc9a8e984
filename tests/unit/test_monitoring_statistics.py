"""The numpy statistics and metrics monitoring uses in Lambda, checked against scipy and sklearn."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats
from scipy.spatial.distance import jensenshannon
from sklearn import metrics as skm

from mlambda.schemas.monitoring import MetricEstimate
from mlambda.services.monitoring import statistics as st
from mlambda.services.monitoring.model_quality import (
    QualitySettings,
    auc_estimate,
    average_ranks,
    canonical_metric,
    classification_estimates,
    materially_worse,
    regression_estimates,
    roc_auc,
    with_baseline,
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


@pytest.mark.parametrize(("n", "m"), [(10, 7), (50, 30), (133, 71), (400, 100)])
def test_exact_two_sample_ks_tail_matches_scipys_exact_method(n: int, m: int) -> None:
    # Given two samples, one shifted
    rng = np.random.default_rng(n)
    a, b = rng.normal(size=n), rng.normal(0.3, size=m)
    d = st.ks_statistic(np.sort(a), np.sort(b))
    # Then the lattice count gives scipy's exact p-value
    assert st.ks_exact_sf(d, n, m) == pytest.approx(stats.ks_2samp(a, b, method="exact").pvalue, rel=1e-9)


@pytest.mark.parametrize(("n", "m"), [(5000, 200), (2000, 300), (100_000, 2_000)])
def test_ks_pvalue_is_never_smaller_than_the_exact_one_for_large_samples(n: int, m: int) -> None:
    # Given the sizes at which the limiting law is used
    for d in (0.05, 0.08, 0.12):
        limiting = st.ks_pvalue(d, n, m)
        # Then it equals the Kolmogorov tail at sqrt(nm/(n+m)) d, and is at least scipy's exact value
        assert limiting == pytest.approx(stats.kstwobign.sf(np.sqrt(n * m / (n + m)) * d), rel=1e-9)
        if n + m <= 5_200:
            assert limiting >= st.ks_exact_sf(d, n, m) * 0.999


def test_sketch_statistic_is_exact_with_every_value_and_a_lower_bound_otherwise() -> None:
    rng = np.random.default_rng(7)
    window = np.sort(rng.normal(0.05, 1, 3000))
    # Given a reference small enough for the sketch to hold every value
    small = np.sort(rng.normal(size=400))
    assert st.ks_sketch_statistic(small, 400, window) == pytest.approx(st.ks_statistic(small, window))
    # And a large one summarised by 500 order statistics
    large = np.sort(rng.normal(size=50_000))
    sketch = large[st.sketch_ranks(large.size, 500)]
    bound = st.ks_sketch_statistic(sketch, large.size, window)
    exact = st.ks_statistic(large, window)
    # Then the bound never exceeds the statistic and is within one sketch step of it
    assert bound <= exact + 1e-12
    assert exact - bound <= 1 / 499 + 1e-12


def test_sketch_statistic_handles_ties_like_the_full_statistic() -> None:
    rng = np.random.default_rng(8)
    reference = np.sort(rng.integers(0, 5, 300).astype(float))
    window = np.sort(rng.integers(0, 6, 800).astype(float))
    assert st.ks_sketch_statistic(reference, 300, window) == pytest.approx(st.ks_statistic(reference, window))


def test_ks_from_the_sketch_holds_its_false_alarm_rate() -> None:
    # Given 400 windows of 300 rows from the reference's own distribution (a 5,000-row reference as a 500-point sketch)
    rng = np.random.default_rng(11)
    p_values = []
    for _ in range(400):
        reference = np.sort(rng.normal(size=5000))
        sketch = reference[st.sketch_ranks(5000, 500)]
        window = np.sort(rng.normal(size=300))
        p_values.append(st.ks_pvalue(st.ks_sketch_statistic(sketch, 5000, window), 5000, 300))
    # Then p-values are at least uniform: at most 5% (plus sampling noise) fall under 0.05
    assert np.mean(np.asarray(p_values) < 0.05) <= 0.05 + 2 * np.sqrt(0.05 * 0.95 / 400)


@pytest.mark.parametrize("df", [1.0, 2.5, 8.0, 15.3, 300.0])
def test_student_t_quantile_matches_scipy(df: float) -> None:
    for p in (0.001, 0.025, 0.4, 0.6, 0.975, 0.999):
        assert st.student_t_ppf(p, df) == pytest.approx(stats.t.ppf(p, df), rel=1e-9)


@pytest.mark.parametrize("p", [1e-10, 1e-5, 0.001, 0.02, 0.025, 0.3, 0.5, 0.9, 0.975, 0.99999])
def test_normal_quantile_matches_scipy(p: float) -> None:
    assert st.normal_ppf(p) == pytest.approx(stats.norm.ppf(p), rel=1e-9, abs=1e-12)


@pytest.mark.parametrize(
    ("k", "trials", "a", "b"),
    [
        (3, 171, 2, 397),
        (0, 10, 2, 5),
        (5, 200, 2, 399),
        (20, 1000, 2, 99),
        (1, 100_000, 2, 99_999),
        (7, 50, 3, 4),
    ],
)
def test_beta_binomial_tail_matches_scipy(k: int, trials: int, a: float, b: float) -> None:
    assert st.beta_binomial_sf(k, trials, a, b) == pytest.approx(
        stats.betabinom.sf(k - 1, trials, a, b), rel=1e-8
    )


def test_beta_binomial_far_tail_is_small_not_zero() -> None:
    # Given 50 of 100,000 values beyond a 100,000-row reference's range (2 expected)
    p = st.beta_binomial_sf(50, 100_000, 2, 99_999)
    # Then the tail is tiny and accurate (scipy's sf rounds it to 0; its log-pmf does not)
    assert 0 < p < 1e-12
    assert np.log(p) == pytest.approx(stats.betabinom.logpmf(50, 100_000, 2, 99_999), abs=1.0)


def test_values_outside_the_reference_range_are_as_rare_as_chance_says() -> None:
    # Given 3,000 pairs of samples from one continuous distribution (reference 400, window 171)
    rng = np.random.default_rng(12)
    p_values = []
    for _ in range(3000):
        reference = rng.normal(size=400)
        window = rng.normal(size=171)
        outside = int(np.sum((window < reference.min()) | (window > reference.max())))
        p_values.append(st.outside_range_pvalue(outside, 171, 400))
    # Then the beta-binomial p-value is valid: at most ~1% fall under 0.01
    assert np.mean(np.asarray(p_values) <= 0.01) <= 0.01 + 2 * np.sqrt(0.01 * 0.99 / 3000)


@pytest.mark.parametrize(
    "table", [[[3, 1], [1, 3]], [[10, 20], [30, 5]], [[0, 400], [5, 195]], [[100, 300], [80, 120]]]
)
def test_fisher_exact_matches_scipy(table: list[list[int]]) -> None:
    assert st.fisher_exact(table) == pytest.approx(stats.fisher_exact(table).pvalue, rel=1e-9)
    assert st.fisher_exact(table, "greater") == pytest.approx(
        stats.fisher_exact(table, alternative="greater").pvalue, rel=1e-9
    )


def test_contingency_test_is_scipys_chi_square_on_the_two_sample_table() -> None:
    reference, window = np.array([100, 80, 60, 40, 20]), np.array([40, 40, 50, 40, 30])
    statistic, dof, p, test = st.contingency_test(reference, window)
    expected = stats.chi2_contingency(np.vstack([reference, window]), correction=False)
    assert (statistic, dof, test) == (pytest.approx(expected.statistic), 4, "chi_square")
    assert p == pytest.approx(expected.pvalue, rel=1e-9)


def test_small_two_by_two_tables_get_fishers_exact_test() -> None:
    # Given a binary column with a rare class (expected count under 5)
    _, _, p, test = st.contingency_test([396, 4], [197, 3])
    assert test == "fisher_exact"
    assert p == pytest.approx(stats.fisher_exact([[396, 4], [197, 3]]).pvalue)


def test_two_sample_categorical_test_holds_its_level_where_the_one_sample_test_did_not() -> None:
    # Given 2,000 reference/window pairs of a 4-category column (ref 400, window 200)
    rng = np.random.default_rng(13)
    shares = [0.4, 0.3, 0.2, 0.1]
    two_sample, one_sample = [], []
    for _ in range(2000):
        reference = rng.multinomial(400, shares)
        window = rng.multinomial(200, shares)
        two_sample.append(st.contingency_test(reference, window)[2])
        one_sample.append(st.chi_square(window, reference / reference.sum())[2])
    # Then the two-sample table rejects at its level; treating the reference shares as exact inflates it
    assert np.mean(np.asarray(two_sample) < 0.05) <= 0.05 + 2 * np.sqrt(0.05 * 0.95 / 2000)
    assert np.mean(np.asarray(one_sample) < 0.05) > 0.08


def test_new_category_bound_holds_its_level_with_rare_categories() -> None:
    # Given a column whose rare categories a 400-row reference often misses
    rng = np.random.default_rng(14)
    shares = np.array([0.4, 0.3, 0.2, 0.09] + [0.0025] * 4)
    shares /= shares.sum()
    p_values = []
    for _ in range(2000):
        reference, window = rng.multinomial(400, shares), rng.multinomial(200, shares)
        p_values.append(st.new_category_pvalue(reference, window, int(window[reference == 0].sum())))
    # Then new categories by chance are not significant more often than the level
    assert np.mean(np.asarray(p_values) < 0.05) <= 0.05
    # And a real new category (3% of the window) is
    assert st.new_category_pvalue([160, 120, 80, 40, 0], [80, 60, 40, 14, 6], 6) < 0.01


def test_proportion_increase_is_fishers_one_sided_test() -> None:
    assert st.proportion_increase_test(2, 400, 9, 200) == pytest.approx(
        stats.fisher_exact([[9, 191], [2, 398]], alternative="greater").pvalue
    )


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
    estimates = classification_estimates(
        y, predicted, 2, np.c_[1 - score, score], QualitySettings(), np.random.default_rng(1)
    )
    # Then the point values are sklearn's and the intervals contain them
    assert estimates["accuracy"].value == pytest.approx(skm.accuracy_score(y, predicted), abs=1e-6)
    assert estimates["precision"].value == pytest.approx(skm.precision_score(y, predicted), abs=1e-6)
    assert estimates["recall"].value == pytest.approx(skm.recall_score(y, predicted), abs=1e-6)
    assert estimates["f1"].value == pytest.approx(skm.f1_score(y, predicted), abs=1e-6)
    assert estimates["auc"].value == pytest.approx(skm.roc_auc_score(y, score), abs=1e-6)
    assert estimates["auc"].method == "delong" and estimates["f1"].method == "bca"
    for estimate in estimates.values():
        assert estimate.low is not None and estimate.high is not None
        assert estimate.low <= estimate.value <= estimate.high


def test_settings_refuse_fewer_than_two_thousand_resamples() -> None:
    with pytest.raises(ValueError, match="2000"):
        QualitySettings(resamples=200)


def test_delong_variance_matches_the_textbook_structural_components() -> None:
    # Given scores whose positive and negative variances differ
    y = (RNG.random(300) < 0.4).astype(np.int64)
    score = np.where(y == 1, RNG.normal(1, 2, 300), RNG.normal(0, 1, 300))
    # When DeLong's variance is computed
    auc, se = auc_estimate(y, np.c_[-score, score], 2)
    # Then it is S10/n1 + S01/n0 from the placement values, computed pair by pair
    pos, neg = score[y == 1], score[y == 0]
    kernel = (pos[:, None] > neg[None, :]) + 0.5 * (pos[:, None] == neg[None, :])
    v10, v01 = kernel.mean(axis=1), kernel.mean(axis=0)
    expected = v10.var(ddof=1) / pos.size + v01.var(ddof=1) / neg.size
    assert auc == pytest.approx(kernel.mean())
    assert se**2 == pytest.approx(expected, rel=1e-9)


def test_intervals_cover_at_their_nominal_rate_in_simulation() -> None:
    # Given 150 samples of 300 rows from a known population (heavy-tailed errors for regression)
    rng = np.random.default_rng(21)
    true_accuracy = (
        stats.norm.sf(0.8, 1.2, 1.8) * 0.3 + stats.norm.cdf(0.8) * 0.7
    )  # threshold 0.8 on the score
    true_auc = stats.norm.cdf(1.2 / np.sqrt(1.8**2 + 1))  # P(N(1.2, 1.8) > N(0, 1))
    true_mae = stats.t(5).expect(abs)  # E|t_5|
    hits = {"accuracy": 0, "auc": 0, "mae": 0}
    settings = QualitySettings()
    for trial in range(150):
        y = rng.random(300) < 0.3
        score = np.where(y, rng.normal(1.2, 1.8, 300), rng.normal(0, 1, 300))
        probability = 1 / (1 + np.exp(-score))
        found = classification_estimates(
            y.astype(np.int64),
            (score > 0.8).astype(np.int64),
            2,
            np.c_[1 - probability, probability],
            settings,
            np.random.default_rng(trial),
        )
        errors = rng.standard_t(5, 300)
        regression = regression_estimates(np.zeros(300), -errors, settings, np.random.default_rng(trial))
        for name, truth, estimate in (
            ("accuracy", true_accuracy, found["accuracy"]),
            ("auc", true_auc, found["auc"]),
            ("mae", true_mae, regression["mae"]),
        ):
            assert estimate.low is not None and estimate.high is not None
            hits[name] += estimate.low <= truth <= estimate.high
    # Then each covers 95% within the simulation's noise (150 trials: 3 sd is 5.3 points)
    for name, count in hits.items():
        assert 0.89 <= count / 150 <= 1.0, (name, count)


def test_rmse_interval_covers_with_heavy_tailed_errors() -> None:
    # Given 400 samples of 300 lognormal errors (squared, their kurtosis runs to the hundreds)
    rng = np.random.default_rng(23)
    true_rmse = np.sqrt(stats.lognorm(0.8).expect(lambda x: (x - 1) ** 2))
    hits = 0
    for trial in range(400):
        errors = rng.lognormal(0, 0.8, 300) - 1
        rmse = regression_estimates(np.zeros(300), -errors, QualitySettings(), np.random.default_rng(trial))[
            "rmse"
        ]
        assert rmse.low is not None and rmse.high is not None
        hits += rmse.low <= true_rmse <= rmse.high
    # Then the interval holds the population RMSE about 95% of the time (the bootstrap-t alone: 90%)
    assert hits / 400 >= 0.92, hits


def test_multiclass_metrics_are_sklearn_macro_averages() -> None:
    y = RNG.integers(0, 3, 600)
    predicted = np.where(RNG.random(600) < 0.7, y, RNG.integers(0, 3, 600))
    probabilities = RNG.dirichlet([1, 1, 1], 600)
    estimates = classification_estimates(
        y, predicted, 3, probabilities, QualitySettings(), np.random.default_rng(2)
    )
    assert estimates["f1"].value == pytest.approx(skm.f1_score(y, predicted, average="macro"), abs=1e-6)
    assert estimates["precision"].value == pytest.approx(
        skm.precision_score(y, predicted, average="macro"), abs=1e-6
    )
    assert estimates["auc"].value == pytest.approx(
        skm.roc_auc_score(y, probabilities, multi_class="ovr"), abs=1e-6
    )


def test_auc_handles_tied_scores_like_sklearn() -> None:
    y = np.array([0, 0, 1, 1, 1, 0, 1])
    score = np.array([0.1, 0.5, 0.5, 0.9, 0.5, 0.2, 0.9])
    assert roc_auc(y == 1, score) == pytest.approx(skm.roc_auc_score(y, score))
    assert list(average_ranks(np.array([3.0, 1.0, 3.0]))) == [2.5, 1.0, 2.5]


def test_regression_metrics_match_sklearn_with_intervals() -> None:
    truth = RNG.normal(size=400)
    predicted = truth + RNG.normal(0, 0.3, 400)
    estimates = regression_estimates(truth, predicted, QualitySettings(), np.random.default_rng(3))
    assert estimates["mae"].value == pytest.approx(skm.mean_absolute_error(truth, predicted), abs=1e-6)
    assert estimates["rmse"].value == pytest.approx(skm.root_mean_squared_error(truth, predicted), abs=1e-6)
    assert estimates["r2"].value == pytest.approx(skm.r2_score(truth, predicted), abs=1e-6)
    mae = estimates["mae"]
    assert mae.method == "studentized"
    assert mae.low is not None and mae.high is not None and mae.low < mae.value < mae.high


def test_a_window_is_compared_with_the_reference_baseline_and_its_error() -> None:
    # Given a reference accuracy of 0.90 (se 0.01) and windows at 0.89 and 0.80 (se 0.01)
    reference = {"accuracy": MetricEstimate(value=0.90, se=0.01)}
    close = {"accuracy": MetricEstimate(value=0.89, se=0.01)}
    far = {"accuracy": MetricEstimate(value=0.80, se=0.01)}
    near, source = with_baseline(close, reference, {"accuracy": 0.99})
    worse, _ = with_baseline(far, reference, {})
    # Then the p-value uses both standard errors, and the registered value is only reported
    assert source == "reference"
    assert near["accuracy"].p_value == pytest.approx(stats.norm.sf(0.01 / np.sqrt(2 * 0.01**2)))
    assert near["accuracy"].registered == 0.99 and near["accuracy"].reference == 0.90
    assert worse["accuracy"].p_value is not None and worse["accuracy"].p_value < 1e-8
    # And material only beyond the tolerance
    assert not materially_worse(near["accuracy"], 0.90, 0.02)
    assert materially_worse(worse["accuracy"], 0.90, 0.02)


def test_without_a_reference_baseline_the_registered_metrics_are_the_baseline() -> None:
    registered = {"test_roc_auc": 0.95, "mae": 1.0}
    estimates = {
        "auc": MetricEstimate(value=0.80, se=0.01),
        "mae": MetricEstimate(value=1.2, se=0.02, higher_is_better=False),
    }
    metrics, source = with_baseline(estimates, None, registered)
    assert source == "registered"
    assert metrics["auc"].p_value is not None and metrics["auc"].p_value < 1e-6
    assert metrics["mae"].p_value is not None and metrics["mae"].p_value < 1e-6
    assert canonical_metric("val_R2_score") == "r2"
