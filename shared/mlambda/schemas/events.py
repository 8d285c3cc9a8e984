"""``POST /events``, ``POST /items`` and the ingestion results: the event contract client apps send.

An event is ``{event_id, type, entity_id, timestamp, payload}``; the payload's shape depends on
``type``:

- ``feature_update``: ``{group, values, ttl_seconds?, add?}``: the latest values of one feature
  group of the entity (replacing the group's previous values, if older), an optional lifetime
  of those values, and optional increments of the entity's running sums (``sum_<name>``);
- ``interaction``: ``{kind, item_id?, request_id?}``: click / view / render on an item (the item
  is required for those), or opt_in / opt_out of personalised predictions;
- ``label``: ``{request_id, value, row?}``: the ground truth of row ``row`` (default 0) of the
  prediction answered with ``request_id``; monitoring joins labels to predictions on it.

Events are validated one by one (a bad event never fails its batch) so the models here are
used through ``validate_event``, which returns either the event or the reason it is rejected.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

import orjson
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    PlainValidator,
    TypeAdapter,
    ValidationError,
    WithJsonSchema,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from mlambda.schemas.bounds import (
    SCALAR_JSON_SCHEMA,
    Name,
    Scalar,
    StorableFloat,
    bounded_number,
    dynamo_size,
    scalar,
)

EventType = Literal["feature_update", "interaction", "label"]
InteractionKind = Literal["click", "view", "render", "opt_in", "opt_out"]
ITEM_KINDS: frozenset[str] = frozenset({"click", "view", "render"})
CONSENT_KINDS: frozenset[str] = frozenset({"opt_in", "opt_out"})
IDENTIFIER = r"^[A-Za-z0-9][A-Za-z0-9._:@/-]{0,255}$"
NAME = r"^[A-Za-z_][A-Za-z0-9_]{0,63}$"
EventId = Annotated[
    str, Field(pattern=IDENTIFIER, max_length=128, description="client-generated, for dedupe")
]
EntityId = Annotated[str, Field(pattern=IDENTIFIER, description="user, account, device...")]
ItemId = Annotated[str, Field(pattern=IDENTIFIER)]
RequestId = Annotated[str, Field(pattern=r"^[A-Za-z0-9._:-]{1,128}$")]
GroupName = Annotated[str, Field(pattern=NAME)]


def _utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _is_name(name: str) -> bool:
    return re.fullmatch(NAME, name) is not None


MAX_INCREMENT = 1e15
"""Largest increment of a running sum: far inside DynamoDB's numbers however many are added."""
MAX_ITEM_BYTES = 64 * 1024
"""An item's metadata at most (DynamoDB holds 400 KB an item; predictions carry these attributes)."""
MAX_LIST_VALUES = 100

Increment = Annotated[StorableFloat, AfterValidator(bounded_number(MAX_INCREMENT))]


class FeatureUpdate(BaseModel):
    """Latest values of one feature group, with an optional lifetime and running-sum increments.

    Values are what the stores and predict can hold: strings up to 1024 characters, 64-bit
    ints (predict turns them into arrays), finite floats DynamoDB stores; increments at most
    ``MAX_INCREMENT`` in magnitude. A value out of bounds rejects its event alone, naming it.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    group: GroupName
    values: dict[str, Scalar] = Field(max_length=200)
    ttl_seconds: int | None = Field(
        None, ge=60, le=366 * 24 * 3600, description="values expire this long after the event"
    )
    add: dict[str, Increment] = Field(
        default_factory=dict, max_length=50, description="increments of the entity's sum_<name> aggregates"
    )

    @field_validator("values", "add")
    @classmethod
    def _names(cls, mapping: dict[str, Any]) -> dict[str, Any]:
        bad = [name[:80] for name in mapping if not _is_name(name)]
        if bad:
            raise ValueError(f"feature names must match {NAME}: {bad[:5]}")
        return mapping

    @field_validator("values")
    @classmethod
    def _not_empty(cls, values: dict[str, Scalar]) -> dict[str, Scalar]:
        if not values:
            raise ValueError("at least one value")
        return values


class Interaction(BaseModel):
    """Something the entity did: with an item (click/view/render), or a consent change."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: InteractionKind
    item_id: ItemId | None = None
    request_id: RequestId | None = Field(None, description="the prediction this interaction answers")

    @model_validator(mode="after")
    def _item_when_needed(self) -> Interaction:
        """click/view/render need the item they happened to."""
        if self.kind in ITEM_KINDS and self.item_id is None:
            raise ValueError(f"a {self.kind} interaction needs item_id")
        return self


