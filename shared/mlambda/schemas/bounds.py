"""Bounded types the request schemas are built from: nothing a caller sends is unbounded.

Every string, list, mapping and nesting depth a request carries has a limit here, and a number
that will be stored is checked against what its store can hold, before anything is written:

- **DynamoDB numbers**: at most 38 significant digits, magnitude from 1e-130 to below 1e126, or
  zero. boto3 raises ``decimal.Inexact``/``Overflow``/``Underflow`` on anything else, after the
  earlier writes of a batch went through; ``dynamo_number_problem`` is the one definition, and
  ``mlambda.adapters.dynamodb`` applies it to every number any adapter writes;
- **64-bit integers** where ints become numpy arrays, Parquet columns or the prediction log
  (orjson writes 64-bit integers only): ``Int64``;
- **finite floats** wherever a float is stored (JSON has no NaN or infinity, and ``1e999``
  parses as infinity): ``FiniteFloat``, and ``StorableFloat`` for DynamoDB;
- **scalars** a client stores as data (feature values, item attributes): ``Scalar``, whose ints
  stay ints (a union of ``int | float`` would turn a 40-digit int into a lossy float);
- **JSON documents** stored as given (a fallback response, version params): ``JsonValue`` and
  ``JsonObject``, with a depth (DynamoDB nests maps 32 deep at most), a node count and a size;
- **DynamoDB's 400 KB item**, attribute names included: ``dynamo_size`` estimates what a value
  takes, for schemas that bound an item as a whole.

Messages name the value's problem; pydantic adds the field's location, so a client reads e.g.
``payload.add.spend: 1e+300 is beyond what the store holds``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from decimal import Decimal, InvalidOperation
from typing import Annotated, Any, Final

from pydantic import AfterValidator, Field, PlainValidator, StringConstraints, WithJsonSchema
from pydantic_core import PydanticCustomError

MAX_NAME: Final = 128
"""Names of features, columns, attributes, tags' keys: what a person types, with room."""
MAX_SHORT_TEXT: Final = 256
MAX_TEXT: Final = 2000
MAX_SCALAR_TEXT: Final = 1024
"""A string stored as a value (a feature, an item attribute)."""
INT64_MIN: Final = -(2**63)
INT64_MAX: Final = 2**63 - 1
DYNAMO_MAX_DIGITS: Final = 38
DYNAMO_MIN_EXPONENT: Final = -130
DYNAMO_MAX_EXPONENT: Final = 125
DYNAMO_ITEM_BYTES: Final = 400 * 1024
MAX_PAGE_TOKEN: Final = 2048
"""A ``next_token`` at most (``mlambda.adapters.paging`` issues a few hundred characters)."""
JSON_MAX_DEPTH: Final = 10
JSON_MAX_NODES: Final = 2000
JSON_MAX_BYTES: Final = 64 * 1024

Name = Annotated[str, StringConstraints(min_length=1, max_length=MAX_NAME)]
ShortText = Annotated[str, StringConstraints(max_length=MAX_SHORT_TEXT)]
Text = Annotated[str, StringConstraints(max_length=MAX_TEXT)]
Int64 = Annotated[int, Field(ge=INT64_MIN, le=INT64_MAX)]
FiniteFloat = Annotated[float, Field(allow_inf_nan=False)]


def is_decimal_text(text: str) -> bool:
    """True for ASCII digits only. ``str.isdigit`` is also true of ``"³"``, which ``int`` refuses
    (a 500 on ``/rows/³``), and of ``"٣"``, which ``int`` reads as 3 (an index the caller never wrote)."""
    return text.isascii() and text.isdigit()


