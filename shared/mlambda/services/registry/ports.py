"""What the registry service needs from storage and the model runtime; adapters implement it."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol

from mlambda.ports import ArtifactStore, ModelCatalog

if TYPE_CHECKING:
    import numpy as np

    from mlambda.schemas.registry import (
        Alias,
        EndpointConfig,
        HistoryEntry,
        ModelVersion,
        RegisteredModel,
        Signature,
    )
    from mlambda.schemas.registry_api import ModelDetails


class RegistryStore(ModelCatalog, Protocol):
    """The registry's own read/write side: every write appends its HistoryEntry in the same transaction."""

    def create_model(self, model: RegisteredModel, entry: HistoryEntry) -> None:
        """Store a new model; ConflictError when the name is taken."""
        ...

    def get_model(self, name: str) -> ModelDetails | None:
        """The model with its alias map, or None."""
        ...

    def list_models(
        self,
        *,
        limit: int,
        token: str | None,
        owner: str | None,
        tag: tuple[str, str] | None,
        name: str | None = None,
        stage: str | None = None,
    ) -> tuple[list[ModelDetails], str | None]:
        """One page of models by name (filtered by owner, tag, a part of the name, an alias they
        have), and the token of the next page."""
        ...

    def update_model(self, model: RegisteredModel, entry: HistoryEntry) -> None:
        """Replace description/owner/tags; NotFoundError when the model is gone."""
        ...

    def delete_model(self, name: str, entry: HistoryEntry) -> None:
        """Delete the model, its versions and endpoint (history stays); ConflictError while an alias exists."""
        ...

    def latest_version(self, name: str) -> int:
        """The highest version number (strongly consistent); NotFoundError when there is no model."""
        ...

    def add_version(self, version: ModelVersion, entry: HistoryEntry) -> None:
        """Store version N only if N-1 is the latest; ConflictError when another registration won."""
        ...

    def list_versions(
        self, name: str, *, limit: int, token: str | None
    ) -> tuple[list[ModelVersion], str | None]:
        """One page of versions, newest first."""
        ...

    def get_alias(self, name: str, alias: str) -> Alias | None:
        """The alias, or None."""
        ...

    def move_alias(
        self, alias: Alias, target: ModelVersion, expected: int | None, entry: HistoryEntry
    ) -> None:
        """Point ``alias`` at ``target`` only if it still points at ``expected`` (None: absent); else ConflictError."""
        ...

    def delete_alias(self, name: str, alias: str, expected: int, entry: HistoryEntry) -> None:
        """Remove the alias only if it still points at ``expected``; else ConflictError."""
        ...

    def put_endpoint(self, config: EndpointConfig, targets: list[str], entry: HistoryEntry) -> None:
        """Store the config only if every alias name in ``targets`` still exists; else ConflictError."""
        ...

    def history(
        self, name: str, *, limit: int, token: str | None, alias: str | None
    ) -> tuple[list[HistoryEntry], str | None]:
        """One page of the model's history, newest first (only ``alias``'s moves when given)."""
        ...

    def alias_entry_at(self, name: str, alias: str, at: datetime) -> HistoryEntry | None:
        """The last move or removal of ``alias`` at or before ``at``, or None."""
        ...


class RegistryArtifacts(ArtifactStore, Protocol):
    """The artifacts bucket as the registry uses it: uploads, artifacts, reference samples."""

    def size(self, key: str) -> int:
        """Size in bytes of ``key``; NotFoundError when absent."""
        ...

    def upload_url(self, key: str, *, expires_in: int) -> str:
        """A presigned URL that lets its holder PUT ``key``."""
        ...

    def read_table(self, key: str) -> dict[str, np.ndarray]:
        """A CSV or Parquet object as columns in file order; InvalidInputError when it is neither."""
        ...

    def delete_prefix(self, prefix: str) -> None:
        """Remove every object under ``prefix``."""
        ...


class ModelRuntime(Protocol):
    """Validates ONNX artifacts and runs them (onnxruntime behind it)."""

    def inspect(self, data: bytes, *, max_bytes: int) -> Signature:
        """The artifact's signature; InvalidInputError / PayloadTooLargeError when it is unusable."""
        ...

    def run(self, data: bytes, feed: Mapping[str, np.ndarray]) -> dict[str, Any]:
        """Every output of the artifact for ``feed``."""
        ...
