"""Put a model version in the registry the way the registry API leaves it, without its ONNX gate."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

from mlambda.adapters.registry import DynamoRegistryStore
from mlambda.schemas.registry import Alias, HistoryEntry, ModelVersion, RegisteredModel


def publish(
    store: DynamoRegistryStore,
    version: ModelVersion,
    aliases: Sequence[str] = ("production",),
    *,
    actor: str = "test",
) -> None:
    """``version`` written through the store (its model created with v1), then each alias moved to it."""
    now = datetime.now(UTC)

    def entry(action: str, **extra: object) -> HistoryEntry:
        return HistoryEntry.model_validate(
            {"model": version.model, "at": now, "actor": actor, "action": action, **extra}
        )

    if version.version == 1:
        model = RegisteredModel(name=version.model, created_at=now, updated_at=now)
        store.create_model(model, entry("model_created"))
    store.add_version(version, entry("version_registered", to_version=version.version))
    for alias in aliases:
        record = Alias(
            model=version.model, alias=alias, version=version.version, updated_at=now, updated_by=actor
        )
        store.move_alias(record, version, None, entry("alias_moved", alias=alias, to_version=version.version))
