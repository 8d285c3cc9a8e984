"""MonitoringService on in-memory ports: verdicts, reports, alerts with cooldown, bad input."""

from __future__ import annotations

import json
from datetime import timedelta

import numpy as np
import pandas as pd
import pytest

from mlambda.schemas.monitoring import MonitoringReport
from mlambda.schemas.registry import EndpointConfig, Variant
from mlambda.services.monitoring.service import MonitorConfig, MonitoringService
from tests.unit.fakes_monitoring import (
    NOW,
    FakeArchive,
    FakeArtifacts,
    FakeBatch,
    FakeCatalog,
    FakeMonitoringStore,
    FakeRecorder,
    FakeTopic,
    batch_job,
    features,
    labels_for,
    labels_from_model,
    reference_profile_json,
    served,
    version,
)


class World:
    """One service over fakes, with a production model ``churn`` and its profile."""

    def __init__(self, *, target: bool = False, **version_args: object) -> None:
        self.rng = np.random.default_rng(11)
        self.catalog = FakeCatalog()
        self.archive = FakeArchive()
        self.store = FakeMonitoringStore()
        self.artifacts = FakeArtifacts()
        self.topic = FakeTopic()
        self.recorder = FakeRecorder()
        self.batch = FakeBatch()
        self.add_model("churn", target=target, **version_args)
        self.service = MonitoringService(
            self.catalog,
            self.archive,
            self.store,
            self.artifacts,
            self.topic,
            config=MonitorConfig(),
            recorder=self.recorder,
            batch=self.batch,
        )

    def add_model(self, name: str, *, target: bool = False, **version_args: object) -> None:
        model_version = version(name, **version_args)  # type: ignore[arg-type]
        self.catalog.production[name] = model_version
        assert model_version.reference_profile_key
        self.artifacts.objects[model_version.reference_profile_key] = reference_profile_json(
            self.rng, target=target
        )

    def serve(self, name: str = "churn", rows: int = 2000, **feature_args: object) -> pd.DataFrame:
        frame = served(features(self.rng, rows, **feature_args), model=name)  # type: ignore[arg-type]
        self.archive.predictions_by_model[name] = frame
        return frame

    def report(self, key: str | None) -> MonitoringReport:
        assert key
        return MonitoringReport.model_validate_json(self.artifacts.objects[key])


def test_traffic_like_the_reference_is_ok_and_stored_without_alerts() -> None:
    # Given traffic drawn like the reference
    world = World()
    world.serve()
    # When monitoring runs
    [summary] = world.service.run(at=NOW)
    # Then the run is ok, stored as report.json + report.html + a summary row, and nobody is alerted
    assert summary.status == "ok", summary.reason
    assert summary.report_key == "monitoring/churn/2025-03-01T12:00:00Z/report.json"
    assert summary.html_key in world.artifacts.objects
    assert world.store.summaries("churn", 5) == [summary]
    assert world.topic.messages == []
    report = world.report(summary.report_key)
    assert report.rows == 2000 and report.feature_drift and len(report.feature_drift.columns) == 6
    model, metrics = world.recorder.records[0]
    assert model == "churn" and metrics["DriftedFeatures"] == 0 and metrics["WindowRows"] == 2000


def test_drift_alerts_once_within_the_cooldown_and_again_after_it() -> None:
    # Given shifted traffic
    world = World()
    world.serve(shift=1.0)
    # When monitoring runs three times: now, an hour later, and past the 24 h cooldown
    first = world.service.run(at=NOW)[0]
    second = world.service.run(at=NOW + timedelta(hours=1))[0]
    third = world.service.run(at=NOW + timedelta(hours=25))[0]
    # Then every run reports drift, but only the first and the third alert
    assert [s.status for s in (first, second, third)] == ["drift"] * 3
    assert {"f0", "f1"} <= set(first.drifted_features)
    assert first.alerts_sent > 0 and second.alerts_sent == 0 and third.alerts_sent == first.alerts_sent
    assert len(world.topic.messages) == 2
    subject, message = world.topic.messages[0]
    assert "churn" in subject
    assert {(a["check"], a["feature"]) for a in message["alerts"]} >= {("drift", "f0"), ("drift", "f1")}
    assert message["html_key"] == first.html_key
    held = world.report(second.report_key).alerts
    assert held and not any(a.sent for a in held)


