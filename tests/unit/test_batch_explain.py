"""Explained batch jobs: attribution columns beside the predictions, jobs apart from plain ones,
refused when the explainer could not finish in time, chunks sized to the explainer's cost."""

from __future__ import annotations

import io
from typing import Any

import numpy as np
import pyarrow.parquet as pq
import pytest
from sklearn.datasets import make_classification
from sklearn.ensemble import GradientBoostingClassifier
from sklearn.neural_network import MLPClassifier

from mlambda.errors import InvalidInputError
from mlambda.schemas.batch import Manifest, SubmitJobRequest, job_id_for
from mlambda.services.batch import scoring
from mlambda.services.batch.jobs import options_from_metadata
from tests.explain_support import export, with_explainer
from tests.unit.fakes_batch import (
    FEATURES,
    MODEL,
    Harness,
    classifier_model,
    csv_bytes,
    make_frame,
    model_version,
)

KEY = "input/churn/2025/scores.csv"


def explained_harness(data: bytes | None = None, fitted: Any = None, **kwargs: Any) -> tuple[Harness, Any]:
    """A harness whose production version (the logistic regression, or ``data``) has an explainer."""
    h = Harness(**kwargs)
    data = data if data is not None else classifier_model()[0]
    version = model_version(data=data)
    X = make_frame(300, seed=3)[FEATURES].to_numpy(np.float32)
    h.catalog.add(with_explainer(version, data, X, h.artifacts), "production")
    h.loader.artifacts[version.artifact_key] = data
    return h, fitted if fitted is not None else classifier_model()[1]


def parts(h: Harness, job_id: str) -> Any:
    import pyarrow as pa

    tables = [
        pq.read_table(io.BytesIO(h.objects.objects[key].body))
        for key in h.objects.keys(f"output/{job_id}/part-")
    ]
    return pa.concat_tables(tables)


def test_explain_metadata_reads_true_and_false_and_refuses_anything_else() -> None:
    # Given / When / Then
    assert options_from_metadata({"explain": "true"}).explain is True
    assert options_from_metadata({"explain": "FALSE"}).explain is False
    assert options_from_metadata({}).explain is False
    with pytest.raises(InvalidInputError) as caught:
        options_from_metadata({"explain": "maybe"})
    assert caught.value.code == "invalid_explain"


def test_an_explained_job_and_a_plain_one_of_the_same_object_are_different_jobs() -> None:
    # Given the same object version and alias
    plain = job_id_for("b", KEY, "etag", "production")
    explained = job_id_for("b", KEY, "etag", "production", explain=True)
    # Then the plain id is what it always was, and the explained one differs
    import hashlib

    assert plain == hashlib.sha256(f"b\n{KEY}\netag\nproduction".encode()).hexdigest()[:20]
    assert explained != plain


def test_an_explained_job_writes_attributions_that_add_up_to_the_log_odds_of_the_predicted_class() -> None:
    # Given a logistic regression with an explainer, and 450 rows in chunks of 100
    h, fitted = explained_harness(chunk_rows=100)
    frame = make_frame(450)
    # When the file is uploaded with explain, and scored
    job = h.upload(KEY, csv_bytes(450), {"explain": "true"})
    assert job is not None
    h.drain()
    # Then the job completed with attribution columns after the predictions, listed in the manifest
    done = h.jobs.get(job.job_id)
    assert done is not None and done.status == "completed" and done.explain
    assert done.explanation is not None and done.explanation.method == "linear"
    manifest = Manifest.model_validate_json(h.objects.objects[f"output/{job.job_id}/_manifest.json"].body)
    expected = [f"explain_{name}" for name in FEATURES] + [
        "explain_baseline",
        "explain_value",
        "explain_class",
    ]
    assert manifest.columns == ["id", "label", "proba_0", "proba_1", *expected]
    assert manifest.explanation is not None and manifest.explanation.output == "log_odds"
    table = parts(h, job.job_id)
    assert table.column_names == manifest.columns
    attributions = np.column_stack([table.column(f"explain_{n}").to_numpy() for n in FEATURES])
    baseline = table.column("explain_baseline").to_numpy()
    value = table.column("explain_value").to_numpy()
    # additive: value = baseline + sum(attributions)
    np.testing.assert_allclose(baseline + attributions.sum(axis=1), value, atol=1e-9)
    # and value is the model's log-odds of the predicted class, for the rows in file order
    X = frame.set_index("id").loc[table.column("id").to_pylist(), FEATURES].to_numpy(np.float32)
    probabilities = fitted.predict_proba(X)
    predicted = table.column("label").to_numpy()
    chosen = probabilities[np.arange(len(predicted)), predicted]
    np.testing.assert_allclose(value, np.log(chosen / (1 - chosen)), atol=1e-4)
    assert table.column("explain_class").to_pylist() == [str(label) for label in predicted]


def test_the_same_file_scored_plain_and_explained_gives_two_jobs() -> None:
    # Given an explained model
    h, _ = explained_harness()
    h.objects.upload(KEY, csv_bytes(120))
    # When the object is submitted plain, then explained
    plain, created_plain = h.api.submit(SubmitJobRequest(key=KEY), submitted_by="alice")
    explained, created_explained = h.api.submit(SubmitJobRequest(key=KEY, explain=True), submitted_by="alice")
    h.drain()
    # Then two jobs, the plain one without attribution columns
    assert created_plain and created_explained
    assert plain.job.job_id != explained.job.job_id
    assert "explain_value" not in parts(h, plain.job.job_id).column_names
    assert "explain_value" in parts(h, explained.job.job_id).column_names


