"""Batch prediction: jobs, their chunks, the chunk message, the manifest and the Job API bodies.

A job scores one input object (``input/<model>/<anything>.csv|.parquet`` in the batch bucket)
with one concrete model version, split into chunks that workers score independently.
Stored in the jobs table as:

===============  ================  ===================================================
pk               sk                item
===============  ================  ===================================================
``job#<id>``     ``meta``          Job (gsi1pk ``model#<name>``, gsi1sk created_at#id)
``job#<id>``     ``chunk#<%05d>``  ChunkRecord
===============  ================  ===================================================

Results go to the batch bucket: ``output/<job>/part-<chunk:05d>.parquet`` (passthrough
columns + predictions), ``rejects/<job>/part-<chunk:05d>.csv`` (rows refused, with reasons),
then ``output/<job>/_manifest.json`` and ``output/<job>/_SUCCESS`` once every chunk is done.
"""

from __future__ import annotations

import hashlib
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from mlambda.schemas.bounds import Name
from mlambda.schemas.registry import ALIAS_PATTERN, MODEL_NAME_PATTERN, PRODUCTION

JobStatus = Literal["planning", "running", "completed", "failed"]
ChunkStatus = Literal["pending", "done", "failed"]
InputFormat = Literal["csv", "parquet"]

INPUT_PREFIX = "input/"
OUTPUT_PREFIX = "output/"
REJECTS_PREFIX = "rejects/"
JOB_ID_PATTERN = r"^[0-9a-f]{20}$"
MIN_CHUNK_ROWS = 100
MAX_CHUNK_ROWS = 1_000_000
JOB_COMPLETED = "Batch Job Completed"
REJECT_COLUMNS = ("row", "chunk", "chunk_row", "byte_offset", "reason")
TERMINAL_STATUSES: frozenset[str] = frozenset({"completed", "failed"})
EXPLAIN_ID_SUFFIX = "\nexplain"


def job_id_for(bucket: str, key: str, etag: str, alias: str, *, explain: bool = False) -> str:
    """The job of one object version scored with one alias (explained or not): the same inputs
    always name the same job.

    Deterministic so that a redelivered S3 event, or ``POST /jobs`` racing the event for the
    same object, finds the existing job instead of creating a second one. An explained job and a
    plain one of the same object are different jobs (their outputs differ); plain jobs keep the
    ids they had before explanations existed.
    """
    digest = hashlib.sha256(
        f"{bucket}\n{key}\n{etag}\n{alias}{EXPLAIN_ID_SUFFIX if explain else ''}".encode()
    ).hexdigest()
    return digest[:20]


def part_key(job_id: str, chunk: int) -> str:
    """Where chunk ``chunk``'s predictions go."""
    return f"{OUTPUT_PREFIX}{job_id}/part-{chunk:05d}.parquet"


def rejects_key(job_id: str, chunk: int) -> str:
    """Where chunk ``chunk``'s rejected rows go."""
    return f"{REJECTS_PREFIX}{job_id}/part-{chunk:05d}.csv"


def manifest_key(job_id: str) -> str:
    """The manifest the last chunk writes."""
    return f"{OUTPUT_PREFIX}{job_id}/_manifest.json"


def success_key(job_id: str) -> str:
    """The empty marker that says every part of the job is written."""
    return f"{OUTPUT_PREFIX}{job_id}/_SUCCESS"


class ExplainedColumns(BaseModel):
    """How an explained job's attribution columns read: ``explain_value == explain_baseline +
    sum(explain_<feature>)`` on the ``output`` scale, for the row's predicted class."""

    method: str
    exact: bool = True
    output: str = Field(description="value, probability, log_odds or margin (see the predict API)")
    columns: list[str] = Field(description="the attribution columns, in output order")


class JobInput(BaseModel):
    """The object a job scores, pinned to the version (etag) the job was planned on."""

    bucket: str
    key: str
    etag: str
    size: int = Field(ge=0)
    format: InputFormat | None = None