def test_a_failed_publish_releases_the_claims_so_the_next_run_alerts() -> None:
    world = World()
    world.serve(shift=1.0)
    world.topic.failing = True
    first = world.service.run(at=NOW)[0]
    world.topic.failing = False
    second = world.service.run(at=NOW + timedelta(hours=1))[0]
    assert first.alerts_sent == 0
    assert "alert not sent" in " ".join(world.report(first.report_key).notes)
    assert second.alerts_sent > 0


def test_model_quality_against_registered_metrics_with_labels() -> None:
    # Given labels that agree with only 70% of predictions, and a registered accuracy of 0.95
    world = World(metrics={"accuracy": 0.95})
    rows = world.serve()
    world.archive.label_frame = labels_for(rows, world.rng, accuracy=0.7)
    # When monitored
    [summary] = world.service.run(at=NOW)
    # Then accuracy is measured on every labelled row (labels stored as strings) and flagged as degraded
    quality = world.report(summary.report_key).model_quality
    assert quality is not None and quality.labelled == 2000
    assert quality.metrics["accuracy"].value == pytest.approx(0.7, abs=0.03)
    assert quality.degraded == ["accuracy"]
    assert summary.status == "drift" and "model quality" in summary.reason


def test_labels_like_the_reference_are_no_alarm_and_degraded_labels_are_against_the_reference() -> None:
    # Given a profile with the reference's target (the quality baseline and the calibration)
    world = World(target=True)
    rows = world.serve()
    world.archive.label_frame = labels_from_model(rows, world.rng)
    # When labels behave as on the reference
    [summary] = world.service.run(at=NOW)
    report = world.report(summary.report_key)
    quality, estimated = report.model_quality, report.estimated_performance
    # Then quality is compared with the reference's own, nothing alarms, and CBPE's estimate is close to realised
    assert quality is not None and quality.baseline == "reference" and quality.degraded == []
    assert quality.metrics["accuracy"].reference is not None
    assert quality.confusion and quality.curves and quality.probability_histograms
    assert report.label_drift is not None and report.label_drift.drifted == []
    assert estimated is not None and estimated.degraded == []
    accuracy = estimated.metrics["accuracy"]
    assert accuracy.error is not None and abs(accuracy.error) < 0.03
    assert summary.status == "ok", summary.reason
    # And when the labels disagree with half of the predictions, accuracy is degraded against the reference
    world.archive.label_frame = labels_for(rows, world.rng, accuracy=0.5)
    [later] = world.service.run(at=NOW + timedelta(hours=1))
    degraded = world.report(later.report_key).model_quality
    assert degraded is not None and "accuracy" in degraded.degraded
    assert later.status == "drift" and "model quality" in later.reason


def test_fallback_answers_are_counted_apart_and_kept_out_of_every_figure() -> None:
    # Given 300 of 2,000 answers served by the endpoint's fallback (label -1), with labels for every row
    world = World()
    rows = world.serve()
    rows.loc[:299, "prediction.label"] = -1
    rows.loc[:299, "prediction.probabilities.1"] = np.nan
    rows["fallback"] = None
    rows.loc[:299, "fallback"] = "model_failed"
    world.archive.label_frame = labels_for(rows, world.rng, accuracy=0.9)
    # When monitored
    [summary] = world.service.run(at=NOW)
    report = world.report(summary.report_key)
    # Then they are counted, and neither prediction drift nor model quality saw them
    assert report.fallback_rows == 300 and summary.fallback_rows == 300
    assert report.rows == 1700
    assert report.model_quality is not None and report.model_quality.labelled == 1700
    assert not any("does not know" in note for note in report.notes)
    assert report.prediction_drift is not None and report.prediction_drift.drifted == []
    assert summary.status == "ok", summary.reason


