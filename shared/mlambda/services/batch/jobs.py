"""Batch jobs: plan on upload, score chunk by chunk, finish exactly once, resume what failed.

Exactly-once, on at-least-once delivery:

- **Job**: its id is derived from (bucket, key, etag, alias) and created with a conditional
  put, so a redelivered S3 event (or ``POST /jobs`` racing the upload's event) finds the job
  instead of making a second one. A job still ``planning`` is planned again (the plan is
  deterministic and chunk records are only added, never replaced), so a planner that died
  half-way is resumed by the redelivery.
- **Chunk**: the part file is overwritten by each delivery (same input, same bytes), and the
  chunk is counted in one transaction that flips it to ``done`` only if it was not already:
  a redelivered chunk is never counted twice.
- **Completion**: whoever sees ``done_chunks == total_chunks`` writes the manifest (built only
  from stored records, so every writer writes the same one) and ``_SUCCESS``; the conditional
  move to ``completed`` picks the one that emits the event.

A chunk that fails records each attempt; at the queue's ``maxReceiveCount`` it is marked failed
(and its message goes to the DLQ). ``retry`` re-sends only the chunks that are not done.
"""

from __future__ import annotations

import re
import threading
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from mlambda.config import BatchSettings, BatchWorkerSettings, JobsSettings
from mlambda.errors import ConflictError, InvalidInputError, MlambdaError, NotFoundError
from mlambda.observability import logger
from mlambda.ports import EventPublisher, ModelCatalog, ModelLoader
from mlambda.schemas.batch import (
    DOWNLOAD_EXPIRES_SECONDS,
    INPUT_PREFIX,
    JOB_COMPLETED,
    MAX_CHUNK_ROWS,
    MAX_REJECTS_PAGE,
    MIN_CHUNK_ROWS,
    UPLOAD_EXPIRES_SECONDS,
    BatchUploadRequest,
    BatchUploadTicket,
    ChunkFailure,
    ChunkMessage,
    ChunkRecord,
    ChunkResult,
    ChunkStatus,
    ExplainedColumns,
    Job,
    JobFile,
    JobFileKind,
    JobFiles,
    JobInput,
    JobList,
    JobView,
    Manifest,
    ManifestPart,
    ManifestTimings,
    RejectedRow,
    RejectsPage,
    RetryResult,
    SubmitJobRequest,
    job_id_for,
    manifest_key,
    part_key,
    rejects_key,
    success_key,
)
from mlambda.schemas.bounds import is_decimal_text
from mlambda.schemas.registry import ALIAS_PATTERN, PRODUCTION, ModelVersion, parse_version_ref
from mlambda.services.batch.planning import (
    PlanningLimits,
    Source,
    check_parquet_types,
    parse_input_key,
    plan_file,
    split_columns,
)
from mlambda.services.batch.ports import BatchObjects, ChunkQueue, ChunkRetries, JobOutputs, JobStore
from mlambda.services.batch.scoring import (
    ScoringInputs,
    explained_chunk_rows,
    explained_columns,
    read_rejects_csv,
    score_chunk,
)
from mlambda.services.inference.explain import Explainers

Clock = Callable[[], datetime]
ACTIVE = ("planning", "running")
EVENT_SOURCE = "mlambda.batch"
# A job still planning after this long lost its planner: a redelivered event takes over.
PLANNING_LEASE = timedelta(seconds=60)
MAX_ERROR_CHARS = 1000


def utc_now() -> datetime:
    """The current time, UTC."""
    return datetime.now(UTC)


def _messages(job_id: str, chunks: Iterable[int]) -> list[str]:
    return [ChunkMessage(job_id=job_id, chunk=index).model_dump_json() for index in chunks]


@dataclass(frozen=True)
class JobOptions:
    """What a submitter may choose: the alias, the chunk size, the passthrough columns, attributions."""

    alias: str = PRODUCTION
    chunk_rows: int | None = None
    passthrough: list[str] | None = None
    explain: bool = False


_FLAGS = {"true": True, "1": True, "yes": True, "false": False, "0": False, "no": False}


