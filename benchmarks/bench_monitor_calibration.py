"""Calibration of monitoring, side by side with Evidently 0.7.23 (defaults) on identical data.

Prints, per setting (reference/window rows 400/200, 5k/2k, 100k/100k: 20 numeric + 1 categorical
feature + the model's label and probability; sklearn's breast-cancer data split 70/30):

- the share of runs on unchanged data with any alarm (drift and data quality together; goal <= 1%);
- detection of x0 shifted by +0.1 / +0.25 / +0.5 sd, and of category "a" going from 20% to 30%
  (goals: +0.25 sd >= 95% at 5k/2k and 100k/100k, +0.1 sd >= 60% at 100k/100k, the category
  >= 90% at 5k/2k and 100k/100k);
- out-of-range violations per run on breast-cancer 70/30;
- interval coverage at nominal 95% of accuracy, F1, AUC (binary, unequal score variances), MAE
  and RMSE (normal, t5 and lognormal errors) in simulation (goal 93-97%);
- CBPE: estimated vs realised accuracy (mean error, mean |error|, coverage of the realised value
  by the interval) on unchanged windows and on a covariate shift of a model input.

Evidently runs in ``.venv-bench-evidently`` (created by the make target, never a project
dependency) on the same seeds; the data module prints one checksum per setting on both sides.
Usage: ``python benchmarks/bench_monitor_calibration.py [--trials 200] [--large-trials 200] [--only 400/200,coverage]``.
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
import time
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.calibration_data import (
    SCENARIOS,
    SYNTHETIC_SIZES,
    Trial,
    breast_cancer_trials,
    checksum,
    synthetic_trials,
)
from mlambda.schemas.monitoring import MonitoringReport
from mlambda.schemas.registry import FeatureSchema, FeatureSpec
from mlambda.services.monitoring import performance
from mlambda.services.monitoring.analysis import WindowColumns, drift_and_quality
from mlambda.services.monitoring.budget import DEFAULT_Q, settle
from mlambda.services.monitoring.data_quality import QualityConfig
from mlambda.services.monitoring.drift import DriftConfig
from mlambda.services.monitoring.model_quality import (
    QualitySettings,
    classification_estimates,
    regression_estimates,
)
from mlambda.services.monitoring.profiling import ReferenceOutputs, reference_profile

ROOT = Path(__file__).resolve().parent.parent
EVIDENTLY_PYTHON = ROOT / ".venv-bench-evidently" / "bin" / "python"
AT = datetime(2025, 3, 1, tzinfo=UTC)
SEED = 20250301
OUTPUTS = ("prediction.label", "prediction.probabilities.1")


def _schema(numeric: Iterable[str], categorical: Iterable[str]) -> FeatureSchema:
    return FeatureSchema(
        mode="per_feature",
        features=[
            *(FeatureSpec(name=n, dtype="float") for n in numeric),
            *(FeatureSpec(name=n, dtype="string") for n in categorical),
        ],
    )


def _settled(profile: Any, window: dict[str, Any], rows: int) -> MonitoringReport:
    features = {k: v for k, v in window.items() if k not in OUTPUTS}
    outputs = {k: v for k, v in window.items() if k in OUTPUTS}
    config = DriftConfig()
    checks = drift_and_quality(
        profile, WindowColumns(rows=rows, features=features, outputs=outputs), config, QualityConfig()
    )
    report = MonitoringReport(
        model="bench",
        at=AT,
        window_start=AT,
        window_end=AT,
        status="ok",
        feature_drift=checks.features,
        prediction_drift=checks.predictions,
        data_quality=checks.quality,
    )
    return settle(report, DEFAULT_Q, config, 0.02)


def _cbpe(
    profile: Any, window: dict[str, Any], truth: np.ndarray, rng: np.random.Generator
) -> tuple[float, bool]:
    """(estimated - realised accuracy, realised inside the interval) on one labelled window."""
    baseline = profile.baseline
    probability = np.asarray(window["prediction.probabilities.1"], dtype=np.float64)
    predicted = np.asarray(window["prediction.label"]).astype(np.int64)
    estimates = performance.estimate(
        np.c_[1 - probability, probability],
        predicted,
        baseline.classes,
        baseline.calibration,
        resamples=2000,
        rng=rng,
    )
    realised = float(np.mean(predicted == truth))
    accuracy = estimates["accuracy"]
    return accuracy.value - realised, bool(accuracy.low <= realised <= accuracy.high)


def mlambda_setting(name: str, trials: Iterable[Trial], with_model: bool) -> dict[str, Any]:
    """Alarm and detection counts of mlambda on every trial of one setting."""
    counts = {
        s: {
            "runs": 0,
            "drift_alarm": 0,
            "quality_alarm": 0,
            "any_alarm": 0,
            "detected": 0,
            "out_of_range": 0,
            "out_of_range_findings": 0,
        }
        for s in SCENARIOS
    }
    cbpe: dict[str, list[tuple[float, bool]]] = {"unchanged": [], "x1 +0.5 sd (a model input)": []}
    first = ""
    started = time.perf_counter()
    for index, trial in enumerate(trials):
        if index == 0:
            first = checksum(trial)
        features = [c for c in [*trial.numeric, *trial.categorical] if c not in OUTPUTS]
        schema = _schema(
            [c for c in trial.numeric if c not in OUTPUTS], [c for c in trial.categorical if c not in OUTPUTS]
        )
        outputs = None
        if with_model:
            outputs = ReferenceOutputs(
                labels=trial.reference["prediction.label"].astype(np.int64),
                probabilities=np.c_[
                    1 - trial.reference["prediction.probabilities.1"],
                    trial.reference["prediction.probabilities.1"],
                ],
                class_labels=[0, 1],
            )
        profile, _ = reference_profile(
            {c: trial.reference[c] for c in features},
            schema,
            task="classification" if with_model else None,
            target=trial.reference_target if with_model else None,
            outputs=outputs,
        )
        for scenario, window in trial.windows.items():
            rows = len(next(iter(window.values())))
            report = _settled(profile, window, rows)
            assert report.feature_drift is not None and report.data_quality is not None
            drifted = set(report.feature_drift.drifted) | set(
                report.prediction_drift.drifted if report.prediction_drift else []
            )
            violations = report.data_quality.violations
            row = counts[scenario]
            row["runs"] += 1
            row["drift_alarm"] += bool(drifted)
            row["quality_alarm"] += bool(violations)
            row["any_alarm"] += bool(drifted or violations)
            row["out_of_range"] += sum(v.check == "out_of_range" for v in violations)
            row["out_of_range_findings"] += sum(
                f.check == "out_of_range" for f in report.data_quality.findings
            )
            target = "c" if scenario.startswith("category") else "x0"
            row["detected"] += target in report.feature_drift.drifted
        if with_model and trial.window_targets is not None:
            rng = np.random.default_rng([SEED, index])
            cbpe["unchanged"].append(
                _cbpe(profile, trial.windows["unchanged"], trial.window_targets["unchanged"], rng)
            )
            shifted = dict(trial.windows["unchanged"])
            shifted["x1"] = shifted["x1"] + 0.5
            probability = 1 / (1 + np.exp(-(1.2 * shifted["x1"] - 0.8 * shifted["x2"])))
            shifted["prediction.probabilities.1"] = probability
            shifted["prediction.label"] = (probability > 0.5).astype(np.int64).astype(str)
            truth = (rng.random(probability.size) < probability).astype(np.int64)
            cbpe["x1 +0.5 sd (a model input)"].append(_cbpe(profile, shifted, truth, rng))
    return {
        "setting": name,
        "scenarios": {k: v for k, v in counts.items() if v["runs"]},
        "checksum": first,
        "seconds": time.perf_counter() - started,
        "cbpe": cbpe,
    }


def coverage(trials: int) -> list[tuple[str, int, float]]:
    """Share of simulated samples whose 95% interval holds the population value."""
    from scipy import stats

    rng = np.random.default_rng(SEED)
    settings = QualitySettings()
    results: list[tuple[str, int, float]] = []
    # classifier: 30% positives, positive scores N(1.2, 1.8), negatives N(0, 1), threshold 0.8
    truth_accuracy = stats.norm.sf(0.8, 1.2, 1.8) * 0.3 + stats.norm.cdf(0.8) * 0.7
    tp = 0.3 * stats.norm.sf(0.8, 1.2, 1.8)
    fp = 0.7 * stats.norm.sf(0.8)
    fn = 0.3 * stats.norm.cdf(0.8, 1.2, 1.8)
    truth = {
        "accuracy": truth_accuracy,
        "f1": 2 * tp / (2 * tp + fp + fn),
        "auc": stats.norm.cdf(1.2 / math.sqrt(1.8**2 + 1)),
    }
    for n in (300, 2000):
        hits = dict.fromkeys(truth, 0)
        for trial in range(trials):
            y = rng.random(n) < 0.3
            score = np.where(y, rng.normal(1.2, 1.8, n), rng.normal(0, 1, n))
            p = 1 / (1 + np.exp(-score))
            found = classification_estimates(
                y.astype(np.int64),
                (score > 0.8).astype(np.int64),
                2,
                np.c_[1 - p, p],
                settings,
                np.random.default_rng(trial),
            )
            for name, value in truth.items():
                estimate = found[name]
                hits[name] += (
                    estimate.low is not None
                    and estimate.high is not None
                    and estimate.low <= value <= estimate.high
                )
        results.extend((name, n, hits[name] / trials) for name in truth)
    draws = {
        "normal": lambda size: rng.normal(0, 1, size),
        "t5": lambda size: rng.standard_t(5, size),
        "lognormal": lambda size: rng.lognormal(0, 0.8, size) - 1,
    }
    exact = {
        "normal": (math.sqrt(2 / math.pi), 1.0),
        "t5": (float(stats.t(5).expect(abs)), math.sqrt(5 / 3)),
        "lognormal": (
            float(stats.lognorm(0.8).expect(lambda x: abs(x - 1))),
            math.sqrt(float(stats.lognorm(0.8).expect(lambda x: (x - 1) ** 2))),
        ),
    }
    for label, draw in draws.items():
        mae, rmse = exact[label]
        for n in (300, 2000):
            hits = {"mae": 0, "rmse": 0}
            for trial in range(trials):
                errors = draw(n)
                found = regression_estimates(np.zeros(n), -errors, settings, np.random.default_rng(trial))
                for name, value in (("mae", mae), ("rmse", rmse)):
                    estimate = found[name]
                    hits[name] += (
                        estimate.low is not None
                        and estimate.high is not None
                        and estimate.low <= value <= estimate.high
                    )
            results.extend((f"{name} ({label} errors)", n, hits[name] / trials) for name in hits)
    return results


def _evidently(trials: int, large_trials: int) -> dict[str, dict[str, Any]]:
    if not EVIDENTLY_PYTHON.exists():
        print(f"  (no {EVIDENTLY_PYTHON}: run `make bench-monitor-calibration` to create it)")
        return {}
    output = subprocess.run(
        [
            str(EVIDENTLY_PYTHON),
            str(ROOT / "benchmarks" / "evidently_calibration.py"),
            str(trials),
            str(SEED),
            str(large_trials),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    if output.returncode != 0:
        print(f"  Evidently run failed: {output.stderr[-2000:]}")
        return {}
    found = {}
    for line in output.stdout.splitlines():
        if line.startswith("{"):
            result = json.loads(line)
            found[result["setting"]] = result
    return found


def _share(row: dict[str, float] | None, key: str) -> str:
    if not row or not row["runs"]:
        return "-"
    return f"{row[key] / row['runs']:6.1%}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=200)
    parser.add_argument(
        "--large-trials", type=int, default=None, help="trials at 100k/100k (default: --trials)"
    )
    parser.add_argument("--no-evidently", action="store_true")
    parser.add_argument(
        "--only",
        default="",
        help="comma-separated settings (400/200,5000/2000,100000/100000,breast-cancer,coverage)",
    )
    args = parser.parse_args()
    wanted = set(filter(None, args.only.split(",")))
    large = args.large_trials or args.trials
    print(
        f"monitoring calibration: {args.trials} trials per setting ({large} at 100k/100k), q = {DEFAULT_Q}, seed {SEED}"
    )
    evidently: dict[str, dict[str, Any]] = {}
    process = None
    if not args.no_evidently and EVIDENTLY_PYTHON.exists():
        process = subprocess.Popen(
            [
                str(EVIDENTLY_PYTHON),
                str(ROOT / "benchmarks" / "evidently_calibration.py"),
                str(args.trials),
                str(SEED),
                str(large),
                args.only,
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
    ours: list[dict[str, Any]] = []
    for n, m in SYNTHETIC_SIZES:
        if wanted and f"{n}/{m}" not in wanted:
            continue
        count = large if n >= 100_000 else args.trials
        ours.append(mlambda_setting(f"{n}/{m}", synthetic_trials(n, m, count, SEED), with_model=True))
    if not wanted or "breast-cancer" in wanted:
        ours.append(
            mlambda_setting("breast-cancer 70/30", breast_cancer_trials(args.trials, SEED), with_model=False)
        )
    if process is not None:
        stdout, stderr = process.communicate()
        if process.returncode != 0:
            print(f"  Evidently run failed: {stderr[-2000:]}")
        for line in stdout.splitlines():
            if line.startswith("{"):
                result = json.loads(line)
                evidently[result["setting"]] = result
    print()
    print(f"{'setting':22} {'scenario':24} {'measure':34} {'mlambda':>8} {'Evidently':>10}")
    for result in ours:
        theirs = evidently.get(result["setting"], {})
        same = (
            "same data" if theirs.get("checksum") == result["checksum"] else "DATA DIFFERS" if theirs else ""
        )
        for scenario, row in result["scenarios"].items():
            other = theirs.get("scenarios", {}).get(scenario)
            if scenario == "unchanged":
                for key, label in (
                    ("any_alarm", "runs with any alarm (goal <= 1%)"),
                    ("drift_alarm", "  of which drift"),
                    ("quality_alarm", "  of which data quality"),
                ):
                    print(
                        f"{result['setting']:22} {scenario:24} {label:34} {_share(row, key):>8} {_share(other, key):>10}"
                    )
                if result["setting"].startswith("breast"):
                    ours_oor = row["out_of_range"] / row["runs"]
                    findings = row["out_of_range_findings"] / row["runs"]
                    theirs_oor = f"{other['out_of_range'] / other['runs']:10.2f}" if other else f"{'-':>10}"
                    print(
                        f"{result['setting']:22} {scenario:24} {'out-of-range violations per run':34} {ours_oor:8.2f} {theirs_oor}"
                    )
                    print(
                        f"{result['setting']:22} {scenario:24} {'  (values beyond range, per run)':34} {findings:8.2f}"
                    )
            else:
                print(
                    f"{result['setting']:22} {scenario:24} {'detected':34} {_share(row, 'detected'):>8} {_share(other, 'detected'):>10}"
                )
        validation = theirs.get("validation")
        print(
            f"{'':22} {same} ({result['seconds']:.0f} s for mlambda)"
            + (f"; Evidently replay vs full Report failures on trial 0: {validation}" if validation else "")
        )
    print()
    print("CBPE (estimated vs realised accuracy; Evidently has no label-free estimate)")
    for result in ours:
        for scenario, pairs in result["cbpe"].items():
            if not pairs:
                continue
            errors = np.asarray([e for e, _ in pairs])
            covered = np.mean([c for _, c in pairs])
            print(
                f"  {result['setting']:12} {scenario:28} mean error {errors.mean():+.4f}, mean |error| {np.abs(errors).mean():.4f}, "
                f"realised inside the 95% interval {covered:.1%} ({len(pairs)} windows)"
            )
    print()
    if not wanted or "coverage" in wanted:
        print(f"interval coverage at nominal 95% ({args.trials} samples each; goal 93-97%)")
        for name, n, share in coverage(args.trials):
            print(f"  {name:28} n={n:5}  {share:6.1%}")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
