"""The feature store's group catalogue: written at most every few minutes per group and instance
(or at once for a new feature name), and never failing the feature write it rides on."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from mlambda.adapters.features import GROUP_RECORD_SECONDS, GROUPS_PK, DynamoFeatureStore
from mlambda.errors import UpstreamError
from mlambda.schemas.events import FeatureWrite
from tests.unit.fakes_ingest import NOW


class RecordingTable:
    """The DynamoTable calls the store makes, with catalogue updates failing on demand."""

    def __init__(self) -> None:
        self.catalogue_updates: list[str] = []
        self.fail = False

    def put(self, item: dict[str, Any], **_: Any) -> None:
        return None

    def update(self, key: dict[str, Any], expression: str, **_: Any) -> dict[str, Any]:
        if key["pk"] == GROUPS_PK:
            if self.fail:
                raise UpstreamError("throttled")
            self.catalogue_updates.append(f"{key['sk']}: {expression}")
        return {}


def write(group: str, names: dict[str, Any], seconds: float = 0) -> FeatureWrite:
    return FeatureWrite(
        entity_id="u1", group=group, values=names, at=NOW + timedelta(seconds=seconds), event_id=f"e{seconds}"
    )


def test_a_busy_group_is_recorded_once_per_interval_and_at_once_for_a_new_name() -> None:
    # Given
    clock = [0.0]
    table = RecordingTable()
    store = DynamoFeatureStore(table, clock=lambda: clock[0])  # type: ignore[arg-type]
    # When 100 writes of the same group arrive within the interval, then one with a new name
    for i in range(100):
        store.write_latest([write("profile", {"age": i}, i)])
    after_burst = len(table.catalogue_updates)
    store.write_latest([write("profile", {"age": 1, "city": "x"}, 101)])
    after_new_name = len(table.catalogue_updates)
    clock[0] = GROUP_RECORD_SECONDS + 1
    store.write_latest([write("profile", {"age": 2}, 200)])
    # Then: two updates per recording (times, names)
    assert after_burst == 2
    assert after_new_name == 4
    assert len(table.catalogue_updates) == 6


def test_a_catalogue_failure_neither_fails_the_write_nor_is_forgotten() -> None:
    # Given
    table = RecordingTable()
    table.fail = True
    store = DynamoFeatureStore(table)  # type: ignore[arg-type]
    # When
    won = store.write_latest([write("profile", {"age": 1})])
    table.fail = False
    store.write_latest([write("profile", {"age": 2}, 1)])
    # Then the feature write counted, and the next write recorded the group
    assert won == 1
    assert [u.split(":")[0] for u in table.catalogue_updates] == ["profile", "profile"]