def options_from_metadata(metadata: dict[str, str]) -> JobOptions:
    """Options set on the uploaded object (``x-amz-meta-alias``, ``-chunk-rows``, ``-passthrough``, ``-explain``)."""
    alias = metadata.get("alias") or PRODUCTION
    if not re.match(ALIAS_PATTERN, alias) and parse_version_ref(alias) is None:
        raise InvalidInputError(
            f"metadata alias {alias!r} is neither an alias nor a version", code="invalid_alias"
        )
    raw_rows = metadata.get("chunk-rows")
    chunk_rows: int | None = None
    if raw_rows:
        if not is_decimal_text(raw_rows) or not MIN_CHUNK_ROWS <= int(raw_rows) <= MAX_CHUNK_ROWS:
            raise InvalidInputError(
                f"metadata chunk-rows {raw_rows!r} must be a whole number in {MIN_CHUNK_ROWS}..{MAX_CHUNK_ROWS}",
                code="invalid_chunk_rows",
            )
        chunk_rows = int(raw_rows)
    raw_passthrough = metadata.get("passthrough")
    passthrough = (
        None if raw_passthrough is None else [c.strip() for c in raw_passthrough.split(",") if c.strip()]
    )
    raw_explain = metadata.get("explain", "false").strip().lower()
    if raw_explain not in _FLAGS:
        raise InvalidInputError(
            f"metadata explain {raw_explain[:20]!r} must be true or false", code="invalid_explain"
        )
    return JobOptions(
        alias=alias, chunk_rows=chunk_rows, passthrough=passthrough, explain=_FLAGS[raw_explain]
    )