class Label(BaseModel):
    """Ground truth for row ``row`` of the prediction answered with ``request_id``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    request_id: RequestId
    value: Scalar = Field(description="a label or a value: a string, a 64-bit int, a finite float, a boolean")
    row: int = Field(0, ge=0, le=100_000)

    @field_validator("value")
    @classmethod
    def _given(cls, value: Scalar) -> Scalar:
        if value is None:
            raise ValueError("a label needs a value")
        return value


class _EventBase(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    event_id: EventId
    entity_id: EntityId
    timestamp: datetime = Field(description="when it happened (event time), ISO 8601; naive means UTC")

    @field_validator("timestamp")
    @classmethod
    def _utc(cls, value: datetime) -> datetime:
        return _utc(value)


class FeatureUpdateEvent(_EventBase):
    """``type: feature_update``."""

    type: Literal["feature_update"]
    payload: FeatureUpdate


class InteractionEvent(_EventBase):
    """``type: interaction``."""

    type: Literal["interaction"]
    payload: Interaction


class LabelEvent(_EventBase):
    """``type: label``."""

    type: Literal["label"]
    payload: Label


Event = Annotated[FeatureUpdateEvent | InteractionEvent | LabelEvent, Field(discriminator="type")]
_EVENT: TypeAdapter[FeatureUpdateEvent | InteractionEvent | LabelEvent] = TypeAdapter(Event)


def _reason(exc: ValidationError) -> str:
    """The first problem as ``field.path: message``, without pydantic's union tags."""
    first = exc.errors(include_url=False, include_input=False)[0]
    location = [str(part) for part in first.get("loc", ())]
    if location and location[0] in ("feature_update", "interaction", "label"):
        location = location[1:]
    message = str(first.get("msg", "invalid")).removeprefix("Value error, ")
    return f"{'.'.join(location)}: {message}" if location else message


def event_json(raw: Any) -> bytes | str:
    """The event as JSON text holding exactly the values it was read with.

    orjson writes it, except what orjson would change: an integer beyond 64 bits (orjson refuses
    it) and a non-finite float (orjson writes ``null``; only the standard parser reads ``1e999``),
    which the standard encoder writes as they are, so validation names them.
    """
    try:
        text = orjson.dumps(raw)
    except orjson.JSONEncodeError:
        return json.dumps(raw, default=str)
    return json.dumps(raw, default=str) if b"null" in text else text


def validate_event(
    raw: Any, text: bytes | str | None = None
) -> FeatureUpdateEvent | InteractionEvent | LabelEvent | str:
    """The event, or the reason it is invalid (a string), so one bad event never fails a batch.

    The event is validated from its JSON text (``text``, or ``event_json(raw)``) in strict mode:
    JSON's types as the document states them. In pydantic's lax mode ``true`` was a row of 1 and
    ``"60"`` a lifetime of 60 s; strings still give datetimes, as JSON has no others.
    """
    if not isinstance(raw, dict):
        return "an event must be a JSON object"
    if "type" in raw and raw["type"] not in ("feature_update", "interaction", "label"):
        return f"type: unknown event type {str(raw['type'])[:40]!r} (feature_update, interaction, label)"
    try:
        return _EVENT.validate_json(event_json(raw) if text is None else text, strict=True)
    except ValidationError as exc:
        return _reason(exc)
    except ValueError as exc:
        return str(exc)


AnyEvent = FeatureUpdateEvent | InteractionEvent | LabelEvent


class EventResult(BaseModel):
    """What became of one event of the batch, by its index in the request."""

    index: int
    event_id: str | None = None
    status: Literal["accepted", "duplicate", "rejected"]
    code: str | None = Field(None, description="why it was rejected")
    reason: str | None = None
    retryable: bool | None = Field(None, description="rejected for a transient reason: send it again")


class IngestResponse(BaseModel):
    """The 200 (every event accepted) or 207 (some rejected) body of ``POST /events``."""

    accepted: int = Field(description="new events applied")
    duplicates: int = Field(description="event_ids seen before: accepted, applied once")
    rejected: int
    results: list[EventResult]


def _attribute(value: Any) -> Scalar | list[Scalar]:
    """An item attribute: a scalar, or a list of at most ``MAX_LIST_VALUES`` of them."""
    if isinstance(value, list):
        if len(value) > MAX_LIST_VALUES:
            raise PydanticCustomError(
                "too_long",
                "a list of {length} values, over the limit of {limit}",
                {"length": len(value), "limit": MAX_LIST_VALUES},
            )
        return [scalar(item) for item in value]
    return scalar(value)


