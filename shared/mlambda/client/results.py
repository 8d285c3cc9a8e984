"""What some SDK calls answer beyond the API's JSON: predictions in one shape whatever the
request format, and the totals of a chunked event upload."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

Json = dict[str, Any]


@dataclass(frozen=True)
class Predictions:
    """One predict answer, columnar: ``predictions[i]`` is row i's label (classifiers) or value
    (regressors), None for a row the serving rules removed; classifiers add ``classes`` and
    ``probabilities[i]`` (in ``classes`` order); ``annotations[i]`` holds what the rules or an
    explanation added to row i (``decision``, ``excluded``, ``fallback``, ``explanation``...)."""

    model: str
    version: int
    variant: str
    request_id: str
    cached: bool
    predictions: list[Any]
    classes: list[str] | None = None
    probabilities: list[list[float]] | None = None
    annotations: list[Json] | None = None
    raw: Json = field(default_factory=dict, repr=False)

    @classmethod
    def from_response(cls, body: Mapping[str, Any]) -> Predictions:
        """Either answer shape: MLflow's (a list of labels/values) or mlambda's (an object per row)."""
        rows = list(body.get("predictions") or [])
        header = cls(
            model=str(body.get("model", "")),
            version=int(body.get("version", 0)),
            variant=str(body.get("variant", "")),
            request_id=str(body.get("request_id", "")),
            cached=bool(body.get("cached", False)),
            predictions=[],
            raw=dict(body),
        )
        if not rows or not isinstance(rows[0], dict):
            probabilities = body.get("probabilities")
            return replace(
                header,
                predictions=rows,
                classes=body.get("classes"),
                probabilities=None if probabilities is None else [list(p) for p in probabilities],
                annotations=body.get("annotations"),
            )
        classes = next((list(row["probabilities"]) for row in rows if row.get("probabilities")), None)
        values, probabilities_rows, annotations = [], [], []
        for row in rows:
            values.append(row.get("label", row.get("value")))
            given = row.get("probabilities") or {}
            probabilities_rows.append([float(given[c]) for c in classes] if classes and given else [])
            annotations.append({k: v for k, v in row.items() if k not in ("label", "value", "probabilities")})
        return replace(
            header,
            predictions=values,
            classes=classes,
            probabilities=probabilities_rows if classes else None,
            annotations=annotations if any(annotations) else None,
        )

    def __len__(self) -> int:
        return len(self.predictions)

    def rows(self) -> list[Json]:
        """One object per row: ``label`` or ``value``, ``probabilities`` by class, and the annotations."""
        key = "label" if self.classes is not None else "value"
        out: list[Json] = []
        for index, value in enumerate(self.predictions):
            row: Json = {key: value}
            if self.classes is not None and self.probabilities and self.probabilities[index]:
                row["probabilities"] = dict(zip(self.classes, self.probabilities[index], strict=True))
            if self.annotations:
                row.update(self.annotations[index])
            out.append(row)
        return out

    def columns(self) -> Json:
        """The predictions as flat columns (``label``/``value``, ``proba_<class>``...): a CSV's or a
        DataFrame's, one list per column."""
        key = "label" if self.classes is not None else "value"
        out: Json = {key: list(self.predictions)}
        for index, label in enumerate(self.classes or []):
            out[f"proba_{label}"] = [p[index] if p else None for p in self.probabilities or []]
        for name in sorted({k for a in self.annotations or [] for k in a if k != "explanation"}):
            out[name] = [a.get(name) for a in self.annotations or []]
        return out

    def to_frame(self, index: Any = None) -> Any:
        """The flat columns as a pandas DataFrame (pandas imported here: the SDK does not need it)."""
        import pandas as pd

        return pd.DataFrame(self.columns(), index=index)


@dataclass
class EventTotals:
    """What a chunked ``send_events`` did: counts over every request, rejections indexed over all events."""

    accepted: int = 0
    duplicates: int = 0
    rejected: int = 0
    requests: int = 0
    rejections: list[Json] = field(default_factory=list)

    def as_json(self) -> Json:
        """The totals as the CLI prints them."""
        return {
            "accepted": self.accepted,
            "duplicates": self.duplicates,
            "rejected": self.rejected,
            "requests": self.requests,
            "rejections": self.rejections,
        }


@dataclass(frozen=True)
class Fetched:
    """What ``fetch_job`` wrote."""

    path: str
    rows: int
    parts: int
    rejects_path: str | None = None
    rows_rejected: int = 0
