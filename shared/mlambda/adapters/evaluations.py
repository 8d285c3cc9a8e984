"""Evaluations on DynamoDB (the evaluations table, layout in ``mlambda.schemas.evaluations``) and
their publication in the registry table (which the registry function reads for its gate: this
module stays free of the data stack).

An evaluation's meta item keeps what never changes as one JSON attribute (``body``) and what
verdicts change as plain attributes (``status``, ``revision``, ``verdict_count``, ``rows_judged``,
the ``evaluators`` string set), so a verdict is one small transaction: the meta's counters (only
while ``status = open``), the row's revision and evaluator list (only if the row is as read), the
current verdict (only if it is the revision read) and the revision's history item. Completion is
one transaction over both tables: the meta closed (only if still open and at the revision the
results were computed from), the publication and a history entry in the registry table, and a
check that the version still exists.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from mlambda.adapters.dynamodb import (
    DynamoTable,
    failed_operations,
    transact_check,
    transact_put,
    transact_update,
)
from mlambda.adapters.paging import PageTokens, listing
from mlambda.adapters.registry import (
    history_sk,
    history_time,
    model_pk,
    version_sk,
)
from mlambda.errors import ConflictError
from mlambda.schemas.evaluations import (
    Evaluation,
    EvaluationRow,
    EvaluationStatus,
    PublishedEvaluation,
    VerdictRecord,
)
from mlambda.schemas.registry import HistoryEntry

META = "meta"
ROW_PREFIX = "row#"
VERDICT_PREFIX = "verdict#"
HISTORY_PREFIX = "history#"
MODELS_INDEX = "gsi1"
PUBLICATION_PREFIX = "evaluation#"


def evaluation_pk(evaluation_id: str) -> str:
    """Partition key of everything about one evaluation."""
    return f"eval#{evaluation_id}"


def row_sk(index: int) -> str:
    """Sort key of row ``index`` (zero-padded: rows sort in order)."""
    return f"{ROW_PREFIX}{index:05d}"


def verdict_sk(row: int, evaluator: str) -> str:
    """Sort key of an evaluator's current verdict on a row."""
    return f"{VERDICT_PREFIX}{row:05d}#{evaluator}"


def revision_sk(row: int, evaluator: str, revision: int) -> str:
    """Sort key of one revision of an evaluator's verdict on a row."""
    return f"{HISTORY_PREFIX}{row:05d}#{evaluator}#{revision:04d}"


def publication_sk(version: int, evaluation_id: str) -> str:
    """Sort key, in the registry table, of a completed evaluation of ``version``."""
    return f"{PUBLICATION_PREFIX}{version_sk(version)}#{evaluation_id}"


def _iso(at: datetime) -> str:
    return (at if at.tzinfo else at.replace(tzinfo=UTC)).astimezone(UTC).isoformat()


def _evaluation(item: Mapping[str, Any]) -> Evaluation:
    """An Evaluation from its meta item: the body, with the live attributes over it."""
    document: dict[str, Any] = json.loads(item["body"])
    document.update(
        status=item["status"],
        revision=int(item.get("revision", 0)),
        verdicts=int(item.get("verdict_count", 0)),
        rows_judged=int(item.get("rows_judged", 0)),
        evaluators=sorted(item.get("evaluators") or ()),
        updated_at=item.get("updated_at", document["updated_at"]),
    )
    if "closing" in item:
        document.update(json.loads(item["closing"]))
    return Evaluation.model_validate(document)


def _row(item: Mapping[str, Any]) -> EvaluationRow:
    document: dict[str, Any] = json.loads(item["body"])
    document.update(evaluators=list(item.get("evaluators") or []), revision=int(item.get("revision", 0)))
    return EvaluationRow.model_validate(document)


def _verdict(item: Mapping[str, Any]) -> VerdictRecord:
    return VerdictRecord.model_validate({k: v for k, v in item.items() if k not in ("pk", "sk")})


