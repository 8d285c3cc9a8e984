"""The interfaces shared by several capabilities (catalog, artifacts, events, keys); each capability's own ports live beside its services."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    import numpy as np

    from mlambda.schemas.keys import ApiKeyRecord
    from mlambda.schemas.registry import (
        EndpointConfig,
        ModelVersion,
    )


class ApiKeyStore(Protocol):
    """Where hashed API keys live."""

    def get(self, key_id: str) -> ApiKeyRecord | None:
        """The key with ``key_id``, or None."""
        ...

    def add(self, record: ApiKeyRecord) -> None:
        """Store a new key; ConflictError when the id is taken."""
        ...

    def all(self) -> Iterable[ApiKeyRecord]:
        """Every key, revoked ones included."""
        ...

    def revoke(self, key_id: str, at: datetime) -> ApiKeyRecord:
        """Mark the key revoked (idempotent); NotFoundError when absent."""
        ...

    def set_usage(self, key_id: str, plan: str, usage_key: str, usage_key_id: str | None) -> ApiKeyRecord:
        """Record the key's plan and usage key; NotFoundError when absent."""
        ...


class UsagePlans(Protocol):
    """Where a key's usage plan is enforced: API Gateway's usage plans (one API key per mlambda key)."""

    def plans(self) -> frozenset[str]:
        """The plans keys can be given."""
        ...

    def attach(self, key_id: str, usage_key: str, plan: str) -> str | None:
        """Make ``usage_key`` count against ``plan``; the gateway's id for it (None where there is none)."""
        ...

    def move(self, key_id: str, usage_key: str, usage_key_id: str | None, old: str, new: str) -> str | None:
        """Move the key from plan ``old`` to ``new``; its (possibly new) gateway id."""
        ...

    def detach(self, usage_key_id: str | None) -> None:
        """The key counts against no plan any more (revoked)."""
        ...


class ModelCatalog(Protocol):
    """The registry's read side: what predict, batch and monitor ask it."""

    def get_version(self, model: str, version: int) -> ModelVersion:
        """One version; NotFoundError when the model or version does not exist."""
        ...

    def resolve(self, model: str, ref: str) -> ModelVersion:
        """The version an alias (``production``) or version ref (``v3``, ``3``) names; NotFoundError otherwise."""
        ...

    def endpoint_config(self, model: str) -> EndpointConfig | None:
        """The model's endpoint config, or None when it has none (serve ``production``)."""
        ...

    def models_with_alias(self, alias: str) -> list[ModelVersion]:
        """The version each model's ``alias`` points at, for every model that has it."""
        ...


class ArtifactStore(Protocol):
    """Where model files, profiles and reports live (the artifacts bucket)."""

    def get(self, key: str) -> bytes:
        """The object at ``key``; NotFoundError when absent."""
        ...

    def put(self, key: str, body: bytes, *, content_type: str = "application/octet-stream") -> None:
        """Write ``body`` at ``key``."""
        ...


class EventPublisher(Protocol):
    """Domain events (EventBridge): the hook for CI/CD and notifications."""

    def emit(self, detail_type: str, details: Sequence[Mapping[str, Any]]) -> None:
        """Publish one event per detail."""
        ...


class Scorer(Protocol):
    """A loaded model (``mlambda.adapters.onnx.OnnxModel`` fits)."""

    def run(self, feed: Mapping[str, np.ndarray], outputs: Sequence[str] | None = None) -> dict[str, Any]:
        """Score ``feed``; each requested output by name."""
        ...


class ModelLoader(Protocol):
    """Loads a version's artifact, checked against its recorded sha256, cached while warm."""

    def load(self, version: ModelVersion) -> Scorer:
        """The scorer for ``version``; UpstreamError when the artifact is missing or altered."""
        ...
