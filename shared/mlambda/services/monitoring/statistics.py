"""Distributions and tests in numpy and the standard library: no scipy in a Lambda.

Every function here is checked against scipy in the unit tests (normal quantiles, the exact and
limiting Kolmogorov-Smirnov distributions, chi-square and hypergeometric tails, beta-binomial,
Benjamini-Hochberg). Samples passed as ``*_sorted`` must be sorted ascending; sorting a million
floats costs ~15 ms, searching a sorted array is almost free.

The tests are two-sample throughout: the reference is a sample too, not the truth, so a test
that treats its shares or its CDF as exact over-rejects by about 1 + m/n.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
PSI_FLOOR = 1e-4
_GAMMA_EPS = 1e-14
_GAMMA_ITERATIONS = 500
# Exact two-sample KS costs one numpy step per anti-diagonal (n + m of them, ~40 ms at 1,000).
KS_EXACT_MAX_STEPS = 1000
KS_EXACT_BELOW = 0.1
# Hypergeometric tails are summed exactly over supports up to this size; beyond it every cell is
# large and the normal approximation is better than the floating-point sum.
EXACT_SUPPORT = 200_000
MIN_EXPECTED = 5.0
T_EXPANSION_DF = 50_000


# ------------------------------------------------------------------ the normal distribution


def normal_sf(z: float) -> float:
    """P(Z > z) for a standard normal."""
    return 0.5 * math.erfc(z / math.sqrt(2))


def normal_cdf(z: float) -> float:
    """P(Z <= z) for a standard normal."""
    return 0.5 * math.erfc(-z / math.sqrt(2))


_ACKLAM_A = (
    -39.69683028665376,
    220.9460984245205,
    -275.9285104469687,
    138.3577518672690,
    -30.66479806614716,
    2.506628277459239,
)
_ACKLAM_B = (-54.47609879822406, 161.5858368580409, -155.6989798598866, 66.80131188771972, -13.28068155288572)
_ACKLAM_C = (
    -0.007784894002430293,
    -0.3223964580411365,
    -2.400758277161838,
    -2.549732539343734,
    4.374664141464968,
    2.938163982698783,
)
_ACKLAM_D = (0.007784695709041462, 0.3224671290700398, 2.445134137142996, 3.754408661907416)


def normal_ppf(p: float) -> float:
    """The standard normal quantile (Acklam's rational approximation, polished by one Halley step)."""
    if not 0.0 < p < 1.0:
        if p == 0.0:
            return -math.inf
        if p == 1.0:
            return math.inf
        return math.nan
    a, b, c, d = _ACKLAM_A, _ACKLAM_B, _ACKLAM_C, _ACKLAM_D
    low = 0.02425
    if p < low:
        q = math.sqrt(-2 * math.log(p))
        x = (((((c[0] * q + c[1]) * q + c[2]) * q + c[3]) * q + c[4]) * q + c[5]) / (
            (((d[0] * q + d[1]) * q + d[2]) * q + d[3]) * q + 1
        )
    elif p > 1 - low:
        q = math.sqrt(-2 * math.log1p(-p))
        x = -(((((c[0] * q + c[1]) * q + c[2]) * q + c[3]) * q + c[4]) * q + c[5]) / (
            (((d[0] * q + d[1]) * q + d[2]) * q + d[3]) * q + 1
        )
    else:
        q = p - 0.5
        r = q * q
        x = (
            (((((a[0] * r + a[1]) * r + a[2]) * r + a[3]) * r + a[4]) * r + a[5])
            * q
            / (((((b[0] * r + b[1]) * r + b[2]) * r + b[3]) * r + b[4]) * r + 1)
        )
    error = normal_cdf(x) - p
    u = error * math.sqrt(2 * math.pi) * math.exp(x * x / 2)
    return x - u / (1 + x * u / 2)


def _beta_continued_fraction(a: float, b: float, x: float) -> float:
    """The continued fraction of the regularised incomplete beta (Lentz), for x < (a + 1) / (a + b + 2)."""
    tiny = 1e-300
    c, d = 1.0, 1.0 - (a + b) * x / (a + 1)
    d = 1 / (tiny if abs(d) < tiny else d)
    h = d
    for m in range(1, _GAMMA_ITERATIONS):
        for numerator in (
            m * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m)),
            -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1)),
        ):
            d = 1 + numerator * d
            d = 1 / (tiny if abs(d) < tiny else d)
            c = 1 + numerator / c
            c = tiny if abs(c) < tiny else c
            h *= d * c
        if abs(d * c - 1) < _GAMMA_EPS:
            break
    return h


