"""What the registry service needs from storage and the model runtime; adapters implement it."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
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
        PendingVersion,
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

    def add_version(self, version: ModelVersion | PendingVersion, entry: HistoryEntry) -> None:
        """Store version N only if N-1 is the latest; ConflictError when another registration won."""
        ...

    def version_record(self, name: str, version: int) -> ModelVersion | PendingVersion | None:
        """Version ``version`` whatever its status (consistent read), or None."""
        ...

    def finish_version(self, version: ModelVersion | PendingVersion, entry: HistoryEntry) -> None:
        """Replace a PENDING_VALIDATION version by its outcome (READY or FAILED), only while it is
        pending; ConflictError (``version_not_pending``) otherwise."""
        ...

    def list_versions(
        self, name: str, *, limit: int, token: str | None
    ) -> tuple[list[ModelVersion | PendingVersion], str | None]:
        """One page of versions (every status), newest first."""
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

    def put_endpoint(
        self,
        config: EndpointConfig,
        targets: list[str],
        entry: HistoryEntry,
        *,
        expected_revision: int | None = None,
    ) -> None:
        """Store the config only if the stored one is still at ``expected_revision`` (None: none is
        stored) and every target still exists; ConflictError (``conflict`` for a stale revision)."""
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

    def get_tagged(self, key: str) -> tuple[bytes, str]:
        """The object at ``key`` and its ETag; NotFoundError when absent."""
        ...

    def copy(self, source: str, target: str, *, etag: str | None = None) -> None:
        """Copy ``source`` to ``target`` inside the bucket; with ``etag``, only if ``source`` still has
        that ETag (ConflictError or UpstreamError otherwise)."""
        ...

    def purge(self, key: str) -> None:
        """Remove ``key`` for good (every stored version of it); no error when absent."""
        ...


class RunnableModel(Protocol):
    """An artifact that passed the checks and loaded once: its signature, and runs."""

    signature: Signature

    def run(self, feed: Mapping[str, np.ndarray], outputs: Sequence[str] | None = None) -> dict[str, Any]:
        """The requested outputs (all by default) for ``feed``."""
        ...


class ModelRuntime(Protocol):
    """Checks ONNX artifacts and loads them (onnxruntime behind it)."""

    def load(self, data: bytes, *, max_bytes: int) -> RunnableModel:
        """Size cap, structure (no external data), load; InvalidInputError / PayloadTooLargeError
        / UnprocessableError naming what is wrong."""
        ...


class ValidationQueue(Protocol):
    """Where registration asks for a version to be validated (the validator function's queue)."""

    def request_validation(self, model: str, version: int) -> None:
        """Queue the validation of ``model`` version ``version``; UpstreamError when it cannot."""
        ...
