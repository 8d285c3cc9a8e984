"""What the evaluations service needs from storage and from where rows come; adapters implement it."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    import numpy as np

    from mlambda.schemas.evaluations import (
        Evaluation,
        EvaluationRow,
        EvaluationStatus,
        PublishedEvaluation,
        VerdictRecord,
    )
    from mlambda.schemas.registry import HistoryEntry, ModelVersion
    from mlambda.services.monitoring.ports import ArchiveWindow


class EvaluationStore(Protocol):
    """Evaluations, their rows and verdicts (the evaluations table); completion also writes the registry."""

    def create(self, evaluation: Evaluation, rows: Sequence[EvaluationRow]) -> bool:
        """Store the rows, then the evaluation; False (nothing new visible) when its id exists already."""
        ...

    def get(self, evaluation_id: str) -> Evaluation | None:
        """The evaluation with its live counters (read consistently), or None."""
        ...

    def list_by_model(
        self, model: str, *, status: EvaluationStatus | None, limit: int, token: str | None
    ) -> tuple[list[Evaluation], str | None]:
        """A page of the model's evaluations, newest first, and the token of the next page."""
        ...

    def get_row(self, evaluation_id: str, index: int) -> EvaluationRow | None:
        """One row (read consistently), or None."""
        ...

    def rows(
        self, evaluation_id: str, *, limit: int, token: str | None, unjudged_by: str | None
    ) -> tuple[list[EvaluationRow], str | None]:
        """A page of rows in order (only those ``unjudged_by`` has not judged, when given)."""
        ...

    def all_rows(self, evaluation_id: str) -> list[EvaluationRow]:
        """Every row, in order."""
        ...

    def get_verdict(self, evaluation_id: str, row: int, evaluator: str) -> VerdictRecord | None:
        """The evaluator's current verdict on the row (read consistently), or None."""
        ...

    def verdicts(
        self, evaluation_id: str, *, limit: int, token: str | None, evaluator: str | None
    ) -> tuple[list[VerdictRecord], str | None]:
        """A page of current verdicts in row order (only ``evaluator``'s, when given)."""
        ...

    def all_verdicts(self, evaluation_id: str) -> list[VerdictRecord]:
        """Every current verdict (read consistently)."""
        ...

    def revisions(self, evaluation_id: str, row: int, evaluator: str | None) -> list[VerdictRecord]:
        """Every revision of the row's verdicts, oldest first (only ``evaluator``'s, when given)."""
        ...

    def put_verdict(
        self, record: VerdictRecord, *, previous: VerdictRecord | None, row: EvaluationRow, at: datetime
    ) -> None:
        """Store ``record`` as the evaluator's current verdict and as a revision, and count it, in one
        transaction conditioned on: the evaluation still open (else ConflictError ``evaluation_closed``),
        the row unchanged since ``row`` was read and the verdict still ``previous`` (else
        ConflictError ``verdict_conflict``: read again and retry)."""
        ...

    def complete(
        self,
        evaluation: Evaluation,
        *,
        expected_revision: int,
        publication: PublishedEvaluation,
        entry: HistoryEntry,
    ) -> None:
        """Close ``evaluation`` (status completed, results) only if it is open and no verdict changed
        since ``expected_revision``, and publish it to the registry beside its version with the history
        entry, in one transaction: ConflictError ``evaluation_closed``, ``verdict_conflict`` (retry) or
        ``version_gone`` otherwise."""
        ...

    def cancel(self, evaluation_id: str, *, at: datetime, actor: str, reason: str | None) -> bool:
        """Mark an open evaluation cancelled; False when it is not open."""
        ...


class EvaluationPublications(Protocol):
    """Completed evaluations as the registry keeps them (the production gate reads these)."""

    def published(self, model: str, version: int) -> list[PublishedEvaluation]:
        """The version's published evaluations, newest first."""
        ...


class EvaluationSources(Protocol):
    """Where the rows of an evaluation come from."""

    def reference(self, version: ModelVersion) -> tuple[str, dict[str, np.ndarray]]:
        """The version's stored reference sample (key, columns); NotFoundError/ConflictError when it has none."""
        ...

    def upload(self, key: str, *, max_bytes: int) -> dict[str, np.ndarray]:
        """An uploaded CSV/Parquet file as columns (file order); 404/413/400 naming the problem."""
        ...

    def delete_upload(self, key: str) -> None:
        """Remove a consumed upload."""
        ...

    def traffic(self, model: str, start: datetime, end: datetime) -> ArchiveWindow:
        """The model's archived predictions served in ``[start, end)`` (the monitoring reader's window)."""
        ...
