"""What monitoring needs from the archive, its store and the alerts topic; adapters implement it."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from datetime import timedelta

    import numpy as np

    from mlambda.schemas.batch import Job
    from mlambda.schemas.monitoring import MonitoringSummary


class ArchiveWindow(Protocol):
    """Rows read from the archive for a time window, and what could not be read."""

    @property
    def columns(self) -> dict[str, np.ndarray]:
        """The rows as columns (flattened payload columns), timestamps inside the window."""
        ...

    @property
    def rows(self) -> int:
        """Rows read."""
        ...

    @property
    def objects(self) -> int:
        """Parquet objects read."""
        ...

    @property
    def corrupt(self) -> list[str]:
        """Keys of objects that could not be read (skipped, reported)."""
        ...

    @property
    def truncated(self) -> bool:
        """True when the row cap stopped the read early."""
        ...


class ArchiveReader(Protocol):
    """The offline store's prediction logs and labels, by time window."""

    def predictions(self, model: str, start: datetime, end: datetime) -> ArchiveWindow:
        """Prediction rows of ``model`` with ``start <= timestamp < end``."""
        ...

    def labels(self, start: datetime, end: datetime) -> ArchiveWindow:
        """Label rows with ``start <= timestamp < end``."""
        ...


class MonitoringStore(Protocol):
    """Monitoring summaries and alert de-duplication state (the registry table)."""

    def put_summary(self, summary: MonitoringSummary) -> None:
        """Store one run's summary."""
        ...

    def summaries(self, model: str, limit: int) -> list[MonitoringSummary]:
        """The latest ``limit`` summaries of ``model``, newest first."""
        ...

    def claim_alert(self, model: str, check: str, feature: str, at: datetime, cooldown: timedelta) -> bool:
        """Atomically record an alert unless one was recorded within ``cooldown``; True when claimed."""
        ...

    def release_alert(self, model: str, check: str, feature: str, at: datetime) -> None:
        """Undo a claim made at ``at`` (the alert could not be sent: let the next run retry)."""
        ...

    def claim_job(self, model: str, job_id: str, at: datetime) -> bool:
        """Atomically mark a batch job as monitored; False when a run already took it."""
        ...

    def release_job(self, model: str, job_id: str) -> None:
        """Undo a job claim (its report could not be made: the next run retries)."""
        ...


class BatchResults(Protocol):
    """Completed batch jobs and their rows (the jobs table and the batch bucket)."""

    def completed_jobs(self, model: str, since: datetime) -> list[Job]:
        """The model's jobs completed at or after ``since``, newest first."""
        ...

    def job_rows(self, job: Job, max_rows: int) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
        """(the input file's rows, the scored rows of the output parts), at most ``max_rows`` each."""
        ...


class AlertPublisher(Protocol):
    """Where alerts go (the SNS alerts topic)."""

    def publish(self, subject: str, message: Mapping[str, Any]) -> str:
        """Publish ``message`` as JSON; the message id."""
        ...