def beta_cdf(x: float, a: float, b: float) -> float:
    """The regularised incomplete beta I_x(a, b)."""
    if x <= 0:
        return 0.0
    if x >= 1:
        return 1.0
    log_front = math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x)
    if x < (a + 1) / (a + b + 2):
        return math.exp(log_front) * _beta_continued_fraction(a, b, x) / a
    return 1 - math.exp(log_front) * _beta_continued_fraction(b, a, 1 - x) / b


def student_t_cdf(t: float, df: float) -> float:
    """P(T <= t) for Student's t with ``df`` (real, > 0) degrees of freedom."""
    if t * t < df:  # near the centre: the complementary form keeps its digits
        half = 0.5 * beta_cdf(t * t / (df + t * t), 0.5, df / 2)
        return 0.5 + half if t > 0 else 0.5 - half
    tail = 0.5 * beta_cdf(df / (df + t * t), df / 2, 0.5)
    return 1 - tail if t > 0 else tail


def student_t_ppf(p: float, df: float) -> float:
    """Student's t quantile: Newton's method on the cdf from the Cornish-Fisher start, kept inside a
    bracket that halves whenever a step would leave it (a few cdf evaluations, not sixty)."""
    if not 0 < p < 1:
        return math.nan
    if p < 0.5:
        return -student_t_ppf(1 - p, df)
    z = normal_ppf(p)
    guess = z + (z**3 + z) / (4 * df) + (5 * z**5 + 16 * z**3 + 3 * z) / (96 * df * df)
    if df > T_EXPANSION_DF:  # the expansion's next term is below 1e-12 here, the cdf's digits are not
        return guess
    low, high = 0.0, max(guess, 1.0)
    while student_t_cdf(high, df) < p:
        low, high = high, high * 2
    log_scale = math.lgamma((df + 1) / 2) - math.lgamma(df / 2) - 0.5 * math.log(df * math.pi)
    x = min(max(guess, low), high)
    for _ in range(100):
        error = student_t_cdf(x, df) - p
        if abs(error) < 1e-15 or high - low < 1e-13 * max(1.0, x):
            break
        if error > 0:
            high = x
        else:
            low = x
        density = math.exp(log_scale - (df + 1) / 2 * math.log1p(x * x / df))
        step = x - error / density if density > 0 else math.nan
        x = step if low < step < high else (low + high) / 2
    return x


# ------------------------------------------------------------------ Kolmogorov-Smirnov


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


def sketch_ranks(reference_rows: int, sketch_size: int) -> IntArray:
    """0-based ranks in the reference of the sketch's order statistics (as ``profile_numeric`` picks them)."""
    ranks: IntArray = np.round(np.linspace(0, reference_rows - 1, sketch_size)).astype(np.int64)
    return ranks


def ks_sketch_statistic(sketch: FloatArray, reference_rows: int, window_sorted: FloatArray) -> float:
    """A lower bound of the two-sample KS statistic between the full reference and the window.

    The sketch keeps the reference's order statistics at known ranks, so between two sketch
    values the reference CDF is known to lie in an interval: [rank of the lower value + 1, rank
    of the upper value] / n. The distance from the window's CDF to that interval, maximised, is
    never larger than the true statistic (so p-values from it are valid, never too small) and
    is the exact statistic when the sketch holds every reference value.
    """
    if sketch.size == 0 or window_sorted.size == 0 or reference_rows <= 0:
        return float("nan")
    n = float(reference_rows)
    ranks = (
        sketch_ranks(reference_rows, sketch.size) if reference_rows > sketch.size else np.arange(sketch.size)
    )
    values, first = np.unique(sketch, return_index=True)
    last = np.append(first[1:], sketch.size) - 1
    lower = (ranks[last] + 1) / n  # F_ref on [values[l], values[l+1]) is at least this...
    upper = np.append(ranks[first[1:]], reference_rows) / n  # ...and at most this
    upper[-1] = 1.0
    at = ecdf(window_sorted, values)  # F_w at each value (right-continuous)
    before = ecdf(window_sorted, values, left=True)  # F_w just below each value
    # On [values[l], values[l+1]) F_w climbs from at[l] to before[l+1]; below the minimum F_ref = 0.
    climbs = np.append(before[1:], 1.0)
    gaps = np.concatenate(([before[0]], climbs - upper, lower - at))
    return float(max(0.0, gaps.max()))


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


