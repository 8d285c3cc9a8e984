"""Point-in-time training frames from the archive: features as they were when each label happened.

For every label, each feature group contributes the values of the entity's latest archived
``feature_update`` of that group stamped at or before the label's time (``merge_asof``
backward, ties broken by event id as the online store does), so nothing that happened after
the label leaks into its row. A group whose update had ``ttl_seconds`` and had expired by the
label's time contributes nulls, as the online store would have served nothing.

Columns: ``entity_id``, ``timestamp`` (the label's), ``request_id``, ``row``, ``label`` and
``<group>.<feature>`` per feature.

An offline tool (training data for notebooks and pipelines), not used by any Lambda: it works on
pandas frames, and pandas is a development dependency, never shipped in a function.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd

from mlambda.services.ingestion.ports import ArchiveEvents

VALUES_PREFIX = "values."


def _times(column: pd.Series[Any]) -> pd.Series[Any]:
    # One resolution on both sides: merge_asof refuses keys of different datetime dtypes.
    return pd.to_datetime(column, utc=True, errors="coerce", format="mixed").astype("datetime64[ns, UTC]")


def training_frame(
    feature_updates: pd.DataFrame, labels: pd.DataFrame, *, groups: Sequence[str] | None = None
) -> pd.DataFrame:
    """One row per label with each group's values as of the label's time (see the module doc)."""
    columns = ["entity_id", "timestamp", "request_id", "row", "label"]
    if labels.empty:
        return pd.DataFrame(columns=columns)
    frame = pd.DataFrame(
        {
            "entity_id": labels["entity_id"].astype(str),
            "timestamp": _times(labels["timestamp"]),
            "request_id": labels.get("request_id"),
            "row": labels["row"].fillna(0).astype(int) if "row" in labels else 0,
            "label": labels["value"],
        }
    ).dropna(subset=["timestamp"])
    frame = frame.sort_values("timestamp", kind="stable").reset_index(drop=True)
    if feature_updates.empty or "group" not in feature_updates:
        return frame
    updates = feature_updates.assign(
        timestamp=_times(feature_updates["timestamp"]), entity_id=feature_updates["entity_id"].astype(str)
    ).dropna(subset=["timestamp"])
    wanted = groups if groups is not None else sorted(updates["group"].dropna().unique())
    for group in wanted:
        frame = _merge_group(frame, updates.loc[updates["group"] == group], str(group))
    return frame


def _merge_group(frame: pd.DataFrame, updates: pd.DataFrame, group: str) -> pd.DataFrame:
    value_columns = [c for c in updates.columns if c.startswith(VALUES_PREFIX) and updates[c].notna().any()]
    if updates.empty or not value_columns:
        return frame
    renamed = {c: f"{group}.{c.removeprefix(VALUES_PREFIX)}" for c in value_columns}
    ttl = updates["ttl_seconds"] if "ttl_seconds" in updates else pd.Series(np.nan, index=updates.index)
    right = (
        updates.assign(_at=updates["timestamp"], _ttl=pd.to_numeric(ttl, errors="coerce"))
        .sort_values(["timestamp", "id"] if "id" in updates else ["timestamp"], kind="stable")
        .drop_duplicates(subset=["entity_id", "timestamp"], keep="last")[
            ["entity_id", "timestamp", "_at", "_ttl", *value_columns]
        ]
        .rename(columns=renamed)
    )
    merged = pd.merge_asof(
        frame, right, on="timestamp", by="entity_id", direction="backward", allow_exact_matches=True
    )
    expired = merged["_ttl"].notna() & (
        merged["timestamp"] > merged["_at"] + pd.to_timedelta(merged["_ttl"].fillna(0), unit="s")
    )
    merged.loc[expired, list(renamed.values())] = np.nan
    return merged.drop(columns=["_at", "_ttl"])


def training_frame_from_archive(
    archive: ArchiveEvents,
    start: datetime,
    end: datetime,
    *,
    lookback: timedelta = timedelta(days=30),
    groups: Sequence[str] | None = None,
) -> pd.DataFrame:
    """Labels of ``[start, end)`` with features from the ``lookback`` before each (archived updates)."""
    labels = pd.DataFrame(archive.events("label", start, end).columns)
    updates = pd.DataFrame(archive.events("feature_update", start - lookback, end).columns)
    return training_frame(updates, labels, groups=groups)