class JobPlanner:
    """Turns an object under ``input/`` into a job record and one message per chunk."""

    def __init__(
        self,
        *,
        jobs: JobStore,
        objects: BatchObjects,
        catalog: ModelCatalog,
        queue: ChunkQueue,
        bucket: str,
        limits: PlanningLimits,
        explainers: Explainers | None = None,
        clock: Clock = utc_now,
    ) -> None:
        self.jobs = jobs
        self.objects = objects
        self.catalog = catalog
        self.queue = queue
        self.bucket = bucket
        self.limits = limits
        self.explainers = explainers
        self.clock = clock

    @classmethod
    def from_settings(cls, settings: BatchSettings) -> JobPlanner:
        """The planner on DynamoDB, S3 and SQS (adapters imported here, on first use)."""
        from mlambda.adapters.batch import S3BatchObjects, SqsChunkQueue
        from mlambda.adapters.dynamodb import DynamoTable
        from mlambda.adapters.jobs import DynamoJobStore
        from mlambda.adapters.registry import DynamoModelCatalog
        from mlambda.adapters.s3 import ObjectStore

        return cls(
            jobs=DynamoJobStore(DynamoTable(settings.jobs_table, settings)),
            objects=S3BatchObjects(settings.batch_bucket, settings),
            catalog=DynamoModelCatalog(DynamoTable(settings.registry_table, settings)),
            queue=SqsChunkQueue(settings.chunk_queue_url, settings),
            bucket=settings.batch_bucket,
            explainers=Explainers(ObjectStore(settings.artifacts_bucket, settings)),
            limits=PlanningLimits(
                chunk_rows=settings.chunk_rows,
                sample_bytes=settings.csv_sample_bytes,
                max_line_bytes=settings.max_line_bytes,
                max_chunks=settings.max_chunks,
            ),
        )

    def from_upload(self, bucket: str, key: str, etag: str) -> Job | None:
        """Plan the job of an S3 ObjectCreated event; None when the event is stale (object replaced)."""
        options = JobOptions()
        problem: MlambdaError | None = None
        size = 0
        try:
            head = self.objects.head(key)
        except NotFoundError:
            problem = InvalidInputError(
                f"the input {key!r} was deleted before planning", code="input_missing"
            )
        else:
            if etag and head.etag != etag:
                logger.info("stale S3 event: the object was replaced", extra={"key": key, "etag": etag})
                return None
            etag, size = head.etag, head.size
            try:
                options = options_from_metadata(head.metadata)
            except InvalidInputError as exc:
                problem = exc
        job, _ = self.start(bucket, key, etag, size, options, submitted_by="s3", problem=problem)
        return job

    def start(
        self,
        bucket: str,
        key: str,
        etag: str,
        size: int,
        options: JobOptions,
        *,
        submitted_by: str,
        problem: MlambdaError | None = None,
    ) -> tuple[Job, bool]:
        """Create (or find) the job of this object version and alias, and plan it if it is still planning."""
        model = ""
        try:
            model = parse_input_key(key).model
        except InvalidInputError as exc:
            problem = problem or exc
        job = Job(
            job_id=job_id_for(bucket, key, etag, options.alias, explain=options.explain),
            status="planning",
            model=model,
            alias=options.alias,
            input=JobInput(bucket=bucket, key=key, etag=etag, size=size),
            submitted_by=submitted_by,
            explain=options.explain,
            requested_passthrough=options.passthrough,
            chunk_rows=options.chunk_rows or self.limits.chunk_rows,
            created_at=self.clock(),
        )
        created = self.jobs.create(job)
        if not created:
            existing = self.jobs.get(job.job_id)
            if existing is None:
                raise ConflictError(f"job {job.job_id} vanished while being created")
            if existing.status != "planning":
                logger.info("job already exists", extra={"job_id": job.job_id, "status": existing.status})
                return existing, False
            if self.clock() - existing.created_at < PLANNING_LEASE:
                # Another planner (the upload's event, or POST /jobs) is at work: let it finish.
                return existing, False
            logger.info("resuming the planning of a job", extra={"job_id": job.job_id})
            job = existing
        if problem is not None:
            return self._fail(job, problem), created
        return self._plan(job, fresh=created), created

    def _fail(self, job: Job, problem: MlambdaError) -> Job:
        logger.info(
            "job refused", extra={"job_id": job.job_id, "code": problem.code, "reason": problem.message}
        )
        self.jobs.update(
            job.job_id,
            {
                "status": "failed",
                "reason": problem.message,
                "error_code": problem.code,
                "completed_at": self.clock(),
            },
            when_status=ACTIVE,
        )
        return self.jobs.get(job.job_id) or job

    def _plan(self, job: Job, *, fresh: bool) -> Job:
        try:
            version = self.catalog.resolve(job.model, job.alias)
        except NotFoundError as exc:
            return self._fail(
                job,
                InvalidInputError(
                    f"cannot score with {job.model}@{job.alias}: {exc.message}", code="unknown_model"
                ),
            )
        explanation: ExplainedColumns | None = None
        max_chunk_rows = self.limits.max_chunk_rows
        if job.explain:
            try:
                explanation, explained_rows = self._explanation(version)
            except MlambdaError as exc:
                return self._fail(job, exc)
            max_chunk_rows = min(max_chunk_rows, explained_rows)
        fmt = parse_input_key(job.input.key).format
        source = Source(self.objects, job.input.key, job.input.size, job.input.etag)
        limits = PlanningLimits(
            chunk_rows=job.chunk_rows,
            sample_bytes=self.limits.sample_bytes,
            max_line_bytes=self.limits.max_line_bytes,
            max_chunks=self.limits.max_chunks,
            max_chunk_rows=max_chunk_rows,
        )
        try:
            plan = plan_file(source, fmt, limits)
            features, passthrough = split_columns(
                plan.columns, version.feature_schema, job.requested_passthrough
            )
            if fmt == "parquet":
                check_parquet_types(source, version.feature_schema)
        except (InvalidInputError, ConflictError) as exc:
            return self._fail(job, exc)
        chunks = [
            ChunkRecord(
                job_id=job.job_id,
                index=index,
                start=span.start,
                end=span.end,
                row_groups=list(span.row_groups),
                first_row=span.first_row,
                rows_estimate=span.rows_estimate,
            )
            for index, span in enumerate(plan.chunks)
        ]
        self.jobs.add_chunks(chunks, fresh=fresh)
        planned = self.jobs.update(
            job.job_id,
            {
                "model_version": version.version,
                "input": job.input.model_copy(update={"format": fmt}).model_dump(mode="json"),
                "columns": plan.columns,
                "feature_columns": features,
                "passthrough_columns": passthrough,
                "chunk_rows": plan.chunk_rows,
                "total_chunks": len(chunks),
                "rows_expected": plan.rows_expected,
                "rows_expected_exact": plan.rows_exact,
                "explanation": explanation.model_dump() if explanation is not None else None,
                "planned_at": self.clock(),
            },
            when_status=("planning",),
        )
        if planned:
            self.queue.send_batch(_messages(job.job_id, range(len(chunks))))
            self.jobs.update(job.job_id, {"status": "running"}, when_status=("planning",))
            logger.info(
                "job planned",
                extra={"job_id": job.job_id, "chunks": len(chunks), "rows_expected": plan.rows_expected},
            )
        return self.jobs.get(job.job_id) or job

    def _explanation(self, version: ModelVersion) -> tuple[ExplainedColumns, int]:
        """How the job's attribution columns read, and the most rows a chunk may explain in time."""
        if self.explainers is None:
            raise ConflictError("this deployment does not explain batch jobs", code="explainer_unavailable")
        explainer = self.explainers.get(version)
        return explained_columns(version, explainer), explained_chunk_rows(explainer)


