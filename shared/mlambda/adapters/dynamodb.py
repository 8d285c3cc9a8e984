"""DynamoDB access with plain Python values (numbers as int/float, not Decimal).

Uses the low-level client (thread-safe, faster than the resource API) with boto3's type
(de)serialisers; floats go through ``Decimal(repr(x))`` so they round-trip exactly. Every value
written goes through ``_to_dynamo``, which refuses numbers DynamoDB cannot hold
(``mlambda.schemas.bounds.dynamo_number_problem``), and every item put through
``serialize_item``, which refuses items over DynamoDB's 400 KB: both before the call.
"""

from __future__ import annotations

import random
import time
from collections.abc import Iterator, Mapping, Sequence
from decimal import Decimal
from typing import Any

from boto3.dynamodb.types import TypeDeserializer, TypeSerializer

from mlambda.adapters.aws import AwsResource, aws_errors
from mlambda.config import FunctionSettings
from mlambda.errors import ConflictError, InvalidInputError, PayloadTooLargeError, UpstreamError
from mlambda.schemas.bounds import DYNAMO_ITEM_BYTES, dynamo_number_problem

_serializer = TypeSerializer()
_deserializer = TypeDeserializer()
BATCH_GET_LIMIT = 100
BATCH_WRITE_LIMIT = 25
TRANSACTION_ATTEMPTS = 5