def test_a_version_without_an_explainer_fails_the_explained_job_with_the_reason() -> None:
    # Given the plain harness (its version has no explainer)
    h = Harness()
    # When
    job = h.upload(KEY, csv_bytes(50), {"explain": "true"})
    # Then the job failed at plan time; nothing was queued
    assert job is not None and job.status == "failed"
    assert job.error_code == "explainer_unavailable"
    assert h.queue.bodies == []


def test_a_model_only_kernel_shap_explains_is_refused_at_plan_time() -> None:
    # Given an MLP (no exact reader: kernel_shap only)
    X, y = make_classification(n_samples=300, n_features=20, random_state=1)
    mlp = MLPClassifier(hidden_layer_sizes=(8,), solver="lbfgs", max_iter=500, random_state=0).fit(X, y)
    h, _ = explained_harness(data=export(mlp, X), fitted=mlp)
    # When
    job = h.upload(KEY, csv_bytes(50), {"explain": "true"})
    # Then
    assert job is not None and job.status == "failed"
    assert job.error_code == "explain_too_costly"
    assert "kernel_shap" in (job.reason or "")


def test_chunks_of_an_explained_job_shrink_to_what_treeshap_can_explain_in_time(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given a gradient-boosting model, and a per-chunk budget worth about 150 rows of its TreeSHAP
    X, y = make_classification(n_samples=300, n_features=20, random_state=2)
    gbm = GradientBoostingClassifier(n_estimators=20, max_depth=3, random_state=0).fit(X, y)
    h, _ = explained_harness(data=export(gbm, X), fitted=gbm, chunk_rows=1000)
    explainer = h.worker.explainers.get(h.catalog.resolve(MODEL, "production"))  # type: ignore[union-attr]
    assert explainer.paths is not None
    monkeypatch.setattr(scoring, "EXPLAIN_WORK_PER_CHUNK", 150 * explainer.paths.cost_per_row)
    # When a 700-row file is submitted with explain
    job = h.upload(KEY, csv_bytes(700), {"explain": "true"})
    assert job is not None
    h.drain()
    # Then the job used chunks of 150 rows, not the 1,000 asked for, and attributions add up
    done = h.jobs.get(job.job_id)
    assert done is not None and done.status == "completed"
    assert done.chunk_rows == 150 and done.total_chunks >= 4
    assert done.explanation is not None and done.explanation.method == "tree_shap_path_dependent"
    table = parts(h, job.job_id)
    total = (
        sum(table.column(f"explain_{n}").to_numpy() for n in FEATURES)
        + table.column("explain_baseline").to_numpy()
    )
    np.testing.assert_allclose(total, table.column("explain_value").to_numpy(), atol=1e-6)


def test_an_explainer_too_costly_for_the_smallest_chunk_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    # Given a budget below 100 rows of the GBM's TreeSHAP
    X, y = make_classification(n_samples=300, n_features=20, random_state=2)
    gbm = GradientBoostingClassifier(n_estimators=20, max_depth=3, random_state=0).fit(X, y)
    h, _ = explained_harness(data=export(gbm, X), fitted=gbm)
    monkeypatch.setattr(scoring, "EXPLAIN_WORK_PER_CHUNK", 10)
    # When
    job = h.upload(KEY, csv_bytes(200), {"explain": "true"})
    # Then
    assert job is not None and job.status == "failed" and job.error_code == "explain_too_costly"


def test_a_passthrough_column_named_like_an_attribution_column_is_renamed() -> None:
    # Given a file with a column called explain_value
    h, _ = explained_harness()
    frame = make_frame(30)
    frame["explain_value"] = "mine"
    # When
    job = h.upload(KEY, frame.to_csv(index=False).encode(), {"explain": "true"})
    assert job is not None
    h.drain()
    # Then the input's column is kept as input_explain_value, the attribution as explain_value
    table = parts(h, job.job_id)
    assert table.column("input_explain_value").to_pylist() == ["mine"] * 30
    assert table.column("explain_value").type == "double"
    manifest = Manifest.model_validate_json(h.objects.objects[f"output/{job.job_id}/_manifest.json"].body)
    assert manifest.columns == table.column_names


def test_a_chunk_whose_rows_are_all_rejected_still_has_the_attribution_columns() -> None:
    # Given an explained model and a file where every row is bad
    h, _ = explained_harness()
    frame = make_frame(10)
    frame["f0"] = "n/a"
    # When
    job = h.upload(KEY, frame.to_csv(index=False).encode(), {"explain": "true"})
    assert job is not None
    h.drain()
    # Then the (empty) part has the manifest's columns
    done = h.jobs.get(job.job_id)
    assert done is not None and done.rows_rejected == 10
    table = parts(h, job.job_id)
    assert table.num_rows == 0
    manifest = Manifest.model_validate_json(h.objects.objects[f"output/{job.job_id}/_manifest.json"].body)
    assert table.column_names == manifest.columns
