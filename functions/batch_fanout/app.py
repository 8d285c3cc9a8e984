"""S3 ObjectCreated under ``input/`` of the batch bucket: plan the job, send one SQS message per chunk.

Keys arrive URL-encoded (spaces as ``+``), as on AWS: always ``unquote_plus``. A redelivered
event finds the job it already created; a bad input becomes a failed job with its reason.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any
from urllib.parse import unquote_plus

from aws_lambda_powertools.utilities.typing import LambdaContext

from mlambda.config import BatchFanoutSettings
from mlambda.observability import logger
from mlambda.services.batch.jobs import JobPlanner


@lru_cache(maxsize=1)
def planner() -> JobPlanner:
    """Built on first use, reused while the function is warm."""
    return JobPlanner.from_settings(BatchFanoutSettings.load())


def plan_record(record: dict[str, Any], service: JobPlanner) -> dict[str, Any]:
    """Plan the job of one S3 event record; what happened, for the logs and the local cloud."""
    s3 = record.get("s3") or {}
    bucket = str((s3.get("bucket") or {}).get("name", ""))
    key = unquote_plus(str((s3.get("object") or {}).get("key", "")))
    etag = str((s3.get("object") or {}).get("eTag", "")).strip('"')
    if not str(record.get("eventName", "")).startswith("ObjectCreated"):
        return {"key": key, "skipped": "not an ObjectCreated event"}
    if bucket != service.bucket:
        logger.warning("event from another bucket ignored", extra={"bucket": bucket, "key": key})
        return {"key": key, "skipped": f"bucket {bucket} is not the batch bucket"}
    job = service.from_upload(bucket, key, etag)
    if job is None:
        return {"key": key, "skipped": "the object was replaced since this event"}
    return {"key": key, "job_id": job.job_id, "status": job.status, "reason": job.reason}


@logger.inject_lambda_context
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    """Plan a job per record; raising (an AWS failure) makes Lambda retry the event."""
    return {"jobs": [plan_record(record, planner()) for record in event.get("Records") or []]}
