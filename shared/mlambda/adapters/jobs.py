"""JobStore on the jobs table: job records, chunk records, and the counters that make chunks count once.

Layout (see ``mlambda.schemas.batch``): ``pk job#<id>``; ``sk meta`` for the job (on ``gsi1``
under ``model#<name>``, newest first by ``created_at#id``) and ``sk chunk#<%05d>`` per chunk.
Counting a chunk is one transaction: the chunk flips to ``done`` only from the status the worker
saw, and the job's counters move in the same write.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

from pydantic import BaseModel

from mlambda.adapters.dynamodb import DynamoTable, failed_operations, transact_update
from mlambda.adapters.paging import PageTokens, listing
from mlambda.errors import ConflictError, UpstreamError
from mlambda.schemas.batch import ChunkRecord, ChunkResult, ChunkStatus, Job

META = "meta"
INDEX = "gsi1"
_KEY_FIELDS = ("pk", "sk", "gsi1pk", "gsi1sk")


def job_pk(job_id: str) -> str:
    """Partition key of a job."""
    return f"job#{job_id}"


def chunk_sk(index: int) -> str:
    """Sort key of a chunk."""
    return f"chunk#{index:05d}"


def _plain(value: Any) -> Any:
    """A value as DynamoDB stores it (datetimes as ISO text, models as dicts)."""
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


class DynamoJobStore:
    """JobStore on the jobs table."""

    def __init__(self, table: DynamoTable) -> None:
        self._table = table
        self._pages = PageTokens(table)

    # -- jobs ----------------------------------------------------------------------------------

    def _job_item(self, job: Job) -> dict[str, Any]:
        item: dict[str, Any] = {"pk": job_pk(job.job_id), "sk": META, **job.model_dump(mode="json")}
        if job.model:
            item["gsi1pk"] = f"model#{job.model}"
            item["gsi1sk"] = f"{job.created_at.isoformat()}#{job.job_id}"
        return item

    def create(self, job: Job) -> bool:
        """Store a new job; False when its id is taken."""
        try:
            self._table.put(self._job_item(job), condition="attribute_not_exists(pk)")
        except ConflictError:
            return False
        return True

    def get(self, job_id: str) -> Job | None:
        """The job (consistent read), or None."""
        item = self._table.get({"pk": job_pk(job_id), "sk": META}, consistent=True)
        return None if item is None else Job.model_validate(_strip(item))

    def list_by_model(self, model: str, *, limit: int, after: str | None) -> tuple[list[Job], str | None]:
        """A page of the model's jobs, newest first."""
        pages = listing("jobs", model)
        start = self._pages.read(
            after,
            pages,
            equal={"gsi1pk": f"model#{model}", "sk": META},
            prefixed={"pk": job_pk(""), "gsi1sk": ""},
        )
        items, last = self._table.query(
            "gsi1pk = :p",
            {":p": f"model#{model}"},
            index=INDEX,
            forward=False,
            limit=limit,
            start_key=start,
        )
        return [Job.model_validate(_strip(item)) for item in items], self._pages.issue(pages, last)

    def update(
        self, job_id: str, fields: Mapping[str, Any], *, when_status: Iterable[str] | None = None
    ) -> bool:
        """SET (or REMOVE, for None) ``fields``; False when the status is not one of ``when_status``."""
        names: dict[str, str] = {}
        values: dict[str, Any] = {}
        sets: list[str] = []
        removes: list[str] = []
        for number, (name, value) in enumerate(fields.items()):
            names[f"#f{number}"] = name
            if value is None:
                removes.append(f"#f{number}")
            else:
                values[f":v{number}"] = _plain(value)
                sets.append(f"#f{number} = :v{number}")
        expression = " ".join(
            part
            for part in (
                f"SET {', '.join(sets)}" if sets else "",
                f"REMOVE {', '.join(removes)}" if removes else "",
            )
            if part
        )
        condition = "attribute_exists(pk)"
        if when_status is not None:
            allowed = list(when_status)
            names["#status"] = "status"
            values.update({f":s{i}": status for i, status in enumerate(allowed)})
            condition += f" AND #status IN ({', '.join(f':s{i}' for i in range(len(allowed)))})"
        try:
            self._table.update(
                {"pk": job_pk(job_id), "sk": META},
                expression,
                condition=condition,
                names=names,
                values=values or None,
            )
        except ConflictError:
            return False
        return True

    # -- chunks --------------------------------------------------------------------------------

    def _chunk_item(self, chunk: ChunkRecord) -> dict[str, Any]:
        return {"pk": job_pk(chunk.job_id), "sk": chunk_sk(chunk.index), **chunk.model_dump(mode="json")}

    def add_chunks(self, chunks: Sequence[ChunkRecord], *, fresh: bool) -> None:
        """Batch-write the chunks of a new job; when re-planning, add only the missing ones."""
        if fresh:
            self._table.batch_put([self._chunk_item(chunk) for chunk in chunks])
            return
        for chunk in chunks:
            try:
                self._table.put(self._chunk_item(chunk), condition="attribute_not_exists(pk)")
            except ConflictError:
                continue

    def get_chunk(self, job_id: str, index: int) -> ChunkRecord | None:
        """One chunk (consistent read), or None."""
        item = self._table.get({"pk": job_pk(job_id), "sk": chunk_sk(index)}, consistent=True)
        return None if item is None else ChunkRecord.model_validate(_strip(item))

    def chunks(self, job_id: str) -> list[ChunkRecord]:
        """Every chunk, in order (consistent reads)."""
        items = self._table.query_all(
            "pk = :p AND begins_with(sk, :c)", {":p": job_pk(job_id), ":c": "chunk#"}, consistent=True
        )
        return [ChunkRecord.model_validate(_strip(item)) for item in items]

    def record_attempt(self, job_id: str, index: int, attempt: int, at: datetime) -> None:
        """Note the delivery attempt before scoring, so a worker that dies still leaves it counted."""
        self._table.update(
            {"pk": job_pk(job_id), "sk": chunk_sk(index)},
            "SET attempts = :a, last_attempt_at = :t",
            condition="attribute_exists(pk)",
            values={":a": attempt, ":t": at.isoformat()},
        )

    def _transact(self, operations: list[dict[str, Any]]) -> bool:
        """Run a transaction; False when a condition failed (collisions are retried by the table)."""
        try:
            self._table.transact_write(operations)
        except ConflictError as exc:
            if failed_operations(exc) is None:
                raise UpstreamError(
                    f"table {self._table.name}: transaction kept colliding with others"
                ) from exc
            return False
        return True

    def _update_op(
        self,
        key: Mapping[str, str],
        expression: str,
        values: Mapping[str, Any],
        *,
        condition: str,
    ) -> dict[str, Any]:
        return transact_update(
            self._table.name,
            key,
            expression,
            condition=condition,
            names={"#status": "status"},
            values={k: _plain(v) for k, v in values.items()},
        )

    def complete_chunk(self, job_id: str, index: int, result: ChunkResult, *, was: ChunkStatus) -> bool:
        """Chunk -> done and job counters += its rows, in one transaction, only from status ``was``."""
        chunk = self._update_op(
            {"pk": job_pk(job_id), "sk": chunk_sk(index)},
            "SET #status = :done, rows_in = :in, rows_scored = :scored, rows_rejected = :rejected, "
            "output_key = :output, started_at = :started, finished_at = :finished, seconds = :seconds"
            + (", rejects_key = :rejects" if result.rejects_key else ""),
            {
                ":done": "done",
                ":was": was,
                ":in": result.rows_in,
                ":scored": result.rows_scored,
                ":rejected": result.rows_rejected,
                ":output": result.output_key,
                ":started": result.started_at,
                ":finished": result.finished_at,
                ":seconds": result.seconds,
                **({":rejects": result.rejects_key} if result.rejects_key else {}),
            },
            condition="#status = :was",
        )
        counters = "ADD done_chunks :one, rows_in :in, rows_scored :scored, rows_rejected :rejected"
        meta_values: dict[str, Any] = {
            ":one": 1,
            ":in": result.rows_in,
            ":scored": result.rows_scored,
            ":rejected": result.rows_rejected,
        }
        if was == "failed":
            counters += ", failed_chunks :minus"
            meta_values[":minus"] = -1
        meta = self._update_op(
            {"pk": job_pk(job_id), "sk": META}, counters, meta_values, condition="attribute_exists(pk)"
        )
        meta["Update"].pop("ExpressionAttributeNames")
        return self._transact([chunk, meta])

    def fail_chunk(self, job_id: str, index: int, error: str, *, final: bool) -> bool:
        """Record the error; when ``final``, pending -> failed and the job's failed_chunks + 1 (True if so)."""
        key = {"pk": job_pk(job_id), "sk": chunk_sk(index)}
        if not final:
            self._table.update(
                key, "SET last_error = :e", condition="attribute_exists(pk)", values={":e": error}
            )
            return False
        chunk = self._update_op(
            key,
            "SET #status = :failed, last_error = :e",
            {":failed": "failed", ":pending": "pending", ":e": error},
            condition="#status = :pending",
        )
        meta = self._update_op(
            {"pk": job_pk(job_id), "sk": META},
            "ADD failed_chunks :one",
            {":one": 1},
            condition="attribute_exists(pk)",
        )
        meta["Update"].pop("ExpressionAttributeNames")
        return self._transact([chunk, meta])

    def reset_chunk(self, job_id: str, index: int) -> bool:
        """failed -> pending (attempts cleared) and failed_chunks - 1, in one transaction."""
        chunk = self._update_op(
            {"pk": job_pk(job_id), "sk": chunk_sk(index)},
            "SET #status = :pending, attempts = :zero",
            {":pending": "pending", ":failed": "failed", ":zero": 0},
            condition="#status = :failed",
        )
        meta = self._update_op(
            {"pk": job_pk(job_id), "sk": META},
            "ADD failed_chunks :minus",
            {":minus": -1},
            condition="attribute_exists(pk)",
        )
        meta["Update"].pop("ExpressionAttributeNames")
        return self._transact([chunk, meta])


def _strip(item: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in item.items() if k not in _KEY_FIELDS}