class ChunkWorker:
    """Scores one chunk per message, counts it exactly once, and finishes the job after the last one."""

    def __init__(
        self,
        *,
        jobs: JobStore,
        objects: BatchObjects,
        catalog: ModelCatalog,
        models: ModelLoader,
        events: EventPublisher,
        explainers: Explainers | None = None,
        retries: ChunkRetries | None = None,
        max_attempts: int = 3,
        batch_rows: int = 65_536,
        retry_backoff_seconds: int = 10,
        clock: Clock = utc_now,
    ) -> None:
        self.jobs = jobs
        self.objects = objects
        self.catalog = catalog
        self.models = models
        self.events = events
        self.explainers = explainers
        self.retries = retries
        self.max_attempts = max_attempts
        self.batch_rows = batch_rows
        self.retry_backoff_seconds = retry_backoff_seconds
        self.clock = clock
        self._versions: dict[tuple[str, int], ModelVersion] = {}
        self._lock = threading.Lock()

    @classmethod
    def from_settings(cls, settings: BatchWorkerSettings) -> ChunkWorker:
        """The worker on DynamoDB, S3, SQS, onnxruntime and EventBridge."""
        from mlambda.adapters.batch import ArtifactModelLoader, S3BatchObjects, SqsChunkQueue
        from mlambda.adapters.dynamodb import DynamoTable
        from mlambda.adapters.jobs import DynamoJobStore
        from mlambda.adapters.messaging import EventBus
        from mlambda.adapters.registry import DynamoModelCatalog
        from mlambda.adapters.s3 import ObjectStore

        artifacts = ObjectStore(settings.artifacts_bucket, settings)
        return cls(
            jobs=DynamoJobStore(DynamoTable(settings.jobs_table, settings)),
            objects=S3BatchObjects(settings.batch_bucket, settings),
            catalog=DynamoModelCatalog(DynamoTable(settings.registry_table, settings)),
            models=ArtifactModelLoader(artifacts, intra_op_threads=settings.intra_op_threads),
            events=EventBus(settings, bus_name=settings.event_bus_name, source=EVENT_SOURCE),
            explainers=Explainers(artifacts),
            retries=SqsChunkQueue(settings.chunk_queue_url, settings),
            max_attempts=settings.max_attempts,
            batch_rows=settings.score_batch_rows,
            retry_backoff_seconds=settings.retry_backoff_seconds,
        )

    def process(self, message: ChunkMessage, *, attempt: int = 1, receipt_handle: str | None = None) -> str:
        """Score the chunk and count it; what happened (``scored``, ``duplicate``, ...). Raises when it failed."""
        job = self.jobs.get(message.job_id)
        if job is None:
            logger.error("chunk message for an unknown job", extra={"job_id": message.job_id})
            return "unknown_job"
        if job.status == "completed" or job.model_version is None:
            return "job_closed"
        chunk = self.jobs.get_chunk(job.job_id, message.chunk)
        if chunk is None:
            logger.error(
                "chunk message for an unknown chunk", extra={"job_id": job.job_id, "chunk": message.chunk}
            )
            return "unknown_chunk"
        if chunk.status == "done":
            self.finish_if_complete(job.job_id)
            return "duplicate"
        self.jobs.record_attempt(job.job_id, chunk.index, attempt, self.clock())
        try:
            result = self._score(job, chunk)
        except Exception as exc:
            self._attempt_failed(job, chunk, attempt, exc, receipt_handle)
            raise
        counted = self._count(job.job_id, chunk.index, result, chunk.status)
        self.finish_if_complete(job.job_id)
        return "scored" if counted else "duplicate"

    def _version(self, model: str, number: int) -> ModelVersion:
        """Versions are immutable: fetched once per worker process."""
        key = (model, number)
        with self._lock:
            cached = self._versions.get(key)
        if cached is None:
            cached = self.catalog.get_version(model, number)
            with self._lock:
                self._versions[key] = cached
        return cached

    def _score(self, job: Job, chunk: ChunkRecord) -> ChunkResult:
        started = self.clock()
        version = self._version(job.model, job.model_version or 0)
        explainer = None
        if job.explain:
            if self.explainers is None:
                raise ConflictError("this worker cannot explain", code="explainer_unavailable")
            explainer = self.explainers.get(version)
        inputs = ScoringInputs(
            columns=job.columns,
            schema=version.feature_schema,
            signature=version.signature,
            passthrough=job.passthrough_columns,
            batch_rows=self.batch_rows,
            version=version,
            explainer=explainer,
        )
        source = Source(self.objects, job.input.key, job.input.size, job.input.etag)
        scored = score_chunk(source, job.input.format or "csv", chunk, inputs, self.models.load(version))
        output = part_key(job.job_id, chunk.index)
        self.objects.put(output, scored.output, content_type="application/vnd.apache.parquet")
        rejected = None
        if scored.rejects is not None:
            rejected = rejects_key(job.job_id, chunk.index)
            self.objects.put(rejected, scored.rejects, content_type="text/csv")
        finished = self.clock()
        return ChunkResult(
            rows_in=scored.rows_in,
            rows_scored=scored.rows_scored,
            rows_rejected=scored.rows_rejected,
            output_key=output,
            rejects_key=rejected,
            started_at=started,
            finished_at=finished,
            seconds=(finished - started).total_seconds(),
        )

    def _count(self, job_id: str, index: int, result: ChunkResult, was: ChunkStatus) -> bool:
        """Count the chunk once: a conditional transaction; on a lost race, look at what won."""
        status = was
        for _ in range(3):
            if status == "done":
                return False
            if self.jobs.complete_chunk(job_id, index, result, was=status):
                logger.info(
                    "chunk scored",
                    extra={
                        "job_id": job_id,
                        "chunk": index,
                        "rows": result.rows_in,
                        "rejected": result.rows_rejected,
                    },
                )
                return True
            current = self.jobs.get_chunk(job_id, index)
            status = current.status if current else "done"
        raise ConflictError(f"chunk {index} of job {job_id} keeps changing; retrying the message")

    def _attempt_failed(
        self, job: Job, chunk: ChunkRecord, attempt: int, exc: Exception, receipt_handle: str | None
    ) -> None:
        error = f"{type(exc).__name__}: {exc}"[:MAX_ERROR_CHARS]
        final = attempt >= self.max_attempts
        logger.warning(
            "chunk attempt failed",
            extra={
                "job_id": job.job_id,
                "chunk": chunk.index,
                "attempt": attempt,
                "final": final,
                "error": error,
            },
        )
        if self.jobs.fail_chunk(job.job_id, chunk.index, error, final=final) and final:
            self._close_if_stuck(job.job_id)
        if self.retries is not None and receipt_handle:
            # Back soon rather than after the 30-minute visibility timeout; after the last attempt,
            # at once, so that the next receive moves it to the DLQ.
            delay = 0 if final else self.retry_backoff_seconds * 2 ** (attempt - 1)
            self.retries.retry_later(receipt_handle, delay)

    def _close_if_stuck(self, job_id: str) -> None:
        """Every chunk is done or failed and some failed: the job fails, resumable with retry."""
        job = self.jobs.get(job_id)
        if job is None or job.done_chunks + job.failed_chunks < job.total_chunks:
            return
        failed = [c for c in self.jobs.chunks(job_id) if c.status == "failed"]
        first = failed[0] if failed else None
        detail = f" (chunk {first.index}: {first.last_error})" if first else ""
        self.jobs.update(
            job_id,
            {
                "status": "failed",
                "error_code": "chunks_failed",
                "reason": f"{job.failed_chunks} chunk(s) failed after {self.max_attempts} attempts{detail}; "
                "resume with `mlambda batch retry` or POST /jobs/{id}/retry",
            },
            when_status=ACTIVE,
        )

    def finish_if_complete(self, job_id: str) -> bool:
        """Write the manifest and ``_SUCCESS`` once every chunk is done; True for the one that completes the job."""
        job = self.jobs.get(job_id)
        if (
            job is None
            or job.status not in ACTIVE
            or job.total_chunks == 0
            or job.done_chunks < job.total_chunks
        ):
            return False
        chunks = self.jobs.chunks(job_id)
        if any(chunk.status != "done" for chunk in chunks):
            return False
        manifest = build_manifest(job, chunks, self._version(job.model, job.model_version or 0))
        self.objects.put(
            manifest_key(job_id), manifest.model_dump_json(indent=2).encode(), content_type="application/json"
        )
        self.objects.put(success_key(job_id), b"", content_type="text/plain")
        if not self.jobs.update(
            job_id, {"status": "completed", "completed_at": self.clock()}, when_status=ACTIVE
        ):
            return False
        logger.info("job completed", extra={"job_id": job_id, "rows": manifest.rows_in})
        detail = {
            "job_id": job_id,
            "model": job.model,
            "model_version": job.model_version,
            "input": f"s3://{job.input.bucket}/{job.input.key}",
            "output": f"s3://{job.input.bucket}/{job.output_prefix}",
            "rows_in": manifest.rows_in,
            "rows_scored": manifest.rows_scored,
            "rows_rejected": manifest.rows_rejected,
        }
        try:
            self.events.emit(JOB_COMPLETED, [detail])
        except MlambdaError:
            # The job is complete and durable; failing this message could not re-send the event
            # (a redelivery finds the job closed), so say it loudly instead.
            logger.exception("job completed but its event was not published", extra={"job_id": job_id})
        return True


