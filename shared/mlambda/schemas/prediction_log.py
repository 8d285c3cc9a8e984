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

``v`` 2 is the columnar request path's record (``dataframe_split``, tensors, Open Inference
Protocol): the same header, ``values`` as the matrix the model scored, and the predictions as one
block of columns instead of an object per row (``shadow_predictions`` likewise). Numeric arrays
are ``EncodedArray``: base64 of their little-endian bytes with dtype and shape, which costs a
tenth of writing the numbers as JSON text (0.15 ms against 1.0 ms for 1,000 x 20 float32, the
largest cost of the columnar path after the model and the parse) and half the bytes::

     "values": {"dtype": "float32", "shape": [2, 20], "base64": "…"},
     "predictions": {"label": {"dtype": "int64", "shape": [2], "base64": "…"}, "classes": ["0", "1"],
                     "probabilities": {"dtype": "float32", "shape": [2, 2], "base64": "…"}}
     "predictions": {"value": {"dtype": "float64", "shape": [2], "base64": "…"}}    # regressors

Plain JSON lists are read too; labels that are strings stay a list; ``predictions`` is a list of
objects when the endpoint's fallback answered. ``expand`` turns both versions into
the same archive rows, so the archiver, the lake and monitoring read either.
"""

from __future__ import annotations

import base64
import binascii
import math
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, Literal

import numpy as np
import orjson
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


ENCODED_DTYPES = {"float32": "<f4", "float64": "<f8", "int64": "<i8", "int32": "<i4"}
_DTYPE_NAMES = {np.dtype(code): name for name, code in ENCODED_DTYPES.items()}


class EncodedArray(BaseModel):
    """A numeric array as base64 of its little-endian bytes (C order), with its dtype and shape."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    dtype: Literal["float32", "float64", "int64", "int32"]
    shape: list[int] = Field(min_length=1, max_length=2)
    base64: str

    @model_validator(mode="after")
    def _size(self) -> EncodedArray:
        if any(d < 0 for d in self.shape):
            raise ValueError("shape dimensions must be 0 or more")
        expected = math.prod(self.shape) * np.dtype(ENCODED_DTYPES[self.dtype]).itemsize
        if len(self.base64) != 4 * math.ceil(expected / 3):
            raise ValueError(f"base64 must hold {expected} bytes for shape {self.shape} of {self.dtype}")
        return self

    @classmethod
    def of(cls, array: np.ndarray) -> dict[str, Any]:
        """The JSON form of ``array`` (what the writer emits; orjson writes the dict).

        The base64 text goes in as an ``orjson.Fragment`` straight from the array's buffer: no
        copy to bytes, to str and back (a 1,000 x 20 block is 107 KB of it, on every columnar request).
        """
        name = _DTYPE_NAMES.get(array.dtype) or array.dtype.name  # .name is a Python property
        little = np.ascontiguousarray(array, dtype=ENCODED_DTYPES[name])
        return {
            "dtype": name,
            "shape": list(array.shape),
            "base64": orjson.Fragment(b'"' + base64.b64encode(little.data) + b'"'),
        }

    def array(self) -> np.ndarray:
        """The decoded array."""
        try:
            raw = base64.b64decode(self.base64, validate=True)
        except binascii.Error as exc:
            raise ValueError(f"base64 is not valid: {exc}") from exc
        return np.frombuffer(raw, dtype=ENCODED_DTYPES[self.dtype]).reshape(self.shape)

    def tolist(self) -> list[Any]:
        """The values as Python numbers (nested for a matrix)."""
        values: list[Any] = self.array().tolist()
        return values

    def __len__(self) -> int:
        return self.shape[0]


def _plain(values: list[Any] | EncodedArray) -> list[Any]:
    return values.tolist() if isinstance(values, EncodedArray) else values


