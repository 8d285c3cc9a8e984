"""Monitoring's storage: archive windows from the data bucket, summaries and alert state in the
registry table.

Archive layout (mlambda.schemas.archive): ``type=prediction/model=<m>/date=YYYY-MM-DD/hour=HH/``
and ``type=label/date=.../hour=.../``, Parquet parts. Only the hour partitions the window touches
are listed; objects are fetched in parallel; an object that is not readable Parquet is skipped
and named in the report instead of failing the run.
"""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import numpy as np

from mlambda.adapters import tabular
from mlambda.adapters.dynamodb import DynamoTable
from mlambda.adapters.jobs import DynamoJobStore
from mlambda.adapters.s3 import ObjectStore
from mlambda.errors import ConflictError, MlambdaError
from mlambda.observability import logger
from mlambda.schemas.batch import Job, Manifest, manifest_key
from mlambda.schemas.monitoring import MonitoringSummary, iso

FETCH_THREADS = 8


@dataclass
class Window:
    """What one read of the archive returned (implements ``ports.ArchiveWindow``)."""

    columns: tabular.Columns = field(default_factory=dict)
    objects: int = 0
    corrupt: list[str] = field(default_factory=list)
    truncated: bool = False

    @property
    def rows(self) -> int:
        """Rows in the window."""
        return len(next(iter(self.columns.values()))) if self.columns else 0


def hours(start: datetime, end: datetime) -> Iterator[datetime]:
    """Every UTC hour that intersects ``[start, end)``."""
    hour = start.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
    while hour < end:
        yield hour
        hour += timedelta(hours=1)


def last_of_each(ids: np.ndarray) -> np.ndarray | None:
    """Positions of each id's last row, in row order; None when every id is distinct."""
    last: dict[object, int] = {}
    for index, value in enumerate(ids.tolist()):
        last[value] = index
    if len(last) == len(ids):
        return None
    return np.sort(np.fromiter(last.values(), dtype=np.int64, count=len(last)))


class S3ArchiveReader:
    """Reads prediction and label partitions of one time window (``ports.ArchiveReader``)."""

    def __init__(self, bucket: ObjectStore, *, max_rows: int = 2_000_000) -> None:
        self._bucket = bucket
        self._max_rows = max_rows

    def predictions(self, model: str, start: datetime, end: datetime) -> Window:
        """Prediction rows of ``model`` in ``[start, end)``."""
        return self._read(
            [f"type=prediction/model={model}/{self._partition(h)}" for h in hours(start, end)], start, end
        )

    def labels(self, start: datetime, end: datetime) -> Window:
        """Label rows in ``[start, end)``."""
        return self._read([f"type=label/{self._partition(h)}" for h in hours(start, end)], start, end)

    @staticmethod
    def _partition(hour: datetime) -> str:
        return f"date={hour:%Y-%m-%d}/hour={hour:%H}/"

    def _fetch(self, key: str) -> tabular.Columns | None:
        body = self._bucket.get(key)
        try:
            return tabular.read_parquet_table(body).to_columns()
        except tabular.TableError as exc:
            logger.warning("unreadable archive object skipped", extra={"key": key, "error": str(exc)})
            return None

    def _read(self, prefixes: list[str], start: datetime, end: datetime) -> Window:
        keys = [
            key for prefix in prefixes for key in self._bucket.list_keys(prefix) if key.endswith(".parquet")
        ]
        window = Window(objects=len(keys))
        parts: list[tabular.Columns] = []
        rows = 0
        with ThreadPoolExecutor(max_workers=FETCH_THREADS) as pool:
            # Fetch a few objects at a time, so the row cap also bounds what is downloaded.
            for offset in range(0, len(keys), FETCH_THREADS):
                if rows >= self._max_rows:
                    window.truncated = True
                    break
                batch = keys[offset : offset + FETCH_THREADS]
                for key, part in zip(batch, pool.map(self._fetch, batch), strict=True):
                    if part is None:
                        window.corrupt.append(key)
                        continue
                    if part:
                        parts.append(part)
                        rows += len(next(iter(part.values())))
        if not parts:
            return window
        columns = tabular.concat(parts) if len(parts) > 1 else parts[0]
        if "timestamp" in columns:
            stamps = tabular.timestamps(columns["timestamp"])
            inside = (stamps >= tabular.utc64(start)) & (stamps < tabular.utc64(end))
            if not inside.all():
                columns = {name: values[inside] for name, values in columns.items()}
        if "id" in columns:
            # At-least-once delivery: the same envelope can be archived twice.
            kept = last_of_each(columns["id"])
            if kept is not None:
                columns = {name: values[kept] for name, values in columns.items()}
        window.columns = columns
        return window


def summary_sk(at: datetime) -> str:
    """Sort key of a monitoring summary."""
    return f"monitoring#{iso(at)}"


def job_claim_sk(job_id: str) -> str:
    """Sort key of the record that a batch job was monitored."""
    return f"monitored-job#{job_id}"


def alert_sk(check: str, feature: str) -> str:
    """Sort key of an alert's de-duplication state."""
    return f"alert#{check}#{feature}"