def test_a_completed_batch_job_is_monitored_once_with_its_own_report() -> None:
    # Given served traffic like the reference, and a batch job whose f3 moved by 0.5 (a quarter of its range)
    world = World(target=True)
    world.serve()
    frame = features(world.rng, 3000)
    frame["f3"] = frame["f3"] + 0.5
    job = batch_job("0123456789abcdef0123", frame)
    world.batch.jobs["0123456789abcdef0123"] = job
    # When the schedule runs twice
    first = world.service.run(at=NOW)
    second = world.service.run(at=NOW + timedelta(hours=1))
    # Then the job got one report of its own, under the job's key, with the drift the traffic does not have
    batch = [s for s in first if s.source == "batch"]
    assert [s.job_id for s in batch] == ["0123456789abcdef0123"]
    assert [s.source for s in second] == ["traffic"]
    report = world.report(batch[0].report_key)
    assert batch[0].report_key == "monitoring/churn/jobs/0123456789abcdef0123/report.json"
    assert report.source == "batch" and report.rows == 3000
    assert report.feature_drift is not None and report.feature_drift.drifted == ["f3"]
    assert report.estimated_performance is not None and "accuracy" in report.estimated_performance.metrics
    assert report.prediction_drift is not None
    traffic = world.report(next(s for s in first if s.source == "traffic").report_key)
    assert traffic.feature_drift is not None and traffic.feature_drift.drifted == []


def test_few_labels_give_not_enough_data_for_quality_only() -> None:
    world = World()
    rows = world.serve()
    world.archive.label_frame = labels_for(rows.head(20), world.rng, accuracy=1.0)
    [summary] = world.service.run(at=NOW)
    quality = world.report(summary.report_key).model_quality
    assert quality is not None and quality.status == "not_enough_data" and quality.labelled == 20
    assert summary.status == "ok"


def test_missing_profile_is_an_error_report_and_alert_not_a_crash() -> None:
    world = World()
    world.serve()
    world.artifacts.objects.clear()
    [summary] = world.service.run(at=NOW)
    assert summary.status == "error"
    assert "reference profile of v1 is missing" in summary.reason
    assert world.topic.messages[0][1]["alerts"][0]["check"] == "monitoring_error"


def test_corrupt_profile_and_schema_change_are_precise_errors() -> None:
    world = World()
    world.serve()
    key = world.catalog.production["churn"].reference_profile_key
    assert key
    world.artifacts.objects[key] = b"{not json"
    assert "not a valid profile" in world.service.run(at=NOW)[0].reason
    profile = json.loads(reference_profile_json(world.rng))
    profile["features"] = profile["features"][:-1]
    world.artifacts.objects[key] = json.dumps(profile).encode()
    assert "schema mismatch" in world.service.run(at=NOW + timedelta(minutes=1))[0].reason


def test_empty_window_is_not_enough_data_and_names_unreadable_objects() -> None:
    world = World()
    world.archive.corrupt = ["type=prediction/model=churn/date=2025-03-01/hour=11/part-x.parquet"]
    [summary] = world.service.run(at=NOW)
    assert summary.status == "not_enough_data"
    assert "no predictions logged" in summary.reason and "1 log objects unreadable" in summary.reason
    assert world.report(summary.report_key).corrupt_objects == world.archive.corrupt


def test_rows_of_another_version_only_are_not_enough_data() -> None:
    world = World()
    frame = world.serve()
    frame["version"] = 7
    [summary] = world.service.run(at=NOW)
    assert summary.status == "not_enough_data"
    assert "versions [7]" in summary.reason


def test_all_nan_feature_is_a_quality_violation_and_the_rest_is_still_judged() -> None:
    world = World()
    frame = world.serve()
    frame["features.f2"] = np.nan
    frame["features.debug"] = "x"
    [summary] = world.service.run(at=NOW)
    report = world.report(summary.report_key)
    assert report.data_quality is not None
    checks = {(v.check, v.feature) for v in report.data_quality.violations}
    assert ("completeness", "f2") in checks and ("extra_column", "debug") in checks
    assert report.feature_drift is not None
    assert {c.name: c.status for c in report.feature_drift.columns}["f2"] == "not_enough_data"
    assert summary.status == "drift"


def test_one_failing_model_does_not_skip_the_others() -> None:
    world = World()
    world.add_model("fraud")
    world.serve("churn")
    world.serve("fraud")
    world.archive.broken = {"churn"}
    summaries = {s.model: s for s in world.service.run(at=NOW)}
    assert summaries["churn"].status == "error" and "s3 is down" in summaries["churn"].reason
    assert summaries["fraud"].status == "ok"


