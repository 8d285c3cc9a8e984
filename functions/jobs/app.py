"""``/jobs``: batch job status and progress, upload a file to score (a presigned PUT), submit an
object under ``input/``, retry what failed.

Scope: ``predict`` for every route. Batch scoring is prediction over a file: whoever may score
rows online may score them in bulk and read the jobs' status; ``admin`` is not needed (and, as
everywhere, admin keys pass too).
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Annotated, Any

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.openapi.params import Body, Query
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext

from mlambda.api import INTEGER_TEXT, RouteDoc, ScopedResolver, needs
from mlambda.config import JobsSettings
from mlambda.errors import NotFoundError
from mlambda.observability import logger
from mlambda.schemas.batch import (
    JOB_ID_PATTERN,
    MAX_REJECTS_PAGE,
    BatchUploadRequest,
    BatchUploadTicket,
    JobFiles,
    JobList,
    JobView,
    RejectsPage,
    RetryResult,
    SubmitJobRequest,
)
from mlambda.schemas.bounds import MAX_PAGE_TOKEN
from mlambda.schemas.keys import Scope
from mlambda.schemas.registry import MODEL_NAME_PATTERN
from mlambda.services.batch.jobs import JobService

app = ScopedResolver()
PREDICT = needs(Scope.PREDICT)


@lru_cache(maxsize=1)
def service() -> JobService:
    """Built on first use, reused while the function is warm."""
    return JobService.from_settings(JobsSettings.load())


def _job_id(job_id: str) -> str:
    if not re.match(JOB_ID_PATTERN, job_id):
        raise NotFoundError(f"no job {job_id!r}", code="job_not_found")
    return job_id


@app.get("/jobs/<job_id>", PREDICT)
def get_job(job_id: str) -> JobView:
    """Status, progress, counts, output location and failed chunks of one job."""
    return service().get(_job_id(job_id))


@app.get("/jobs/<job_id>/rejects", PREDICT)
def get_rejects(
    job_id: str,
    offset: Annotated[int, INTEGER_TEXT, Query(ge=0, le=100_000_000)] = 0,
    limit: Annotated[int, INTEGER_TEXT, Query(ge=1, le=MAX_REJECTS_PAGE)] = 100,
) -> RejectsPage:
    """The rows a job refused, with their reasons, ``offset`` rows in (chunk order)."""
    return service().rejects(_job_id(job_id), offset=offset, limit=limit)


@app.get("/jobs/<job_id>/files", PREDICT)
def get_files(job_id: str) -> JobFiles:
    """Short-lived download links for the job's result parts, rejects files and manifest."""
    return service().files(_job_id(job_id))


@app.get("/jobs", PREDICT)
def list_jobs(
    model: Annotated[str, Query(pattern=MODEL_NAME_PATTERN)],
    limit: Annotated[int, INTEGER_TEXT, Query(ge=1, le=100)] = 20,
    next_token: Annotated[str | None, Query(max_length=MAX_PAGE_TOKEN)] = None,
) -> JobList:
    """A model's jobs, newest first."""
    return service().list(model, limit=limit, next_token=next_token)


@app.post("/jobs", PREDICT, RouteDoc(statuses=(201, 200)))
def submit_job(body: Annotated[SubmitJobRequest, Body()]) -> Response[JobView]:
    """Score an object already in the batch bucket: 201 with a new job, 200 with the existing one."""
    view, created = service().submit(body, submitted_by=app.caller().name)
    return Response(status_code=201 if created else 200, content_type="application/json", body=view)


@app.post("/jobs/uploads", PREDICT, status_code=201)
def upload_ticket(body: Annotated[BatchUploadRequest, Body()]) -> Response[BatchUploadTicket]:
    """201: a presigned PUT under ``input/<model>/`` whose upload starts the job (no AWS credentials)."""
    ticket = service().upload_ticket(body)
    return Response(status_code=201, content_type="application/json", body=ticket)


@app.post("/jobs/<job_id>/retry", PREDICT, status_code=202)
def retry_job(job_id: str) -> Response[RetryResult]:
    """Re-send the chunks that are not done; 202 (they run asynchronously)."""
    result = service().retry(_job_id(job_id))
    return Response(status_code=202, content_type="application/json", body=result)


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_REST)
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    """Route the request."""
    return app.resolve(event, context)
