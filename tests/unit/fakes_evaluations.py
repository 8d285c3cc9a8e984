"""In-memory ports of the evaluations service, with the DynamoDB adapter's conditional semantics."""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np

from mlambda.errors import ConflictError, NotFoundError, PayloadTooLargeError
from mlambda.schemas.evaluations import (
    Evaluation,
    EvaluationRow,
    EvaluationStatus,
    PublishedEvaluation,
    VerdictRecord,
)
from mlambda.schemas.registry import HistoryEntry, ModelVersion
from mlambda.services.evaluations.service import EvaluationService
from mlambda.services.inference.explain import Explainers
from mlambda.services.monitoring.ports import ArchiveWindow
from tests.unit.fakes_batch import FakeCatalog, FakeEvents, FakeLoader
from tests.unit.fakes_predict import InMemoryArtifacts


class InMemoryEvaluationStore:
    """EvaluationStore + EvaluationPublications in dicts; the same conditions as the DynamoDB adapter."""

    def __init__(self) -> None:
        self.evaluations: dict[str, Evaluation] = {}
        self.rows_of: dict[str, dict[int, EvaluationRow]] = {}
        self.current: dict[tuple[str, int, str], VerdictRecord] = {}
        self.history: list[VerdictRecord] = []
        self.publications: list[PublishedEvaluation] = []
        self.entries: list[HistoryEntry] = []
        self.deleted_versions: set[tuple[str, int]] = set()
        self.before_complete: list[Any] = []
        self.creates = 0
        self._lock = threading.RLock()

    def create(self, evaluation: Evaluation, rows: Sequence[EvaluationRow]) -> bool:
        with self._lock:
            self.creates += 1
            self.rows_of[evaluation.evaluation_id] = {row.index: row for row in rows}
            if evaluation.evaluation_id in self.evaluations:
                return False
            self.evaluations[evaluation.evaluation_id] = evaluation
            return True

    def get(self, evaluation_id: str) -> Evaluation | None:
        with self._lock:
            return self.evaluations.get(evaluation_id)

    def list_by_model(
        self, model: str, *, status: EvaluationStatus | None, limit: int, token: str | None
    ) -> tuple[list[Evaluation], str | None]:
        with self._lock:
            found = sorted(
                (e for e in self.evaluations.values() if e.model == model and status in (None, e.status)),
                key=lambda e: (e.created_at, e.evaluation_id),
                reverse=True,
            )
        start = int(token) if token else 0
        return found[start : start + limit], (str(start + limit) if start + limit < len(found) else None)

    def get_row(self, evaluation_id: str, index: int) -> EvaluationRow | None:
        with self._lock:
            return self.rows_of.get(evaluation_id, {}).get(index)

    def rows(
        self, evaluation_id: str, *, limit: int, token: str | None, unjudged_by: str | None
    ) -> tuple[list[EvaluationRow], str | None]:
        with self._lock:
            found = [
                row
                for _, row in sorted(self.rows_of.get(evaluation_id, {}).items())
                if unjudged_by is None or unjudged_by not in row.evaluators
            ]
        start = int(token) if token else 0
        return found[start : start + limit], (str(start + limit) if start + limit < len(found) else None)

    def all_rows(self, evaluation_id: str) -> list[EvaluationRow]:
        with self._lock:
            return [row for _, row in sorted(self.rows_of.get(evaluation_id, {}).items())]

    def get_verdict(self, evaluation_id: str, row: int, evaluator: str) -> VerdictRecord | None:
        with self._lock:
            return self.current.get((evaluation_id, row, evaluator))

    def verdicts(
        self, evaluation_id: str, *, limit: int, token: str | None, evaluator: str | None
    ) -> tuple[list[VerdictRecord], str | None]:
        found = [v for v in self.all_verdicts(evaluation_id) if evaluator in (None, v.evaluator)]
        start = int(token) if token else 0
        return found[start : start + limit], (str(start + limit) if start + limit < len(found) else None)

    def all_verdicts(self, evaluation_id: str) -> list[VerdictRecord]:
        with self._lock:
            return sorted(
                (v for (eid, _, _), v in self.current.items() if eid == evaluation_id),
                key=lambda v: (v.row, v.evaluator),
            )

    def revisions(self, evaluation_id: str, row: int, evaluator: str | None) -> list[VerdictRecord]:
        with self._lock:
            return [
                v
                for v in self.history
                if v.evaluation_id == evaluation_id and v.row == row and evaluator in (None, v.evaluator)
            ]

    def put_verdict(
        self, record: VerdictRecord, *, previous: VerdictRecord | None, row: EvaluationRow, at: datetime
    ) -> None:
        with self._lock:
            evaluation = self.evaluations[record.evaluation_id]
            if evaluation.status != "open":
                raise ConflictError("closed", code="evaluation_closed")
            stored_row = self.rows_of[record.evaluation_id][record.row]
            key = (record.evaluation_id, record.row, record.evaluator)
            if stored_row.revision != row.revision or self.current.get(key) != previous:
                raise ConflictError("changed", code="verdict_conflict")
            new_pair = previous is None
            self.rows_of[record.evaluation_id][record.row] = stored_row.model_copy(
                update={
                    "revision": stored_row.revision + 1,
                    "evaluators": [*stored_row.evaluators, record.evaluator]
                    if new_pair
                    else stored_row.evaluators,
                }
            )
            self.current[key] = record
            self.history.append(record)
            self.evaluations[record.evaluation_id] = evaluation.model_copy(
                update={
                    "revision": evaluation.revision + 1,
                    "verdicts": evaluation.verdicts + new_pair,
                    "rows_judged": evaluation.rows_judged + (new_pair and not stored_row.evaluators),
                    "evaluators": sorted({*evaluation.evaluators, record.evaluator}),
                    "updated_at": at,
                }
            )

    def complete(
        self,
        evaluation: Evaluation,
        *,
        expected_revision: int,
        publication: PublishedEvaluation,
        entry: HistoryEntry,
    ) -> None:
        for hook in self.before_complete:
            hook()
        self.before_complete = []
        with self._lock:
            stored = self.evaluations[evaluation.evaluation_id]
            if (evaluation.model, evaluation.version) in self.deleted_versions:
                raise ConflictError("gone", code="version_gone")
            if stored.status != "open":
                raise ConflictError("closed", code="evaluation_closed")
            if stored.revision != expected_revision:
                raise ConflictError("changed", code="verdict_conflict")
            self.evaluations[evaluation.evaluation_id] = evaluation.model_copy(
                update={
                    "revision": stored.revision,
                    "verdicts": stored.verdicts,
                    "rows_judged": stored.rows_judged,
                    "evaluators": stored.evaluators,
                }
            )
            self.publications.append(publication)
            self.entries.append(entry)

    def cancel(self, evaluation_id: str, *, at: datetime, actor: str, reason: str | None) -> bool:
        with self._lock:
            stored = self.evaluations[evaluation_id]
            if stored.status != "open":
                return False
            self.evaluations[evaluation_id] = stored.model_copy(
                update={"status": "cancelled", "cancelled_at": at, "cancelled_by": actor, "note": reason}
            )
            return True

    def published(self, model: str, version: int) -> list[PublishedEvaluation]:
        with self._lock:
            found = [p for p in self.publications if p.model == model and p.version == version]
        return sorted(found, key=lambda p: p.completed_at, reverse=True)