def test_naming_a_model_without_production_alias_reports_it() -> None:
    world = World()
    [summary] = world.service.run(["ghost"], at=NOW)
    assert summary.status == "error" and "no production alias" in summary.reason


def test_threshold_tags_override_the_defaults_per_column() -> None:
    world = World(tags={"monitor:psi:f0": "9", "monitor:psi:f1": "9", "monitor:jensen_shannon": "0.9"})
    world.serve(shift=1.0)
    [summary] = world.service.run(at=NOW)
    report = world.report(summary.report_key)
    assert report.feature_drift is not None and report.feature_drift.drifted == []


def test_ab_readout_compares_variants_and_flags_sample_ratio_mismatch() -> None:
    # Given a 50/50 endpoint where variant b got 3x the traffic and worse accuracy
    world = World()
    world.catalog.endpoints["churn"] = EndpointConfig(
        model="churn",
        variants=[
            Variant(name="a", target="production", weight=50),
            Variant(name="b", target="v2", weight=50),
        ],
    )
    a = served(features(world.rng, 500), prefix="a")
    b = served(features(world.rng, 1500), prefix="b", variant="b", version_number=2)
    a["variant"] = "a"
    world.archive.predictions_by_model["churn"] = pd.concat([a, b], ignore_index=True)
    world.archive.label_frame = pd.concat(
        [labels_for(a, world.rng, accuracy=0.9), labels_for(b, world.rng, accuracy=0.7)], ignore_index=True
    )
    # When monitored
    [summary] = world.service.run(at=NOW)
    # Then the readout shows both arms, a significant accuracy drop and an SRM
    ab = world.report(summary.report_key).ab
    assert ab is not None
    assert {v.variant: v.rows for v in ab.variants} == {"a": 500, "b": 1500}
    [comparison] = ab.comparisons
    assert comparison.control == "a" and comparison.significant and comparison.difference < 0  # type: ignore[operator]
    assert ab.sample_ratio_mismatch
    assert "A/B" in summary.reason


def test_sample_ratio_counts_requests_not_rows() -> None:
    # Given a 50/50 endpoint that routed 100 requests each way, b's requests carrying 10 rows each
    world = World()
    world.catalog.endpoints["churn"] = EndpointConfig(
        model="churn",
        variants=[
            Variant(name="a", target="production", weight=50),
            Variant(name="b", target="v2", weight=50),
        ],
    )
    a = served(features(world.rng, 100), prefix="a")
    a["variant"] = "a"
    b = served(features(world.rng, 1000), prefix="b", variant="b", version_number=2)
    b["request_id"] = [f"b{i // 10}" for i in range(1000)]
    b["row"] = [i % 10 for i in range(1000)]
    world.archive.predictions_by_model["churn"] = pd.concat([a, b], ignore_index=True)
    # When monitored
    [summary] = world.service.run(at=NOW)
    # Then rows are 100 vs 1,000 but the split itself is fine: no SRM
    ab = world.report(summary.report_key).ab
    assert ab is not None
    assert {v.variant: v.rows for v in ab.variants} == {"a": 100, "b": 1000}
    assert not ab.sample_ratio_mismatch
    assert ab.srm_p_value is not None and ab.srm_p_value > 0.5


def test_view_returns_latest_report_and_history_and_html_is_self_contained() -> None:
    world = World()
    world.serve(shift=1.0)
    world.service.run(at=NOW)
    world.service.run(at=NOW + timedelta(hours=1))
    view = world.service.view("churn", limit=10)
    assert [s.at for s in view.history] == [NOW + timedelta(hours=1), NOW]
    assert view.latest is not None and view.latest.at == NOW + timedelta(hours=1)
    page = world.service.latest_html("churn")
    assert page.startswith("<!DOCTYPE html>") and "<svg" in page and "<polyline" in page
    assert "http://" not in page and "<script" not in page


def test_html_for_an_unmonitored_model_is_not_found() -> None:
    from mlambda.errors import NotFoundError

    world = World()
    with pytest.raises(NotFoundError):
        world.service.latest_html("churn")
