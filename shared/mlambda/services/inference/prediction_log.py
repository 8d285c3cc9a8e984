"""The prediction log, written to the function's output: no network call on the predict path.

Every served (and shadow) prediction must reach the lake exactly once, and Lambda freezes the
process once it has answered, so neither a synchronous send nor a background thread fits. The
record is written to stdout instead (``sys.stdout`` as it is at each write, so the local cloud
and tests can redirect it): on Lambda that is the function's CloudWatch log stream, durable once
written, and a subscription filter delivers it to the archiver (at least once; the archiver
lands it once). The format, one record per request with the inputs as a columnar block, split
into pieces under CloudWatch's event limit, is ``mlambda.schemas.prediction_log``.

A row too large for one log event on its own is stored in the data bucket (``OverflowStore``,
one synchronous put on that rare request) and its piece carries the object's key; if even that
fails, the piece keeps the prediction and says how many bytes of features were not logged
(``features_truncated_bytes``), counted as ``PredictionLogTruncated``: never dropped silently.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from itertools import chain
from operator import itemgetter
from typing import Any, Protocol

import numpy as np
import orjson

from mlambda.errors import MlambdaError
from mlambda.observability import MetricUnit, logger, metrics
from mlambda.schemas.prediction_log import (
    ENCODED_DTYPES,
    OVERFLOW_PREFIX,
    PIECE_BYTES,
    RECORD_KIND,
    RECORD_MARKER,
    EncodedArray,
)
from mlambda.services.inference.scoring import PredictionColumns


class OverflowStore(Protocol):
    """Where a row too large for one log event is kept (the data bucket)."""

    def put(self, key: str, body: bytes, *, content_type: str = "application/json") -> None:
        """Store ``body`` under ``key``; MlambdaError when it cannot."""
        ...


@dataclass(frozen=True, slots=True)
class InputBlock:
    """A columnar request's model inputs: the feature names and the matrix the model scored."""

    names: list[str]
    matrix: np.ndarray

    def records(self) -> list[dict[str, Any]]:
        """One mapping per row (for a consumer that needs rows by name)."""
        return [dict(zip(self.names, values, strict=True)) for values in self.matrix.tolist()]


@dataclass(frozen=True, slots=True)
class Scored:
    """One version's answers for the logged rows: one object per row, or columns (columnar path)."""

    version: int
    variant: str
    latency_ms: float
    predictions: Sequence[Mapping[str, Any]] | PredictionColumns


@dataclass(frozen=True, slots=True)
class LoggedRequest:
    """What one request logs: its rows (request positions and model inputs) and who answered them."""

    request_id: str
    model: str
    timestamp: str  # ISO 8601, formatted once per request
    entity_id: str | None
    positions: Sequence[int]
    inputs: Sequence[Mapping[str, Any]] | InputBlock
    served: Scored
    shadow: Scored | None = None


def json_default(value: Any) -> Any:
    """What orjson cannot write natively: DynamoDB's Decimals, numpy scalars and non-contiguous arrays."""
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):  # orjson writes C-contiguous arrays itself, not views
        return value.tolist()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def _dumps(document: Any) -> bytes:
    return orjson.dumps(document, default=json_default, option=orjson.OPT_SERIALIZE_NUMPY)


def _columns(inputs: Sequence[Mapping[str, Any]]) -> tuple[list[str], list[Any]]:
    """Column names (first row's order, then any other key) and one value list per row."""
    if not inputs:
        return [], []
    first = inputs[0]
    columns = list(first)
    keys = first.keys()
    if all(row.keys() == keys for row in inputs):
        if len(columns) == 1:
            name = columns[0]
            return columns, [[row[name]] for row in inputs]
        getter = itemgetter(*columns)
        return columns, list(map(getter, inputs))
    columns = list(dict.fromkeys(chain.from_iterable(inputs)))
    return columns, [[row.get(name) for name in columns] for row in inputs]


def _rows(predictions: Sequence[Mapping[str, Any]] | PredictionColumns) -> Sequence[Mapping[str, Any]]:
    return predictions.as_rows() if isinstance(predictions, PredictionColumns) else predictions


