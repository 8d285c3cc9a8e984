"""Reference profiles and drift verdicts: false-alarm rate on the reference itself, power on shifts."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from mlambda.schemas.monitoring import ReferenceProfile, Thresholds
from mlambda.schemas.registry import FeatureSchema, FeatureSpec
from mlambda.services.monitoring.drift import ColumnWindow, DriftConfig, column_drift, drift_section
from mlambda.services.monitoring.profiling import compute_profile, prediction_columns
from mlambda.services.monitoring.statistics import ks_statistic
from tests.unit.fakes_monitoring import SCHEMA, features

RUNS = 100


@pytest.fixture(scope="module")
def profile() -> ReferenceProfile:
    return compute_profile(features(np.random.default_rng(1), 20_000), SCHEMA)


def feature_drift(profile: ReferenceProfile, frame: pd.DataFrame, config: DriftConfig | None = None):  # type: ignore[no-untyped-def]
    config = config or DriftConfig()
    columns = [
        column_drift(p, ColumnWindow.read(p.name, p, frame.get(p.name), len(frame)), config)
        for p in profile.features
    ]
    return drift_section(columns, config)


@pytest.mark.parametrize("rows", [300, 5000], ids=["p-values", "distances"])
def test_windows_from_the_reference_distribution_rarely_flag_drift(
    profile: ReferenceProfile, rows: int
) -> None:
    # Given many windows drawn from the reference distribution itself
    rng = np.random.default_rng(rows)
    # When each is judged with the default thresholds
    flagged = sum(bool(feature_drift(profile, features(rng, rows)).drifted) for _ in range(RUNS))
    # Then under 5% of the runs flag any feature
    assert flagged / RUNS < 0.05


@pytest.mark.parametrize("rows", [300, 5000], ids=["p-values", "distances"])
def test_a_known_shift_is_flagged_on_the_shifted_features_only(profile: ReferenceProfile, rows: int) -> None:
    # Given a window whose f0/f1 moved by 0.5 standard deviation and whose cities changed mix
    frame = features(np.random.default_rng(3), rows, shift=0.5, city_shares=[0.1, 0.2, 0.3, 0.4])
    # When judged
    section = feature_drift(profile, frame)
    # Then exactly the shifted columns drift, with the test that fits the sample size
    assert sorted(section.drifted) == ["city", "f0", "f1"]
    by_name = {c.name: c for c in section.columns}
    assert by_name["f0"].test == ("ks" if rows < 1000 else "psi")
    assert by_name["city"].test == ("chi_square" if rows < 1000 else "jensen_shannon")
    assert section.status == "drift"
    assert section.share == pytest.approx(0.5)
    assert section.dataset_drift  # 3 of 6 columns reach the default 0.5 share


def test_no_dataset_drift_below_the_share_threshold(profile: ReferenceProfile) -> None:
    frame = features(np.random.default_rng(4), 3000, shift=1.0)
    section = feature_drift(profile, frame, DriftConfig(drift_share=0.5))
    assert sorted(section.drifted) == ["f0", "f1"]
    assert not section.dataset_drift


def test_per_column_threshold_override_silences_a_feature(profile: ReferenceProfile) -> None:
    frame = features(np.random.default_rng(5), 3000, shift=0.5)
    config = DriftConfig(overrides={"f0": Thresholds(psi=5.0)})
    section = feature_drift(profile, frame, config)
    assert "f0" not in section.drifted
    assert "f1" in section.drifted


def test_sketch_ks_is_within_a_sketch_step_of_the_full_sample_ks() -> None:
    # Given a 50k-row reference profiled with a 500-point sketch, and a shifted window
    rng = np.random.default_rng(6)
    reference = rng.normal(size=50_000)
    window = rng.normal(0.1, 1.0, 20_000)
    schema = FeatureSchema(
        mode="tensor", features=[FeatureSpec(name="x", dtype="float")], tensor_input="input"
    )
    numeric = compute_profile(pd.DataFrame({"x": reference}), schema).features[0].numeric
    assert numeric is not None
    # When KS is computed against the sketch
    approximate = ks_statistic(np.asarray(numeric.sketch), np.sort(window))
    # Then it is the full-sample statistic up to the sketch's resolution
    assert approximate == pytest.approx(
        stats.ks_2samp(reference, window).statistic, abs=2 / len(numeric.sketch)
    )


def test_unseen_categories_are_reported_and_kept_out_of_the_chi_square(profile: ReferenceProfile) -> None:
    rng = np.random.default_rng(7)
    frame = features(rng, 400)
    frame.loc[:3, "city"] = "tokyo"
    section = feature_drift(profile, frame)
    city = next(c for c in section.columns if c.name == "city")
    assert city.unseen == ["tokyo"]
    assert city.unseen_share == pytest.approx(4 / 400)
    assert not city.drifted


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