def dynamo_number_problem(value: int | float | Decimal) -> str | None:
    """Why DynamoDB cannot store ``value`` as a number, or None when it can."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        if -(10**DYNAMO_MAX_DIGITS) < value < 10**DYNAMO_MAX_DIGITS:
            return None
        return f"has more than {DYNAMO_MAX_DIGITS} digits"
    if isinstance(value, float) and not math.isfinite(value):
        return "is not a finite number"
    try:
        number = value if isinstance(value, Decimal) else Decimal(repr(value))
    except InvalidOperation:
        return "is not a number"
    if not number.is_finite():
        return "is not a finite number"
    if number.is_zero():
        return None
    digits = len(number.normalize().as_tuple().digits)
    if digits > DYNAMO_MAX_DIGITS:
        return f"has more than {DYNAMO_MAX_DIGITS} significant digits"
    exponent = number.adjusted()
    if exponent > DYNAMO_MAX_EXPONENT:
        return "is beyond what the store holds (magnitude below 1e126)"
    if exponent < DYNAMO_MIN_EXPONENT:
        return "is too close to zero for the store (magnitude 1e-130 at least, or 0)"
    return None


def _storable(value: float) -> float:
    problem = dynamo_number_problem(value)
    if problem is not None:
        raise PydanticCustomError(
            "number_not_storable", "{value} {problem}", {"value": _shown(value), "problem": problem}
        )
    return value


StorableFloat = Annotated[float, Field(allow_inf_nan=False), AfterValidator(_storable)]
"""A finite float DynamoDB holds (magnitude 1e-130 to below 1e126, or zero)."""


def bounded_number(limit: float) -> Callable[[float], float]:
    """A validator refusing numbers whose magnitude is over ``limit`` (after the storable checks)."""

    def check(value: float) -> float:
        if abs(value) > limit:
            raise PydanticCustomError(
                "number_too_large",
                "{value} is over the limit of {limit} in magnitude",
                {"value": _shown(value), "limit": f"{limit:g}"},
            )
        return value

    return check


def scalar(value: Any) -> str | int | float | bool | None:
    """A stored value as given: null, a boolean, a 64-bit int, a storable float, or a bounded string."""
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, int):
        if INT64_MIN <= value <= INT64_MAX:
            return value
        raise PydanticCustomError(
            "int_out_of_range", "{value} is outside the 64-bit integer range", {"value": _shown(value)}
        )
    if isinstance(value, float):
        return _storable(value)
    if isinstance(value, str):
        if len(value) <= MAX_SCALAR_TEXT:
            return value
        raise PydanticCustomError(
            "string_too_long",
            "a string of {length} characters, over the limit of {limit}",
            {"length": len(value), "limit": MAX_SCALAR_TEXT},
        )
    raise PydanticCustomError(
        "scalar_type",
        "must be a string, a number, a boolean or null, not {kind}",
        {"kind": type(value).__name__},
    )


SCALAR_JSON_SCHEMA: dict[str, Any] = {
    "anyOf": [
        {"type": "string", "maxLength": MAX_SCALAR_TEXT},
        {"type": "integer", "minimum": INT64_MIN, "maximum": INT64_MAX},
        {"type": "number"},
        {"type": "boolean"},
        {"type": "null"},
    ]
}
Scalar = Annotated[
    str | int | float | bool | None, PlainValidator(scalar), WithJsonSchema(SCALAR_JSON_SCHEMA)
]
"""A value stored as data: ints stay ints (64-bit), floats are storable, strings at most 1024 characters."""


def _shown(value: Any) -> str:
    text = str(value)
    return text if len(text) <= 40 else f"{text[:20]}...({len(text)} characters)"


def check_json(
    value: Any,
    *,
    max_depth: int = JSON_MAX_DEPTH,
    max_nodes: int = JSON_MAX_NODES,
    max_bytes: int = JSON_MAX_BYTES,
    max_string: int = MAX_TEXT,
) -> Any:
    """``value`` when it is a JSON document within the limits; PydanticCustomError naming the path."""
    nodes = 0
    size = 0
    pending: list[tuple[Any, str, int]] = [(value, "", 1)]
    while pending:
        item, path, depth = pending.pop()
        nodes += 1
        if nodes > max_nodes:
            raise _json_error(path, f"holds more than {max_nodes} values")
        if depth > max_depth:
            raise _json_error(path, f"is nested deeper than {max_depth} levels")
        if isinstance(item, Mapping):
            for key, child in item.items():
                if not isinstance(key, str) or not 1 <= len(key) <= MAX_NAME:
                    raise _json_error(path, f"keys must be strings of 1-{MAX_NAME} characters")
                size += len(key) + 1
                pending.append((child, f"{path}.{key}" if path else key, depth + 1))
        elif isinstance(item, list | tuple):
            for index, child in enumerate(item):
                pending.append((child, f"{path}[{index}]", depth + 1))
        elif isinstance(item, str):
            if len(item) > max_string:
                raise _json_error(path, f"a string of {len(item)} characters, over the limit of {max_string}")
            size += len(item)
        elif item is None or isinstance(item, bool):
            size += 1
        elif isinstance(item, int | float):
            problem = dynamo_number_problem(item)
            if problem is not None:
                raise _json_error(path, f"{_shown(item)} {problem}")
            size += 21
        else:
            raise _json_error(path, f"{type(item).__name__} is not a JSON value")
        if size > max_bytes:
            raise _json_error(path, f"the document is over {max_bytes} bytes")
    return value


def _json_error(path: str, problem: str) -> PydanticCustomError:
    where = f"{path}: " if path else ""
    return PydanticCustomError("json_out_of_bounds", "{where}{problem}", {"where": where, "problem": problem})


JsonValue = Annotated[Any, AfterValidator(check_json)]
"""Any JSON document within ``JSON_MAX_DEPTH`` levels, ``JSON_MAX_NODES`` values and ``JSON_MAX_BYTES``,
its numbers storable in DynamoDB (finite), its strings at most ``MAX_TEXT`` characters."""
JsonObject = Annotated[dict[str, Any], AfterValidator(check_json)]
"""A JSON object within the same limits as ``JsonValue``."""


def dynamo_size(value: Any) -> int:
    """The bytes DynamoDB counts for ``value`` as an attribute value (an upper estimate for numbers).

    Strings by their UTF-8 length, numbers at most 21 bytes, booleans and nulls one, lists and maps
    three plus one per element, and a map's keys by their length.
    """
    if isinstance(value, str):
        return len(value.encode())
    if value is None or isinstance(value, bool):
        return 1
    if isinstance(value, int | float | Decimal):
        return 21
    if isinstance(value, bytes):
        return len(value)
    if isinstance(value, Mapping):
        return 3 + sum(len(str(k).encode()) + dynamo_size(v) + 1 for k, v in value.items())
    if isinstance(value, list | tuple | set | frozenset):
        return 3 + sum(dynamo_size(v) + 1 for v in value)
    return len(str(value).encode())