def ks_exact_sf(statistic: float, n: int, m: int) -> float:
    """P(D >= statistic) for the two-sample KS statistic of continuous samples of sizes n and m.

    Counts the lattice paths from (0, 0) to (n, m) that stay strictly inside the band
    |i/n - j/m| < d, as probabilities (paths to (i, j) over C(i+j, i)) so nothing overflows;
    one numpy step per anti-diagonal. With ties the statistic can only be smaller, so the value
    stays a valid (conservative) p-value.
    """
    if statistic <= 0:
        return 1.0
    if n <= 0 or m <= 0:
        return float("nan")
    d = statistic - 1e-12  # D takes values on a lattice: a tie with d counts as outside
    slope = 1 / n + 1 / m  # on diagonal s, i/n - j/m = i * slope - s/m
    positions = np.arange(n + 1, dtype=np.float64)
    previous, previous_low = np.ones(1), 0  # diagonal 0: the origin, inside the band
    for s in range(1, n + m + 1):
        # cells (i, s - i) inside the band and the grid, as one contiguous run of i
        low = max(0, s - m, math.floor((s / m - d) / slope) + 1)
        high = min(n, s, math.ceil((s / m + d) / slope) - 1)
        if high < low:
            return 1.0
        current = np.zeros(high - low + 1)
        previous_high = previous_low + previous.size - 1
        start, stop = max(low, previous_low + 1), min(high, previous_high + 1)  # from (i - 1, j)
        if start <= stop:
            i = positions[start : stop + 1]
            current[start - low : stop - low + 1] += (
                previous[start - 1 - previous_low : stop - previous_low] * i / s
            )
        start, stop = max(low, previous_low), min(high, previous_high, s - 1)  # from (i, j - 1)
        if start <= stop:
            i = positions[start : stop + 1]
            current[start - low : stop - low + 1] += (
                previous[start - previous_low : stop - previous_low + 1] * (s - i) / s
            )
        previous, previous_low = current, low
    inside = previous[-1] if previous_low + previous.size - 1 == n else 0.0
    return float(min(1.0, max(0.0, 1.0 - inside)))


def ks_pvalue(statistic: float, n: int, m: int) -> float:
    """Two-sided p-value of a two-sample KS statistic, scaled by the effective size nm/(n+m).

    The limiting Kolmogorov law at sqrt(nm/(n+m)) D, which is conservative against the exact
    distribution at every size measured (1.0-1.3x the exact p from 10/7 to 5,000/100 rows);
    replaced by the exact lattice count when the samples are small enough for it to be cheap
    and the p-value could decide anything (under 0.1; the run's budget q is at most 0.05, and the
    limiting p is at most 1.3x the exact one at these sizes).
    Stephens' small-sample correction is not used: for two samples it undershoots the exact p.
    """
    if not math.isfinite(statistic) or n <= 0 or m <= 0:
        return float("nan")
    limiting = kolmogorov_sf(math.sqrt(n * m / (n + m)) * statistic)
    if n + m <= KS_EXACT_MAX_STEPS and limiting < KS_EXACT_BELOW:
        return ks_exact_sf(statistic, n, m)
    return limiting


# ------------------------------------------------------------------ distances (effect sizes)


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


