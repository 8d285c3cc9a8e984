"""Serving rules applied around the model: data from the registry (``ServingRules``), never code.

- ``exclude_recently_seen``: rows whose item the entity saw (viewed/rendered...) within the
  window are not scored and answer ``{"excluded": "recently_seen"}``.
- ``decision``: a score (a class probability, or the regression value) mapped to a label by
  thresholds; the highest threshold at or below the score wins.
- ``fallback``: the answer for every row when the model fails or exceeds ``timeout_ms``, and for
  entities that opted out (when ``honour_opt_out``); without a fallback an opted-out entity
  gets 403 ``opted_out`` and a model failure is an error.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from mlambda.errors import ForbiddenError
from mlambda.schemas.registry import DecisionRule, EnrichItems, ExcludeRecentlySeen, ServingRules

EXCLUDED_RECENTLY_SEEN = "recently_seen"


def score_of(rule: DecisionRule, prediction: Mapping[str, Any]) -> float | None:
    """The number the rule thresholds: the regression value, or one class's probability.

    Classifiers score the probability of ``score_of_class``; without it, the last class (the
    positive class of a binary model). None when the prediction has no such number.
    """
    if "value" in prediction:
        return float(prediction["value"])
    probabilities: Mapping[str, float] | None = prediction.get("probabilities")
    if not probabilities:
        return None
    if rule.score_of_class is None:
        return float(list(probabilities.values())[-1])
    value = probabilities.get(str(rule.score_of_class))
    return None if value is None else float(value)


def decide(rule: DecisionRule, prediction: Mapping[str, Any]) -> str:
    """The decision for one prediction (thresholds are sorted ascending on write)."""
    score = score_of(rule, prediction)
    if score is None:
        return rule.default
    decision = rule.default
    for threshold in rule.thresholds:
        if score >= threshold.min_score:
            decision = threshold.decision
        else:
            break
    return decision


def with_decisions(rules: ServingRules, predictions: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``predictions`` with ``decision`` added to each model prediction (excluded/fallback rows untouched)."""
    rule = rules.decision
    if rule is None:
        return predictions
    return [
        {**p, "decision": decide(rule, p)} if "excluded" not in p and "fallback" not in p else p
        for p in predictions
    ]


def excluded_rows(rule: ExcludeRecentlySeen, rows: Sequence[Mapping[str, Any]], seen: set[str]) -> set[int]:
    """Indexes of rows whose item is in ``seen``."""
    if not seen:
        return set()
    return {
        index
        for index, row in enumerate(rows)
        if row.get(rule.item_field) is not None and str(row[rule.item_field]) in seen
    }


def fallback_prediction(rules: ServingRules, reason: str) -> dict[str, Any] | None:
    """The fallback answer for one row, marked with why it was given; None without a fallback rule."""
    if rules.fallback is None:
        return None
    return {**rules.fallback.response, "fallback": reason}


def opted_out_answer(rules: ServingRules, rows: int) -> list[dict[str, Any]]:
    """What an opted-out entity gets: the fallback for every row, or 403 when there is none."""
    answer = fallback_prediction(rules, "opted_out")
    if answer is None:
        raise ForbiddenError("this entity opted out of personalised predictions", code="opted_out")
    return [dict(answer) for _ in range(rows)]


def enriched(
    rule: EnrichItems,
    rows: Sequence[Mapping[str, Any]],
    predictions: list[dict[str, Any]],
    metadata: Mapping[str, Mapping[str, Any]],
) -> list[dict[str, Any]]:
    """Each served prediction of a row naming an item, with ``item``: its attributes (None if unknown)."""
    wanted = rule.attributes
    out: list[dict[str, Any]] = []
    for row, prediction in zip(rows, predictions, strict=True):
        item_id = row.get(rule.item_field)
        if item_id is None or "excluded" in prediction:
            out.append(prediction)
            continue
        attributes = metadata.get(str(item_id))
        if attributes is not None and wanted:
            attributes = {k: attributes[k] for k in wanted if k in attributes}
        out.append({**prediction, "item": None if attributes is None else dict(attributes)})
    return out


def item_ids(rule: EnrichItems, rows: Sequence[Mapping[str, Any]]) -> list[str]:
    """The distinct item ids the rows name, in order."""
    return list(dict.fromkeys(str(r[rule.item_field]) for r in rows if r.get(rule.item_field) is not None))