def build_manifest(job: Job, chunks: list[ChunkRecord], version: ModelVersion) -> Manifest:
    """The manifest, from stored records only: any worker that writes it writes the same bytes."""
    from mlambda.services.batch.scoring import prediction_names

    predictions = prediction_names(version.signature)
    if job.explanation is not None:
        predictions += job.explanation.columns
    passthrough = [f"input_{name}" if name in predictions else name for name in job.passthrough_columns]
    started = [c.started_at for c in chunks if c.started_at]
    finished = [c.finished_at for c in chunks if c.finished_at]
    seconds = [c.seconds or 0.0 for c in chunks]
    last = max(finished) if finished else None
    return Manifest(
        job_id=job.job_id,
        model=job.model,
        model_version=job.model_version or 0,
        alias=job.alias,
        input=job.input,
        columns=[*passthrough, *predictions],
        explanation=job.explanation,
        parts=[ManifestPart(chunk=c.index, key=c.output_key or "", rows=c.rows_scored or 0) for c in chunks],
        rejects=[
            ManifestPart(chunk=c.index, key=c.rejects_key, rows=c.rows_rejected or 0)
            for c in chunks
            if c.rejects_key
        ],
        rows_in=sum(c.rows_in or 0 for c in chunks),
        rows_scored=sum(c.rows_scored or 0 for c in chunks),
        rows_rejected=sum(c.rows_rejected or 0 for c in chunks),
        timings=ManifestTimings(
            created_at=job.created_at,
            planned_at=job.planned_at,
            first_chunk_started_at=min(started) if started else None,
            last_chunk_finished_at=last,
            wall_seconds=(last - job.created_at).total_seconds() if last else None,
            chunk_seconds_total=round(sum(seconds), 6),
            chunk_seconds_max=round(max(seconds, default=0.0), 6),
        ),
    )


