"""Human evaluations: ``/models/{name}/evaluations`` and ``/evaluations/{id}...``.

Scopes (``admin`` may do everything):

- ``registry:write`` creates, completes and cancels evaluations: these decide what a version is
  judged on and publish results to the registry, where the production gate reads them, so they
  belong to whoever may promote the model;
- ``evaluate`` records verdicts (the evaluator is the API key's name): people who judge a model
  need not be able to change the registry;
- either reads evaluations, rows, verdicts and results (an evaluator sees only their own verdicts
  while an evaluation is open);
- ``registry:read`` reads the evaluations published to a version.
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Annotated, Any

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.openapi.params import Body, Query
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext

from mlambda.api import BOOLEAN_TEXT, INTEGER_TEXT, RouteDoc, ScopedResolver, needs
from mlambda.config import EvaluationsSettings
from mlambda.errors import InvalidInputError, NotFoundError
from mlambda.observability import logger
from mlambda.schemas.bounds import MAX_PAGE_TOKEN, is_decimal_text
from mlambda.schemas.evaluations import (
    MAX_PAGE,
    CancelRequest,
    CompleteRequest,
    CreateEvaluationRequest,
    Evaluation,
    EvaluationPage,
    EvaluationResults,
    EvaluationStatus,
    PublishedPage,
    RowPage,
    RowView,
    VerdictAnswer,
    VerdictHistory,
    VerdictPage,
    VerdictRequest,
)
from mlambda.schemas.keys import Principal, Scope
from mlambda.services.evaluations.service import EvaluationService

app = ScopedResolver()
MANAGE = needs(Scope.REGISTRY_WRITE)
READ = needs(Scope.EVALUATE, Scope.REGISTRY_WRITE)
JUDGE = needs(Scope.EVALUATE)

Limit = Annotated[int, INTEGER_TEXT, Query(ge=1, le=MAX_PAGE)]
Token = Annotated[str | None, Query(max_length=MAX_PAGE_TOKEN)]
EVALUATOR_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}$")


@lru_cache(maxsize=1)
def service() -> EvaluationService:
    """Built on first use (its model sessions and explainers cached) while the function is warm."""
    return EvaluationService.from_settings(EvaluationsSettings.load())


def evaluator() -> str:
    """The caller's name as an evaluator (its verdicts are keyed by it)."""
    caller = app.caller()
    if not EVALUATOR_NAME.match(caller.name):
        raise InvalidInputError(
            "this key's name cannot identify an evaluator: use 1-64 letters, digits, '_', '.', '@' or '-'",
            code="invalid_evaluator",
        )
    return caller.name


def sees_all(caller: Principal) -> bool:
    """Managers see every verdict of an open evaluation; evaluators only their own."""
    return caller.allows(Scope.REGISTRY_WRITE)


def _index(index: str) -> int:
    if not is_decimal_text(index) or len(index) > 6:
        raise NotFoundError(f"no row {index[:20]!r}", code="row_not_found")
    return int(index)


@app.post("/models/<name>/evaluations", MANAGE, RouteDoc(answer=Evaluation, statuses=(201, 200)))
def create_evaluation(name: str, body: Annotated[CreateEvaluationRequest, Body()]) -> Response[str]:
    """Draw rows from the source, score (and explain) them with the version: 201, or 200 for a resent ``request_id``."""
    evaluation, created = service().create(name, body, app.caller().name)
    return Response(
        status_code=201 if created else 200,
        content_type="application/json",
        body=evaluation.model_dump_json(),
    )


@app.get("/models/<name>/evaluations", READ)
def list_evaluations(
    name: str,
    status: Annotated[EvaluationStatus | None, Query()] = None,
    limit: Limit = 20,
    next_token: Token = None,
) -> EvaluationPage:
    """The model's evaluations, newest first."""
    return service().list_evaluations(name, status=status, limit=limit, token=next_token)


@app.get("/models/<name>/versions/<version>/evaluations", needs(Scope.REGISTRY_READ))
def published_evaluations(name: str, version: str) -> PublishedPage:
    """The completed evaluations published to the version (newest first)."""
    number = version.removeprefix("v")
    if not is_decimal_text(number) or int(number) < 1 or len(number) > 10:
        raise InvalidInputError(f"version must read 3 or v3, got {version[:20]!r}", code="invalid_version")
    return service().published(name, int(number))


@app.get("/evaluations/<evaluation_id>", READ)
def get_evaluation(evaluation_id: str) -> Evaluation:
    """One evaluation: what is judged and how far the judging got (results once completed)."""
    return service().get(evaluation_id)


@app.get("/evaluations/<evaluation_id>/rows", READ)
def list_rows(
    evaluation_id: str,
    limit: Limit = 20,
    next_token: Token = None,
    todo: Annotated[bool, BOOLEAN_TEXT, Query()] = False,
) -> RowPage:
    """Rows in order with the caller's verdicts; ``todo=true``: only rows the caller has not judged."""
    caller = app.caller()
    return service().rows(evaluation_id, caller.name, limit=limit, token=next_token, todo=todo)


@app.get("/evaluations/<evaluation_id>/rows/<index>", READ)
def get_row(evaluation_id: str, index: str) -> RowView:
    """One row: input, prediction, explanation and the caller's verdict."""
    caller = app.caller()
    return service().row(evaluation_id, _index(index), caller.name)


@app.put("/evaluations/<evaluation_id>/rows/<index>/verdict", JUDGE)
def put_verdict(evaluation_id: str, index: str, body: Annotated[VerdictRequest, Body()]) -> VerdictAnswer:
    """The caller's verdict on the row; the same one sent again changes nothing."""
    name = evaluator()
    return service().record_verdict(evaluation_id, _index(index), body, name)


@app.get("/evaluations/<evaluation_id>/rows/<index>/history", READ)
def row_history(evaluation_id: str, index: str) -> VerdictHistory:
    """Every revision of the row's verdicts, oldest first."""
    caller = app.caller()
    return service().history(evaluation_id, _index(index), caller.name, sees_all=sees_all(caller))


@app.get("/evaluations/<evaluation_id>/verdicts", READ)
def list_verdicts(evaluation_id: str, limit: Limit = 50, next_token: Token = None) -> VerdictPage:
    """Current verdicts with their comments, in row order."""
    caller = app.caller()
    return service().verdicts(
        evaluation_id, caller.name, sees_all=sees_all(caller), limit=limit, token=next_token
    )


@app.get("/evaluations/<evaluation_id>/results", READ)
def results(evaluation_id: str) -> EvaluationResults:
    """Coverage, agreement, per-class figures, evaluators' agreement and comments (so far, while open:
    an evaluator's own)."""
    caller = app.caller()
    return service().results(evaluation_id, caller.name, sees_all=sees_all(caller))


@app.post("/evaluations/<evaluation_id>/complete", MANAGE)
def complete(evaluation_id: str, body: Annotated[CompleteRequest, Body()]) -> Evaluation:
    """Close the evaluation and publish its results to the version."""
    caller = app.caller()
    return service().complete(evaluation_id, body, caller.name)


@app.post("/evaluations/<evaluation_id>/cancel", MANAGE)
def cancel(evaluation_id: str, body: Annotated[CancelRequest, Body()]) -> Evaluation:
    """Abandon an open evaluation (nothing is published)."""
    caller = app.caller()
    return service().cancel(evaluation_id, body, caller.name)


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_REST)
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    """Route the request."""
    return app.resolve(event, context)
