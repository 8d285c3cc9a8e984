"""Where an evaluation's rows come from: the reference sample the registry keeps with a version and
uploads (artifacts bucket), and archived traffic (the data bucket, read as monitoring reads it)."""

from __future__ import annotations

from datetime import datetime

import numpy as np

from mlambda.adapters import tabular
from mlambda.adapters.monitoring_store import S3ArchiveReader, Window
from mlambda.adapters.s3 import ObjectStore
from mlambda.errors import ConflictError, InvalidInputError, NotFoundError, PayloadTooLargeError
from mlambda.schemas.registry import ModelVersion


class S3EvaluationSources:
    """EvaluationSources: the artifacts bucket (reference samples, uploads) and the archive."""

    def __init__(self, artifacts: ObjectStore, data: ObjectStore, *, max_traffic_rows: int = 200_000) -> None:
        self._artifacts = artifacts
        self._archive = S3ArchiveReader(data, max_rows=max_traffic_rows)

    def reference(self, version: ModelVersion) -> tuple[str, dict[str, np.ndarray]]:
        """The copy of the reference sample the registry keeps with the version."""
        reference = getattr(version, "reference", None)
        key = getattr(reference, "sample_key", None)
        if not isinstance(key, str):
            raise ConflictError(
                f"{version.model} v{version.version} keeps no reference sample: register versions with a "
                "reference_key, or evaluate an upload or traffic",
                code="reference_unavailable",
            )
        try:
            return key, _table(self._artifacts.get(key), key)
        except NotFoundError as exc:
            raise ConflictError(
                f"the reference sample of {version.model} v{version.version} is missing from the artifacts bucket",
                code="reference_unavailable",
            ) from exc

    def upload(self, key: str, *, max_bytes: int) -> dict[str, np.ndarray]:
        """The uploaded file as columns."""
        try:
            size = self._artifacts.head(key).size
        except NotFoundError as exc:
            raise NotFoundError(
                f"nothing was uploaded at {key}: PUT the file to the upload URL first",
                code="upload_not_found",
            ) from exc
        if size > max_bytes:
            raise PayloadTooLargeError(
                f"the upload is {size:,} bytes, over the {max_bytes:,}-byte cap of an evaluation's source",
                code="upload_too_large",
                details={"bytes": size, "limit": max_bytes},
            )
        return _table(self._artifacts.get(key), key)

    def delete_upload(self, key: str) -> None:
        """Remove the consumed upload."""
        self._artifacts.delete(key)

    def traffic(self, model: str, start: datetime, end: datetime) -> Window:
        """The archive's prediction rows of ``model`` in the window (bounded by ``max_traffic_rows``)."""
        return self._archive.predictions(model, start, end)


def _table(data: bytes, key: str) -> dict[str, np.ndarray]:
    """A CSV or Parquet object as columns; InvalidInputError naming the problem otherwise."""
    try:
        if key.lower().endswith(".parquet"):
            return tabular.read_parquet_table(data).to_columns()
        return tabular.read_csv_table(data).to_columns()
    except tabular.TableError as exc:
        raise InvalidInputError(
            f"{key.rsplit('/', 1)[-1]} is not readable as {'Parquet' if key.lower().endswith('.parquet') else 'CSV'}: {exc}",
            code="unreadable_source",
        ) from exc
