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
"""

from __future__ import annotations

import json
import sys
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


def _drifted(reference: pd.Series, current: pd.Series, kind: ColumnType) -> bool:
    test = get_stattest(reference, current, kind, None)
    return bool(test(reference, current, kind, None).drifted)


def _values(series: pd.Series) -> dict[str, float]:
    return {
        "min": float(series.min()),
        "max": float(series.max()),
        "mean": float(series.mean()),
        "std": float(series.std()),
        "q25": float(series.quantile(0.25)),
        "q50": float(series.quantile(0.5)),
        "q75": float(series.quantile(0.75)),
    }


def _quality_failures(reference: pd.DataFrame, current: pd.DataFrame, numeric: list[str]) -> tuple[int, int]:
    """(failed column tests, of which min/max: Evidently's out-of-range) of DataSummaryPreset's defaults."""
    failures = out_of_range = 0
    for name in numeric:
        ref, cur = _values(reference[name]), _values(current[name])
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
    for index, trial in enumerate(trials):
        sums.append(checksum(trial))
        reference = pd.DataFrame(trial.reference)
        for scenario, window in trial.windows.items():
            current = pd.DataFrame(window)
            drifted = [c for c in trial.numeric if _drifted(reference[c], current[c], ColumnType.Numerical)]
            drifted += [
                c for c in trial.categorical if _drifted(reference[c], current[c], ColumnType.Categorical)
            ]
            failures, out_of_range = _quality_failures(reference, current, list(trial.numeric))
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
                        reference, current, trial.numeric, trial.categorical
                    ),
                }
    return {
        "setting": name,
        "scenarios": {k: v for k, v in counts.items() if v["runs"]},
        "checksum": sums[0] if sums else "",
        "validation": validation,
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
