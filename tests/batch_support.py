"""Helpers the batch integration and e2e tests share: a registered model, and an SQS pump."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Any

import numpy as np

from mlambda.adapters.dynamodb import DynamoTable
from mlambda.adapters.registry import DynamoRegistryStore
from mlambda.adapters.s3 import ObjectStore
from mlambda.config import FunctionSettings
from mlambda.schemas.registry import ModelVersion
from tests.explain_support import with_explainer
from tests.registry_support import publish
from tests.unit.fakes_batch import FEATURES, classifier_model, make_frame, model_version


def register_model(
    s3: Any,
    registry_table: str,
    artifacts_bucket: str,
    endpoint_url: str | None = None,
    model: str = "churn",
    *,
    explained: bool = False,
) -> ModelVersion:
    """The 20-feature classifier as ``model`` v1, behind ``production``, through the registry's store
    (``explained``: with the explainer registration builds from a reference sample)."""
    settings = FunctionSettings.model_validate({"AWS_ENDPOINT_URL": endpoint_url, "AWS_REGION": "us-east-1"})
    store = DynamoRegistryStore(DynamoTable(registry_table, settings))
    data, _ = classifier_model()
    version = model_version(model=model)
    s3.put_object(Bucket=artifacts_bucket, Key=version.artifact_key, Body=data)
    assert hashlib.sha256(data).hexdigest() == version.artifact_sha256
    if explained:
        reference = make_frame(300, seed=3)[FEATURES].to_numpy(np.float32)
        version = with_explainer(version, data, reference, ObjectStore(artifacts_bucket, settings))
    publish(store, version)
    return version


def pump(
    sqs: Any, queue_url: str, invoke: Callable[[dict[str, Any]], Any], *, max_batches: int = 200
) -> list[Any]:
    """Play Lambda's SQS poller: receive one message at a time, invoke, delete what succeeded."""
    from mlambda_local.cloud.sqs import failed_message_ids, sqs_record

    arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    results: list[Any] = []
    for _ in range(max_batches):
        messages = sqs.receive_message(
            QueueUrl=queue_url, MaxNumberOfMessages=1, AttributeNames=["All"], MessageAttributeNames=["All"]
        ).get("Messages", [])
        if not messages:
            break
        result = invoke({"Records": [sqs_record(m, arn, "us-east-1") for m in messages]})
        results.append(result)
        ids = [m["MessageId"] for m in messages]
        failed = failed_message_ids(result, ids)
        failed = set(ids) if failed is None else failed
        for message in messages:
            if message["MessageId"] not in failed:
                sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"])
    return results
