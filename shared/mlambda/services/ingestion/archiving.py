"""The archiver's logic: a batch of envelopes or prediction-log records -> one Parquet object per partition.

Two inputs, one path: ingest's events come as SQS messages (JSON lists of envelopes), predict's
prediction log as CloudWatch Logs events (one record piece each, ``schemas.prediction_log``)
expanded into the same envelopes, a piece stored by reference read from the data bucket first.
A prediction record's first piece also records what the entity was served in the tracking
table (``ServedPredictions``), keyed by the request's serving time, so a redelivery overwrites it.

Exactly one row per accepted envelope, whatever fails:

- rows are deduplicated by envelope id within the batch (at-least-once producers);
- an object's name is the digest of the ids it holds (``schemas.archive.object_key``), so a
  batch delivered again with the same messages rewrites the same objects instead of adding
  copies;
- when an object cannot be written, every message with a row in it fails (and comes back);
  objects already written that hold rows of a failed message are deleted, and their other
  messages fail too, until no written object holds a row of a failed message. A failed message
  therefore leaves no row behind, and its redelivery cannot duplicate one;
- a message that is not a list of valid envelopes (or a valid record) fails alone (and reaches
  the DLQ after the queue's maxReceiveCount, or the OnFailure destination of the asynchronous
  invocation) instead of being dropped;
- rows (and served records) of a purged entity stamped at or before its purge are dropped
  (purge requests apply to new writes).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal

from pydantic import ValidationError

from mlambda.errors import MlambdaError
from mlambda.observability import MetricUnit, logger, metrics
from mlambda.schemas.archive import ArchiveEnvelope, archive_row, object_key, partition_prefix
from mlambda.schemas.prediction_log import PredictionLogRecord, expand
from mlambda.services.ingestion.ports import ArchiveObjects, ObjectReader, PurgeLog, ServedPredictions

if TYPE_CHECKING:
    from mlambda.config import ArchiverSettings

WRITE_THREADS = 8
RECORDED_ROWS = 20  # what the tracking item keeps of a served request (DynamoDB items are capped at 400 KB)


@dataclass(frozen=True, slots=True)
class ArchiveMessage:
    """One SQS message or log event: its id (stable across redeliveries), body and kind.

    ``envelopes``: a JSON list of envelopes (or one); ``prediction_log``: one record piece.
    """

    message_id: str
    body: str
    kind: Literal["envelopes", "prediction_log"] = "envelopes"


@dataclass
class ArchiveOutcome:
    """What one batch did: the messages to retry, and the figures."""

    failed: set[str] = field(default_factory=set)
    rows: int = 0
    objects: list[str] = field(default_factory=list)
    duplicates: int = 0
    purged: int = 0


@dataclass
class _Partition:
    prefix: str
    rows: dict[str, dict[str, Any]] = field(default_factory=dict)
    owners: set[str] = field(default_factory=set)

    @property
    def key(self) -> str:
        return object_key(self.prefix, self.rows)


def parse_message(body: str) -> list[ArchiveEnvelope]:
    """A message body: one envelope or a JSON list of them; ValueError when it is neither."""
    document = json.loads(body)
    items = document if isinstance(document, list) else [document]
    try:
        return [ArchiveEnvelope.model_validate(item) for item in items]
    except ValidationError as exc:
        raise ValueError(str(exc.errors(include_url=False, include_input=False)[:3])) from exc


def parse_record(body: str | bytes) -> PredictionLogRecord:
    """One prediction-log piece; ValueError naming the problem."""
    try:
        return PredictionLogRecord.model_validate_json(body)
    except ValidationError as exc:
        raise ValueError(str(exc.errors(include_url=False, include_input=False)[:3])) from exc


class ArchivingService:
    """Writes batches of archive messages to the data bucket (see the module doc for the guarantees)."""

    def __init__(
        self,
        objects: ArchiveObjects,
        purges: PurgeLog,
        *,
        served: ServedPredictions | None = None,
        overflow: ObjectReader | None = None,
    ) -> None:
        self._objects = objects
        self._purges = purges
        self._served = served
        self._overflow = overflow

    @classmethod
    def from_settings(cls, settings: ArchiverSettings) -> ArchivingService:
        """The service on the bucket and table template.yaml gives the archiver."""
        from mlambda.adapters.archive import ParquetArchive
        from mlambda.adapters.dynamodb import DynamoTable
        from mlambda.adapters.s3 import ObjectStore
        from mlambda.adapters.tracking import DynamoPurgeLog, DynamoTrackingStore

        data = ObjectStore(settings.data_bucket, settings)
        tracking = DynamoTable(settings.tracking_table, settings)
        return cls(
            ParquetArchive(data),
            DynamoPurgeLog(tracking),
            served=DynamoTrackingStore(tracking),
            overflow=data,
        )

    def archive(self, messages: Sequence[ArchiveMessage]) -> ArchiveOutcome:
        """Write the batch; the outcome names the messages that must come back."""
        outcome = ArchiveOutcome()
        rows: dict[str, tuple[ArchiveEnvelope, set[str]]] = {}
        served: list[tuple[PredictionLogRecord, str]] = []
        for message in messages:
            try:
                envelopes, record = self._parse(message)
            except (ValueError, MlambdaError) as exc:
                logger.error(
                    "archive message is not a list of envelopes nor a prediction-log record; left for retry",
                    extra={"message_id": message.message_id, "kind": message.kind, "error": str(exc)[:500]},
                )
                outcome.failed.add(message.message_id)
                continue
            if record is not None and record.piece == 0 and record.entity_id:
                served.append((record, message.message_id))
            for envelope in envelopes:
                held = rows.get(envelope.id)
                if held is not None:
                    outcome.duplicates += 1
                owners = held[1] if held else set()
                owners.add(message.message_id)
                rows[envelope.id] = (envelope, owners)
        purged = self._purged(rows, served)
        kept = self._without_purged(rows, purged, outcome)
        self._record_served(served, purged, outcome)
        partitions = self._partitions([(e, owners) for e, owners in kept if not owners <= outcome.failed])
        written = self._write(partitions, outcome)
        self._undo_tainted(written, outcome)
        survivors = [p for p in written if not (p.owners & outcome.failed)]
        outcome.objects = [p.key for p in survivors]
        outcome.rows = sum(len(p.rows) for p in survivors)
        for name, value in (
            ("ArchivedRows", outcome.rows),
            ("ArchivedObjects", len(outcome.objects)),
            ("ArchiveFailedMessages", len(outcome.failed)),
            ("ArchivePurgedRows", outcome.purged),
        ):
            if value:
                metrics.add_metric(name=name, unit=MetricUnit.Count, value=value)
        return outcome

    def _parse(self, message: ArchiveMessage) -> tuple[list[ArchiveEnvelope], PredictionLogRecord | None]:
        """The message's envelopes, and its prediction-log record when it is one."""
        if message.kind == "envelopes":
            return parse_message(message.body), None
        record = parse_record(message.body)
        if record.ref is not None:
            if self._overflow is None:
                raise ValueError("a piece stored by reference, and no store to read it from")
            stored = parse_record(self._overflow.get(record.ref))
            if (stored.request_id, stored.piece, stored.ref) != (record.request_id, record.piece, None):
                raise ValueError(
                    f"object {record.ref} does not hold piece {record.piece} of {record.request_id}"
                )
            record = stored
        return expand(record), record

    def _purged(
        self, rows: dict[str, tuple[ArchiveEnvelope, set[str]]], served: list[tuple[PredictionLogRecord, str]]
    ) -> dict[str, datetime]:
        entities = {e.entity_id for e, _ in rows.values() if e.entity_id}
        entities |= {record.entity_id for record, _ in served if record.entity_id}
        return self._purges.purged_at(sorted(entities)) if entities else {}

    def _record_served(
        self,
        served: list[tuple[PredictionLogRecord, str]],
        purged: dict[str, datetime],
        outcome: ArchiveOutcome,
    ) -> None:
        """What each entity was served, in the tracking table; a failure fails its message (retried)."""
        if self._served is None:
            return
        for record, owner in served:
            assert record.entity_id is not None
            at = purged.get(record.entity_id)
            if at is not None and record.timestamp <= at:
                continue
            try:
                self._served.record_predictions(
                    record.entity_id,
                    model=record.model,
                    version=record.served.version,
                    variant=record.served.variant,
                    request_id=record.request_id,
                    predictions=record.served_predictions[:RECORDED_ROWS],
                    rows=record.row_count,
                    at=record.timestamp,
                )
            except MlambdaError as exc:
                logger.warning(
                    "served predictions not recorded; the record will be retried",
                    extra={"request_id": record.request_id, "error": exc.message},
                )
                outcome.failed.add(owner)

    def _without_purged(
        self,
        rows: dict[str, tuple[ArchiveEnvelope, set[str]]],
        purged: dict[str, datetime],
        outcome: ArchiveOutcome,
    ) -> list[tuple[ArchiveEnvelope, set[str]]]:
        kept = []
        for envelope, owners in rows.values():
            at = purged.get(envelope.entity_id or "")
            if at is not None and envelope.timestamp <= at:
                outcome.purged += 1
                continue
            kept.append((envelope, owners))
        return kept

    @staticmethod
    def _partitions(rows: list[tuple[ArchiveEnvelope, set[str]]]) -> list[_Partition]:
        partitions: dict[str, _Partition] = {}
        for envelope, owners in rows:
            prefix = partition_prefix(envelope)
            partition = partitions.get(prefix)
            if partition is None:
                partition = partitions[prefix] = _Partition(prefix)
            partition.rows[envelope.id] = archive_row(envelope)
            partition.owners |= owners
        return list(partitions.values())

    def _write(self, partitions: list[_Partition], outcome: ArchiveOutcome) -> list[_Partition]:
        """Every partition's object, in parallel; the ones written."""

        def put(partition: _Partition) -> bool:
            try:
                self._objects.put_rows(partition.key, list(partition.rows.values()))
            except MlambdaError as exc:
                logger.warning(
                    "archive object not written", extra={"key": partition.key, "error": exc.message}
                )
                return False
            return True

        if not partitions:
            return []
        with ThreadPoolExecutor(max_workers=min(WRITE_THREADS, len(partitions))) as pool:
            done = list(pool.map(put, partitions))
        for partition, ok in zip(partitions, done, strict=True):
            if not ok:
                outcome.failed |= partition.owners
        return [p for p, ok in zip(partitions, done, strict=True) if ok]

    def _undo_tainted(self, written: list[_Partition], outcome: ArchiveOutcome) -> None:
        """Delete written objects holding rows of failed messages, until none is left (a fixed point)."""
        removed: set[str] = set()
        changed = True
        while changed:
            changed = False
            for partition in written:
                if partition.key in removed or not partition.owners & outcome.failed:
                    continue
                try:
                    self._objects.delete(partition.key)
                except MlambdaError as exc:
                    # The rows stay once more than they should; readers drop duplicate ids.
                    metrics.add_metric(name="ArchiveUndoFailures", unit=MetricUnit.Count, value=1)
                    logger.error(
                        "could not delete an object of a failed batch",
                        extra={"key": partition.key, "error": exc.message},
                    )
                removed.add(partition.key)
                if not partition.owners <= outcome.failed:
                    outcome.failed |= partition.owners
                    changed = True
