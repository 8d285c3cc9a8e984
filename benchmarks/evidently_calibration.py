"""Evidently's side of ``make bench-monitor-calibration``; runs in ``.venv-bench-evidently``.

Usage: ``python benchmarks/evidently_calibration.py TRIALS SEED`` prints one JSON object per
setting. Drift verdicts are Evidently 0.7.23's own default per-column tests (``get_stattest``
picks K-S / chi-square / Z below 1,000 reference rows and normed Wasserstein / Jensen-Shannon
above, each at its default threshold: what ``DataDriftPreset()`` runs). Data-quality verdicts
replay ``DataSummaryPreset()``'s per-column tests with their defaults (min, max, mean, std and
quartiles equal to the reference's within 10%; missing values equal): the full Report costs
20-50 s a run on this machine, so it is run once per setting and its failure count printed
beside the replay's, to show they agree. The dataset-level row-count test is left out (windows
are smaller than references by design).

Three shortcuts keep 200 trials at 100k/100k to minutes, none changing a verdict: each numeric
column goes to Evidently sorted (every test here is univariate and order-free: K-S, normed
Wasserstein, the replayed quantiles), so scipy's own sorts run on sorted data; Evidently's
default test is looked up once per (kind, reference size) when the first 1,000 rows of both
samples already hold more than five distinct values (its choice depends on the kind, whether the
reference has more than 1,000 rows and whether the pooled column has more than two / five
distinct values: the full ``nunique`` of 200k floats per column was a third of the run), else
asked afresh; and the reference's replayed statistics are computed once per trial.
"""

from __future__ import annotations

import json
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from calibration_data import (
    SCENARIOS,
    SYNTHETIC_SIZES,
    Trial,
    breast_cancer_trials,
    checksum,
    synthetic_trials,
)
from evidently.legacy.calculations.stattests.registry import get_stattest
from evidently.legacy.core import ColumnType

warnings.filterwarnings("ignore")
VALUE_TESTS = ("min", "max", "mean", "std", "q25", "q50", "q75")


PREFIX_ROWS = 1000
MANY_VALUES = 5  # above this many distinct values Evidently's choice no longer depends on the count
_chosen: dict[tuple[ColumnType, int], Any] = {}


def _default_test(reference: pd.Series, current: pd.Series, kind: ColumnType) -> Any:
    """Evidently's default test for the pair: ``get_stattest``'s own answer, remembered once it cannot change."""
    prefix = pd.concat([reference.iloc[:PREFIX_ROWS], current.iloc[:PREFIX_ROWS]]).nunique()
    if prefix <= MANY_VALUES:
        return get_stattest(reference, current, kind, None)
    key = (kind, reference.shape[0])
    if key not in _chosen:
        _chosen[key] = get_stattest(reference, current, kind, None)
    return _chosen[key]


def _drifted(reference: pd.Series, current: pd.Series, kind: ColumnType) -> bool:
    test = _default_test(reference, current, kind)
    return bool(test(reference, current, kind, None).drifted)


def _values(series: pd.Series) -> dict[str, float]:
    """pandas' min, max, mean, std (ddof 1) and linear quartiles, NaN skipped, in one pass of numpy."""
    values = series.dropna().to_numpy(dtype=np.float64)
    q25, q50, q75 = np.quantile(values, [0.25, 0.5, 0.75])
    return {
        "min": float(values.min()),
        "max": float(values.max()),
        "mean": float(values.mean()),
        "std": float(values.std(ddof=1)),
        "q25": float(q25),
        "q50": float(q50),
        "q75": float(q75),
    }


def _sorted_frame(columns: dict[str, Any], numeric: list[str]) -> pd.DataFrame:
    """The trial's columns with each numeric one sorted (univariate tests only: no verdict changes)."""
    return pd.DataFrame({k: np.sort(v) if k in numeric else v for k, v in columns.items()})