Attribute = Annotated[
    Scalar | list[Scalar],
    PlainValidator(_attribute),
    WithJsonSchema(
        {
            "anyOf": [
                SCALAR_JSON_SCHEMA,
                {"type": "array", "items": SCALAR_JSON_SCHEMA, "maxItems": MAX_LIST_VALUES},
            ]
        }
    ),
]


class ItemRecord(BaseModel):
    """An item's metadata (the metadata store), as a metadata source's webhook sends it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    item_id: ItemId
    attributes: dict[Name, Attribute] = Field(
        max_length=100,
        description=f"at most 100, each a value or a list of up to {MAX_LIST_VALUES}; "
        f"{MAX_ITEM_BYTES // 1024} KB in all",
    )
    updated_at: datetime = Field(description="the source's change time; an older change never wins")

    @field_validator("updated_at")
    @classmethod
    def _utc(cls, value: datetime) -> datetime:
        return _utc(value)

    @field_validator("attributes")
    @classmethod
    def _size(cls, attributes: dict[str, Any]) -> dict[str, Any]:
        size = dynamo_size(attributes)
        if size > MAX_ITEM_BYTES:
            raise ValueError(f"the attributes take {size:,} bytes, over the limit of {MAX_ITEM_BYTES:,}")
        return attributes


class ItemsRequest(BaseModel):
    """Body of ``POST /items``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    items: list[ItemRecord] = Field(min_length=1, max_length=100)


class ItemsResponse(BaseModel):
    """How many items were written, and how many were older than what is stored."""

    upserted: int
    stale: int


class FeatureGroupView(BaseModel):
    """One feature group's latest values as stored."""

    group: str
    values: dict[str, Any]
    event_time: datetime
    event_id: str
    expires_at: datetime | None = None


class EntityFeatures(BaseModel):
    """``GET /entities/{id}/features``: live groups (expired ones left out) and aggregates."""

    entity_id: str
    groups: list[FeatureGroupView]
    aggregates: dict[str, Any]


class FeatureGroupSummary(BaseModel):
    """A feature group the store has been sent: the feature names seen in it and when."""

    group: str
    features: list[str] = Field(description="names seen in its values (the first 500 kept)")
    first_seen_at: datetime
    last_event_at: datetime = Field(
        description="latest event time recorded (each function instance records a group at most every few minutes)"
    )


class FeatureGroupPage(BaseModel):
    """``GET /feature-groups``: groups by name."""

    groups: list[FeatureGroupSummary]
    next_token: str | None = None


class PurgeResult(BaseModel):
    """``DELETE /entities/{id}``: what was erased, and when the purge request was recorded."""

    entity_id: str
    features_deleted: int
    tracking_deleted: int
    purged_at: datetime
    archive: str = Field(description="what happens to already-archived Parquet")


# ---- what the ingestion service asks the stores to write (see mlambda.services.ingestion.ports)


@dataclass(frozen=True, slots=True)
class FeatureWrite:
    """The latest values of one (entity, group), written only if newer than the stored ones."""

    entity_id: str
    group: str
    values: dict[str, Scalar]
    at: datetime
    event_id: str
    expires_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class TrackingWrite:
    """One interaction in the entity's time-ordered history."""

    entity_id: str
    at: datetime
    event_id: str
    kind: str
    expires_at: datetime
    item_id: str | None = None
    request_id: str | None = None


@dataclass(frozen=True, slots=True)
class ConsentWrite:
    """An opt-in or opt-out, applied only if newer than the recorded one."""

    entity_id: str
    opted_out: bool
    at: datetime
    event_id: str


@dataclass(frozen=True, slots=True)
class AggregateDelta:
    """Increments of one entity's counters and sums, and its latest interaction time (last-seen)."""

    entity_id: str
    event_ids: tuple[str, ...]
    add: dict[str, float] = field(default_factory=dict)
    last_seen: datetime | None = None


ClaimState = Literal["claimed", "archived", "completed", "in_progress"]
"""What claiming an event id gave: ``claimed`` (this call applies it), ``archived`` (this call
applies it, and an earlier call that failed afterwards archived it already), ``completed`` (a
duplicate) or ``in_progress`` (another call holds it)."""


def event_body(
    event_id: str, event_type: str, entity_id: str, timestamp: datetime, **payload: Any
) -> dict[str, Any]:
    """One event as JSON-ready data, the shape ``POST /events`` takes (for clients, the CLI, tests)."""
    return {
        "event_id": event_id,
        "type": event_type,
        "entity_id": entity_id,
        "timestamp": timestamp.isoformat(),
        "payload": payload,
    }
