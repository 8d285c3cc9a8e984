"""What goes to the archive queue and how the archiver lays it out as Parquet (the offline store).

Ingest sends its events to the archive queue as ``ArchiveEnvelope`` s, JSON lists of them
packed under ``MESSAGE_BUDGET`` per message (``pack``); predict's prediction log reaches the
archiver through its log subscription instead (``mlambda.schemas.prediction_log``) and is
expanded into the same envelopes. The archiver writes each batch as Parquet objects under
``type=<type>/[model=<model>/]date=YYYY-MM-DD/hour=HH/part-<digest>.parquet`` in the data
bucket, one row per envelope, with ``flatten_payload`` turning the payload into columns:
nested mappings become dotted column names (``features.age``, ``prediction.proba.1``).
Monitoring and the point-in-time helper read those columns back.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

ArchiveType = Literal["feature_update", "interaction", "label", "prediction"]
Scalar = str | int | float | bool | None

PREDICTION_TYPE: ArchiveType = "prediction"
SQS_MESSAGE_LIMIT = 256 * 1024
MESSAGE_BUDGET = SQS_MESSAGE_LIMIT - 8 * 1024  # headroom for SQS's own attribute accounting


class ArchiveEnvelope(BaseModel):
    """One archived record: an accepted event or a served/shadow prediction (one row of it)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(
        min_length=1, max_length=256, description="event_id, or '<request_id>:<row>' for predictions"
    )
    type: ArchiveType
    timestamp: datetime = Field(description="event time (events) or serving time (predictions), UTC")
    entity_id: str | None = None
    model: str | None = Field(None, description="model name; set for predictions (partition key)")
    payload: dict[str, Any] = Field(default_factory=dict)

    @field_validator("timestamp")
    @classmethod
    def _utc(cls, value: datetime) -> datetime:
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def flatten_payload(payload: Mapping[str, Any], prefix: str = "") -> dict[str, Scalar]:
    """Nested mappings as dotted columns; lists become JSON text (Parquet columns stay scalar)."""
    import json

    flat: dict[str, Scalar] = {}
    for key, value in payload.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten_payload(value, f"{name}."))
        elif isinstance(value, list | tuple):
            flat[name] = json.dumps(value, default=str)
        else:
            flat[name] = value
    return flat


def partition_prefix(envelope: ArchiveEnvelope) -> str:
    """The Hive-style folder an envelope's row lands in."""
    ts = envelope.timestamp
    model = f"model={envelope.model}/" if envelope.type == PREDICTION_TYPE and envelope.model else ""
    return f"type={envelope.type}/{model}date={ts:%Y-%m-%d}/hour={ts:%H}/"


def archive_row(envelope: ArchiveEnvelope) -> dict[str, Any]:
    """One Parquet row: the envelope's own fields, then its flattened payload (envelope fields win)."""
    return {
        **flatten_payload(envelope.payload),
        "id": envelope.id,
        "type": envelope.type,
        "timestamp": envelope.timestamp,
        "entity_id": envelope.entity_id,
        "model": envelope.model,
    }


def object_key(prefix: str, ids: Iterable[str]) -> str:
    """``<prefix>part-<digest>.parquet``, the digest of the sorted row ids: the same rows, the same
    object, so a redelivered batch overwrites what it wrote instead of adding a copy."""
    digest = hashlib.sha256("\n".join(sorted(ids)).encode()).hexdigest()[:32]
    return f"{prefix}part-{digest}.parquet"


def pack(records: Sequence[bytes], budget: int = MESSAGE_BUDGET) -> list[tuple[range, str]]:
    """Serialised envelopes as JSON-list message bodies, each under ``budget`` bytes, with the
    positions of the records each holds (so a sender knows which records a failed send left out)."""
    bodies: list[tuple[range, str]] = []
    current: list[bytes] = []
    start = 0
    size = 2
    for index, record in enumerate(records):
        if current and size + len(record) + 1 > budget:
            bodies.append((range(start, index), (b"[" + b",".join(current) + b"]").decode()))
            current, start, size = [], index, 2
        current.append(record)
        size += len(record) + 1
    if current:
        bodies.append((range(start, len(records)), (b"[" + b",".join(current) + b"]").decode()))
    return bodies