class Job(BaseModel):
    """One batch job: what it scores, with which version, how it is split, and how far it got."""

    job_id: str = Field(pattern=JOB_ID_PATTERN)
    status: JobStatus
    model: str = Field(description="model name from the key; empty when the key names none")
    alias: str = Field(description="the alias or version ref the job was submitted with")
    model_version: int | None = Field(None, description="the concrete version every chunk uses")
    input: JobInput
    submitted_by: str = Field(description="'s3' for uploads, else the API key's name")
    explain: bool = Field(
        False, description="outputs carry attribution columns (explain_<feature>, _baseline, _value, _class)"
    )
    reason: str | None = Field(None, description="why the job failed, or what it refused")
    error_code: str | None = None
    columns: list[str] = Field(default_factory=list, description="the input's columns, in file order")
    feature_columns: list[str] = Field(default_factory=list)
    passthrough_columns: list[str] = Field(default_factory=list)
    requested_passthrough: list[str] | None = Field(
        None, description="passthrough columns asked for; None means every non-feature column"
    )
    chunk_rows: int = Field(ge=1, description="target rows per chunk")
    total_chunks: int = 0
    done_chunks: int = 0
    failed_chunks: int = 0
    rows_expected: int | None = Field(
        None, description="rows in the file: exact for Parquet, estimated for CSV"
    )
    rows_expected_exact: bool = False
    explanation: ExplainedColumns | None = Field(
        None, description="explained jobs, once planned: the method and how the attribution columns read"
    )
    rows_in: int = Field(0, description="data rows read so far (= rows_scored + rows_rejected)")
    rows_scored: int = 0
    rows_rejected: int = 0
    created_at: datetime
    planned_at: datetime | None = None
    completed_at: datetime | None = None

    @property
    def output_prefix(self) -> str:
        """Where the parts, the manifest and ``_SUCCESS`` go."""
        return f"{OUTPUT_PREFIX}{self.job_id}/"


class ChunkRecord(BaseModel):
    """One chunk: which bytes or row groups it covers, and what scoring it gave."""

    job_id: str
    index: int = Field(ge=0)
    status: ChunkStatus = "pending"
    start: int | None = Field(None, description="CSV: first byte, at a line start")
    end: int | None = Field(None, description="CSV: end byte (exclusive), at a line start or EOF")
    row_groups: list[int] = Field(default_factory=list, description="Parquet: row groups, in order")
    first_row: int | None = Field(None, description="Parquet: 0-based file row of the chunk's first row")
    rows_estimate: int = 0
    attempts: int = 0
    last_error: str | None = None
    last_attempt_at: datetime | None = None
    rows_in: int | None = None
    rows_scored: int | None = None
    rows_rejected: int | None = None
    output_key: str | None = None
    rejects_key: str | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    seconds: float | None = None


class ChunkResult(BaseModel):
    """What scoring one chunk produced (its part files are written before this is recorded)."""

    rows_in: int = Field(ge=0)
    rows_scored: int = Field(ge=0)
    rows_rejected: int = Field(ge=0)
    output_key: str
    rejects_key: str | None
    started_at: datetime
    finished_at: datetime
    seconds: float


class ChunkMessage(BaseModel):
    """The body of one chunk-queue message: small, the chunk's plan lives in the jobs table."""

    model_config = ConfigDict(extra="forbid")

    job_id: str = Field(pattern=JOB_ID_PATTERN)
    chunk: int = Field(ge=0)


class SubmitJobRequest(BaseModel):
    """Body of ``POST /jobs``: score an object already in the batch bucket under ``input/``."""

    model_config = ConfigDict(extra="forbid")

    key: str = Field(
        min_length=len(INPUT_PREFIX) + 3,
        max_length=1024,
        description="the object's key: input/<model>/<anything>.csv|.parquet",
    )
    alias: str = Field(PRODUCTION, pattern=ALIAS_PATTERN + r"|^v?\d+$", description="alias or version ref")
    chunk_rows: int | None = Field(None, ge=MIN_CHUNK_ROWS, le=MAX_CHUNK_ROWS)
    passthrough: list[Name] | None = Field(
        None, max_length=100, description="columns copied to the output; default: every non-feature column"
    )
    explain: bool = Field(
        False,
        description="add each row's additive attributions of its predicted class (or value): "
        "explain_<feature> per feature, explain_baseline, explain_value and, for classifiers, "
        "explain_class. Needs an exact explainer (linear or TreeSHAP); refused for kernel_shap ones",
    )


UPLOAD_EXPIRES_SECONDS = 900


