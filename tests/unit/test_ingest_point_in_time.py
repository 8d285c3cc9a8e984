"""Point-in-time training frames: each label sees only the feature values it could have seen."""

from __future__ import annotations

from datetime import timedelta

import pandas as pd

from mlambda.services.ingestion.point_in_time import training_frame
from tests.unit.fakes_ingest import at


def updates(*rows: tuple[str, str, float, str, dict[str, float], int | None]) -> pd.DataFrame:
    """Archived feature_update rows: (id, entity, minutes, group, values, ttl)."""
    return pd.DataFrame(
        [
            {
                "id": event_id,
                "type": "feature_update",
                "entity_id": entity,
                "timestamp": at(minutes),
                "group": group,
                "ttl_seconds": ttl,
                **{f"values.{k}": v for k, v in values.items()},
            }
            for event_id, entity, minutes, group, values, ttl in rows
        ]
    )


def labels(*rows: tuple[str, float, str, int]) -> pd.DataFrame:
    """Archived label rows: (entity, minutes, request_id, value)."""
    return pd.DataFrame(
        [
            {
                "id": f"l-{request}",
                "entity_id": entity,
                "timestamp": at(minutes),
                "request_id": request,
                "value": value,
            }
            for entity, minutes, request, value in rows
        ]
    )


def test_each_label_gets_the_latest_values_at_or_before_its_time_and_nothing_later() -> None:
    # Given u1's score changes at minutes 0, 10 and 20, and labels at 5, 10 and 15
    feature_rows = updates(
        ("a", "u1", 0, "risk", {"score": 1.0}, None),
        ("b", "u1", 10, "risk", {"score": 2.0}, None),
        ("c", "u1", 20, "risk", {"score": 3.0}, None),
        ("d", "u2", 1, "risk", {"score": 9.0}, None),
    )
    # When
    frame = training_frame(
        feature_rows, labels(("u1", 5, "r1", 0), ("u1", 10, "r2", 1), ("u1", 15, "r3", 1), ("u3", 5, "r4", 0))
    )
    # Then
    by_request = frame.set_index("request_id")["risk.score"]
    assert by_request["r1"] == 1.0
    assert by_request["r2"] == 2.0
    assert by_request["r3"] == 2.0
    assert pd.isna(by_request["r4"])


def test_groups_join_independently_and_expired_values_are_null() -> None:
    # Given a session group with a 60 s TTL and a profile group without
    feature_rows = updates(
        ("s", "u1", 0, "session", {"pages": 4.0}, 60),
        ("p", "u1", 0, "profile", {"age": 40.0}, None),
    )
    # When labels come 30 s and 5 min later
    frame = training_frame(feature_rows, labels(("u1", 0.5, "soon", 1), ("u1", 5, "late", 0)))
    # Then
    rows = frame.set_index("request_id")
    assert rows.loc["soon", "session.pages"] == 4.0
    assert pd.isna(rows.loc["late", "session.pages"])
    assert rows.loc["late", "profile.age"] == 40.0
    assert list(frame.columns[:5]) == ["entity_id", "timestamp", "request_id", "row", "label"]


def test_updates_at_the_same_instant_resolve_by_event_id_like_the_online_store() -> None:
    # Given two updates stamped alike
    feature_rows = updates(("b", "u1", 0, "g", {"x": 2.0}, None), ("a", "u1", 0, "g", {"x": 1.0}, None))
    # When
    frame = training_frame(feature_rows, labels(("u1", 1, "r", 1)))
    # Then the larger event id wins, as in the online store
    assert frame.loc[0, "g.x"] == 2.0
    assert frame.loc[0, "timestamp"] == at(1)
    assert frame.loc[0, "timestamp"] - at(0) == timedelta(minutes=1)


def test_without_labels_the_frame_is_empty() -> None:
    assert training_frame(updates(("a", "u1", 0, "g", {"x": 1.0}, None)), pd.DataFrame()).empty
