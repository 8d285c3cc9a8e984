"""Abandoned uploads expire: the template's lifecycle rule, applied by the local cloud's sweeper."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest
from moto import mock_aws

from mlambda_local.cloud.lifecycle import ExpirationRule, LifecycleSweeper, rules_from_template
from mlambda_local.cloud.template import IntrinsicResolver, load_template
from tests.conftest import REPO_ROOT

BUCKET = "artifacts"


@pytest.fixture
def s3() -> Iterator[Any]:
    with mock_aws():
        client = boto3.client("s3", region_name="us-east-1")
        client.create_bucket(Bucket=BUCKET)
        client.put_bucket_versioning(Bucket=BUCKET, VersioningConfiguration={"Status": "Enabled"})
        yield client


def stored(s3: Any, prefix: str = "") -> list[str]:
    listed = s3.list_object_versions(Bucket=BUCKET, Prefix=prefix)
    return sorted(e["Key"] for e in [*listed.get("Versions", []), *listed.get("DeleteMarkers", [])])


def test_the_template_expires_uploads_and_their_old_versions_after_a_day() -> None:
    template = load_template(REPO_ROOT / "template.yaml", stack_name="t")
    rules = rules_from_template(template, IntrinsicResolver(template))
    uploads = [rule for rule in rules if rule.prefix == "uploads/"]
    assert [(r.bucket.endswith("-artifacts"), r.expiration_days, r.noncurrent_days) for r in uploads] == [
        (True, 1, 1)
    ]


def test_the_sweep_deletes_expired_uploads_for_good_and_keeps_everything_else(s3: Any) -> None:
    # Given an abandoned upload (written twice: two versions) and a model artifact
    for body in (b"first", b"second"):
        s3.put_object(Bucket=BUCKET, Key="uploads/m/abandoned/model.onnx", Body=body)
    s3.put_object(Bucket=BUCKET, Key="models/m/v1/model.onnx", Body=b"artifact")
    rule = ExpirationRule(BUCKET, "expire-abandoned-uploads", "uploads/", 1, 1)
    now = datetime.now(UTC)
    sweeper = LifecycleSweeper(s3, [rule], clock=lambda: now)
    # When: a sweep half a day later, then two days later
    early = sweeper.sweep(now + timedelta(hours=12))
    kept = stored(s3)
    later = sweeper.sweep(now + timedelta(days=2))
    # Then: nothing early; later the upload, its old version and the delete marker are gone
    assert early == 0
    assert kept == [
        "models/m/v1/model.onnx",
        "uploads/m/abandoned/model.onnx",
        "uploads/m/abandoned/model.onnx",
    ]
    assert later == 4
    assert stored(s3) == ["models/m/v1/model.onnx"]
