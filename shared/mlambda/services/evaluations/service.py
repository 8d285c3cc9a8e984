"""Human evaluation of a model version: a sample of rows scored (and explained) by the version,
verdicts from people, results published to the version in the registry.

- **Create** draws up to 500 rows from the source, scores them with the chosen version (any
  version, promoted or not) and explains them when the version has an explainer, within a fixed
  budget (``EXPLAIN_BUDGET_REQUESTS`` x what one predict request may explain). Rows are written
  before the evaluation itself, so a failed creation leaves nothing visible; with ``request_id``
  a resend finds the evaluation it created.
- **Verdicts**: one per (row, evaluator), the evaluator being the API key's name. The same verdict
  sent again writes nothing; a different one replaces it and is kept as a new revision. Each
  write is one transaction conditioned on the evaluation being open and on the row and verdict
  being as read, so concurrent evaluators never lose a count and a verdict never lands on a
  closed evaluation.
- **Complete** computes the results from the verdicts and closes the evaluation only if no
  verdict changed since (else it recomputes), and only when every row has a verdict or the
  caller states the coverage it accepts (``min_coverage``). The same transaction publishes the
  results beside the version in the registry, where the production gate looks for them.
- **Blind while open**: an evaluator sees only their own verdicts until the evaluation is
  completed; keys that manage evaluations (``registry:write``) see all of them.
"""

from __future__ import annotations

import hashlib
import json
import math
import random
import secrets
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import numpy as np

from mlambda.adapters import tabular
from mlambda.errors import (
    ConflictError,
    InvalidInputError,
    MlambdaError,
    NotFoundError,
    PayloadTooLargeError,
    UnprocessableError,
)
from mlambda.observability import logger
from mlambda.ports import EventPublisher, ModelCatalog, ModelLoader
from mlambda.schemas.evaluations import (
    EVALUATION_ID_PATTERN,
    MAX_PAGE,
    MAX_REVISIONS,
    CancelRequest,
    CompleteRequest,
    CreateEvaluationRequest,
    Evaluation,
    EvaluationPage,
    EvaluationResults,
    EvaluationRow,
    EvaluationSourceInfo,
    EvaluationStatus,
    PublishedEvaluation,
    PublishedPage,
    RowPage,
    RowSource,
    RowView,
    VerdictAnswer,
    VerdictHistory,
    VerdictPage,
    VerdictRecord,
    VerdictRequest,
)
from mlambda.schemas.registry import MODEL_NAME_PATTERN, HistoryEntry, ModelVersion
from mlambda.services.evaluations import sampling
from mlambda.services.evaluations.ports import EvaluationPublications, EvaluationSources, EvaluationStore
from mlambda.services.evaluations.results import compute_results
from mlambda.services.inference.explain import Explainers, explain_feed
from mlambda.services.inference.scoring import predictions, rows_to_feed, validate_rows

if TYPE_CHECKING:
    from mlambda.config import EvaluationsSettings

EVENT_SOURCE = "mlambda.evaluations"
EVALUATION_COMPLETED = "Model Evaluation Completed"
EXPLAIN_BUDGET_REQUESTS = 5
"""An evaluation may explain as many rows as five predict requests may (kernel_shap: 50 rows)."""
MAX_ROW_BYTES = 300_000
"""A row item (inputs, prediction, explanation, context) stays well inside DynamoDB's 400 KB."""
WRITE_ATTEMPTS = 8
TRAFFIC_ID = "id"
TRAFFIC_TIME = "timestamp"
FEATURE_PREFIX = "features."


def _now() -> datetime:
    return datetime.now(UTC)


def _new_id() -> str:
    return secrets.token_hex(10)


def check_evaluation_id(evaluation_id: str) -> str:
    """``evaluation_id`` if it could name an evaluation; NotFoundError (never a lookup) otherwise."""
    import re

    if not re.match(EVALUATION_ID_PATTERN, evaluation_id):
        raise NotFoundError(f"no evaluation {evaluation_id[:40]!r}", code="evaluation_not_found")
    return evaluation_id