@dataclass
class Window:
    """ArchiveWindow over given columns."""

    columns: dict[str, np.ndarray]
    objects: int = 1
    corrupt: list[str] = field(default_factory=list)
    truncated: bool = False

    @property
    def rows(self) -> int:
        return len(next(iter(self.columns.values()))) if self.columns else 0


class FakeSources:
    """EvaluationSources over dicts of columns."""

    def __init__(self) -> None:
        self.references: dict[tuple[str, int], dict[str, np.ndarray]] = {}
        self.uploads: dict[str, dict[str, np.ndarray]] = {}
        self.upload_sizes: dict[str, int] = {}
        self.traffic_columns: dict[str, np.ndarray] = {}
        self.deleted: list[str] = []
        self.windows: list[tuple[str, datetime, datetime]] = []

    def reference(self, version: ModelVersion) -> tuple[str, dict[str, np.ndarray]]:
        found = self.references.get((version.model, version.version))
        if found is None:
            raise ConflictError("no reference", code="reference_unavailable")
        return f"models/{version.model}/v{version.version}/reference.parquet", found

    def upload(self, key: str, *, max_bytes: int) -> dict[str, np.ndarray]:
        if key not in self.uploads:
            raise NotFoundError(f"nothing at {key}", code="upload_not_found")
        if self.upload_sizes.get(key, 0) > max_bytes:
            raise PayloadTooLargeError("too large", code="upload_too_large")
        return self.uploads[key]

    def delete_upload(self, key: str) -> None:
        self.deleted.append(key)

    def traffic(self, model: str, start: datetime, end: datetime) -> ArchiveWindow:
        self.windows.append((model, start, end))
        return Window(columns=self.traffic_columns)


class Clock:
    """A clock that ticks one second per read."""

    def __init__(self) -> None:
        self.now = datetime(2026, 3, 3, 12, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        self.now += timedelta(seconds=1)
        return self.now


@dataclass
class Evaluations:
    """The service on fakes, with its parts reachable."""

    store: InMemoryEvaluationStore = field(default_factory=InMemoryEvaluationStore)
    catalog: FakeCatalog = field(default_factory=FakeCatalog)
    sources: FakeSources = field(default_factory=FakeSources)
    artifacts: InMemoryArtifacts = field(default_factory=InMemoryArtifacts)
    events: FakeEvents = field(default_factory=FakeEvents)
    clock: Clock = field(default_factory=Clock)

    def __post_init__(self) -> None:
        self.loader = FakeLoader({})
        self.ids = iter(f"{n:020x}" for n in range(1, 10_000))
        self.service = EvaluationService(
            self.store,
            self.catalog,
            sources=self.sources,
            models=self.loader,
            events=self.events,
            publications=self.store,
            explainers=Explainers(self.artifacts),
            clock=self.clock,
            new_id=lambda: next(self.ids),
        )

    def add(self, version: ModelVersion, data: bytes, *aliases: str) -> ModelVersion:
        self.catalog.add(version, *aliases)
        self.loader.artifacts[version.artifact_key] = data
        return version


def columns_of(rows: Sequence[Mapping[str, Any]]) -> dict[str, np.ndarray]:
    """Row dicts as numpy columns, the way tabular reads a file (floats, or objects for text)."""
    names = list(dict.fromkeys(name for row in rows for name in row))
    columns: dict[str, np.ndarray] = {}
    for name in names:
        values = [row.get(name) for row in rows]
        if all(isinstance(v, int | float) and not isinstance(v, bool) for v in values):
            columns[name] = np.asarray(values, dtype=np.float64)
        else:
            columns[name] = np.asarray(values, dtype=object)
    return columns