def total_variation(p: npt.ArrayLike, q: npt.ArrayLike) -> float:
    """Half the L1 distance between two unnormalised distributions: the largest share any set of
    categories gained (20% -> 30% of one category, the rest shrinking evenly, is 0.10)."""
    p_arr = np.asarray(p, dtype=np.float64)
    q_arr = np.asarray(q, dtype=np.float64)
    if p_arr.sum() <= 0 or q_arr.sum() <= 0:
        return float("nan")
    return float(0.5 * np.abs(p_arr / p_arr.sum() - q_arr / q_arr.sum()).sum())


# ------------------------------------------------------------------ chi-square and contingency tables


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
    observed: npt.ArrayLike, expected_shares: npt.ArrayLike, *, min_expected: float = MIN_EXPECTED
) -> tuple[float, int, float]:
    """Goodness-of-fit (statistic, dof, p-value) of counts against *known* shares.

    Only for shares that are a specification, not a sample (the configured weights of a traffic
    split); reference data is compared with ``contingency_test``. Cells whose expected count is
    under ``min_expected`` are pooled into one.
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


def _log_choose(n: float, k: FloatArray | float) -> FloatArray:
    k_arr = np.asarray(k, dtype=np.float64)
    out: FloatArray = math.lgamma(n + 1) - _lgamma(k_arr + 1) - _lgamma(n - k_arr + 1)
    return out


def _lgamma(x: FloatArray) -> FloatArray:
    """lgamma elementwise (numpy has none); a Python loop is fine for the short supports used here."""
    flat = np.asarray(x, dtype=np.float64).ravel()
    out = np.fromiter((math.lgamma(v) for v in flat), dtype=np.float64, count=flat.size)
    return out.reshape(np.shape(x))


def hypergeometric_log_pmf(first_row: int, first_column: int, total: int) -> tuple[IntArray, FloatArray]:
    """(support, log P(X = x)) of the top-left cell of a 2 x 2 table with fixed margins.

    Built by the recursion P(x+1)/P(x) = (r-x)(c-x) / ((x+1)(N-r-c+x+1)), so only the first term
    needs log-gamma.
    """
    r, c, n = first_row, first_column, total
    low, high = max(0, r + c - n), min(r, c)
    support = np.arange(low, high + 1, dtype=np.int64)
    x = support[:-1].astype(np.float64)
    ratios = np.log((r - x) * (c - x)) - np.log((x + 1) * (n - r - c + x + 1))
    first = float(
        _log_choose(float(c), float(low))
        + _log_choose(float(n - c), float(r - low))
        - _log_choose(float(n), float(r))
    )
    log_pmf: FloatArray = first + np.concatenate(([0.0], np.cumsum(ratios)))
    return support, log_pmf


def fisher_exact(table: npt.ArrayLike, alternative: str = "two-sided") -> float:
    """Fisher's exact p-value of a 2 x 2 table [[a, b], [c, d]].

    ``greater``: the top-left cell is larger than chance (the first row's share of the first
    column is higher); ``two-sided``: every table no more likely than the observed one.
    """
    cells = np.asarray(table, dtype=np.int64).reshape(2, 2)
    a = int(cells[0, 0])
    r = int(cells[0].sum())
    c = int(cells[:, 0].sum())
    n = int(cells.sum())
    if n == 0 or r in (0, n) or c in (0, n):
        return 1.0
    support, log_pmf = hypergeometric_log_pmf(r, c, n)
    pmf = np.exp(log_pmf - log_pmf.max())
    pmf /= pmf.sum()
    observed = pmf[a - support[0]]
    if alternative == "greater":
        return float(min(1.0, pmf[support >= a].sum()))
    if alternative == "less":
        return float(min(1.0, pmf[support <= a].sum()))
    return float(min(1.0, pmf[pmf <= observed * (1 + 1e-7)].sum()))


def proportion_increase_test(
    reference_hits: int, reference_rows: int, window_hits: int, window_rows: int
) -> float:
    """One-sided p-value that the window's rate of hits is higher than the reference's.

    Fisher's exact test while the support is small enough to sum, else the pooled z-test (every
    cell then counts in the thousands).
    """
    if reference_rows <= 0 or window_rows <= 0:
        return float("nan")
    total_hits = reference_hits + window_hits
    support = min(total_hits, window_rows) - max(0, total_hits - reference_rows)
    if support <= EXACT_SUPPORT:
        table = [[window_hits, window_rows - window_hits], [reference_hits, reference_rows - reference_hits]]
        return fisher_exact(table, "greater")
    z, _ = two_proportion_z(reference_hits, reference_rows, window_hits, window_rows)
    return normal_sf(z)


def _pool_rare(table: FloatArray, min_expected: float) -> FloatArray:
    """Merge the rarest columns of a 2 x k table until every expected count reaches ``min_expected``."""
    order = np.argsort(table.sum(axis=0), kind="stable")
    table = table[:, order]
    rows = table.sum(axis=1, keepdims=True)
    total = table.sum()
    while table.shape[1] > 2:
        expected = rows * table.sum(axis=0) / total
        if expected.min() >= min_expected:
            break
        merged = table[:, 0] + table[:, 1]
        table = np.column_stack((merged, table[:, 2:]))
        order = np.argsort(table.sum(axis=0), kind="stable")
        table = table[:, order]
    return table


def contingency_test(
    reference_counts: npt.ArrayLike, window_counts: npt.ArrayLike, *, min_expected: float = MIN_EXPECTED
) -> tuple[float, int, float, str]:
    """(statistic, dof, p-value, test) of "same distribution" for two samples of categories.

    The 2 x k table of counts: Pearson's chi-square with k - 1 degrees of freedom, rare columns
    pooled until every expected count reaches ``min_expected``; a table that is (or pools down
    to) 2 x 2 with a small expected count gets Fisher's exact test instead.
    """
    table = np.vstack(
        (np.asarray(reference_counts, dtype=np.float64), np.asarray(window_counts, dtype=np.float64))
    )
    table = table[:, table.sum(axis=0) > 0]
    if table.shape[1] < 2 or (table.sum(axis=1) <= 0).any():
        return 0.0, 0, 1.0, "chi_square"
    table = _pool_rare(table, min_expected)
    rows = table.sum(axis=1, keepdims=True)
    expected = rows * table.sum(axis=0) / table.sum()
    statistic = float(np.sum((table - expected) ** 2 / expected))
    dof = table.shape[1] - 1
    if table.shape[1] == 2 and expected.min() < min_expected:
        return statistic, 1, fisher_exact(table.astype(np.int64)), "fisher_exact"
    return statistic, dof, chi2_sf(statistic, dof), "chi_square"


# ------------------------------------------------------------------ chance of values beyond the reference


def beta_binomial_sf(k: int, trials: int, alpha: float, beta: float) -> float:
    """P(X >= k) for X ~ BetaBinomial(trials, alpha, beta).

    Terms by the ratio pmf(x+1)/pmf(x) = (n-x)(x+a) / ((x+1)(n-x-1+b)); below the mean the
    complement of the short lower sum, above it the upper tail summed in blocks until the terms
    stop mattering.
    """
    if k <= 0:
        return 1.0
    if k > trials:
        return 0.0
    n, a, b = trials, alpha, beta
    log_first = math.lgamma(n + b) + math.lgamma(a + b) - math.lgamma(n + a + b) - math.lgamma(b)  # pmf(0)

    def log_terms(start: int, stop: int, log_start: float) -> FloatArray:
        x = np.arange(start, stop - 1, dtype=np.float64)
        ratios = np.log((n - x) * (x + a)) - np.log((x + 1) * (n - x - 1 + b))
        out: FloatArray = log_start + np.concatenate(([0.0], np.cumsum(ratios)))
        return out

    mean = n * a / (a + b)
    if k <= mean + 1:
        lower = float(np.exp(log_terms(0, k, log_first)).sum())
        return float(min(1.0, max(0.0, 1.0 - lower)))
    # log pmf(k) from pmf(0) through the ratios (k is small whenever this branch is cheap to reach)
    log_k = float(log_terms(0, k + 1, log_first)[-1])
    total, start, log_start = 0.0, k, log_k
    block = 4096
    while start <= n:
        stop = min(n + 1, start + block)
        terms = log_terms(start, stop, log_start)
        values = np.exp(terms)
        total += float(values.sum())
        if values[-1] < total * 1e-17 or stop > n:
            break
        start, log_start = (
            stop,
            float(terms[-1] + math.log((n - stop + 1) * (stop - 1 + a)) - math.log(stop * (n - stop + b))),
        )
    return float(min(1.0, max(0.0, total)))


def outside_range_pvalue(outside: int, window_rows: int, reference_rows: int) -> float:
    """P(at least ``outside`` of ``window_rows`` values fall outside the reference's [min, max]) by chance.

    For continuous data from one distribution, the probability mass outside the range of n draws
    is the sum of two of the n + 1 uniform spacings, Beta(2, n - 1); the count of window values
    there is then BetaBinomial(m, 2, n - 1). Ties (discrete data) only make values outside rarer,
    so the p-value stays valid.
    """
    if reference_rows < 2 or window_rows <= 0:
        return float("nan")
    return beta_binomial_sf(outside, window_rows, 2.0, reference_rows - 1.0)


def _log_all_in_window(combined: FloatArray, window_rows: int, total: int) -> FloatArray:
    """log P(every one of ``combined`` rows of a category lands in the window) under relabelling."""
    fits = combined <= window_rows
    c = np.where(fits, combined, 0.0)
    out: FloatArray = (
        math.lgamma(window_rows + 1)
        - _lgamma(window_rows - c + 1)
        + _lgamma(total - c + 1)
        - math.lgamma(total + 1)
    )
    out[~fits] = -np.inf
    return out


def new_category_pvalue(
    reference_counts: npt.ArrayLike, window_counts: npt.ArrayLike, window_new: int
) -> float:
    """Bound on P(at least ``window_new`` window rows carry a category the reference lacks) by chance.

    Relabelling the pooled rows at random (the null: one distribution), a category's c rows all
    land in the window with probability C(m, c)/C(n+m, c). A category with c >= k rows reaches k
    alone: those are bounded by the sum of their probabilities; the smaller ones are negatively
    associated events, so the Chernoff bound of their row-weighted sum holds,
    inf_t exp(-t k) prod(1 - p + p e^(t c)). Counts per category, aligned, zeros where absent.
    """
    ref = np.asarray(reference_counts, dtype=np.float64)
    win = np.asarray(window_counts, dtype=np.float64)
    if window_new <= 0:
        return 1.0
    n, m = int(ref.sum()), int(win.sum())
    if n == 0 or m == 0:
        return float("nan")
    combined = (ref + win)[(ref + win) > 0]
    log_p = _log_all_in_window(combined, m, n + m)
    k = float(window_new)
    alone = combined >= k
    bound = float(np.exp(log_p[alone]).sum())
    weights, log_p = combined[~alone], log_p[~alone]
    possible = np.isfinite(log_p)
    weights, log_p = weights[possible], log_p[possible]
    if weights.sum() < k:
        return float(min(1.0, bound))
    log_q = np.log1p(-np.minimum(np.exp(log_p), 1 - 1e-16))

    def log_bound(t: float) -> float:
        return float(-t * k + np.logaddexp(log_q, log_p + t * weights).sum())

    def slope(t: float) -> float:
        share = np.exp(-np.logaddexp(0.0, log_q - log_p - t * weights))
        return float(-k + (weights * share).sum())

    if slope(0.0) >= 0:
        return 1.0
    low, high = 0.0, 1.0
    while slope(high) < 0 and high < 1e6:  # the slope's limit is sum(weights) - k >= 0
        low, high = high, high * 2
    for _ in range(60):
        middle = (low + high) / 2
        if slope(middle) < 0:
            low = middle
        else:
            high = middle
    return float(min(1.0, bound + math.exp(min(0.0, log_bound(high)))))


# ------------------------------------------------------------------ multiplicity and simple comparisons


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


def two_proportion_z(success_a: int, n_a: int, success_b: int, n_b: int) -> tuple[float, float]:
    """(z, two-sided p) of the difference of two proportions (b - a), pooled variance."""
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