def _prediction_block(
    predictions: Sequence[Mapping[str, Any]] | PredictionColumns, start: int, stop: int
) -> dict[str, Any] | list[Mapping[str, Any]]:
    """A run of rows' predictions as the record's columns (or objects, for fallback answers)."""
    if not isinstance(predictions, PredictionColumns):
        return list(predictions[start:stop])
    if predictions.values is not None:
        return {"value": EncodedArray.of(predictions.values[start:stop])}
    assert predictions.labels is not None and predictions.probabilities is not None
    labels = predictions.labels[start:stop]
    return {
        "label": EncodedArray.of(labels) if labels.dtype.name in ENCODED_DTYPES else labels.tolist(),
        "classes": predictions.classes,
        "probabilities": EncodedArray.of(predictions.probabilities[start:stop]),
    }


class PredictionLog:
    """Writes each request's record, in pieces under the event limit, to the function's output."""

    def __init__(
        self,
        output: Callable[[str], Any] | None = None,
        *,
        overflow: OverflowStore | None = None,
        piece_bytes: int = PIECE_BYTES,
    ) -> None:
        self._output = output
        self._overflow = overflow
        self._piece_bytes = piece_bytes

    def _write(self, text: str) -> None:
        (self._output or sys.stdout.write)(text)

    def publish(self, request: LoggedRequest) -> int:
        """Write the request's record (nothing when no row was logged); the number of pieces."""
        if not request.positions:
            return 0
        if isinstance(request.inputs, InputBlock):
            return self._publish_block(request, request.inputs)
        columns, values = _columns(request.inputs)
        header = self._header(request, version=1)
        whole = self._piece(header, columns, request, values, range(len(request.positions)))
        if len(whole) <= self._piece_bytes:
            self._write(whole.decode() + "\n")
            return 1
        return self._publish_in_pieces(header, columns, request, values)

    def _header(self, request: LoggedRequest, *, version: int) -> dict[str, Any]:
        served, shadow = request.served, request.shadow
        header: dict[str, Any] = {
            RECORD_MARKER: RECORD_KIND,
            "v": version,
            "request_id": request.request_id,
            "piece": 0,
            "pieces": 1,
            "model": request.model,
            "timestamp": request.timestamp,
            "entity_id": request.entity_id,
            "row_count": len(request.positions),
            "served": {"version": served.version, "variant": served.variant, "latency_ms": served.latency_ms},
        }
        if shadow is not None:
            header["shadow"] = {
                "version": shadow.version,
                "variant": shadow.variant,
                "latency_ms": shadow.latency_ms,
            }
        return header

    def _publish_block(self, request: LoggedRequest, block: InputBlock) -> int:
        """A columnar request as ``v`` 2 pieces: the input matrix and the predictions as columns.

        Written by orjson straight from the arrays (no object per row). Over the event limit,
        the rows are cut into equal runs sized from the whole record; a run still over it (rows
        of very uneven size: not a numeric matrix) goes the per-row way, by reference if need be.
        """
        rows = len(request.positions)
        header = self._header(request, version=2)
        whole = self._block_piece(header, request, block, 0, rows)
        if len(whole) <= self._piece_bytes:
            self._write(whole.decode() + "\n")
            return 1
        count = min(rows, -(-len(whole) * 5 // (self._piece_bytes * 4)))  # a fifth to spare
        bounds = [rows * i // count for i in range(count + 1)]
        header = {**header, "pieces": count}
        pieces = [
            self._block_piece({**header, "piece": n}, request, block, bounds[n], bounds[n + 1])
            for n in range(count)
        ]
        if any(len(piece) > self._piece_bytes for piece in pieces):
            served, shadow = request.served, request.shadow
            as_rows = LoggedRequest(
                request_id=request.request_id,
                model=request.model,
                timestamp=request.timestamp,
                entity_id=request.entity_id,
                positions=request.positions,
                inputs=block.records(),
                served=Scored(served.version, served.variant, served.latency_ms, _rows(served.predictions)),
                shadow=None
                if shadow is None
                else Scored(shadow.version, shadow.variant, shadow.latency_ms, _rows(shadow.predictions)),
            )
            columns, values = _columns(as_rows.inputs)  # type: ignore[arg-type]
            return self._publish_in_pieces(self._header(as_rows, version=1), columns, as_rows, values)
        for piece in pieces:
            self._write(piece.decode() + "\n")
        metrics.add_metric(name="PredictionLogPieces", unit=MetricUnit.Count, value=count)
        return count

    def _block_piece(
        self, header: dict[str, Any], request: LoggedRequest, block: InputBlock, start: int, stop: int
    ) -> bytes:
        piece = {
            **header,
            "rows": list(request.positions[start:stop]),
            "columns": block.names,
            "values": EncodedArray.of(block.matrix[start:stop]),
            "predictions": _prediction_block(request.served.predictions, start, stop),
        }
        if request.shadow is not None:
            piece["shadow_predictions"] = _prediction_block(request.shadow.predictions, start, stop)
        return _dumps(piece)

    def _piece(
        self,
        header: dict[str, Any],
        columns: list[str],
        request: LoggedRequest,
        values: Sequence[Any],
        span: Sequence[int],
    ) -> bytes:
        served = _rows(request.served.predictions)
        piece = {
            **header,
            "rows": [request.positions[i] for i in span],
            "columns": columns,
            "values": [values[i] for i in span],
            "predictions": [served[i] for i in span],
        }
        if request.shadow is not None:
            shadow = _rows(request.shadow.predictions)
            piece["shadow_predictions"] = [shadow[i] for i in span]
        return _dumps(piece)

    def _publish_in_pieces(
        self, header: dict[str, Any], columns: list[str], request: LoggedRequest, values: Sequence[Any]
    ) -> int:
        """Consecutive rows grouped greedily under the budget; a row over it alone goes by reference."""
        overhead = (
            len(_dumps({**header, "rows": [], "columns": columns, "values": [], "predictions": []})) + 64
        )
        spans: list[list[int]] = []
        current: list[int] = []
        size = overhead
        served = _rows(request.served.predictions)
        shadow = None if request.shadow is None else _rows(request.shadow.predictions)
        for i in range(len(request.positions)):
            row = [values[i], served[i]]
            if shadow is not None:
                row.append(shadow[i])
            cost = len(_dumps(row)) + 12  # its position and separators
            if current and size + cost > self._piece_bytes:
                spans.append(current)
                current, size = [], overhead
            current.append(i)
            size += cost
        if current:
            spans.append(current)
        header = {**header, "pieces": len(spans)}
        for number, span in enumerate(spans):
            piece = self._piece({**header, "piece": number}, columns, request, values, span)
            if len(piece) > self._piece_bytes:
                piece = self._by_reference({**header, "piece": number}, request, piece, span)
            self._write(piece.decode() + "\n")
        metrics.add_metric(name="PredictionLogPieces", unit=MetricUnit.Count, value=len(spans))
        return len(spans)

    def _by_reference(
        self, header: dict[str, Any], request: LoggedRequest, piece: bytes, span: Sequence[int]
    ) -> bytes:
        """A one-row piece too large for an event: stored, and referenced from the log."""
        rows = [request.positions[i] for i in span]
        key = f"{OVERFLOW_PREFIX}{request.model}/{request.request_id}/{header['piece']}.json"
        stub: dict[str, Any] = {**header, "rows": rows}
        if self._overflow is not None:
            try:
                self._overflow.put(key, piece)
            except MlambdaError as exc:
                logger.error(
                    "prediction log row too large for the log and not stored; features not logged",
                    extra={"request_id": request.request_id, "rows": rows, "error": exc.message},
                )
            else:
                metrics.add_metric(name="PredictionLogOverflows", unit=MetricUnit.Count, value=1)
                return _dumps({**stub, "ref": key})
        metrics.add_metric(name="PredictionLogTruncated", unit=MetricUnit.Count, value=len(rows))
        served = _rows(request.served.predictions)
        stub |= {"predictions": [served[i] for i in span], "features_truncated_bytes": len(piece)}
        if request.shadow is not None:
            shadow = _rows(request.shadow.predictions)
            stub["shadow_predictions"] = [shadow[i] for i in span]
        return _dumps(stub)