class JobService:
    """The Job API: read jobs, submit an object, retry the unfinished chunks."""

    def __init__(
        self,
        *,
        jobs: JobStore,
        planner: JobPlanner,
        queue: ChunkQueue,
        outputs: JobOutputs,
        max_attempts: int = 3,
        worker_timeout_seconds: int = 300,
        clock: Clock = utc_now,
    ) -> None:
        self.jobs = jobs
        self.planner = planner
        self.queue = queue
        self.outputs = outputs
        self.max_attempts = max_attempts
        self.worker_timeout = timedelta(seconds=worker_timeout_seconds)
        self.clock = clock

    @classmethod
    def from_settings(cls, settings: JobsSettings) -> JobService:
        """The Job API's service: the planner's stores plus the retry rules."""
        from mlambda.adapters.batch import S3BatchObjects

        planner = JobPlanner.from_settings(settings)
        return cls(
            jobs=planner.jobs,
            planner=planner,
            queue=planner.queue,
            outputs=S3BatchObjects(settings.batch_bucket, settings),
            max_attempts=settings.max_attempts,
            worker_timeout_seconds=settings.worker_timeout_seconds,
        )

    def _job(self, job_id: str) -> Job:
        job = self.jobs.get(job_id)
        if job is None:
            raise NotFoundError(f"no job {job_id}", code="job_not_found")
        return job

    def _failed_chunks(self, job: Job) -> list[ChunkFailure]:
        """Chunks marked failed, and chunks whose last allowed attempt went silent past the worker timeout."""
        if job.status not in ("running", "failed") or job.total_chunks == 0:
            return []
        deadline = self.clock() - self.worker_timeout
        return [
            ChunkFailure(chunk=c.index, attempts=c.attempts, last_error=c.last_error)
            for c in self.jobs.chunks(job.job_id)
            if c.status == "failed"
            or (
                c.status == "pending"
                and c.attempts >= self.max_attempts
                and c.last_attempt_at is not None
                and c.last_attempt_at < deadline
            )
        ]

    def view(self, job: Job) -> JobView:
        """The job with progress, output location and failed chunks."""
        bucket = job.input.bucket
        return JobView(
            job=job,
            progress=round(job.done_chunks / job.total_chunks, 4) if job.total_chunks else 0.0,
            output_uri=f"s3://{bucket}/{job.output_prefix}",
            manifest_uri=f"s3://{bucket}/{manifest_key(job.job_id)}" if job.status == "completed" else None,
            rejects_uri=f"s3://{bucket}/rejects/{job.job_id}/" if job.rows_rejected else None,
            failed=self._failed_chunks(job),
        )

    def get(self, job_id: str) -> JobView:
        """One job; NotFoundError when unknown."""
        return self.view(self._job(job_id))

    def list(self, model: str, *, limit: int = 20, next_token: str | None = None) -> JobList:
        """The model's jobs, newest first."""
        jobs, token = self.jobs.list_by_model(model, limit=limit, after=next_token)
        return JobList(jobs=jobs, next_token=token)

    def submit(self, request: SubmitJobRequest, *, submitted_by: str) -> tuple[JobView, bool]:
        """Score an object already under ``input/``; (the job, whether this call created it)."""
        parse_input_key(request.key)
        try:
            head = self.planner.objects.head(request.key)
        except NotFoundError as exc:
            raise NotFoundError(
                f"no object {request.key!r} in the batch bucket", code="input_not_found"
            ) from exc
        options = JobOptions(
            alias=request.alias,
            chunk_rows=request.chunk_rows,
            passthrough=request.passthrough,
            explain=request.explain,
        )
        job, created = self.planner.start(
            self.planner.bucket, request.key, head.etag, head.size, options, submitted_by=submitted_by
        )
        return self.view(job), created

    def upload_ticket(self, request: BatchUploadRequest) -> BatchUploadTicket:
        """A presigned PUT under ``input/<model>/<uuid>/<filename>`` whose object carries the job's
        options as metadata, so its S3 event plans the same job ``POST /jobs`` returns: a batch
        needs no AWS credentials. NotFoundError when ``model`` has no ``alias`` to score with."""
        key = f"{INPUT_PREFIX}{request.model}/{uuid.uuid4().hex}/{request.filename}"
        parse_input_key(key)
        self.planner.catalog.resolve(request.model, request.alias)
        metadata = {"alias": request.alias, "explain": "true" if request.explain else "false"}
        if request.chunk_rows is not None:
            metadata["chunk-rows"] = str(request.chunk_rows)
        if request.passthrough is not None:
            metadata["passthrough"] = ",".join(request.passthrough)
        options_from_metadata(metadata)  # what the upload's event will read back
        url, headers = self.outputs.upload_url(key, metadata=metadata, expires_in=UPLOAD_EXPIRES_SECONDS)
        return BatchUploadTicket(
            key=key,
            url=url,
            headers=headers,
            expires_in=UPLOAD_EXPIRES_SECONDS,
            expires_at=self.clock() + timedelta(seconds=UPLOAD_EXPIRES_SECONDS),
        )

    def rejects(self, job_id: str, *, offset: int = 0, limit: int = 100) -> RejectsPage:
        """``limit`` rejected rows (chunk order) from the ``offset``-th on, with their reasons.

        Chunk records count their rejects, so only the rejects files the page overlaps are read.
        A CSV chunk does not know its first file row when it is scored (chunks are byte ranges):
        ``row`` is filled here from the rows of the chunks before it, once they are all scored.
        """
        if not 1 <= limit <= MAX_REJECTS_PAGE or offset < 0:
            raise InvalidInputError(
                f"offset must be >= 0 and limit 1-{MAX_REJECTS_PAGE}", code="invalid_page"
            )
        job = self._job(job_id)
        rows: list[RejectedRow] = []
        position = 0
        first_row: int | None = 0  # of the next chunk, while every chunk before it has been scored
        for chunk in sorted(self.jobs.chunks(job_id), key=lambda c: c.index):
            count = chunk.rows_rejected or 0
            if chunk.rejects_key and position + count > offset and len(rows) < limit:
                found = read_rejects_csv(self.outputs.get(chunk.rejects_key))
                start = max(0, offset - position)
                base = chunk.first_row if chunk.first_row is not None else first_row
                rows.extend(
                    row
                    if row.row is not None or base is None
                    else row.model_copy(update={"row": base + row.chunk_row})
                    for row in found[start : start + limit - len(rows)]
                )
            position += count if chunk.rejects_key else 0
            first_row = None if first_row is None or chunk.rows_in is None else first_row + chunk.rows_in
        return RejectsPage(job_id=job.job_id, total=position, offset=offset, rows=rows)

    def files(self, job_id: str) -> JobFiles:
        """Download links for the parts and rejects files written so far, and the manifest once complete."""
        job = self._job(job_id)
        found: list[JobFile] = []

        def add(kind: JobFileKind, key: str, chunk: int | None, rows: int | None) -> None:
            filename = f"{job.model or 'job'}-{job.job_id}-{key.rsplit('/', 1)[-1]}"
            url = self.outputs.download_url(key, filename=filename, expires_in=DOWNLOAD_EXPIRES_SECONDS)
            found.append(JobFile(kind=kind, chunk=chunk, key=key, rows=rows, filename=filename, url=url))

        for chunk in sorted(self.jobs.chunks(job_id), key=lambda c: c.index):
            if chunk.status == "done" and chunk.output_key:
                add("part", chunk.output_key, chunk.index, chunk.rows_scored)
            if chunk.rejects_key:
                add("rejects", chunk.rejects_key, chunk.index, chunk.rows_rejected)
        if job.status == "completed":
            add("manifest", manifest_key(job.job_id), None, None)
        return JobFiles(job_id=job.job_id, expires_in=DOWNLOAD_EXPIRES_SECONDS, files=found)

    def retry(self, job_id: str) -> RetryResult:
        """Re-send every chunk that is not done (failed ones back to pending first); done chunks stay done."""
        job = self._job(job_id)
        if job.status == "completed":
            raise ConflictError(f"job {job_id} is already complete", code="job_complete")
        if job.status == "planning":
            raise ConflictError(f"job {job_id} is still being planned", code="job_planning")
        if job.total_chunks == 0:
            raise ConflictError(
                f"job {job_id} failed before it was split ({job.reason}); fix the input and upload it again",
                code="job_not_planned",
            )
        chunks = self.jobs.chunks(job_id)
        unfinished = [chunk.index for chunk in chunks if chunk.status != "done"]
        for chunk in chunks:
            if chunk.status == "failed":
                self.jobs.reset_chunk(job_id, chunk.index)
        self.jobs.update(
            job_id,
            {"status": "running", "reason": None, "error_code": None},
            when_status=("failed", "running"),
        )
        # Every chunk done but no manifest (the finishing worker died): one duplicate message
        # makes a worker see the job complete and finish it.
        resend = unfinished or [chunks[-1].index]
        self.queue.send_batch(_messages(job_id, resend))
        logger.info("job retried", extra={"job_id": job_id, "chunks": resend})
        return RetryResult(job=self._job(job_id), resent_chunks=unfinished)