class DynamoMonitoringStore:
    """Summaries and alert state next to the model in the registry table (``ports.MonitoringStore``)."""

    def __init__(self, table: DynamoTable) -> None:
        self._table = table

    def put_summary(self, summary: MonitoringSummary) -> None:
        """Store one run's summary under ``model#<name>`` / ``monitoring#<iso>``."""
        item = summary.model_dump(mode="json", exclude_none=True)
        self._table.put({"pk": f"model#{summary.model}", "sk": summary_sk(summary.at), **item})

    def summaries(self, model: str, limit: int) -> list[MonitoringSummary]:
        """The latest ``limit`` summaries, newest first."""
        items, _ = self._table.query(
            "pk = :pk AND begins_with(sk, :prefix)",
            {":pk": f"model#{model}", ":prefix": "monitoring#"},
            forward=False,
            limit=limit,
        )
        return [
            MonitoringSummary.model_validate({k: v for k, v in i.items() if k not in ("pk", "sk")})
            for i in items
        ]

    def claim_alert(self, model: str, check: str, feature: str, at: datetime, cooldown: timedelta) -> bool:
        """Conditional put: only when no alert for the key was sent after ``at - cooldown``."""
        try:
            self._table.update(
                {"pk": f"model#{model}", "sk": alert_sk(check, feature)},
                "SET last_alerted_at = :at, model_name = :model, check_name = :check, feature = :feature"
                " ADD alerts :one",
                condition="attribute_not_exists(last_alerted_at) OR last_alerted_at <= :cutoff",
                values={
                    ":at": iso(at),
                    ":cutoff": iso(at - cooldown),
                    ":model": model,
                    ":check": check,
                    ":feature": feature,
                    ":one": 1,
                },
            )
        except ConflictError:
            return False
        return True

    def claim_job(self, model: str, job_id: str, at: datetime) -> bool:
        """Conditional put: only the first run to see a completed job monitors it."""
        try:
            self._table.update(
                {"pk": f"model#{model}", "sk": job_claim_sk(job_id)},
                "SET monitored_at = :at",
                condition="attribute_not_exists(monitored_at)",
                values={":at": iso(at)},
            )
        except ConflictError:
            return False
        return True

    def release_job(self, model: str, job_id: str) -> None:
        """Forget a job claim so the next run tries again."""
        try:
            self._table.update({"pk": f"model#{model}", "sk": job_claim_sk(job_id)}, "REMOVE monitored_at")
        except MlambdaError as exc:
            logger.warning("could not release a job claim", extra={"job_id": job_id, "error": exc.message})

    def release_alert(self, model: str, check: str, feature: str, at: datetime) -> None:
        """Forget the claim made at ``at`` so the next run tries again."""
        try:
            self._table.update(
                {"pk": f"model#{model}", "sk": alert_sk(check, feature)},
                "REMOVE last_alerted_at",
                condition="last_alerted_at = :at",
                values={":at": iso(at)},
            )
        except MlambdaError as exc:
            logger.warning("could not release an alert claim", extra={"check": check, "error": exc.message})


JOB_PAGES = 20
JOB_LOOKBACK = timedelta(days=7)


class S3BatchResults:
    """Completed jobs from the jobs table, their input file and scored parts from the batch bucket
    (``ports.BatchResults``)."""

    def __init__(self, jobs: DynamoJobStore, bucket: ObjectStore) -> None:
        self._jobs = jobs
        self._bucket = bucket

    def completed_jobs(self, model: str, since: datetime) -> list[Job]:
        """Jobs completed at or after ``since``; pages newest first, stopping a week before ``since``."""
        found: list[Job] = []
        token: str | None = None
        for _ in range(JOB_PAGES):
            jobs, token = self._jobs.list_by_model(model, limit=100, after=token)
            for job in jobs:
                if job.status == "completed" and job.completed_at is not None and job.completed_at >= since:
                    found.append(job)
            if token is None or (jobs and jobs[-1].created_at < since - JOB_LOOKBACK):
                break
        return found

    def job_rows(self, job: Job, max_rows: int) -> tuple[tabular.Columns, tabular.Columns]:
        """(the input's rows, the manifest's scored parts), each capped at ``max_rows``."""
        body = self._bucket.get(job.input.key)
        if job.input.format == "parquet" or job.input.key.endswith(".parquet"):
            inputs = tabular.read_parquet_table(body).to_columns()
        else:
            inputs = tabular.read_csv_table(body).to_columns()
        manifest = Manifest.model_validate_json(self._bucket.get(manifest_key(job.job_id)))
        parts: list[tabular.Columns] = []
        rows = 0
        for part in manifest.parts:
            if rows >= max_rows:
                break
            parts.append(tabular.read_parquet_table(self._bucket.get(part.key)).to_columns())
            rows += part.rows
        scored = tabular.concat(parts) if parts else {}
        return _head(inputs, max_rows), _head(scored, max_rows)


def _head(columns: tabular.Columns, rows: int) -> tabular.Columns:
    return {name: values[:rows] for name, values in columns.items()}
