"""The gate's evaluation requirement: a model with ``require_evaluation`` sends traffic (production,
an alias the endpoint serves, a split variant or the shadow) only to versions with a completed
human evaluation published beside them.

Not one of the gate's technical checks that ``force`` may override: it is the model owner's
policy, changed (and recorded in the history) with ``PATCH /models/{name}``. A publication only
counts for the artifact it evaluated (its sha256), so a model deleted and created again under
the same name never inherits the old versions' evaluations.
"""

from __future__ import annotations

from mlambda.errors import ConflictError
from mlambda.schemas.registry import ModelVersion, RegisteredModel
from mlambda.schemas.registry_api import GateCheck
from mlambda.services.evaluations.ports import EvaluationPublications


def evaluation_check(
    model: RegisteredModel,
    target: ModelVersion,
    publications: EvaluationPublications | None,
    *,
    where: str = "production",
) -> GateCheck | None:
    """None when ``model`` requires no evaluation; else the passing check naming the latest
    completed evaluation of ``target``, or ConflictError (409 ``evaluation_required``) when
    ``target`` has none and was to take traffic as ``where`` (production, an endpoint target...)."""
    if not model.require_evaluation:
        return None
    found = [
        p
        for p in (publications.published(model.name, target.version) if publications is not None else [])
        if p.artifact_sha256 == target.artifact_sha256
    ]
    if not found:
        raise ConflictError(
            f"model '{model.name}' requires a completed human evaluation of every version that takes "
            f"traffic, and v{target.version} ({where}) has none: create one (POST "
            f"/models/{model.name}/evaluations with version {target.version}), have it judged, then complete it",
            code="evaluation_required",
            details={
                "model": model.name,
                "version": target.version,
                "requirement": "require_evaluation",
                "where": where,
            },
        )
    latest = found[0]
    agreement = "n/a" if latest.agreement is None else f"{latest.agreement:.0%}"
    return GateCheck(
        name="evaluation_completed",
        passed=True,
        message=(
            f"evaluation {latest.evaluation_id} completed {latest.completed_at:%Y-%m-%d} by "
            f"{', '.join(latest.evaluators)}: {latest.rows_judged}/{latest.rows} rows judged, "
            f"agreement {agreement}"
        ),
    )
