"""Request and response bodies of the registry API (`/models...`).

Stored entities live in ``mlambda.schemas.registry``; these are what goes over the wire around
them. Requests forbid unknown fields so that a typo is a 422, not a silently ignored option.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from mlambda.schemas.bounds import FiniteFloat, JsonObject, Name, Scalar
from mlambda.schemas.registry import (
    CachePolicy,
    FeatureType,
    HistoryEntry,
    ModelName,
    RegisteredModel,
    ServingRules,
    Shadow,
    Variant,
    VersionNumber,
    VersionRecord,
    check_variants,
)

TAG_KEY_PATTERN = r"^[A-Za-z0-9_.:/=+@-]{1,64}$"
UPLOAD_FILENAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$"
MAX_TAGS = 50
MAX_SMOKE_INPUTS = 20
MAX_FEATURES = 2000
MAX_PAGE = 100
MAX_METRICS = 100

Tags = dict[str, str]
"""Checked by ``_check_tags``: at most ``MAX_TAGS``, keys matching ``TAG_KEY_PATTERN``, values 256 characters."""
SmokeInput = Annotated[dict[Name, Scalar], Field(max_length=MAX_FEATURES)]


def _check_tags(tags: Tags | None) -> None:
    if tags is None:
        return
    if len(tags) > MAX_TAGS:
        raise ValueError(f"at most {MAX_TAGS} tags")
    for key, value in tags.items():
        if not re.match(TAG_KEY_PATTERN, key):
            raise ValueError(f"tag key {key!r} must match {TAG_KEY_PATTERN}")
        if len(value) > 256:
            raise ValueError(f"tag {key!r}: value longer than 256 characters")


class CreateModelRequest(BaseModel):
    """POST /models."""

    model_config = ConfigDict(extra="forbid")

    name: ModelName
    description: str = Field("", max_length=2000)
    owner: str = Field("", max_length=128)
    tags: Tags = Field(default_factory=dict)
    require_evaluation: bool = Field(
        False, description="refuse production to versions without a completed human evaluation"
    )

    @model_validator(mode="after")
    def _tags(self) -> CreateModelRequest:
        _check_tags(self.tags)
        return self


class UpdateModelRequest(BaseModel):
    """PATCH /models/{name}: the fields given replace the stored ones (tags as a whole)."""

    model_config = ConfigDict(extra="forbid")

    description: str | None = Field(None, max_length=2000)
    owner: str | None = Field(None, max_length=128)
    tags: Tags | None = None
    require_evaluation: bool | None = Field(
        None, description="refuse production to versions without a completed human evaluation"
    )

    @model_validator(mode="after")
    def _tags(self) -> UpdateModelRequest:
        _check_tags(self.tags)
        return self


class ModelDetails(RegisteredModel):
    """A registered model with where its aliases point (alias -> version)."""

    aliases: dict[str, int] = Field(default_factory=dict)


class ModelPage(BaseModel):
    """GET /models."""

    models: list[ModelDetails]
    next_token: str | None = None


UploadKind = Literal["model", "reference", "evaluation"]
UPLOAD_EXTENSIONS: dict[str, tuple[str, ...]] = {
    "model": (".onnx",),
    "reference": (".parquet", ".csv"),
    "evaluation": (".parquet", ".csv"),
}
UPLOAD_KEY = re.compile(
    r"^uploads/(?P<model>[a-z0-9][a-z0-9_-]{0,62})/[0-9a-f]{32}/[A-Za-z0-9][A-Za-z0-9._-]{0,127}$"
)
"""``uploads/<model>/<uuid hex>/<filename>``: the keys ``POST /models/{name}/uploads`` hands out."""


def upload_key_model(key: str) -> str | None:
    """The model an upload key belongs to, or None when ``key`` is not an upload key."""
    match = UPLOAD_KEY.match(key)
    return match.group("model") if match is not None and ".." not in key else None


class UploadRequest(BaseModel):
    """POST /models/{name}/uploads: ask for a presigned PUT URL."""

    model_config = ConfigDict(extra="forbid")

    filename: str = Field(pattern=UPLOAD_FILENAME_PATTERN)
    kind: UploadKind = "model"

    @model_validator(mode="after")
    def _extension(self) -> UploadRequest:
        allowed = UPLOAD_EXTENSIONS[self.kind]
        if ".." in self.filename or not self.filename.lower().endswith(allowed):
            raise ValueError(f"a {self.kind} upload must be named *{' or *'.join(allowed)}")
        return self


class UploadTicket(BaseModel):
    """Where to PUT the file, and the key to register it by."""

    upload_key: str
    url: str
    method: Literal["PUT"] = "PUT"
    kind: UploadKind
    expires_in: int
    expires_at: datetime


class RegisterVersionRequest(BaseModel):
    """POST /models/{name}/versions: register an uploaded artifact as the next version."""

    model_config = ConfigDict(extra="forbid")

    upload_key: str = Field(min_length=1, max_length=512, description="from POST /models/{name}/uploads")
    reference_key: str | None = Field(
        None, max_length=512, description="upload key of a Parquet/CSV reference sample"
    )
    feature_names: list[Name] | None = Field(
        None, min_length=1, max_length=MAX_FEATURES, description="columns of a single-tensor model, in order"
    )
    feature_types: list[FeatureType] | None = Field(
        None,
        max_length=MAX_FEATURES,
        description="types of ``feature_names`` (default: from the input tensor's type)",
    )
    target: Name | None = Field(
        None,
        description="the reference sample's column holding the true label (value): the quality baseline",
    )
    exclude: list[Name] | None = Field(
        None,
        max_length=MAX_FEATURES,
        description="reference columns that are neither features nor target (ids, timestamps)",
    )
    smoke_inputs: list[SmokeInput] | None = Field(None, min_length=1, max_length=MAX_SMOKE_INPUTS)
    metrics: dict[Name, FiniteFloat] = Field(default_factory=dict, max_length=MAX_METRICS)
    params: JsonObject = Field(default_factory=dict, description="JSON, at most 10 levels deep and 64 KB")
    training_data_uri: str | None = Field(None, max_length=1024)
    training_data_version: str | None = Field(None, max_length=256)
    source_code_version: str | None = Field(None, max_length=256)
    owner: str | None = Field(None, max_length=128)
    tags: Tags = Field(default_factory=dict)
    description: str = Field("", max_length=2000)

    @model_validator(mode="after")
    def _consistent(self) -> RegisterVersionRequest:
        _check_tags(self.tags)
        if self.feature_names is not None and len(set(self.feature_names)) != len(self.feature_names):
            raise ValueError("feature names must be unique")
        roles = [self.target] if self.target is not None else []
        roles += self.exclude or []
        if roles and self.reference_key is None:
            raise ValueError("target and exclude name columns of the reference sample: give reference_key")
        if self.target is not None and self.target in (self.exclude or []):
            raise ValueError(f"column {self.target!r} cannot be both the target and excluded")
        clash = sorted(set(roles) & set(self.feature_names or []))
        if clash:
            raise ValueError(f"columns {clash[:5]} cannot be features and also target or excluded")
        if self.feature_types is not None:
            if self.feature_names is None:
                raise ValueError("feature_types needs feature_names")
            if len(self.feature_types) != len(self.feature_names):
                raise ValueError(
                    f"{len(self.feature_types)} feature_types for {len(self.feature_names)} feature_names"
                )
        return self


class VersionPage(BaseModel):
    """GET /models/{name}/versions (newest first): READY, PENDING_VALIDATION and FAILED ones."""

    versions: list[VersionRecord]
    next_token: str | None = None


class MoveAliasRequest(BaseModel):
    """PUT /models/{name}/aliases/{alias}."""

    model_config = ConfigDict(extra="forbid")

    version: VersionNumber
    force: bool = Field(False, description="skip a failing production gate (needs a reason)")
    reason: str | None = Field(None, min_length=1, max_length=1000)
    expected_version: VersionNumber | None = Field(
        None, description="move only if the alias still points here (optimistic concurrency)"
    )

    @model_validator(mode="after")
    def _force_needs_reason(self) -> MoveAliasRequest:
        if self.force and not self.reason:
            raise ValueError("force needs a reason")
        return self


class RollbackRequest(BaseModel):
    """POST /models/{name}/rollback: move the alias back to its previous version."""

    model_config = ConfigDict(extra="forbid")

    alias: str = Field("production", pattern=r"^[a-z][a-z0-9_-]{0,31}$")
    reason: str | None = Field(None, min_length=1, max_length=1000)


class GateCheck(BaseModel):
    """One check of the production gate."""

    name: Literal[
        "artifact_integrity", "loads", "smoke_cases", "signature_compatible", "evaluation_completed"
    ]
    passed: bool
    message: str


class GateReport(BaseModel):
    """What the production gate found; a move proceeds when ``passed`` or forced."""

    passed: bool
    checks: list[GateCheck]


class AliasMove(BaseModel):
    """The result of moving (or rolling back) an alias."""

    model: str
    alias: str
    version: int
    previous_version: int | None
    updated_at: datetime
    updated_by: str
    forced: bool = False
    gate: GateReport | None = None


class EndpointConfigRequest(BaseModel):
    """PUT /models/{name}/endpoint: the EndpointConfig without what the registry fills in."""

    model_config = ConfigDict(extra="forbid")

    variants: list[Variant] = Field(min_length=1, max_length=10)
    shadow: Shadow | None = None
    sticky_key: str | None = Field(None, min_length=1, max_length=64)
    cache: CachePolicy = Field(default_factory=CachePolicy)
    rules: ServingRules = Field(default_factory=ServingRules)

    @model_validator(mode="after")
    def _weights(self) -> EndpointConfigRequest:
        check_variants(self.variants)
        return self


class EndpointPatch(BaseModel):
    """PATCH /models/{name}/endpoint: a JSON merge patch (RFC 7396) of the endpoint config.

    What the patch names replaces the stored value, what it does not name is kept, and ``null``
    removes (``"shadow": null``). Objects merge field by field (``"rules": {"fallback": null}``
    keeps every other rule); lists (``variants``) are replaced whole. The merged config is
    validated as a whole, and written only if nobody changed it since it was read.
    """

    model_config = ConfigDict(extra="forbid")

    variants: list[Variant] | None = Field(None, min_length=1, max_length=10)
    shadow: JsonObject | None = None
    sticky_key: str | None = Field(None, min_length=1, max_length=64)
    cache: JsonObject | None = None
    rules: JsonObject | None = None

    def merge_patch(self) -> dict[str, Any]:
        """Only the fields the caller sent, ``null`` kept (it means "remove")."""
        return {
            name: (
                [variant.model_dump() for variant in self.variants]
                if name == "variants" and self.variants is not None
                else getattr(self, name)
            )
            for name in self.model_fields_set
        }


class TargetGate(BaseModel):
    """The production gate as run for one endpoint target (a variant or the shadow)."""

    target: str
    version: int
    passed: bool
    checks: list[GateCheck]


class HistoryPage(BaseModel):
    """GET /models/{name}/history (newest first)."""

    entries: list[HistoryEntry]
    next_token: str | None = None


class AliasAtTime(BaseModel):
    """GET /models/{name}/history?alias=X&at=T: where X pointed at T (None: nowhere)."""

    model: str
    alias: str
    at: datetime
    version: int | None
    since: datetime | None = Field(None, description="when the alias got there")
    entry: HistoryEntry | None = None