class PredictionBlock(BaseModel):
    """A piece's predictions as columns (``v`` 2): labels + class probabilities, or values."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    label: list[Any] | EncodedArray | None = None
    classes: list[str] | None = None
    probabilities: list[list[float]] | EncodedArray | None = None
    value: list[float] | EncodedArray | None = None

    @model_validator(mode="after")
    def _one_kind(self) -> PredictionBlock:
        if self.value is None:
            if self.label is None or self.classes is None or self.probabilities is None:
                raise ValueError("a block holds 'value', or 'label' with 'classes' and 'probabilities'")
            probabilities = self.probabilities
            widths = (
                {probabilities.shape[-1]}
                if isinstance(probabilities, EncodedArray)
                else {len(row) for row in probabilities}
            )
            if len(probabilities) != len(self.label) or not widths <= {len(self.classes)}:
                raise ValueError("probabilities must hold one list per label, one value per class")
        elif self.label is not None or self.probabilities is not None:
            raise ValueError("a block holds 'value', or 'label' with 'classes' and 'probabilities'")
        return self

    def __len__(self) -> int:
        return len(self.value if self.value is not None else self.label or [])

    def as_rows(self) -> list[dict[str, Any]]:
        """One prediction object per row, as predict answers them (``{label, probabilities}`` or ``{value}``)."""
        if self.value is not None:
            return [{"value": v} for v in _plain(self.value)]
        classes = self.classes or []
        return [
            {"label": label, "probabilities": dict(zip(classes, row, strict=True))}
            for label, row in zip(_plain(self.label or []), _plain(self.probabilities or []), strict=True)
        ]


class PredictionLogRecord(BaseModel):
    """One piece of a request's prediction log record (see the module doc)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    mlambda_log: Literal["prediction"]
    v: Literal[1, 2]
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
    values: list[list[Any]] | EncodedArray = Field(default_factory=list)
    predictions: list[dict[str, Any]] | PredictionBlock = Field(default_factory=list)
    shadow_predictions: list[dict[str, Any]] | PredictionBlock | None = None
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
        if self.v == 1 and (
            isinstance(self.predictions, PredictionBlock)
            or isinstance(self.shadow_predictions, PredictionBlock)
        ):
            raise ValueError("predictions as columns need v 2")
        if len(self.predictions) != rows:
            raise ValueError(f"{len(self.predictions)} predictions for {rows} rows")
        if isinstance(self.values, EncodedArray):
            if self.v == 1 or self.values.shape != [rows, len(self.columns)]:
                raise ValueError("values must hold one row per row, one value per column (v 2)")
        elif self.features_truncated_bytes is None and (
            len(self.values) != rows or any(len(values) != len(self.columns) for values in self.values)
        ):
            raise ValueError("values must hold one list per row, one value per column")
        if (self.shadow is None) != (self.shadow_predictions is None):
            raise ValueError("shadow and shadow_predictions go together")
        if self.shadow_predictions is not None and len(self.shadow_predictions) != rows:
            raise ValueError(f"{len(self.shadow_predictions)} shadow predictions for {rows} rows")
        return self

    @property
    def served_predictions(self) -> list[dict[str, Any]]:
        """The served prediction of each row, as an object (whichever form the record holds)."""
        return _as_rows(self.predictions)

    @property
    def features(self) -> list[dict[str, Any]]:
        """Each row's features by name (``{}`` for rows whose features were too large to keep)."""
        if self.features_truncated_bytes is not None:
            return [{} for _ in self.rows]
        columns = self.columns
        return [dict(zip(columns, values, strict=True)) for values in _plain(self.values)]


def _as_rows(predictions: list[dict[str, Any]] | PredictionBlock) -> list[dict[str, Any]]:
    return predictions.as_rows() if isinstance(predictions, PredictionBlock) else predictions


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
    answered = [(record.served, record.served_predictions, False)]
    if record.shadow is not None and record.shadow_predictions is not None:
        answered.append((record.shadow, _as_rows(record.shadow_predictions), True))
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
