"""The prediction log record: what predict writes to its output for each request, and what the archiver reads.

Predict does no network call to log: it writes one JSON line per request to stdout (its
CloudWatch log stream), and a CloudWatch Logs subscription filter (``template.yaml``: predict's
log group -> the archiver, pattern ``{ $.mlambda_log = "prediction" }``) delivers the lines.
The archiver turns each record back into one archive row per served and per shadow prediction
(``expand``), with the same ids and payload as before (``<request_id>:<row>``,
``<request_id>:<row>:shadow``), so the lake and monitoring read what they always read.

One record per request, the inputs as a columnar block (``columns`` + ``values``, one list per
row), so a 1,000-row request is one header and a matrix rather than 1,000 envelopes. A record
over ``PIECE_BYTES`` (CloudWatch Logs' 256 KB event limit, with room to spare) is written in
pieces (``piece`` of ``pieces``), each a complete record for a run of rows. A single row too
large for an event is stored in the data bucket and its piece carries only ``ref``, the
object's key (which holds that row's piece); nothing is dropped.

Shape (``v`` 1)::

    {"mlambda_log": "prediction", "v": 1, "request_id": "…", "piece": 0, "pieces": 1,
     "model": "churn", "timestamp": "2026-01-01T00:00:00.123456+00:00", "entity_id": null,
     "row_count": 2,
     "served": {"version": 3, "variant": "main", "latency_ms": 0.41},
     "shadow": {"version": 4, "variant": "shadow:staging", "latency_ms": 0.2},   # optional
     "rows": [0, 1],                                # request positions of this piece's rows
     "columns": ["f0", "f1"], "values": [[0.1, 2], [0.3, 4]],
     "predictions": [{"label": 1, "probabilities": {"0": 0.2, "1": 0.8}}, …],
     "shadow_predictions": [{…}, …]}                 # with "shadow"
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from mlambda.schemas.archive import PREDICTION_TYPE, ArchiveEnvelope

RECORD_KIND = "prediction"
RECORD_MARKER = "mlambda_log"
"""The key whose value is ``RECORD_KIND``: what the subscription filter matches on."""
FILTER_PATTERN = f'{{ $.{RECORD_MARKER} = "{RECORD_KIND}" }}'
PIECE_BYTES = 256 * 1024 - 2048
"""A piece's JSON stays under CloudWatch Logs' event limit (262,144 bytes, 26 of them overhead)."""
OVERFLOW_PREFIX = "prediction-log/overflow/"
"""Where rows too large for one log event are stored in the data bucket (by ``ref``)."""


class ScoredBy(BaseModel):
    """The version that answered (served) or shadowed the rows, and how long it took."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    version: int = Field(ge=1)
    variant: str = Field(min_length=1, max_length=128)
    latency_ms: float = Field(ge=0)


class PredictionLogRecord(BaseModel):
    """One piece of a request's prediction log record (see the module doc)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    mlambda_log: Literal["prediction"]
    v: Literal[1]
    request_id: str = Field(min_length=1, max_length=200)
    piece: int = Field(ge=0)
    pieces: int = Field(ge=1, le=100_000)
    model: str = Field(min_length=1, max_length=256)
    timestamp: datetime
    entity_id: str | None = Field(None, max_length=256)
    row_count: int = Field(ge=0)
    served: ScoredBy
    shadow: ScoredBy | None = None
    rows: list[int]
    columns: list[str] = Field(default_factory=list)
    values: list[list[Any]] = Field(default_factory=list)
    predictions: list[dict[str, Any]] = Field(default_factory=list)
    shadow_predictions: list[dict[str, Any]] | None = None
    ref: str | None = Field(None, description="data bucket key of this piece, when its row was too large")
    features_truncated_bytes: int | None = Field(
        None, description="set when a too-large row could not be stored: its features are not logged"
    )

    @field_validator("timestamp")
    @classmethod
    def _utc(cls, value: datetime) -> datetime:
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)

    @model_validator(mode="after")
    def _consistent(self) -> PredictionLogRecord:
        if self.piece >= self.pieces:
            raise ValueError(f"piece {self.piece} of {self.pieces}")
        if self.ref is not None:
            if not self.ref.startswith(OVERFLOW_PREFIX) or ".." in self.ref:
                raise ValueError("ref must name an object under the overflow prefix")
            return self
        rows = len(self.rows)
        if len(self.predictions) != rows:
            raise ValueError(f"{len(self.predictions)} predictions for {rows} rows")
        if self.features_truncated_bytes is None and (
            len(self.values) != rows or any(len(values) != len(self.columns) for values in self.values)
        ):
            raise ValueError("values must hold one list per row, one value per column")
        if (self.shadow is None) != (self.shadow_predictions is None):
            raise ValueError("shadow and shadow_predictions go together")
        if self.shadow_predictions is not None and len(self.shadow_predictions) != rows:
            raise ValueError(f"{len(self.shadow_predictions)} shadow predictions for {rows} rows")
        return self

    @property
    def features(self) -> list[dict[str, Any]]:
        """Each row's features by name (``{}`` for rows whose features were too large to keep)."""
        if self.features_truncated_bytes is not None:
            return [{} for _ in self.rows]
        columns = self.columns
        return [dict(zip(columns, values, strict=True)) for values in self.values]


def prediction_envelope(
    *,
    request_id: str,
    row: int,
    model: str,
    version: int,
    variant: str,
    shadow: bool,
    timestamp: datetime,
    entity_id: str | None,
    features: Mapping[str, Any],
    prediction: Mapping[str, Any],
    latency_ms: float,
    features_truncated_bytes: int | None = None,
) -> ArchiveEnvelope:
    """One served or shadow row as the archive stores it (the payload monitoring reads).

    ``fallback`` is why the endpoint's fallback answered instead of a model (None: the model
    answered; predict puts the reason in the answer's ``fallback``): monitoring keeps those rows
    out of drift and quality figures and counts them apart.
    """
    payload: dict[str, Any] = {
        "request_id": request_id,
        "row": row,
        "version": version,
        "variant": variant,
        "shadow": shadow,
        "features": features,
        "prediction": prediction,
        "latency_ms": latency_ms,
        "fallback": prediction.get("fallback"),
    }
    if features_truncated_bytes is not None:
        payload["features_truncated_bytes"] = features_truncated_bytes
    # Built from a validated record: no second validation per row (thousands per request).
    return ArchiveEnvelope.model_construct(
        id=f"{request_id}:{row}:shadow" if shadow else f"{request_id}:{row}",
        type=PREDICTION_TYPE,
        timestamp=timestamp,
        entity_id=entity_id,
        model=model,
        payload=payload,
    )


def expand(record: PredictionLogRecord) -> list[ArchiveEnvelope]:
    """The archive rows of one (non-reference) piece: its served rows, then its shadow rows."""
    if record.ref is not None:
        raise ValueError("a reference piece is expanded once its object is read")
    features = record.features
    answered = [(record.served, record.predictions, False)]
    if record.shadow is not None and record.shadow_predictions is not None:
        answered.append((record.shadow, record.shadow_predictions, True))
    return [
        prediction_envelope(
            request_id=record.request_id,
            row=row,
            model=record.model,
            version=scored_by.version,
            variant=scored_by.variant,
            shadow=shadow,
            timestamp=record.timestamp,
            entity_id=record.entity_id,
            features=row_features,
            prediction=prediction,
            latency_ms=scored_by.latency_ms,
            features_truncated_bytes=record.features_truncated_bytes,
        )
        for scored_by, answers, shadow in answered
        for row, row_features, prediction in zip(record.rows, features, answers, strict=True)
    ]