class BatchUploadRequest(BaseModel):
    """Body of ``POST /jobs/uploads``: where to PUT a file to score, and the job options it carries."""

    model_config = ConfigDict(extra="forbid")

    model: str = Field(pattern=MODEL_NAME_PATTERN, description="the model that scores the file")
    filename: str = Field(
        pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$", description="the file's name: *.csv or *.parquet"
    )
    alias: str = Field(PRODUCTION, pattern=ALIAS_PATTERN + r"|^v?\d+$", description="alias or version ref")
    chunk_rows: int | None = Field(None, ge=MIN_CHUNK_ROWS, le=MAX_CHUNK_ROWS)
    passthrough: list[str] | None = Field(
        None, max_length=100, description="columns copied to the output; default: every non-feature column"
    )
    explain: bool = Field(False, description="add each row's attributions (see POST /jobs)")

    @field_validator("passthrough")
    @classmethod
    def _columns(cls, value: list[str] | None) -> list[str] | None:
        # The names travel as one S3 metadata value (2 KB for all of them): short, no commas.
        for name in value or []:
            if not 1 <= len(name) <= 128 or "," in name or not name.isprintable():
                raise ValueError("passthrough columns are 1-128 printable characters, without commas")
        return value


class BatchUploadTicket(BaseModel):
    """Where to PUT the file (``headers`` with it), and the key its job will name as input."""

    key: str
    url: str
    method: Literal["PUT"] = "PUT"
    headers: dict[str, str] = Field(default_factory=dict, description="send these with the PUT")
    expires_in: int
    expires_at: datetime


class ManifestPart(BaseModel):
    """One part file listed in the manifest."""

    chunk: int
    key: str
    rows: int


class ManifestTimings(BaseModel):
    """When the job moved, from the stored records (so every writer of the manifest writes the same one)."""

    created_at: datetime
    planned_at: datetime | None
    first_chunk_started_at: datetime | None
    last_chunk_finished_at: datetime | None
    wall_seconds: float | None = Field(description="job creation to the last chunk's finish")
    chunk_seconds_total: float
    chunk_seconds_max: float


class Manifest(BaseModel):
    """``output/<job>/_manifest.json``: what the job produced and from what."""

    job_id: str
    model: str
    model_version: int
    alias: str
    input: JobInput
    columns: list[str] = Field(
        description="output columns: passthrough, then predictions, then attributions when explained"
    )
    explanation: ExplainedColumns | None = Field(None, description="explained jobs: how to read them")
    parts: list[ManifestPart]
    rejects: list[ManifestPart]
    rows_in: int
    rows_scored: int
    rows_rejected: int
    timings: ManifestTimings


class ChunkFailure(BaseModel):
    """A chunk that has not succeeded after its attempts."""

    chunk: int
    attempts: int
    last_error: str | None


class JobView(BaseModel):
    """A job as the API shows it: the record, progress, where the output is, what failed."""

    job: Job
    progress: float = Field(ge=0, le=1, description="done chunks / total chunks")
    output_uri: str
    manifest_uri: str | None = None
    rejects_uri: str | None = None
    failed: list[ChunkFailure] = Field(default_factory=list)


class JobList(BaseModel):
    """A page of jobs, newest first."""

    jobs: list[Job]
    next_token: str | None = None


MAX_REJECTS_PAGE = 500
DOWNLOAD_EXPIRES_SECONDS = 900
JobFileKind = Literal["part", "rejects", "manifest"]


class RejectedRow(BaseModel):
    """One row a job refused, and why (a row of a rejects file)."""

    row: int | None = Field(None, description="0-based data row of the input file, when known (Parquet)")
    chunk: int
    chunk_row: int = Field(description="0-based data row within the chunk")
    byte_offset: int | None = Field(None, description="CSV: where the row starts in the input file")
    reason: str


class RejectsPage(BaseModel):
    """``GET /jobs/{id}/rejects``: rejected rows in chunk order, ``offset`` rows in."""

    job_id: str
    total: int = Field(description="rows the job rejected so far")
    offset: int
    rows: list[RejectedRow]


class JobFile(BaseModel):
    """One output file of a job and a short-lived link to download it."""

    kind: JobFileKind
    chunk: int | None = None
    key: str
    rows: int | None = None
    filename: str = Field(description="the name the download is saved under")
    url: str = Field(description="a presigned GET of the batch bucket, valid for expires_in seconds")


class JobFiles(BaseModel):
    """``GET /jobs/{id}/files``: result parts, rejects files and the manifest written so far."""

    job_id: str
    expires_in: int
    files: list[JobFile]


class RetryResult(BaseModel):
    """What ``POST /jobs/{id}/retry`` re-sent."""

    job: Job
    resent_chunks: list[int]
