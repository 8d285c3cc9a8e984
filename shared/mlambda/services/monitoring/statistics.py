"""Drift statistics in numpy and the standard library: no scipy in a Lambda.

Each function is checked against scipy in the tests (KS, chi-square, Wasserstein, the
Kolmogorov and chi-square tails, Jensen-Shannon). Samples passed as ``*_sorted`` must be sorted
ascending; sorting a million floats costs ~15 ms, searching a sorted array is almost free.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]
PSI_FLOOR = 1e-4
_GAMMA_EPS = 1e-14
_GAMMA_ITERATIONS = 500


def ecdf(sorted_values: FloatArray, points: FloatArray, *, left: bool = False) -> FloatArray:
    """Share of ``sorted_values`` <= each point (< each point when ``left``)."""
    counts = np.searchsorted(sorted_values, points, side="left" if left else "right")
    result: FloatArray = counts / max(sorted_values.size, 1)
    return result


def ks_statistic(a_sorted: FloatArray, b_sorted: FloatArray) -> float:
    """Two-sample Kolmogorov-Smirnov statistic sup |F_a - F_b|, exact.

    Between two distinct values of ``a``, F_a is constant and F_b monotone, so the supremum is
    reached at a value of ``a`` (right limit) or just below one (left limit): evaluating both
    limits on ``a``'s distinct values suffices, whatever the size of ``b``.
    """
    if a_sorted.size == 0 or b_sorted.size == 0:
        return float("nan")
    grid = np.unique(a_sorted)
    right = np.abs(ecdf(a_sorted, grid) - ecdf(b_sorted, grid))
    left = np.abs(ecdf(a_sorted, grid, left=True) - ecdf(b_sorted, grid, left=True))
    return float(max(right.max(), left.max()))


def kolmogorov_sf(x: float) -> float:
    """P(K > x) for the limiting Kolmogorov distribution (scipy's ``kstwobign.sf``)."""
    if x <= 0:
        return 1.0
    if x < 1.18:
        # Jacobi form converges fast for small x.
        total = sum(math.exp(-((2 * k - 1) ** 2) * math.pi**2 / (8 * x * x)) for k in range(1, 8))
        return float(min(1.0, max(0.0, 1.0 - math.sqrt(2 * math.pi) / x * total)))
    total = sum((-1) ** (k - 1) * math.exp(-2 * k * k * x * x) for k in range(1, 101))
    return float(min(1.0, max(0.0, 2.0 * total)))


def ks_pvalue(statistic: float, n_a: int, n_b: int) -> float:
    """Asymptotic two-sided p-value of the two-sample KS statistic."""
    if not math.isfinite(statistic) or n_a <= 0 or n_b <= 0:
        return float("nan")
    effective = n_a * n_b / (n_a + n_b)
    return kolmogorov_sf(math.sqrt(effective) * statistic)


def wasserstein_distance(a: FloatArray, b: FloatArray) -> float:
    """First Wasserstein distance between two samples: the integral of |F_a - F_b|."""
    if a.size == 0 or b.size == 0:
        return float("nan")
    a_sorted = np.sort(a)
    b_sorted = np.sort(b)
    merged = np.sort(np.concatenate((a_sorted, b_sorted)))
    widths = np.diff(merged)
    cdf_a = ecdf(a_sorted, merged[:-1])
    cdf_b = ecdf(b_sorted, merged[:-1])
    return float(np.sum(np.abs(cdf_a - cdf_b) * widths))


def psi(expected_shares: npt.ArrayLike, actual_counts: npt.ArrayLike) -> float:
    """Population stability index, shares floored at ``PSI_FLOOR`` so empty bins stay finite."""
    expected = np.maximum(np.asarray(expected_shares, dtype=np.float64), PSI_FLOOR)
    counts = np.asarray(actual_counts, dtype=np.float64)
    total = counts.sum()
    if total <= 0:
        return float("nan")
    actual = np.maximum(counts / total, PSI_FLOOR)
    return float(np.sum((actual - expected) * np.log(actual / expected)))


def jensen_shannon(p: npt.ArrayLike, q: npt.ArrayLike) -> float:
    """Jensen-Shannon distance (base 2, in [0, 1]) between two unnormalised distributions."""
    p_arr = np.asarray(p, dtype=np.float64)
    q_arr = np.asarray(q, dtype=np.float64)
    if p_arr.sum() <= 0 or q_arr.sum() <= 0:
        return float("nan")
    p_arr = p_arr / p_arr.sum()
    q_arr = q_arr / q_arr.sum()
    m = (p_arr + q_arr) / 2

    def kl(x: FloatArray) -> float:
        mask = x > 0
        return float(np.sum(x[mask] * np.log2(x[mask] / m[mask])))

    return math.sqrt(max(0.0, (kl(p_arr) + kl(q_arr)) / 2))


def _gamma_series(a: float, x: float) -> float:
    """Regularised lower incomplete gamma P(a, x) by its series (x < a + 1)."""
    term = total = 1.0 / a
    denominator = a
    for _ in range(_GAMMA_ITERATIONS):
        denominator += 1
        term *= x / denominator
        total += term
        if abs(term) < abs(total) * _GAMMA_EPS:
            break
    return total * math.exp(-x + a * math.log(x) - math.lgamma(a))


def _gamma_continued_fraction(a: float, x: float) -> float:
    """Regularised upper incomplete gamma Q(a, x) by Lentz's continued fraction (x >= a + 1)."""
    tiny = 1e-300
    b = x + 1 - a
    c = 1 / tiny
    d = 1 / b
    h = d
    for i in range(1, _GAMMA_ITERATIONS):
        an = -i * (i - a)
        b += 2
        d = an * d + b
        d = tiny if abs(d) < tiny else d
        c = b + an / c
        c = tiny if abs(c) < tiny else c
        d = 1 / d
        delta = d * c
        h *= delta
        if abs(delta - 1) < _GAMMA_EPS:
            break
    return math.exp(-x + a * math.log(x) - math.lgamma(a)) * h


def chi2_sf(statistic: float, dof: int) -> float:
    """P(X > statistic) for a chi-square with ``dof`` degrees of freedom."""
    if dof <= 0 or not math.isfinite(statistic):
        return float("nan") if not math.isfinite(statistic) else 1.0
    if statistic <= 0:
        return 1.0
    a, x = dof / 2, statistic / 2
    if x < a + 1:
        return float(min(1.0, max(0.0, 1.0 - _gamma_series(a, x))))
    return float(min(1.0, max(0.0, _gamma_continued_fraction(a, x))))


def chi_square(
    observed: npt.ArrayLike, expected_shares: npt.ArrayLike, *, min_expected: float = 5.0
) -> tuple[float, int, float]:
    """Goodness-of-fit (statistic, dof, p-value) of counts against shares.

    Cells whose expected count is under ``min_expected`` are pooled into one, the textbook rule
    that keeps the chi-square approximation honest for rare categories.
    """
    counts = np.asarray(observed, dtype=np.float64)
    shares = np.asarray(expected_shares, dtype=np.float64)
    total = counts.sum()
    if total <= 0 or shares.sum() <= 0:
        return float("nan"), 0, float("nan")
    expected = shares / shares.sum() * total
    small = expected < min_expected
    if small.any() and (~small).any():
        counts = np.append(counts[~small], counts[small].sum())
        expected = np.append(expected[~small], expected[small].sum())
    keep = expected > 0
    counts, expected = counts[keep], expected[keep]
    dof = int(counts.size - 1)
    if dof <= 0:
        return 0.0, 0, 1.0
    statistic = float(np.sum((counts - expected) ** 2 / expected))
    return statistic, dof, chi2_sf(statistic, dof)


def benjamini_hochberg(p_values: Sequence[float]) -> list[float]:
    """BH-adjusted p-values (NaN stays NaN and does not count as a test)."""
    values = np.asarray(p_values, dtype=np.float64)
    adjusted = np.full(values.shape, np.nan)
    valid = np.flatnonzero(np.isfinite(values))
    if valid.size == 0:
        return [float(v) for v in adjusted]
    order = valid[np.argsort(values[valid])]
    ranked = values[order] * valid.size / np.arange(1, valid.size + 1)
    ranked = np.minimum.accumulate(ranked[::-1])[::-1]
    adjusted[order] = np.minimum(ranked, 1.0)
    return [float(v) for v in adjusted]


def normal_sf(z: float) -> float:
    """P(Z > z) for a standard normal."""
    return 0.5 * math.erfc(z / math.sqrt(2))


def two_proportion_z(success_a: int, n_a: int, success_b: int, n_b: int) -> tuple[float, float]:
    """(z, two-sided p) of the difference of two proportions, pooled variance."""
    if n_a <= 0 or n_b <= 0:
        return float("nan"), float("nan")
    pooled = (success_a + success_b) / (n_a + n_b)
    variance = pooled * (1 - pooled) * (1 / n_a + 1 / n_b)
    if variance <= 0:
        return 0.0, 1.0
    z = (success_b / n_b - success_a / n_a) / math.sqrt(variance)
    return z, 2 * normal_sf(abs(z))


def welch_z(a: FloatArray, b: FloatArray) -> tuple[float, float]:
    """(z, two-sided p) of the difference of two means, unequal variances, normal approximation."""
    if a.size < 2 or b.size < 2:
        return float("nan"), float("nan")
    variance = a.var(ddof=1) / a.size + b.var(ddof=1) / b.size
    if variance <= 0:
        return 0.0, 1.0
    z = float((b.mean() - a.mean()) / math.sqrt(variance))
    return z, 2 * normal_sf(abs(z))