class DynamoEvaluationStore:
    """EvaluationStore on the evaluations table (completion also writes the registry table)."""

    def __init__(self, table: DynamoTable, registry: DynamoTable) -> None:
        self._table = table
        self._registry = registry
        self._pages = PageTokens(table)

    def _meta_key(self, evaluation_id: str) -> dict[str, str]:
        return {"pk": evaluation_pk(evaluation_id), "sk": META}

    # ------------------------------------------------------------------ evaluations

    def create(self, evaluation: Evaluation, rows: Sequence[EvaluationRow]) -> bool:
        """Rows first (batch writes), then the meta item only if the id is free: a crash in between
        leaves rows no evaluation points at, never an evaluation without its rows."""
        pk = evaluation_pk(evaluation.evaluation_id)
        self._table.batch_put(
            [
                {
                    "pk": pk,
                    "sk": row_sk(row.index),
                    "body": row.model_dump_json(exclude={"evaluators", "revision"}),
                    "evaluators": [],
                    "revision": 0,
                }
                for row in rows
            ]
        )
        body = evaluation.model_dump_json(
            exclude={"status", "revision", "verdicts", "rows_judged", "evaluators", "results"}
        )
        item = {
            **self._meta_key(evaluation.evaluation_id),
            "gsi1pk": model_pk(evaluation.model),
            "gsi1sk": f"{_iso(evaluation.created_at)}#{evaluation.evaluation_id}",
            "body": body,
            "status": evaluation.status,
            "revision": 0,
            "verdict_count": 0,
            "rows_judged": 0,
            "updated_at": _iso(evaluation.updated_at),
        }
        try:
            self._table.put(item, condition="attribute_not_exists(pk)")
        except ConflictError:
            return False
        return True

    def get(self, evaluation_id: str) -> Evaluation | None:
        """The evaluation, read consistently."""
        item = self._table.get(self._meta_key(evaluation_id), consistent=True)
        return _evaluation(item) if item else None

    def list_by_model(
        self, model: str, *, status: EvaluationStatus | None, limit: int, token: str | None
    ) -> tuple[list[Evaluation], str | None]:
        """Newest first; a status filter still fills the page up to ``limit``."""
        pages = listing("evaluations", model, status)
        start = self._pages.read(
            token,
            pages,
            equal={"gsi1pk": model_pk(model), "sk": META},
            prefixed={"pk": evaluation_pk(""), "gsi1sk": ""},
        )
        found: list[Evaluation] = []
        while True:
            items, start = self._table.query(
                "gsi1pk = :p",
                {":p": model_pk(model), **({":s": status} if status else {})},
                names={"#status": "status"} if status else None,
                index=MODELS_INDEX,
                filter_expression="#status = :s" if status else None,
                forward=False,
                limit=limit - len(found),
                start_key=start,
            )
            found.extend(_evaluation(item) for item in items)
            if start is None or len(found) >= limit:
                return found, self._pages.issue(pages, start)

    def cancel(self, evaluation_id: str, *, at: datetime, actor: str, reason: str | None) -> bool:
        """status cancelled, only while open."""
        closing = json.dumps({"cancelled_at": _iso(at), "cancelled_by": actor, "note": reason})
        try:
            self._table.update(
                self._meta_key(evaluation_id),
                "SET #status = :cancelled, closing = :closing, updated_at = :at",
                condition="#status = :open",
                names={"#status": "status"},
                values={":cancelled": "cancelled", ":open": "open", ":closing": closing, ":at": _iso(at)},
            )
        except ConflictError:
            return False
        return True

    # ------------------------------------------------------------------ rows

    def get_row(self, evaluation_id: str, index: int) -> EvaluationRow | None:
        """One row, read consistently."""
        item = self._table.get({"pk": evaluation_pk(evaluation_id), "sk": row_sk(index)}, consistent=True)
        return _row(item) if item else None

    def _page(
        self, evaluation_id: str, prefix: str, *, limit: int, token: str | None, only: tuple[str, str] | None
    ) -> tuple[list[dict[str, Any]], str | None]:
        """A page of the evaluation's items under ``prefix`` in key order, filled up to ``limit``
        when a filter (``only``: expression, its ``:me`` value) leaves some out."""
        pk = evaluation_pk(evaluation_id)
        pages = listing(prefix, evaluation_id, only[1] if only is not None else None)
        start = self._pages.read(token, pages, equal={"pk": pk}, prefixed={"sk": prefix})
        values: dict[str, Any] = {":pk": pk, ":prefix": prefix}
        if only is not None:
            values[":me"] = only[1]
        found: list[dict[str, Any]] = []
        while True:
            items, start = self._table.query(
                "pk = :pk AND begins_with(sk, :prefix)",
                values,
                filter_expression=only[0] if only is not None else None,
                limit=limit - len(found),
                start_key=start,
                consistent=True,
            )
            found.extend(items)
            if start is None or len(found) >= limit:
                return found, self._pages.issue(pages, start)

    def rows(
        self, evaluation_id: str, *, limit: int, token: str | None, unjudged_by: str | None
    ) -> tuple[list[EvaluationRow], str | None]:
        """A page of rows in order, optionally only those ``unjudged_by`` has not judged."""
        only = ("NOT contains(evaluators, :me)", unjudged_by) if unjudged_by is not None else None
        items, next_token = self._page(evaluation_id, ROW_PREFIX, limit=limit, token=token, only=only)
        return [_row(item) for item in items], next_token

    def all_rows(self, evaluation_id: str) -> list[EvaluationRow]:
        """Every row, in order."""
        items = self._table.query_all(
            "pk = :pk AND begins_with(sk, :r)",
            {":pk": evaluation_pk(evaluation_id), ":r": ROW_PREFIX},
            consistent=True,
        )
        return [_row(item) for item in items]

    # ------------------------------------------------------------------ verdicts

    def get_verdict(self, evaluation_id: str, row: int, evaluator: str) -> VerdictRecord | None:
        """The evaluator's current verdict on the row."""
        item = self._table.get(
            {"pk": evaluation_pk(evaluation_id), "sk": verdict_sk(row, evaluator)}, consistent=True
        )
        return _verdict(item) if item else None

    def verdicts(
        self, evaluation_id: str, *, limit: int, token: str | None, evaluator: str | None
    ) -> tuple[list[VerdictRecord], str | None]:
        """A page of current verdicts in row order (only ``evaluator``'s when given)."""
        only = ("evaluator = :me", evaluator) if evaluator is not None else None
        items, next_token = self._page(evaluation_id, VERDICT_PREFIX, limit=limit, token=token, only=only)
        return [_verdict(item) for item in items], next_token

    def all_verdicts(self, evaluation_id: str) -> list[VerdictRecord]:
        """Every current verdict."""
        items = self._table.query_all(
            "pk = :pk AND begins_with(sk, :v)",
            {":pk": evaluation_pk(evaluation_id), ":v": VERDICT_PREFIX},
            consistent=True,
        )
        return [_verdict(item) for item in items]

    def revisions(self, evaluation_id: str, row: int, evaluator: str | None) -> list[VerdictRecord]:
        """Every revision of the row's verdicts, oldest first."""
        prefix = f"{HISTORY_PREFIX}{row:05d}#" + (f"{evaluator}#" if evaluator is not None else "")
        items = self._table.query_all(
            "pk = :pk AND begins_with(sk, :h)",
            {":pk": evaluation_pk(evaluation_id), ":h": prefix},
            consistent=True,
        )
        return sorted((_verdict(item) for item in items), key=lambda v: (v.at, v.evaluator, v.revision))

    def put_verdict(
        self, record: VerdictRecord, *, previous: VerdictRecord | None, row: EvaluationRow, at: datetime
    ) -> None:
        """Counters, row, current verdict and revision in one conditional transaction."""
        name = self._table.name
        pk = evaluation_pk(record.evaluation_id)
        new_pair = previous is None
        first_on_row = new_pair and not row.evaluators
        meta = transact_update(
            name,
            {"pk": pk, "sk": META},
            "SET revision = revision + :one, updated_at = :at "
            "ADD verdict_count :pair, rows_judged :first, evaluators :who",
            condition="#status = :open",
            names={"#status": "status"},
            values={
                ":one": 1,
                ":at": _iso(at),
                ":pair": 1 if new_pair else 0,
                ":first": 1 if first_on_row else 0,
                ":who": {record.evaluator},
                ":open": "open",
            },
        )
        row_update = transact_update(
            name,
            {"pk": pk, "sk": row_sk(record.row)},
            "SET revision = :next, evaluators = list_append(evaluators, :me)"
            if new_pair
            else "SET revision = :next",
            condition="revision = :seen",
            values={
                ":next": row.revision + 1,
                ":seen": row.revision,
                **({":me": [record.evaluator]} if new_pair else {}),
            },
        )
        item = {"pk": pk, "sk": verdict_sk(record.row, record.evaluator), **record.model_dump(mode="json")}
        current = (
            transact_put(name, item, condition="attribute_not_exists(pk)")
            if previous is None
            else transact_put(name, item, condition="revision = :prev", values={":prev": previous.revision})
        )
        revision = transact_put(
            name,
            {**item, "sk": revision_sk(record.row, record.evaluator, record.revision)},
            condition="attribute_not_exists(pk)",
        )
        try:
            self._table.transact_write([meta, row_update, current, revision])
        except ConflictError as exc:
            failed = failed_operations(exc)
            if failed is not None and 0 in failed:
                raise ConflictError(
                    f"evaluation {record.evaluation_id} is closed: it takes no more verdicts",
                    code="evaluation_closed",
                ) from exc
            raise ConflictError(
                "the row changed while the verdict was written", code="verdict_conflict"
            ) from exc

    # ------------------------------------------------------------------ completion

    def complete(
        self,
        evaluation: Evaluation,
        *,
        expected_revision: int,
        publication: PublishedEvaluation,
        entry: HistoryEntry,
    ) -> None:
        """Close, publish and record in one transaction over the evaluations and registry tables."""
        closing = json.dumps(
            evaluation.model_dump(
                mode="json", include={"completed_at", "completed_by", "min_coverage", "note", "results"}
            )
        )
        close = transact_update(
            self._table.name,
            self._meta_key(evaluation.evaluation_id),
            "SET #status = :completed, closing = :closing, updated_at = :at",
            condition="#status = :open AND revision = :seen",
            names={"#status": "status"},
            values={
                ":completed": "completed",
                ":open": "open",
                ":seen": expected_revision,
                ":closing": closing,
                ":at": _iso(evaluation.updated_at),
            },
        )
        exists = transact_check(
            self._registry.name,
            {"pk": model_pk(evaluation.model), "sk": version_sk(evaluation.version)},
            "attribute_exists(pk)",
        )
        published = transact_put(
            self._registry.name,
            {
                "pk": model_pk(publication.model),
                "sk": publication_sk(publication.version, publication.evaluation_id),
                "body": publication.model_dump_json(),
                "completed_at": history_time(publication.completed_at),
            },
            condition="attribute_not_exists(pk)",
        )
        history = transact_put(
            self._registry.name,
            {"pk": model_pk(entry.model), "sk": history_sk(entry), **entry.model_dump(mode="json")},
            condition="attribute_not_exists(pk)",
        )
        try:
            self._table.transact_write([close, exists, published, history])
        except ConflictError as exc:
            failed = failed_operations(exc) or []
            if 1 in failed:
                raise ConflictError(
                    f"{evaluation.model} v{evaluation.version} no longer exists: nothing to publish to",
                    code="version_gone",
                ) from exc
            current = self.get(evaluation.evaluation_id)
            if current is not None and current.status != "open":
                raise ConflictError(
                    f"evaluation {evaluation.evaluation_id} is {current.status}", code="evaluation_closed"
                ) from exc
            raise ConflictError("verdicts changed while completing", code="verdict_conflict") from exc


class DynamoEvaluationPublications:
    """EvaluationPublications on the registry table (what the gate reads)."""

    def __init__(self, registry: DynamoTable) -> None:
        self._registry = registry

    def published(self, model: str, version: int) -> list[PublishedEvaluation]:
        """The version's completed evaluations, newest first."""
        items = self._registry.query_all(
            "pk = :pk AND begins_with(sk, :e)",
            {":pk": model_pk(model), ":e": f"{PUBLICATION_PREFIX}{version_sk(version)}#"},
            consistent=True,
        )
        found = [PublishedEvaluation.model_validate_json(item["body"]) for item in items]
        return sorted(found, key=lambda p: p.completed_at, reverse=True)
