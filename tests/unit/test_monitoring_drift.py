"""Reference profiles and drift verdicts: false-alarm rate on the reference's own distribution,
power on shifts, effect-size floors, and the profile's contents (target, baseline, calibration)."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pandas as pd
import pytest

from mlambda.schemas.monitoring import DriftSection, MonitoringReport, ReferenceProfile, Thresholds
from mlambda.schemas.registry import FeatureSchema, FeatureSpec
from mlambda.services.monitoring.analysis import WindowColumns, drift_and_quality
from mlambda.services.monitoring.budget import settle
from mlambda.services.monitoring.data_quality import QualityConfig
from mlambda.services.monitoring.drift import DriftConfig
from mlambda.services.monitoring.profiling import ReferenceOutputs, reference_profile
from tests.unit.fakes_monitoring import SCHEMA, compute_profile, features, prediction_columns

RUNS = 40
AT = datetime(2025, 3, 1, tzinfo=UTC)


@pytest.fixture(scope="module")
def profile() -> ReferenceProfile:
    return compute_profile(features(np.random.default_rng(1), 5_000), SCHEMA)


def columns(frame: pd.DataFrame) -> WindowColumns:
    return WindowColumns(rows=len(frame), features={c: frame[c].to_numpy() for c in frame.columns})


def judged(
    profile: ReferenceProfile, frame: pd.DataFrame, config: DriftConfig | None = None
) -> MonitoringReport:
    """Drift and data quality of ``frame``, settled by one budget at q = 1%."""
    config = config or DriftConfig()
    checks = drift_and_quality(profile, columns(frame), config, QualityConfig())
    report = MonitoringReport(
        model="m",
        at=AT,
        window_start=AT,
        window_end=AT,
        status="ok",
        feature_drift=checks.features,
        data_quality=checks.quality,
    )
    return settle(report, 0.01, config, 0.02)


def feature_drift(
    profile: ReferenceProfile, frame: pd.DataFrame, config: DriftConfig | None = None
) -> DriftSection:
    section = judged(profile, frame, config).feature_drift
    assert section is not None
    return section


@pytest.mark.parametrize(("reference_rows", "rows"), [(600, 300), (3000, 3000)])
def test_runs_on_unchanged_data_rarely_alarm(reference_rows: int, rows: int) -> None:
    # Given RUNS reference samples and windows, all drawn from one distribution
    rng = np.random.default_rng(rows)
    alarms = 0
    for _ in range(RUNS):
        profile = compute_profile(features(rng, reference_rows), SCHEMA)
        # When each window is judged, drift and data quality in one budget at q = 1%
        report = judged(profile, features(rng, rows))
        assert report.feature_drift is not None and report.data_quality is not None
        alarms += bool(report.feature_drift.drifted or report.data_quality.violations)
    # Then at most 2 of 40 runs alarm (at a 1% rate P(3 or more) is 0.7%; at 10%, P(2 or fewer) is 22%)
    assert alarms <= 2


@pytest.mark.parametrize("rows", [300, 5000])
def test_a_known_shift_is_flagged_on_the_shifted_features_only(profile: ReferenceProfile, rows: int) -> None:
    # Given a window whose f0/f1 moved by 0.5 standard deviation and whose cities changed mix
    frame = features(np.random.default_rng(3), rows, shift=0.5, city_shares=[0.1, 0.2, 0.3, 0.4])
    # When judged
    section = feature_drift(profile, frame)
    # Then exactly the shifted columns drift, by the two-sample test fitting the column
    assert sorted(section.drifted) == ["city", "f0", "f1"]
    by_name = {c.name: c for c in section.columns}
    assert by_name["f0"].test == "ks" and by_name["city"].test == "chi_square"
    assert by_name["f0"].effect_measure == "wasserstein"
    assert by_name["f0"].effect == pytest.approx(0.5, abs=0.12)
    assert by_name["city"].total_variation == pytest.approx(0.4, abs=0.06)
    assert section.status == "drift"
    assert section.share == pytest.approx(0.5)
    assert section.dataset_drift  # 3 of 6 columns reach the default 0.5 share


def test_a_significant_but_immaterial_shift_is_not_drift() -> None:
    # Given 200k reference rows and a 200k-row window shifted by 0.03 sd: a sure KS rejection
    rng = np.random.default_rng(10)
    schema = FeatureSchema(
        mode="tensor", features=[FeatureSpec(name="x", dtype="float")], tensor_input="input"
    )
    profile = compute_profile(pd.DataFrame({"x": rng.normal(size=200_000)}), schema)
    section = feature_drift(profile, pd.DataFrame({"x": rng.normal(0.03, 1, 200_000)}))
    [column] = section.columns
    # Then the test is significant, the effect (0.03 sd) below the 0.05 floor: not drift
    assert column.p_value_adjusted is not None and column.p_value_adjusted < 1e-6
    assert not column.material and not column.drifted
    # And a user who cares about smaller shifts lowers the floor for that column
    lowered = feature_drift(
        profile,
        pd.DataFrame({"x": rng.normal(0.03, 1, 200_000)}),
        DriftConfig(overrides={"x": Thresholds(wasserstein=0.02)}),
    )
    assert lowered.drifted == ["x"]


def test_no_dataset_drift_below_the_share_threshold(profile: ReferenceProfile) -> None:
    frame = features(np.random.default_rng(4), 3000, shift=1.0)
    section = feature_drift(profile, frame, DriftConfig(drift_share=0.5))
    assert sorted(section.drifted) == ["f0", "f1"]
    assert not section.dataset_drift


def test_per_column_floor_silences_a_feature(profile: ReferenceProfile) -> None:
    frame = features(np.random.default_rng(5), 3000, shift=0.5)
    config = DriftConfig(overrides={"f0": Thresholds(wasserstein=0.8)})
    section = feature_drift(profile, frame, config)
    assert "f0" not in section.drifted
    assert "f1" in section.drifted


def test_a_few_unseen_categories_are_listed_and_a_material_share_is_a_violation(
    profile: ReferenceProfile,
) -> None:
    rng = np.random.default_rng(7)
    frame = features(rng, 400)
    frame.loc[:3, "city"] = "tokyo"
    report = judged(profile, frame)
    assert report.feature_drift is not None and report.data_quality is not None
    city = next(c for c in report.feature_drift.columns if c.name == "city")
    assert city.unseen == ["tokyo"]
    assert city.unseen_share == pytest.approx(4 / 400)
    # 1% of rows in a category the complete reference never had: far beyond chance, above the 0.1% floor
    assert [(v.check, v.feature) for v in report.data_quality.violations] == [("new_category", "city")]
    assert not city.drifted  # a total variation of 0.01 is below the drift floor


def test_missing_and_all_nan_columns_are_not_enough_data_not_crashes(profile: ReferenceProfile) -> None:
    frame = features(np.random.default_rng(8), 500).drop(columns=["f2"])
    frame["f3"] = np.nan
    section = feature_drift(profile, frame)
    by_name = {c.name: c for c in section.columns}
    assert by_name["f2"].status == "not_enough_data"
    assert "absent" in by_name["f2"].reason
    assert by_name["f3"].status == "not_enough_data"
    assert by_name["f0"].status == "ok"


def test_profile_is_small_and_round_trips_with_bins_on_deciles() -> None:
    # Given 20 numeric features over 100k rows and classifier outputs
    rng = np.random.default_rng(9)
    frame = pd.DataFrame({f"x{i}": rng.normal(size=100_000) for i in range(20)})
    schema = FeatureSchema(
        mode="tensor",
        features=[FeatureSpec(name=f"x{i}", dtype="float") for i in range(20)],
        tensor_input="input",
    )
    probability = rng.random(100_000)
    outputs = prediction_columns(
        labels=(probability > 0.5).astype(int),
        probabilities=np.c_[1 - probability, probability],
        class_labels=[0, 1],
    )
    # When profiled and serialised
    profile = compute_profile(frame, schema, outputs)
    body = profile.to_json()
    # Then it stays in the tens of KB, round-trips, and every PSI bin holds ~10% of the reference
    assert len(body) < 150_000
    again = ReferenceProfile.from_json(body)
    assert again == profile
    numeric = again.features[0].numeric
    assert numeric is not None
    assert len(numeric.bin_edges) == 9
    assert numeric.bin_shares == pytest.approx([0.1] * 10, abs=0.002)
    assert [p.name for p in again.predictions] == ["prediction.label", "prediction.probabilities.1"]


def test_profile_of_discrete_and_missing_values() -> None:
    schema = FeatureSchema(
        mode="tensor",
        features=[
            FeatureSpec(name="flag", dtype="int"),
            FeatureSpec(name="empty", dtype="float"),
            FeatureSpec(name="ok", dtype="bool"),
        ],
        tensor_input="input",
    )
    frame = pd.DataFrame(
        {"flag": [0] * 70 + [1] * 30, "empty": [np.nan] * 100, "ok": [True] * 60 + [False] * 40}
    )
    profile = compute_profile(frame, schema)
    flag, empty, ok = profile.features
    assert flag.numeric is not None and flag.numeric.integral
    assert flag.numeric.bin_edges == [0.0, 1.0]
    assert flag.numeric.bin_shares == pytest.approx([0.7, 0.3, 0.0])
    assert empty.missing_rate == 1.0 and empty.numeric is None
    assert ok.categorical is not None and ok.categorical.shares == {"true": 0.6, "false": 0.4}


def test_profile_with_target_and_held_out_outputs_carries_the_baseline_and_calibration() -> None:
    # Given a reference with its target and a classifier's outputs on it
    rng = np.random.default_rng(15)
    frame = features(rng, 3000)
    logit = frame["f0"].to_numpy()
    target = (rng.random(3000) < 1 / (1 + np.exp(-2 * logit))).astype(int)
    probability = 1 / (1 + np.exp(-logit))  # under-confident: calibration has work to do
    outputs = ReferenceOutputs(
        labels=(probability > 0.5).astype(int),
        probabilities=np.c_[1 - probability, probability],
        class_labels=[0, 1],
    )
    # When profiled
    profile, notes = reference_profile(
        {c: frame[c].to_numpy() for c in frame.columns},
        SCHEMA,
        task="classification",
        target=target,
        outputs=outputs,
    )
    # Then the target's shares, the quality baseline with intervals and the calibration map are in it
    assert notes == []
    assert profile.target is not None and profile.target.categorical is not None
    assert set(profile.target.categorical.shares) == {"0", "1"}
    baseline = profile.baseline
    assert baseline is not None and baseline.classes == ["0", "1"] and baseline.rows == 3000
    accuracy = baseline.metrics["accuracy"]
    assert accuracy.value == pytest.approx(np.mean((probability > 0.5) == target), abs=1e-6)
    assert accuracy.low is not None and accuracy.high is not None and accuracy.se is not None
    assert "1" in baseline.calibration
    # CBPE on the reference it was calibrated on reproduces the realised accuracy
    assert baseline.estimated["accuracy"].value == pytest.approx(accuracy.value, abs=0.01)
    assert ReferenceProfile.from_json(profile.to_json()) == profile


def test_a_near_perfect_reference_is_flagged_as_looking_like_training_data() -> None:
    # Given outputs that match the target on every reference row (as on the training rows)
    rng = np.random.default_rng(17)
    frame = features(rng, 400)
    target = rng.integers(0, 2, 400)
    probability = np.where(target == 1, 0.99, 0.01)
    outputs = ReferenceOutputs(
        labels=target, probabilities=np.c_[1 - probability, probability], class_labels=[0, 1]
    )
    _, notes = reference_profile(
        {c: frame[c].to_numpy() for c in frame.columns},
        SCHEMA,
        task="classification",
        target=target,
        outputs=outputs,
    )
    # Then the registrant is told to pass held-out rows
    assert any("accuracy" in note.message and "held-out" in note.message for note in notes)
    assert {note.code for note in notes} == {"reference_looks_like_training_data"}


def test_reference_outputs_on_a_subset_of_rows_align_with_the_target() -> None:
    rng = np.random.default_rng(16)
    frame = features(rng, 500)
    target = rng.integers(0, 2, 500)
    scored = np.arange(0, 500, 2)  # e.g. only the complete rows were scored
    probability = rng.random(scored.size)
    outputs = ReferenceOutputs(
        labels=target[scored],
        probabilities=np.c_[1 - probability, probability],
        class_labels=[0, 1],
        rows=scored,
    )
    profile, _ = reference_profile(
        {c: frame[c].to_numpy() for c in frame.columns},
        SCHEMA,
        task="classification",
        target=target,
        outputs=outputs,
    )
    assert profile.baseline is not None and profile.baseline.rows == scored.size
    assert profile.baseline.metrics["accuracy"].value == 1.0  # the labels given are the target's own