def _to_dynamo(value: Any, path: str) -> Any:
    """``value`` as boto3 serialises it, every number checked against what DynamoDB holds.

    The one conversion every adapter's writes go through: a number DynamoDB cannot store (over
    38 digits, beyond 1e126, below 1e-130, not finite) is an InvalidInputError naming where it is,
    raised before the call, instead of boto3's ``decimal`` exception halfway through a batch.
    """
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, int | float | Decimal):
        number = Decimal(repr(value)) if isinstance(value, float) else value
        problem = dynamo_number_problem(number)
        if problem is not None:
            shown = repr(value) if len(repr(value)) <= 40 else f"{repr(value)[:20]}..."
            raise InvalidInputError(
                f"{path}: {shown} cannot be stored: it {problem}",
                code="unstorable_number",
                details={"field": path},
            )
        return number
    if isinstance(value, Mapping):
        return {str(k): _to_dynamo(v, f"{path}.{k}") for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_to_dynamo(v, f"{path}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, set | frozenset):
        return {_to_dynamo(v, path) for v in value}
    return value


def _from_dynamo(value: Any) -> Any:
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() and "E" not in str(value) else float(value)
    if isinstance(value, dict):
        return {k: _from_dynamo(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_from_dynamo(v) for v in value]
    if isinstance(value, set):
        return {_from_dynamo(v) for v in value}
    return value


def serialize(item: Mapping[str, Any]) -> dict[str, Any]:
    """A Python mapping as a DynamoDB attribute map."""
    return {k: _serializer.serialize(_to_dynamo(v, k)) for k, v in item.items() if v is not None}


def serialize_item(item: Mapping[str, Any], table: str) -> dict[str, Any]:
    """An item to write: serialised, and within DynamoDB's 400 KB (413 ``item_too_large`` otherwise).

    DynamoDB would refuse it with a ValidationException (a 502 to the caller); this names the
    attributes that take the room instead.
    """
    serialized = serialize(item)
    sizes = {name: len(name.encode()) + _attribute_bytes(value) for name, value in serialized.items()}
    total = sum(sizes.values())
    if total > DYNAMO_ITEM_BYTES:
        largest = sorted(sizes, key=sizes.__getitem__, reverse=True)[:3]
        raise PayloadTooLargeError(
            f"an item of {total:,} bytes for table {table}, over DynamoDB's {DYNAMO_ITEM_BYTES:,}; "
            f"largest attributes: {', '.join(largest)}",
            code="item_too_large",
            details={"bytes": total, "limit": DYNAMO_ITEM_BYTES, "largest": largest},
        )
    return serialized


def _attribute_bytes(value: Mapping[str, Any]) -> int:
    """DynamoDB's size of one serialised attribute value (numbers: an upper estimate)."""
    kind, inner = next(iter(value.items()))
    if kind == "S":
        return len(inner.encode())
    if kind == "N":
        return 21
    if kind == "B":
        return len(inner)
    if kind in ("BOOL", "NULL"):
        return 1
    if kind == "SS":
        return sum(len(s.encode()) for s in inner)
    if kind == "NS":
        return 21 * len(inner)
    if kind == "BS":
        return sum(len(b) for b in inner)
    if kind == "L":
        return 3 + sum(1 + _attribute_bytes(v) for v in inner)
    return 3 + sum(len(k.encode()) + 1 + _attribute_bytes(v) for k, v in inner.items())


def deserialize(item: Mapping[str, Any]) -> dict[str, Any]:
    """A DynamoDB attribute map as plain Python values."""
    return {k: _from_dynamo(_deserializer.deserialize(v)) for k, v in item.items()}


def serialize_values(values: Mapping[str, Any]) -> dict[str, Any]:
    """Expression attribute values (``:name`` -> value) in DynamoDB form."""
    return {k: _serializer.serialize(_to_dynamo(v, k)) for k, v in values.items()}


class DynamoTable(AwsResource):
    """One table, with the operations services need, in plain Python values."""

    service = "dynamodb"

    def __init__(self, name: str, settings: FunctionSettings, dynamodb_client: Any = None) -> None:
        super().__init__(settings, dynamodb_client)
        self.name = name

    def get(self, key: Mapping[str, Any], *, consistent: bool = False) -> dict[str, Any] | None:
        """The item at ``key``, or None."""
        with aws_errors(f"table {self.name}"):
            response = self.client.get_item(
                TableName=self.name, Key=serialize(key), ConsistentRead=consistent
            )
        item = response.get("Item")
        return deserialize(item) if item else None

    def put(
        self,
        item: Mapping[str, Any],
        *,
        condition: str | None = None,
        names: Mapping[str, str] | None = None,
        values: Mapping[str, Any] | None = None,
    ) -> None:
        """Write ``item``, optionally only if ``condition`` holds (else ConflictError)."""
        kwargs: dict[str, Any] = {"TableName": self.name, "Item": serialize_item(item, self.name)}
        _add_expression_args(kwargs, condition=condition, names=names, values=values)
        with aws_errors(f"item in {self.name}"):
            self.client.put_item(**kwargs)

    def update(
        self,
        key: Mapping[str, Any],
        expression: str,
        *,
        condition: str | None = None,
        names: Mapping[str, str] | None = None,
        values: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Apply an update expression atomically; returns the item as it is after."""
        kwargs: dict[str, Any] = {
            "TableName": self.name,
            "Key": serialize(key),
            "UpdateExpression": expression,
            "ReturnValues": "ALL_NEW",
        }
        _add_expression_args(kwargs, condition=condition, names=names, values=values)
        with aws_errors(f"item in {self.name}"):
            response = self.client.update_item(**kwargs)
        return deserialize(response.get("Attributes", {}))

    def delete(
        self, key: Mapping[str, Any], *, condition: str | None = None, values: Mapping[str, Any] | None = None
    ) -> None:
        """Delete the item at ``key`` (no error when it is absent, unless ``condition`` fails)."""
        kwargs: dict[str, Any] = {"TableName": self.name, "Key": serialize(key)}
        _add_expression_args(kwargs, condition=condition, names=None, values=values)
        with aws_errors(f"item in {self.name}"):
            self.client.delete_item(**kwargs)

    def query(
        self,
        key_condition: str,
        values: Mapping[str, Any],
        *,
        names: Mapping[str, str] | None = None,
        index: str | None = None,
        filter_expression: str | None = None,
        forward: bool = True,
        limit: int | None = None,
        start_key: Mapping[str, Any] | None = None,
        consistent: bool = False,
    ) -> tuple[list[dict[str, Any]], dict[str, Any] | None]:
        """One page of a query: (items, key to continue from or None)."""
        kwargs: dict[str, Any] = {
            "TableName": self.name,
            "KeyConditionExpression": key_condition,
            "ScanIndexForward": forward,
        }
        _add_expression_args(kwargs, condition=None, names=names, values=values)
        if index:
            kwargs["IndexName"] = index
        else:
            kwargs["ConsistentRead"] = consistent
        if filter_expression:
            kwargs["FilterExpression"] = filter_expression
        if limit:
            kwargs["Limit"] = limit
        if start_key:
            kwargs["ExclusiveStartKey"] = serialize(start_key)
        with aws_errors(f"table {self.name}"):
            response = self.client.query(**kwargs)
        last = response.get("LastEvaluatedKey")
        return [deserialize(i) for i in response.get("Items", [])], (deserialize(last) if last else None)

    def query_all(
        self,
        key_condition: str,
        values: Mapping[str, Any],
        **kwargs: Any,
    ) -> Iterator[dict[str, Any]]:
        """Every item a query matches, page after page."""
        start: dict[str, Any] | None = None
        while True:
            items, start = self.query(key_condition, values, start_key=start, **kwargs)
            yield from items
            if start is None:
                return

    def scan_all(self) -> Iterator[dict[str, Any]]:
        """Every item of the table (admin listings of small tables only)."""
        kwargs: dict[str, Any] = {"TableName": self.name}
        while True:
            with aws_errors(f"table {self.name}"):
                response = self.client.scan(**kwargs)
            yield from (deserialize(i) for i in response.get("Items", []))
            last = response.get("LastEvaluatedKey")
            if not last:
                return
            kwargs["ExclusiveStartKey"] = last

    def batch_get(self, keys: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
        """The items at ``keys`` (absent ones are skipped), 100 keys a call, retrying unprocessed keys."""
        found: list[dict[str, Any]] = []
        for start in range(0, len(keys), BATCH_GET_LIMIT):
            pending: dict[str, Any] = {
                self.name: {"Keys": [serialize(k) for k in keys[start : start + BATCH_GET_LIMIT]]}
            }
            for _attempt in range(8):
                with aws_errors(f"table {self.name}"):
                    response = self.client.batch_get_item(RequestItems=pending)
                found.extend(deserialize(i) for i in response.get("Responses", {}).get(self.name, []))
                pending = response.get("UnprocessedKeys") or {}
                if not pending:
                    break
            if pending:
                raise_unprocessed(self.name)
        return found

    def batch_put(self, items: Sequence[Mapping[str, Any]]) -> None:
        """Write ``items`` 25 a call, retrying unprocessed ones."""
        self._batch_write([{"PutRequest": {"Item": serialize_item(item, self.name)}} for item in items])

    def batch_delete(self, keys: Sequence[Mapping[str, Any]]) -> None:
        """Delete the items with ``keys`` 25 a call, retrying unprocessed ones."""
        self._batch_write([{"DeleteRequest": {"Key": serialize(key)}} for key in keys])

    def _batch_write(self, requests: Sequence[Mapping[str, Any]]) -> None:
        """BatchWriteItem in calls of 25, retrying what DynamoDB leaves unprocessed with backoff."""
        for start in range(0, len(requests), BATCH_WRITE_LIMIT):
            pending: dict[str, Any] = {self.name: list(requests[start : start + BATCH_WRITE_LIMIT])}
            for attempt in range(8):
                with aws_errors(f"table {self.name}"):
                    response = self.client.batch_write_item(RequestItems=pending)
                pending = response.get("UnprocessedItems") or {}
                if not pending:
                    break
                time.sleep(0.05 * 2**attempt)
            if pending:
                raise_unprocessed(self.name)

    def transact_write(self, operations: Sequence[Mapping[str, Any]]) -> None:
        """All-or-nothing writes (entries from ``transact_put`` and friends).

        A transaction that only collided with another one touching the same items is retried
        with jittered backoff; one whose condition failed raises ConflictError at once (its
        ``failed_operations`` say which), as does a collision that outlasts the retries.
        """
        for attempt in range(TRANSACTION_ATTEMPTS):
            try:
                with aws_errors(f"transaction on {self.name}"):
                    self.client.transact_write_items(TransactItems=list(operations))
            except ConflictError as exc:
                if failed_operations(exc) is None and attempt + 1 < TRANSACTION_ATTEMPTS:
                    time.sleep(random.uniform(0.005, 0.05) * 2**attempt)
                    continue
                raise
            return


def failed_operations(error: ConflictError) -> list[int] | None:
    """Indexes of the transaction's operations whose condition failed; None when it was a transient conflict."""
    reasons = (error.details or {}).get("reasons") if isinstance(error.details, dict) else None
    if not reasons:
        return []
    failed = [i for i, code in enumerate(reasons) if code == "ConditionalCheckFailed"]
    if not failed and any(code == "TransactionConflict" for code in reasons):
        return None
    return failed


def transact_put(
    table: str,
    item: Mapping[str, Any],
    *,
    condition: str | None = None,
    names: Mapping[str, str] | None = None,
    values: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """A ``Put`` entry of a transaction."""
    operation: dict[str, Any] = {"TableName": table, "Item": serialize_item(item, table)}
    _add_expression_args(operation, condition=condition, names=names, values=values)
    return {"Put": operation}


def transact_update(
    table: str,
    key: Mapping[str, Any],
    expression: str,
    *,
    condition: str | None = None,
    names: Mapping[str, str] | None = None,
    values: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """An ``Update`` entry of a transaction."""
    operation: dict[str, Any] = {"TableName": table, "Key": serialize(key), "UpdateExpression": expression}
    _add_expression_args(operation, condition=condition, names=names, values=values)
    return {"Update": operation}


def transact_check(
    table: str,
    key: Mapping[str, Any],
    condition: str,
    *,
    names: Mapping[str, str] | None = None,
    values: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """A ``ConditionCheck`` entry of a transaction."""
    operation: dict[str, Any] = {"TableName": table, "Key": serialize(key)}
    _add_expression_args(operation, condition=condition, names=names, values=values)
    return {"ConditionCheck": operation}


def transact_delete(
    table: str,
    key: Mapping[str, Any],
    *,
    condition: str | None = None,
    names: Mapping[str, str] | None = None,
    values: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """A ``Delete`` entry of a transaction."""
    operation: dict[str, Any] = {"TableName": table, "Key": serialize(key)}
    _add_expression_args(operation, condition=condition, names=names, values=values)
    return {"Delete": operation}


def raise_unprocessed(table: str) -> None:
    """DynamoDB kept throttling part of a batch: fail loudly rather than drop it."""
    raise UpstreamError(f"table {table}: batch left unprocessed items after retries")


def _add_expression_args(
    kwargs: dict[str, Any],
    *,
    condition: str | None,
    names: Mapping[str, str] | None,
    values: Mapping[str, Any] | None,
) -> None:
    if condition:
        kwargs["ConditionExpression"] = condition
    if names:
        kwargs["ExpressionAttributeNames"] = dict(names)
    if values:
        kwargs["ExpressionAttributeValues"] = serialize_values(values)
