"""What batch planning and scoring need from S3, SQS and the jobs table; adapters implement it."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from mlambda.schemas.batch import ChunkRecord, ChunkResult, ChunkStatus, Job


class ObjectHead(Protocol):
    """What HEAD says about an object (``mlambda.adapters.s3.ObjectInfo`` fits)."""

    @property
    def key(self) -> str: ...

    @property
    def size(self) -> int: ...

    @property
    def etag(self) -> str: ...

    @property
    def metadata(self) -> dict[str, str]: ...


class BatchObjects(Protocol):
    """The batch bucket as batch planning and scoring see it: ranged reads, never whole inputs."""

    def head(self, key: str) -> ObjectHead:
        """Size, etag and metadata; NotFoundError when absent."""
        ...

    def get_range(self, key: str, start: int, end: int, *, etag: str | None = None) -> bytes:
        """Bytes ``start``..``end`` inclusive (fewer at EOF); ConflictError when the etag no longer matches."""
        ...

    def put(self, key: str, body: bytes, *, content_type: str = "application/octet-stream") -> None:
        """Write ``body`` at ``key``, replacing what was there."""
        ...


class JobOutputs(Protocol):
    """A job's output as the Job API shows it: rejects files read whole, links to download files."""

    def get(self, key: str) -> bytes:
        """The whole object; NotFoundError when absent."""
        ...

    def download_url(self, key: str, *, filename: str, expires_in: int) -> str:
        """A URL that downloads ``key`` as ``filename`` for ``expires_in`` seconds."""
        ...

    def upload_url(
        self, key: str, *, metadata: Mapping[str, str], expires_in: int
    ) -> tuple[str, dict[str, str]]:
        """A URL that lets its holder PUT ``key``, stored with ``metadata``, for ``expires_in`` seconds,
        and the headers the PUT must carry (those the signature covers)."""
        ...


class ChunkQueue(Protocol):
    """Where chunk messages go, one per chunk."""

    def send_batch(self, bodies: Sequence[str]) -> None:
        """Send every body; raises rather than drop one."""
        ...


class ChunkRetries(Protocol):
    """Bring a failed chunk message back sooner than the queue's long visibility timeout."""

    def retry_later(self, receipt_handle: str, seconds: int) -> None:
        """Make the received message visible again after ``seconds``."""
        ...


class JobStore(Protocol):
    """Batch jobs and their chunk counters (the jobs table)."""

    def create(self, job: Job) -> bool:
        """Store a new job; False when a job with its id already exists (nothing written)."""
        ...

    def get(self, job_id: str) -> Job | None:
        """The job, read consistently, or None."""
        ...

    def list_by_model(self, model: str, *, limit: int, after: str | None) -> tuple[list[Job], str | None]:
        """A page of the model's jobs, newest first, and the token of the next page."""
        ...

    def update(
        self, job_id: str, fields: Mapping[str, Any], *, when_status: Iterable[str] | None = None
    ) -> bool:
        """Set ``fields`` on the job; False when ``when_status`` is given and the status is not in it."""
        ...

    def add_chunks(self, chunks: Sequence[ChunkRecord], *, fresh: bool) -> None:
        """Store planned chunks; an existing chunk is left as it is (re-planning is safe).

        ``fresh``: the job was created by this call, so no chunk can exist yet (batch writes).
        """
        ...

    def get_chunk(self, job_id: str, index: int) -> ChunkRecord | None:
        """One chunk, read consistently, or None."""
        ...

    def chunks(self, job_id: str) -> list[ChunkRecord]:
        """Every chunk of the job, in order."""
        ...

    def record_attempt(self, job_id: str, index: int, attempt: int, at: datetime) -> None:
        """Note that delivery ``attempt`` of the chunk started (visible even if the worker dies)."""
        ...

    def complete_chunk(self, job_id: str, index: int, result: ChunkResult, *, was: ChunkStatus) -> bool:
        """Atomically mark the chunk done and add its counts to the job, if its status is still ``was``.

        False (nothing written) when it changed: another delivery already counted it.
        """
        ...

    def fail_chunk(self, job_id: str, index: int, error: str, *, final: bool) -> bool:
        """Record a failed attempt; when ``final``, mark a pending chunk failed and count it (True if so)."""
        ...

    def reset_chunk(self, job_id: str, index: int) -> bool:
        """Atomically return a failed chunk to pending and uncount it; False when it was not failed."""
        ...