def _check_model(name: str) -> str:
    import re

    if not re.match(MODEL_NAME_PATTERN, name):
        raise InvalidInputError(
            f"invalid model name {name[:80]!r}: use 1-63 lower-case letters, digits, '-' or '_'",
            code="invalid_model_name",
        )
    return name


def _seed(evaluation_id: str) -> int:
    """The sample's seed, from the whole id, under 2**53 (exact as a JSON number anywhere)."""
    return int(hashlib.sha256(evaluation_id.encode()).hexdigest()[:13], 16)


class EvaluationService:
    """Everything the evaluations API does, over its ports."""

    def __init__(
        self,
        store: EvaluationStore,
        catalog: ModelCatalog,
        *,
        sources: EvaluationSources,
        models: ModelLoader,
        events: EventPublisher,
        publications: EvaluationPublications,
        explainers: Explainers | None = None,
        max_upload_bytes: int = 20 * 1024 * 1024,
        clock: Callable[[], datetime] = _now,
        new_id: Callable[[], str] = _new_id,
    ) -> None:
        self._store = store
        self._catalog = catalog
        self._sources = sources
        self._models = models
        self._events = events
        self._publications = publications
        self._explainers = explainers
        self.max_upload_bytes = max_upload_bytes
        self._clock = clock
        self._new_id = new_id

    @classmethod
    def from_settings(cls, settings: EvaluationsSettings) -> EvaluationService:
        """The service on DynamoDB, S3, onnxruntime and EventBridge."""
        from mlambda.adapters.batch import ArtifactModelLoader
        from mlambda.adapters.dynamodb import DynamoTable
        from mlambda.adapters.evaluation_sources import S3EvaluationSources
        from mlambda.adapters.evaluations import DynamoEvaluationPublications, DynamoEvaluationStore
        from mlambda.adapters.messaging import EventBus
        from mlambda.adapters.registry import DynamoModelCatalog
        from mlambda.adapters.s3 import ObjectStore

        registry = DynamoTable(settings.registry_table, settings)
        artifacts = ObjectStore(settings.artifacts_bucket, settings)
        return cls(
            DynamoEvaluationStore(DynamoTable(settings.evaluations_table, settings), registry),
            DynamoModelCatalog(registry),
            sources=S3EvaluationSources(
                artifacts,
                ObjectStore(settings.data_bucket, settings),
                max_traffic_rows=settings.max_traffic_rows,
            ),
            models=ArtifactModelLoader(artifacts),
            events=EventBus(settings, bus_name=settings.event_bus_name, source=EVENT_SOURCE),
            publications=DynamoEvaluationPublications(registry),
            explainers=Explainers(artifacts),
            max_upload_bytes=settings.max_upload_bytes,
        )

    # ------------------------------------------------------------------ reading

    def get(self, evaluation_id: str) -> Evaluation:
        """One evaluation; NotFoundError (404 ``evaluation_not_found``) when unknown."""
        found = self._store.get(check_evaluation_id(evaluation_id))
        if found is None:
            raise NotFoundError(f"no evaluation {evaluation_id}", code="evaluation_not_found")
        return found

    def list_evaluations(
        self, model: str, *, status: EvaluationStatus | None = None, limit: int = 20, token: str | None = None
    ) -> EvaluationPage:
        """A model's evaluations, newest first."""
        found, next_token = self._store.list_by_model(
            _check_model(model), status=status, limit=_page(limit), token=token
        )
        return EvaluationPage(evaluations=found, next_token=next_token)

    def _row(self, evaluation: Evaluation, index: int) -> EvaluationRow:
        if not 0 <= index < evaluation.rows:
            raise NotFoundError(
                f"evaluation {evaluation.evaluation_id} has rows 0-{evaluation.rows - 1}, not {index}",
                code="row_not_found",
            )
        row = self._store.get_row(evaluation.evaluation_id, index)
        if row is None:
            raise NotFoundError(
                f"row {index} of evaluation {evaluation.evaluation_id} is missing", code="row_not_found"
            )
        return row

    def row(self, evaluation_id: str, index: int, viewer: str) -> RowView:
        """One row with the viewer's own verdict."""
        evaluation = self.get(evaluation_id)
        row = self._row(evaluation, index)
        mine = self._store.get_verdict(evaluation.evaluation_id, index, viewer)
        return RowView(**row.model_dump(), verdict_count=len(row.evaluators), mine=mine)

    def rows(
        self,
        evaluation_id: str,
        viewer: str,
        *,
        limit: int = 20,
        token: str | None = None,
        todo: bool = False,
    ) -> RowPage:
        """A page of rows in order with the viewer's verdicts (``todo``: only rows the viewer has not judged)."""
        evaluation = self.get(evaluation_id)
        found, next_token = self._store.rows(
            evaluation.evaluation_id, limit=_page(limit), token=token, unjudged_by=viewer if todo else None
        )
        mine: dict[int, VerdictRecord] = {}
        judged = [row.index for row in found if viewer in row.evaluators]
        if judged:
            for verdict in self._store.all_verdicts(evaluation.evaluation_id):
                if verdict.evaluator == viewer and verdict.row in judged:
                    mine[verdict.row] = verdict
        views = [
            RowView(**row.model_dump(), verdict_count=len(row.evaluators), mine=mine.get(row.index))
            for row in found
        ]
        return RowPage(rows=views, next_token=next_token)

    def verdicts(
        self,
        evaluation_id: str,
        viewer: str,
        *,
        sees_all: bool,
        limit: int = 50,
        token: str | None = None,
    ) -> VerdictPage:
        """Current verdicts in row order: all of them for managers and once completed, else the viewer's own."""
        evaluation = self.get(evaluation_id)
        blind = evaluation.status == "open" and not sees_all
        found, next_token = self._store.verdicts(
            evaluation.evaluation_id, limit=_page(limit), token=token, evaluator=viewer if blind else None
        )
        return VerdictPage(verdicts=found, next_token=next_token)

    def history(self, evaluation_id: str, index: int, viewer: str, *, sees_all: bool) -> VerdictHistory:
        """Every revision of the row's verdicts, oldest first (the viewer's own while blind)."""
        evaluation = self.get(evaluation_id)
        self._row(evaluation, index)
        blind = evaluation.status == "open" and not sees_all
        revisions = self._store.revisions(evaluation.evaluation_id, index, viewer if blind else None)
        return VerdictHistory(revisions=revisions)

    def results(self, evaluation_id: str, viewer: str, *, sees_all: bool) -> EvaluationResults:
        """The stored results of a completed evaluation, or the figures so far of an open one (over
        the viewer's own verdicts while blind: others' verdicts, names and comments stay hidden)."""
        evaluation = self.get(evaluation_id)
        if evaluation.results is not None:
            return evaluation.results
        blind = evaluation.status == "open" and not sees_all
        return self._compute(evaluation, only=viewer if blind else None)

    def _compute(self, evaluation: Evaluation, *, only: str | None = None) -> EvaluationResults:
        """The figures over every current verdict (``only``: that evaluator's)."""
        rows = self._store.all_rows(evaluation.evaluation_id)
        verdicts = self._store.all_verdicts(evaluation.evaluation_id)
        return compute_results(
            task=evaluation.task,
            class_labels=evaluation.class_labels,
            predictions={row.index: row.prediction for row in rows},
            verdicts=[v for v in verdicts if only is None or v.evaluator == only],
        )

    def published(self, model: str, version: int) -> PublishedPage:
        """The version's completed evaluations as the registry keeps them (none while it is not READY)."""
        try:
            self._catalog.get_version(_check_model(model), version)
        except NotFoundError as exc:
            if exc.code != "version_not_ready":
                raise
            return PublishedPage(evaluations=[])
        return PublishedPage(evaluations=self._publications.published(model, version))

    def _ready(self, model: str, version: int) -> ModelVersion:
        """The READY version that scores an evaluation: 404 when absent, 409 ``version_not_ready``
        while it is validating or when it FAILED (as the registry answers for aliases)."""
        try:
            return self._catalog.get_version(model, version)
        except NotFoundError as exc:
            if exc.code != "version_not_ready":
                raise
            raise ConflictError(
                f"{exc.message}: only READY versions can be evaluated",
                code="version_not_ready",
                details=exc.details,
            ) from exc

    # ------------------------------------------------------------------ creating

    def create(self, model: str, request: CreateEvaluationRequest, actor: str) -> tuple[Evaluation, bool]:
        """Draw, score and explain the rows and store the evaluation; (it, whether this call created it)."""
        _check_model(model)
        if request.request_id is not None:
            evaluation_id = hashlib.sha256(f"{model}\n{request.request_id}".encode()).hexdigest()[:20]
            existing = self._store.get(evaluation_id)
            if existing is not None:
                return existing, False
        else:
            evaluation_id = self._new_id()
        version = self._ready(model, request.version)
        info, rows = self._draw(evaluation_id, version, request)
        scored = self._score(version, [inputs for inputs, _, _ in rows])
        explanations, method = self._explain(version, request, [inputs for inputs, _, _ in rows], scored)
        now = self._clock()
        items = [
            EvaluationRow(
                evaluation_id=evaluation_id,
                index=index,
                source=source,
                inputs=inputs,
                context=context,
                prediction=prediction,
                explanation=explanation,
            )
            for index, ((inputs, context, source), prediction, explanation) in enumerate(
                zip(rows, scored, explanations, strict=True)
            )
        ]
        for item in items:
            size = len(item.model_dump_json())
            if size > MAX_ROW_BYTES:
                raise UnprocessableError(
                    f"row {item.index} takes {size:,} bytes with its explanation and context, over the "
                    f"{MAX_ROW_BYTES:,}-byte cap: leave context columns out or set explain to false",
                    code="row_too_large",
                )
        signature = version.signature
        evaluation = Evaluation(
            evaluation_id=evaluation_id,
            model=model,
            version=version.version,
            artifact_sha256=version.artifact_sha256,
            name=request.name,
            instructions=request.instructions,
            status="open",
            source=info,
            task=signature.task,
            class_labels=signature.class_labels,
            features=version.feature_schema.names,
            rows=len(items),
            explained=method is not None,
            explanation_method=method,
            request_id=request.request_id,
            created_by=actor,
            created_at=now,
            updated_at=now,
        )
        if not self._store.create(evaluation, items):
            existing = self._store.get(evaluation_id)
            if existing is None:
                raise ConflictError(f"evaluation {evaluation_id} vanished while being created")
            return existing, False
        if info.type == "upload" and info.key:
            try:
                self._sources.delete_upload(info.key)
            except MlambdaError as exc:
                logger.warning("consumed upload not deleted", extra={"key": info.key, "error": exc.message})
        logger.info(
            "evaluation created",
            extra={
                "evaluation_id": evaluation_id,
                "model": model,
                "version": version.version,
                "rows": len(items),
            },
        )
        return evaluation, True

    def _draw(
        self, evaluation_id: str, version: ModelVersion, request: CreateEvaluationRequest
    ) -> tuple[EvaluationSourceInfo, list[tuple[dict[str, Any], dict[str, Any], RowSource]]]:
        """Read the source, keep the usable rows, draw the sample: (what the source was, the drawn rows)."""
        source = request.source
        schema = version.feature_schema
        key: str | None = None
        start = end = None
        hidden: list[str] = []
        origins: list[RowSource] | None = None
        if source.type == "reference":
            key, columns = self._sources.reference(version)
            hidden = _reference_hidden(version)
        elif source.type == "upload":
            key = _check_upload_key(version.model, source.upload_key)
            columns = self._sources.upload(key, max_bytes=self.max_upload_bytes)
        elif source.type == "rows":
            validate_rows(schema, source.rows, allow_extra=True)
            columns = _rows_to_columns(source.rows)
        else:
            start, end = source.start, source.end
            window = self._sources.traffic(version.model, start, end)
            columns, origins = _traffic_columns(window.columns, schema.names)
        count = len(next(iter(columns.values()))) if columns else 0
        if count == 0:
            raise UnprocessableError(f"the {source.type} source has no rows", code="no_rows")
        usable = sampling.usable_rows(schema, columns, count)
        if usable.count == 0:
            raise UnprocessableError(
                f"none of the {count} rows of the {source.type} source has every feature of "
                f"{version.model} v{version.version}: {'; '.join(usable.reasons)}",
                code="no_usable_rows",
                details={"rows": count, "reasons": usable.reasons},
            )
        seed = _seed(evaluation_id)
        chosen = sampling.draw(usable, request.rows, sampling=request.sampling, seed=seed)
        context_names = (
            [] if source.type == "traffic" else sampling.context_columns(list(columns), schema, hidden)
        )
        drawn: list[tuple[dict[str, Any], dict[str, Any], RowSource]] = []
        for position in chosen:
            origin = origins[position] if origins is not None else RowSource(row=position)
            context = {name: sampling.context_value(columns[name][position]) for name in context_names}
            drawn.append((sampling.inputs_of(schema, usable, position), context, origin))
        info = EvaluationSourceInfo(
            type=source.type,
            key=key,
            start=start,
            end=end,
            available=usable.count,
            skipped=count - usable.count,
            skipped_reasons=usable.reasons,
            sampling=request.sampling,
            seed=seed if request.sampling == "random" else None,
        )
        return info, drawn

    def _score(self, version: ModelVersion, rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
        model = self._models.load(version)
        outputs = model.run(rows_to_feed(version.feature_schema, rows), None)
        return predictions(version.signature, outputs)

    def _explain(
        self,
        version: ModelVersion,
        request: CreateEvaluationRequest,
        rows: Sequence[dict[str, Any]],
        scored: Sequence[Mapping[str, Any]],
    ) -> tuple[list[dict[str, Any] | None], str | None]:
        """Each row's explanation (None each when not explained) and the method used."""
        asked = "explain" in request.model_fields_set
        if not request.explain or self._explainers is None or not version.explainer_key:
            if asked and request.explain:
                raise ConflictError(
                    f"{version.model} v{version.version} has no explainer: versions registered with a "
                    "reference sample and numeric features have one; or create the evaluation with explain false",
                    code="explainer_unavailable",
                )
            return [None] * len(rows), None
        explainer = self._explainers.get(version)
        per_request = explainer.max_rows("auto")
        if per_request is not None and len(rows) > per_request * EXPLAIN_BUDGET_REQUESTS:
            limit = per_request * EXPLAIN_BUDGET_REQUESTS
            costly = explainer.method if explainer.exact_method("auto") else "kernel_shap"
            raise PayloadTooLargeError(
                f"explaining {len(rows)} rows of {version.model} v{version.version} with {costly} exceeds an "
                f"evaluation's budget of {limit} rows: ask for at most {limit} rows, or set explain to false",
                code="too_many_explanations",
                details={"rows": len(rows), "limit": limit, "method": costly},
            )
        model = self._models.load(version)
        schema = version.feature_schema
        classification = version.signature.task == "classification"
        step = per_request or len(rows)
        answers: list[dict[str, Any] | None] = []
        method: str | None = None
        for low in range(0, len(rows), step):
            part = rows[low : low + step]
            labels = [p["label"] for p in scored[low : low + step]] if classification else None
            explained = explain_feed(
                explainer, version, rows_to_feed(schema, part), labels, lambda feed: model.run(feed, None)
            )
            method = explained.method
            answers.extend(explained.as_json(schema.names, version.signature.class_labels))
        return answers, method

    # ------------------------------------------------------------------ verdicts

    def record_verdict(
        self, evaluation_id: str, index: int, request: VerdictRequest, evaluator: str
    ) -> VerdictAnswer:
        """The evaluator's verdict on one row: nothing written when it is the same as before."""
        evaluation = self._open(self.get(evaluation_id))
        for attempt in range(WRITE_ATTEMPTS):
            row = self._row(evaluation, index)
            normalised = _checked(evaluation, row, request)
            current = self._store.get_verdict(evaluation.evaluation_id, index, evaluator)
            if current is not None and current.same_as(normalised):
                return VerdictAnswer(verdict=current, changed=False)
            revision = (current.revision if current else 0) + 1
            if revision > MAX_REVISIONS:
                raise ConflictError(
                    f"{evaluator} changed the verdict on row {index} {MAX_REVISIONS} times already",
                    code="too_many_revisions",
                )
            now = self._clock()
            record = VerdictRecord(
                evaluation_id=evaluation.evaluation_id,
                row=index,
                evaluator=evaluator,
                verdict=normalised.verdict,
                label=normalised.label,
                value=normalised.value,
                comment=normalised.comment,
                revision=revision,
                at=now,
            )
            try:
                self._store.put_verdict(record, previous=current, row=row, at=now)
            except ConflictError as exc:
                if exc.code != "verdict_conflict":
                    raise
                time.sleep(random.uniform(0.0, 0.005 * (attempt + 1)))
                continue
            return VerdictAnswer(verdict=record, changed=True)
        raise ConflictError(
            f"row {index} keeps changing under concurrent verdicts; send yours again", code="verdict_conflict"
        )

    @staticmethod
    def _open(evaluation: Evaluation) -> Evaluation:
        if evaluation.status != "open":
            raise ConflictError(
                f"evaluation {evaluation.evaluation_id} is {evaluation.status}: it takes no more verdicts",
                code="evaluation_closed",
                details={"status": evaluation.status},
            )
        return evaluation

    # ------------------------------------------------------------------ closing

    def complete(self, evaluation_id: str, request: CompleteRequest, actor: str) -> Evaluation:
        """Close the evaluation with its results and publish them to the version (idempotent once completed)."""
        for attempt in range(WRITE_ATTEMPTS):
            evaluation = self.get(evaluation_id)
            if evaluation.status == "completed":
                return evaluation
            self._open(evaluation)
            results = self._compute(evaluation)
            if results.verdicts == 0:
                raise ConflictError(
                    f"evaluation {evaluation_id} has no verdicts yet: nothing to complete", code="no_verdicts"
                )
            if results.coverage < request.min_coverage:
                unjudged = [row.index for row in self._store.all_rows(evaluation_id) if not row.evaluators]
                raise ConflictError(
                    f"{results.rows_judged} of {results.rows} rows have a verdict (coverage "
                    f"{results.coverage:.0%}); judge the rest, or complete with min_coverage "
                    f"<= {results.coverage:.2f} to publish results on partial coverage",
                    code="evaluation_incomplete",
                    details={
                        "rows": results.rows,
                        "rows_judged": results.rows_judged,
                        "coverage": results.coverage,
                        "min_coverage": request.min_coverage,
                        "unjudged": unjudged[:50],
                    },
                )
            now = self._clock()
            completed = evaluation.model_copy(
                update={
                    "status": "completed",
                    "completed_at": now,
                    "completed_by": actor,
                    "min_coverage": request.min_coverage,
                    "note": request.note,
                    "results": results,
                    "updated_at": now,
                }
            )
            publication = publication_of(completed, results)
            entry = HistoryEntry(
                model=evaluation.model,
                at=now,
                actor=actor,
                action="evaluation_completed",
                to_version=evaluation.version,
                details={
                    "evaluation_id": evaluation_id,
                    **publication.metrics,
                    "evaluators": publication.evaluators,
                },
            )
            try:
                self._store.complete(
                    completed, expected_revision=evaluation.revision, publication=publication, entry=entry
                )
            except ConflictError as exc:
                if exc.code != "verdict_conflict":
                    raise
                time.sleep(random.uniform(0.0, 0.01 * (attempt + 1)))
                continue
            self._emit(publication)
            logger.info("evaluation completed", extra={"evaluation_id": evaluation_id, **publication.metrics})
            return self.get(evaluation_id)
        raise ConflictError(
            f"verdicts keep arriving on evaluation {evaluation_id}; try completing it again",
            code="verdict_conflict",
        )

    def cancel(self, evaluation_id: str, request: CancelRequest, actor: str) -> Evaluation:
        """Abandon an open evaluation: it takes no more verdicts and publishes nothing."""
        evaluation = self._open(self.get(evaluation_id))
        if not self._store.cancel(
            evaluation.evaluation_id, at=self._clock(), actor=actor, reason=request.reason
        ):
            self._open(self.get(evaluation_id))
        return self.get(evaluation_id)

    def _emit(self, publication: PublishedEvaluation) -> None:
        """The completion is durable; a failed publish is logged, not raised."""
        try:
            self._events.emit(EVALUATION_COMPLETED, [publication.model_dump(mode="json")])
        except MlambdaError as exc:
            logger.warning("evaluation event not published", extra={"error": exc.message})


def publication_of(evaluation: Evaluation, results: EvaluationResults) -> PublishedEvaluation:
    """What the registry keeps of a completed evaluation."""
    assert evaluation.completed_at is not None and evaluation.completed_by is not None
    return PublishedEvaluation(
        model=evaluation.model,
        version=evaluation.version,
        artifact_sha256=evaluation.artifact_sha256,
        evaluation_id=evaluation.evaluation_id,
        name=evaluation.name,
        completed_at=evaluation.completed_at,
        completed_by=evaluation.completed_by,
        evaluators=[figures.name for figures in results.evaluators],
        rows=results.rows,
        rows_judged=results.rows_judged,
        coverage=results.coverage,
        verdicts=results.verdicts,
        agreement=results.agreement,
        accuracy=results.accuracy,
        krippendorff_alpha=results.inter_evaluator.krippendorff_alpha,
        per_class=results.per_class,
        regression=results.regression,
    )


def _page(limit: int) -> int:
    if not 1 <= limit <= MAX_PAGE:
        raise InvalidInputError(f"limit must be 1-{MAX_PAGE}", code="invalid_limit")
    return limit


def _checked(evaluation: Evaluation, row: EvaluationRow, request: VerdictRequest) -> VerdictRequest:
    """``request`` fitted to the model: a label the model knows (as the model spells it), a value
    only for regressors; UnprocessableError naming what contradicts what."""
    if evaluation.task == "regression":
        if request.label is not None:
            raise UnprocessableError(
                "a regressor's verdict takes a value, not a label", code="invalid_verdict"
            )
        if request.value is not None and request.verdict == "correct":
            raise UnprocessableError(
                "a 'correct' verdict keeps the predicted value: send a value only with 'incorrect'",
                code="invalid_verdict",
            )
        return request
    if request.value is not None:
        raise UnprocessableError("a classifier's verdict takes a label, not a value", code="invalid_verdict")
    if request.label is None:
        return request
    known = {str(label): label for label in evaluation.class_labels or []}
    if str(request.label) not in known:
        raise UnprocessableError(
            f"label {str(request.label)[:40]!r} is not a class of {evaluation.model} v{evaluation.version}",
            code="unknown_label",
            details={"classes": list(known)[:100]},
        )
    label = known[str(request.label)]
    predicted = str(row.prediction.get("label"))
    if request.verdict == "correct" and str(label) != predicted:
        raise UnprocessableError(
            f"'correct' says the prediction {predicted!r} is right, but the label sent is {str(label)!r}",
            code="invalid_verdict",
        )
    if request.verdict == "incorrect" and str(label) == predicted:
        raise UnprocessableError(
            f"'incorrect' with the predicted label {predicted!r}: name the right label, or say 'correct'",
            code="invalid_verdict",
        )
    return request.model_copy(update={"label": label})


def _check_upload_key(model: str, key: str) -> str:
    from mlambda.schemas.registry_api import upload_key_model

    if upload_key_model(key) != model or not key.lower().endswith((".csv", ".parquet")):
        raise InvalidInputError(
            f"upload_key must be a .csv or .parquet upload of model '{model}' "
            f"(POST /models/{model}/uploads with kind 'evaluation')",
            code="invalid_upload_key",
        )
    return key


def _rows_to_columns(rows: Sequence[Mapping[str, Any]]) -> dict[str, np.ndarray]:
    """Request rows as object columns (a row lacking a column holds None there)."""
    names = list(dict.fromkeys(name for row in rows for name in row))
    columns: dict[str, np.ndarray] = {}
    for name in names:
        column = np.empty(len(rows), dtype=object)
        column[:] = [_scalar(row.get(name)) for row in rows]
        columns[name] = column
    return columns


def _scalar(value: Any) -> Any:
    """Context values of request rows: nested JSON is shown as JSON text."""
    if isinstance(value, dict | list):
        return json.dumps(value)[:1000]
    return value


def _traffic_columns(
    columns: Mapping[str, np.ndarray], features: Sequence[str]
) -> tuple[dict[str, np.ndarray], list[RowSource]]:
    """The rows the model served in an archive window (shadow and fallback answers left out): the
    feature columns by feature name, and where each row came from (record id, time, version)."""
    rows = len(next(iter(columns.values()))) if columns else 0
    keep = np.ones(rows, dtype=bool)
    for flag in ("shadow", "fallback"):
        if flag in columns:
            keep &= np.fromiter((not value for value in columns[flag].tolist()), dtype=bool, count=rows)
    selected = np.flatnonzero(keep)
    if not len(selected):
        return {}, []
    missing = [name for name in features if f"{FEATURE_PREFIX}{name}" not in columns]
    if missing:
        raise UnprocessableError(
            f"the archived traffic lacks feature(s) {', '.join(missing[:10])} of the evaluated version",
            code="missing_columns",
            details={"missing": missing[:100]},
        )
    picked = {name: np.asarray(columns[f"{FEATURE_PREFIX}{name}"])[selected] for name in features}
    ids = columns.get(TRAFFIC_ID)
    stamps = columns.get(TRAFFIC_TIME)
    versions = columns.get("version")
    served_at = tabular.timestamps(np.asarray(stamps)[selected]).tolist() if stamps is not None else None
    origins = []
    for n, position in enumerate(selected.tolist()):
        version = versions[position] if versions is not None else None
        at = served_at[n] if served_at is not None else None
        origins.append(
            RowSource(
                record_id=None if ids is None or ids[position] is None else str(ids[position])[:256],
                served_at=at.replace(tzinfo=UTC) if isinstance(at, datetime) else None,
                served_version=_version_number(version),
            )
        )
    return picked, origins


def _version_number(value: Any) -> int | None:
    """An archived ``version`` cell as a version number (None when absent or not a number)."""
    if isinstance(value, int | float | np.integer | np.floating) and math.isfinite(float(value)):
        return int(value)
    return None


def _reference_hidden(version: ModelVersion) -> list[str]:
    """Reference columns evaluators must not see: the true label would answer for them."""
    reference = getattr(version, "reference", None)
    target = getattr(reference, "target", None)
    return [target] if isinstance(target, str) else []