def _quality_failures(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    numeric: list[str],
    reference_values: dict[str, dict[str, float]],
) -> tuple[int, int]:
    """(failed column tests, of which min/max: Evidently's out-of-range) of DataSummaryPreset's defaults."""
    failures = out_of_range = 0
    for name in numeric:
        ref, cur = reference_values[name], _values(current[name])
        for test in VALUE_TESTS:
            if abs(cur[test] - ref[test]) > 0.1 * abs(ref[test]):
                failures += 1
                out_of_range += test in ("min", "max")
    for name in reference.columns:
        if (
            int(current[name].isna().sum()) != int(reference[name].isna().sum())
            and reference[name].isna().any()
        ):
            failures += 1
    return failures, out_of_range


def _full_report_failures(
    reference: pd.DataFrame, current: pd.DataFrame, numeric: list[str], categorical: list[str]
) -> int:
    from evidently import DataDefinition, Dataset, Report
    from evidently.presets import DataSummaryPreset

    definition = DataDefinition(numerical_columns=numeric, categorical_columns=categorical)
    snapshot = Report([DataSummaryPreset()], include_tests=True).run(
        Dataset.from_pandas(current, data_definition=definition),
        Dataset.from_pandas(reference, data_definition=definition),
    )
    tests = snapshot.dict()["tests"]
    return sum(1 for t in tests if "FAIL" in str(t["status"]) and "Row count" not in t["name"])


def _evaluate(
    name: str, trials: list[Trial] | Any, shift_column: str = "x0", category_column: str = "c"
) -> dict[str, Any]:
    counts: dict[str, dict[str, float]] = {
        s: {"runs": 0, "drift_alarm": 0, "quality_alarm": 0, "any_alarm": 0, "detected": 0, "out_of_range": 0}
        for s in SCENARIOS
    }
    sums: list[str] = []
    validation: dict[str, int] = {}
    started, cpu = time.perf_counter(), time.process_time()
    for index, trial in enumerate(trials):
        sums.append(checksum(trial))
        reference = _sorted_frame(trial.reference, trial.numeric)
        reference_values = {name: _values(reference[name]) for name in trial.numeric}
        for scenario, window in trial.windows.items():
            current = _sorted_frame(window, trial.numeric)
            drifted = [c for c in trial.numeric if _drifted(reference[c], current[c], ColumnType.Numerical)]
            drifted += [
                c for c in trial.categorical if _drifted(reference[c], current[c], ColumnType.Categorical)
            ]
            failures, out_of_range = _quality_failures(
                reference, current, list(trial.numeric), reference_values
            )
            row = counts[scenario]
            row["runs"] += 1
            row["drift_alarm"] += bool(drifted)
            row["quality_alarm"] += failures > 0
            row["any_alarm"] += bool(drifted) or failures > 0
            row["out_of_range"] += out_of_range
            target = category_column if scenario.startswith("category") else shift_column
            row["detected"] += target in drifted
            if index == 0 and scenario == "unchanged":
                validation = {
                    "replayed_failures": failures,
                    "full_report_failures": _full_report_failures(
                        pd.DataFrame(trial.reference), pd.DataFrame(window), trial.numeric, trial.categorical
                    ),
                }
    return {
        "setting": name,
        "scenarios": {k: v for k, v in counts.items() if v["runs"]},
        "checksum": sums[0] if sums else "",
        "validation": validation,
        "seconds": time.perf_counter() - started,
        "cpu": time.process_time() - cpu,
    }


def main() -> None:
    trials, seed = int(sys.argv[1]), int(sys.argv[2])
    large_trials = int(sys.argv[3]) if len(sys.argv) > 3 else trials
    wanted = set(filter(None, (sys.argv[4] if len(sys.argv) > 4 else "").split(",")))
    for n, m in SYNTHETIC_SIZES:
        if wanted and f"{n}/{m}" not in wanted:
            continue
        count = large_trials if n >= 100_000 else trials
        print(json.dumps(_evaluate(f"{n}/{m}", synthetic_trials(n, m, count, seed))), flush=True)
    if not wanted or "breast-cancer" in wanted:
        print(json.dumps(_evaluate("breast-cancer 70/30", breast_cancer_trials(trials, seed))), flush=True)


if __name__ == "__main__":
    np.seterr(all="ignore")
    main()
