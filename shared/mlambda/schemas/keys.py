"""API keys, scopes and the principal a key stands for."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field, field_serializer, field_validator


class Scope(StrEnum):
    """What a key may do; ``admin`` may do everything."""

    PREDICT = "predict"
    INGEST = "ingest"
    REGISTRY_READ = "registry:read"
    REGISTRY_WRITE = "registry:write"
    EVALUATE = "evaluate"
    ADMIN = "admin"


PLAN_PATTERN = r"^[a-z][a-z0-9-]{0,31}$"
DEFAULT_PLAN = "standard"
"""The usage plan a key gets when none is named (template.yaml declares the plans)."""


class Principal(BaseModel):
    """Who is calling, as the authorizer established it."""

    model_config = ConfigDict(frozen=True)

    key_id: str
    name: str
    scopes: frozenset[Scope]
    plan: str = DEFAULT_PLAN
    usage_key: str | None = Field(default=None, exclude=True)
    """The API Gateway API key value the authorizer returns as ``usageIdentifierKey`` (never shown)."""

    @field_serializer("scopes")
    def _sorted(self, scopes: frozenset[Scope]) -> list[str]:
        return sorted(scopes)

    def allows(self, scope: Scope) -> bool:
        """Whether this principal may act with ``scope``."""
        return scope in self.scopes or Scope.ADMIN in self.scopes


class ApiKeyRecord(BaseModel):
    """A stored key: only the hash of its secret is ever kept."""

    key_id: str
    name: str
    scopes: list[Scope]
    secret_hash: str
    created_at: datetime
    created_by: str
    revoked_at: datetime | None = None
    plan: str = DEFAULT_PLAN
    usage_key: str | None = None
    """The value of the key's API Gateway API key (in its plan's usage plan); None before it has one."""
    usage_key_id: str | None = None


class ApiKeyView(BaseModel):
    """A key as listings show it (never the secret, its hash or its usage key)."""

    key_id: str
    name: str
    scopes: list[Scope]
    plan: str = DEFAULT_PLAN
    created_at: datetime
    created_by: str
    revoked_at: datetime | None = None

    @classmethod
    def of(cls, record: ApiKeyRecord) -> ApiKeyView:
        """The public view of ``record``."""
        return cls.model_validate(record.model_dump(exclude={"secret_hash", "usage_key", "usage_key_id"}))


class CreateKeyRequest(BaseModel):
    """Body of ``POST /keys``."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.@-]*$")
    scopes: list[Scope] = Field(min_length=1, max_length=len(Scope))
    plan: str = Field(default=DEFAULT_PLAN, pattern=PLAN_PATTERN, description="the key's usage plan")

    @field_validator("scopes")
    @classmethod
    def _unique(cls, scopes: list[Scope]) -> list[Scope]:
        return sorted(set(scopes))


class CreatedKey(ApiKeyView):
    """A new key with its secret: shown once, never again."""

    api_key: str


class SetPlanRequest(BaseModel):
    """Body of ``PUT /keys/{key_id}/plan``."""

    model_config = ConfigDict(extra="forbid")

    plan: str = Field(pattern=PLAN_PATTERN, description="a usage plan of template.yaml")
