"""The adversarial corpus: what an attacker or a careless client sends, and what each must get back.

Every case is data (``Case``): a request as it goes over the wire (method, path, the scope of the
key it carries, a JSON body or raw bytes, headers) and the status and error ``code`` it must be
answered with. They run against ONE seeded local cloud (``tests.e2e.seeding.seed`` plus a few
things only the corpus needs: a second model with an endpoint config and a version that fails the
gate, a revoked key, a standard-plan key, two uploads that registration must refuse). Requests are
written on a socket of their own so nothing a client library would tidy up (a NUL in the path,
bytes that are not UTF-8, a duplicated header) is lost on the way. A case may also ``check`` what
the answer left behind (the upload deleted, a resend applied once, the rules kept).

Each case stands alone: whatever it changes (an endpoint's revision, a key's state) it reads fresh
or owns, so the order the cases run in does not matter. The summary at the end prints how many
cases each status class holds.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import boto3
import numpy as np
import pytest

from mlambda.adapters.dynamodb import DynamoTable
from mlambda.adapters.registry import DynamoRegistryStore
from mlambda.config import FunctionSettings
from mlambda.schemas.events import event_body
from mlambda.schemas.open_inference import INFERENCE_HEADER
from tests.batch_support import register_model
from tests.e2e.conftest import Platform
from tests.e2e.seeding import ENTITY, ITEM, MODEL, Seeded, seed
from tests.onnx_exploits import sparse_initializer_values
from tests.registry_support import publish
from tests.unit.fakes_batch import FEATURES, model_version

pytestmark = pytest.mark.e2e

SPLIT = "churn-split"
"""A second model whose endpoint config the endpoint cases change (churn's stays as seeded)."""
LEAK = "leak-corpus"
"""A model whose uploads registration must refuse and delete."""
ROW = {name: float(i) + 0.5 for i, name in enumerate(FEATURES)}
BURST = 600
"""Requests of one standard-plan key at once (its bucket holds 200, refilled at 100 a second)."""
GATEWAY_BODY_LIMIT = 10 * 1024 * 1024
FUNCTION_BODY_LIMIT = 6 * 1024 * 1024


@dataclass(frozen=True)
class Answer:
    """What came back: status, headers (lower-cased names), body bytes, the body as JSON if it is."""

    status: int
    headers: dict[str, str]
    body: bytes

    @property
    def json(self) -> Any:
        try:
            return json.loads(self.body)
        except ValueError:
            return None

    @property
    def code(self) -> str | None:
        document = self.json
        return document.get("code") if isinstance(document, dict) else None


@dataclass
class World:
    """The seeded cloud, its keys (by scope, plus ``revoked``, ``standard``, ``unknown``) and ids."""

    platform: Platform
    seeded: Seeded
    keys: dict[str, str]
    ids: dict[str, str]

    def send(
        self, method: str, path: str, key: str | None, headers: list[tuple[bytes, bytes]], body: bytes | None
    ) -> Answer:
        return send(self.platform.api_url, method, path, key, headers, body)

    def revision(self, model: str) -> str:
        """The endpoint's ETag as read now (another case may have moved it)."""
        answer = self.send("GET", f"/models/{model}/endpoint", self.keys["admin"], [], None)
        assert answer.status == 200, answer.body
        return answer.headers["etag"]

    def get(self, path: str) -> Any:
        answer = self.send("GET", path, self.keys["admin"], [], None)
        assert answer.status == 200, answer.body
        return answer.json


def send(  # noqa: PLR0917 - the parts of a request line, in wire order
    api_url: str,
    method: str,
    path: str,
    key: str | None,
    headers: list[tuple[bytes, bytes]],
    body: bytes | None,
    *,
    timeout: float = 60,
) -> Answer:
    """One HTTP/1.1 request written as given on its own connection (a NUL, a raw byte, a second
    header line all reach the server), and its answer."""
    url = urlsplit(api_url)
    assert url.hostname is not None and url.port is not None
    lines: list[tuple[bytes, bytes]] = [
        (b"Host", f"{url.hostname}:{url.port}".encode()),
        (b"Connection", b"close"),
    ]
    if key is not None:
        lines.append((b"x-api-key", key.encode()))
    lines += headers
    chunked = any(name.lower() == b"transfer-encoding" for name, _ in headers)
    if body is not None and not chunked:
        lines.append((b"Content-Length", str(len(body)).encode()))
    head = method.encode() + b" " + (url.path + path).encode("utf-8", "surrogateescape") + b" HTTP/1.1\r\n"
    request = (
        head + b"".join(name + b": " + value + b"\r\n" for name, value in lines) + b"\r\n" + (body or b"")
    )
    with socket.create_connection((url.hostname, url.port), timeout=timeout) as sock:
        sock.sendall(request)
        response = http.client.HTTPResponse(sock)
        response.begin()
        data = response.read()
    return Answer(response.status, {k.lower(): v for k, v in response.getheaders()}, data)


Body = Any
Dynamic = Callable[[World], Any]
NO_BODY = object()


@dataclass(frozen=True)
class Case:
    """One request and the answer it must get (``expected_code`` None: a success, no error code).

    ``key_scope`` names the key sent: a scope of the seeded keys, ``admin``, ``revoked``,
    ``standard`` (a predict key on the standard plan), ``unknown`` (well-formed, never issued), or
    None for no key. ``body`` is sent as JSON, ``raw`` as given; either may be a function of the
    world, as may ``headers``. ``repeat`` sends the request that many times at once: every answer
    must then be a 200 or the expected one, and at least one the expected one.
    """

    name: str
    method: str
    path: str
    key_scope: str | None
    expected_status: int
    expected_code: str | None
    body: Body | Dynamic = NO_BODY
    raw: bytes | Dynamic | None = None
    headers: Mapping[str, str] | Dynamic = field(default_factory=dict)
    check: Callable[[World, Answer], None] | None = None
    repeat: int = 1

    def request(self, world: World) -> tuple[str, list[tuple[bytes, bytes]], bytes | None]:
        path = self.path.format(**world.ids)
        headers = self.headers(world) if callable(self.headers) else self.headers
        encoded = [(k.encode(), v.encode("utf-8", "surrogateescape")) for k, v in headers.items()]
        if self.raw is not None:
            raw = self.raw(world) if callable(self.raw) else self.raw
            return path, encoded, raw
        if self.body is NO_BODY:
            return path, encoded, None
        body = self.body(world) if callable(self.body) else self.body
        if not any(k.lower() == "content-type" for k in headers):
            encoded.append((b"Content-Type", b"application/json"))
        return path, encoded, json.dumps(body).encode()


def case(  # noqa: PLR0917 - a table row: positional keeps 200 cases readable
    name: str, method: str, path: str, key_scope: str | None, status: int, code: str | None, **extra: Any
) -> Case:
    return Case(name, method, path, key_scope, status, code, **extra)


def row(**changes: Any) -> dict[str, Any]:
    return {**ROW, **changes}


def raw_row(value: str) -> bytes:
    """One instance whose ``f0`` is the JSON literal ``value`` as written (NaN, 31 digits...)."""
    rest = ",".join(f'"{name}": {ROW[name]}' for name in FEATURES[1:])
    return f'{{"instances": [{{"f0": {value}, {rest}}}]}}'.encode()


def nested(depth: int) -> Any:
    value: Any = 1
    for _ in range(depth):
        value = {"a": value}
    return value


def now() -> datetime:
    return datetime.now(UTC)


def v2_binary(world: World) -> bytes:
    header = json.dumps(
        {
            "inputs": [
                {"name": "X", "datatype": "FP32", "shape": [1, 20], "parameters": {"binary_data_size": 80}}
            ]
        }
    ).encode()
    return header + np.arange(20, dtype=np.float32).tobytes()


def v2_binary_headers(length: int | None) -> Dynamic:
    def headers(world: World) -> dict[str, str]:
        size = len(v2_binary(world)) - 80 if length is None else length
        return {"Content-Type": "application/octet-stream", INFERENCE_HEADER: str(size)}

    return headers


# ------------------------------------------------------------------------------------- checks


def _upload_removed(world: World, answer: Answer, upload: str, failure: str) -> None:
    """The version ends FAILED with ``failure`` and the refused upload is no longer in the bucket."""
    version = answer.json["version"]
    deadline = time.monotonic() + 60
    record = world.get(f"/models/{LEAK}/versions/{version}")
    while record["status"] == "PENDING_VALIDATION" and time.monotonic() < deadline:
        time.sleep(0.2)
        record = world.get(f"/models/{LEAK}/versions/{version}")
    assert (record["status"], record["failure"]["code"]) == ("FAILED", failure)
    s3 = boto3.client("s3", endpoint_url=world.platform.cloud.endpoint_url, region_name="us-east-1")
    left = s3.list_object_versions(Bucket=world.platform.cloud.outputs["ArtifactsBucketName"], Prefix=upload)
    assert not left.get("Versions") and not left.get("DeleteMarkers")


def _leak_refused(world: World, answer: Answer) -> None:
    _upload_removed(world, answer, world.ids["leak_upload"], "external_data")


def _corrupt_refused(world: World, answer: Answer) -> None:
    _upload_removed(world, answer, world.ids["corrupt_upload"], "invalid_model")


def _events_applied_once(world: World, answer: Answer) -> None:
    """The good events were applied, the bad one rejected alone; a resend applies nothing again."""
    results = answer.json["results"]
    assert [r["status"] for r in results] == ["accepted", "accepted", "rejected"]
    assert results[2]["code"] == "invalid_event" and "payload.add.spend" in results[2]["reason"]
    again = world.send(
        "POST", "/events", world.keys["ingest"], [(b"Content-Type", b"application/json")], _spend_batch(world)
    )
    assert again.status == 207
    assert [r["status"] for r in again.json["results"]] == ["duplicate", "duplicate", "rejected"]
    aggregates = world.get("/entities/corpus-spender/features")["aggregates"]
    assert (aggregates["count_click"], aggregates["sum_spend"]) == (1, 5)


_SPEND_BATCH: dict[str, bytes] = {}


def _spend_batch(world: World) -> bytes:
    """Two good events then one whose increment DynamoDB cannot hold (the same bytes each time)."""
    if not _SPEND_BATCH:
        at = now()
        events = [
            event_body("corpus-spend-1", "interaction", "corpus-spender", at, kind="click", item_id=ITEM),
            event_body(
                "corpus-spend-2",
                "feature_update",
                "corpus-spender",
                at,
                group="wallet",
                values={"v": 1},
                add={"spend": 5},
            ),
            event_body(
                "corpus-spend-3",
                "feature_update",
                "corpus-spender",
                at,
                group="wallet",
                values={"v": 2},
                add={"spend": 1e300},
            ),
        ]
        _SPEND_BATCH["body"] = json.dumps({"events": events}).encode()
    return _SPEND_BATCH["body"]


def _split_kept_rules(world: World, answer: Answer) -> None:
    after = answer.json
    assert [(v["target"], v["weight"]) for v in after["variants"]] == [("production", 90), ("v1", 10)]
    assert after["rules"] == world.get(f"/models/{SPLIT}/endpoint")["rules"]
    assert after["rules"]["fallback"]["response"] == {"label": 0}
    assert after["cache"] == {"enabled": True, "ttl_seconds": 60}


def _throttled_with_retry_after(world: World, answer: Answer) -> None:
    assert int(answer.headers["retry-after"]) >= 1
    assert answer.json["details"] is not None


def _no_file_read(world: World, answer: Answer) -> None:
    assert b"mlk." not in answer.body


# -------------------------------------------------------------------------------------- cases

ENDPOINT = f"/models/{SPLIT}/endpoint"
MAIN_ONLY = [{"name": "main", "target": "production", "weight": 100}]


def _if_match(world: World) -> dict[str, str]:
    return {"If-Match": world.revision(SPLIT)}


CASES: list[Case] = [
    # --- authentication and scopes, on every kind of route
    case("no key on a registry read", "GET", "/models", None, 401, "unauthorized"),
    case(
        "no key on predict",
        "POST",
        f"/models/{MODEL}/predict",
        None,
        401,
        "unauthorized",
        body={"instances": [ROW]},
    ),
    case("no key on events", "POST", "/events", None, 401, "unauthorized", body={"events": []}),
    case("no key on keys", "GET", "/keys", None, 401, "unauthorized"),
    case("no key on me", "GET", "/me", None, 401, "unauthorized"),
    case("no key on v2 infer", "POST", f"/v2/models/{MODEL}/infer", None, 401, "unauthorized", body={}),
    case("unknown well-formed key", "GET", "/me", "unknown", 401, "unauthorized"),
    case("revoked key", "GET", "/me", "revoked", 401, "unauthorized"),
    case(
        "revoked key on predict",
        "POST",
        f"/models/{MODEL}/predict",
        "revoked",
        401,
        "unauthorized",
        body={"instances": [ROW]},
    ),
    case("garbage key", "GET", "/me", None, 401, "unauthorized", headers={"x-api-key": "not-a-key"}),
    case(
        "key of 60,000 characters",
        "GET",
        "/me",
        None,
        401,
        "unauthorized",
        headers={"x-api-key": "mlk." + "a" * 60_000},
    ),
    case("NUL in the key", "GET", "/me", None, 401, "unauthorized", headers={"x-api-key": "mlk.\x00abc.def"}),
    case("predict key registers a model", "POST", "/models", "predict", 403, "forbidden", body={}),
    case(
        "predict key, empty body, scope before validation",
        "POST",
        f"/models/{MODEL}/versions",
        "predict",
        403,
        "forbidden",
        raw=b"",
    ),
    case(
        "ingest key predicts",
        "POST",
        f"/models/{MODEL}/predict",
        "ingest",
        403,
        "forbidden",
        body={"instances": [ROW]},
    ),
    case(
        "registry:read key writes an alias",
        "PUT",
        f"/models/{MODEL}/aliases/production",
        "registry:read",
        403,
        "forbidden",
        body={"version": 1},
    ),
    case("registry:write key lists keys", "GET", "/keys", "registry:write", 403, "forbidden"),
    case("predict key sends events", "POST", "/events", "predict", 403, "forbidden", body={"events": []}),
    case("evaluate key deletes an entity", "DELETE", f"/entities/{ENTITY}", "evaluate", 403, "forbidden"),
    case("ingest key submits a job", "POST", "/jobs", "ingest", 403, "forbidden", body={"key": "x"}),
    case("predict key reads monitoring", "GET", f"/models/{MODEL}/monitoring", "predict", 403, "forbidden"),
    case(
        "predict key completes an evaluation",
        "POST",
        "/evaluations/{evaluation}/complete",
        "predict",
        403,
        "forbidden",
        body={},
    ),
    case("registry:read key on v2 metadata", "GET", f"/v2/models/{MODEL}", "registry:read", 403, "forbidden"),
    case("me with any key", "GET", "/me", "predict", 200, None),
    # --- throttling: usage plans
    case(
        f"{BURST}-request burst of a standard key",
        "GET",
        "/me",
        "standard",
        429,
        "throttled",
        repeat=BURST,
        check=_throttled_with_retry_after,
    ),
    # --- header tricks
    case(
        "two key headers: the last one counts (predict then admin)",
        "GET",
        "/keys",
        None,
        200,
        None,
        headers={"x-api-key": "{predict}", "X-Api-Key": "{admin}"},
    ),
    case(
        "two key headers: the last one counts (admin then predict)",
        "GET",
        "/keys",
        None,
        403,
        "forbidden",
        headers={"x-api-key": "{admin}", "X-Api-Key": "{predict}"},
    ),
    case(
        "If-Match with two tags",
        "PATCH",
        ENDPOINT,
        "admin",
        400,
        "invalid_if_match",
        body={"sticky_key": None},
        headers={"If-Match": '"1", "2"'},
    ),
    case(
        "If-Match of 5,000 characters",
        "PATCH",
        ENDPOINT,
        "admin",
        422,
        "validation_error",
        body={"sticky_key": None},
        headers={"If-Match": '"' + "9" * 5000 + '"'},
    ),
    case(
        "CRLF in an upload filename",
        "POST",
        f"/models/{MODEL}/uploads",
        "admin",
        422,
        "validation_error",
        body={"filename": "a.onnx\r\nSet-Cookie: session=1"},
    ),
    case(
        "compressed body",
        "POST",
        f"/models/{MODEL}/predict",
        "predict",
        415,
        "unsupported_media_type",
        body={"instances": [ROW]},
        headers={"Content-Encoding": "gzip"},
    ),
    case(
        "chunked body of a valid predict",
        "POST",
        f"/models/{MODEL}/predict",
        "predict",
        200,
        None,
        raw=lambda w: _chunked(json.dumps({"instances": [ROW]}).encode()),
        headers={"Transfer-Encoding": "chunked"},
    ),
    # --- media types and encodings
    case(
        "predict as text/plain",
        "POST",
        f"/models/{MODEL}/predict",
        "predict",
        415,
        "unsupported_media_type",
        body={"instances": [ROW]},
        headers={"Content-Type": "text/plain"},
    ),
    case(
        "events as form data",
        "POST",
        "/events",
        "ingest",
        415,
        "unsupported_media_type",
        raw=b"events=1",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    ),
    case(
        "registry JSON in latin-1",
        "POST",
        "/models",
        "registry:write",
        415,
        "unsupported_media_type",
        body={"name": "latin"},
        headers={"Content-Type": "application/json; charset=latin-1"},
    ),
    case(
        "keys as XML",
        "POST",
        "/keys",
        "admin",
        415,
        "unsupported_media_type",
        raw=b"<key/>",
        headers={"Content-Type": "application/xml"},
    ),
    case(
        "v2 infer as text/csv",
        "POST",
        f"/v2/models/{MODEL}/infer",
        "predict",
        415,
        "unsupported_media_type",
        raw=b"1,2",
        headers={"Content-Type": "text/csv"},
    ),
    case(
        "predict body not UTF-8: arrives as U+FFFD text, a string where a number goes",
        "POST",
        f"/models/{MODEL}/predict",
        "predict",
        422,
        "invalid_features",
        raw=b'{"instances": [{"f0": "\xff\xfe"}]}',
        headers={"Content-Type": "application/json"},
    ),
    case(
        "events body not UTF-8: the event, a string, rejected alone",
        "POST",
        "/events",
        "ingest",
        207,
        None,
        raw=b'{"events": ["\xc3\x28"]}',
        headers={"Content-Type": "application/json"},
    ),
    case(
        "registry body not UTF-8: the name refused",
        "POST",
        "/models",
        "registry:write",
        422,
        "validation_error",
        raw=b'{"name": "\xff"}',
        headers={"Content-Type": "application/json"},
    ),
    case(
        "items body truncated",
        "POST",
        "/items",
        "ingest",
        400,
        "malformed_json",
        raw=b'{"items": [',
        headers={"Content-Type": "application/json"},
    ),
    case(
        "keys body empty",
        "POST",
        "/keys",
        "admin",
        422,
        "validation_error",
        raw=b"",
        headers={"Content-Type": "application/json"},
    ),
    case(
        "predict body empty", "POST", f"/models/{MODEL}/predict", "predict", 422, "validation_error", raw=b""
    ),
    case(
        "predict body a JSON array",
        "POST",
        f"/models/{MODEL}/predict",
        "predict",
        422,
        "validation_error",
        body=[ROW],
    ),
    # --- oversized bodies
    case(
        "predict body over the function's 6 MB",
        "POST",
        f"/models/{MODEL}/predict",
        "predict",
        413,
        "body_too_large",
        raw=lambda w: b'{"instances": [], "pad": "' + b"x" * FUNCTION_BODY_LIMIT + b'"}',
    ),
    case(
        "events body over the function's 6 MB",
        "POST",
        "/events",
        "ingest",
        413,
        "body_too_large",
        raw=lambda w: b'{"events": [], "pad": "' + b"x" * FUNCTION_BODY_LIMIT + b'"}',
    ),
    case(
        "body over API Gateway's 10 MB",
        "POST",
        "/models",
        "registry:write",
        413,
        "payload_too_large",
        raw=lambda w: b"x" * (GATEWAY_BODY_LIMIT + 1),
    ),
    case(
        "1,001 instances",
        "POST",
        f"/models/{MODEL}/predict",
        "predict",
        413,
        "too_many_instances",
        body={"instances": [ROW] * 1001},
    ),
    case(
        "501 events",
        "POST",
        "/events",
        "ingest",
        413,
        "too_many_events",
        body=lambda w: {
            "events": [
                event_body(f"corpus-many-{i}", "interaction", "u", now(), kind="opt_out") for i in range(501)
            ]
        },
    ),
    # --- JSON the parsers disagree on
    case(
        "duplicate keys: the last one wins",
        "POST",
        f"/models/{MODEL}/predict",
        "predict",
        422,
        "validation_error",
        raw=lambda w: b'{"instances": [' + json.dumps(ROW).encode() + b'], "instances": []}',
    ),
    case(
        "NaN literal",
        "POST",
        f"/models/{MODEL}/predict",
        "predict",
        422,
        "invalid_features",
        raw=raw_row("NaN"),
    ),
    case(
        "Infinity literal",
        "POST",
        f"/models/{MODEL}/predict",
        "predict",
        422,
        "invalid_features",
        raw=raw_row("Infinity"),
    ),
    case(
        "1e999 overflows to infinity",
        "POST",
        f"/models/{MODEL}/predict",
        "predict",
        422,
        "invalid_features",
        raw=raw_row("1e999"),
    ),
    case(
        "beyond float32",
        "POST",
        f"/models/{MODEL}/predict",
        "predict",
        422,
        "invalid_features",
        raw=raw_row("1e300"),
    ),
    case(
        "31-digit integer in a float32 input: its value, scored",
        "POST",
        f"/models/{MODEL}/predict",
        "predict",
        200,
        None,
        raw=raw_row("1234567890123456789012345678901"),
    ),
    case(
        "a string where a number goes",
        "POST",
        f"/models/{MODEL}/predict",
        "predict",
        422,
        "invalid_features",
        raw=raw_row('"1"'),
    ),
    case(
        "a boolean where a number goes",
        "POST",
        f"/models/{MODEL}/predict",
        "predict",
        422,
        "invalid_features",
        raw=raw_row("true"),
    ),
    case(
        "nested 5,000 deep",
        "POST",
        f"/models/{MODEL}/predict",
        "predict",
        400,
        "malformed_json",
        raw=b"[" * 5000 + b"]" * 5000,
    ),
    case(
        "nested 100 deep inside a row",
        "POST",
        f"/models/{MODEL}/predict",
        "predict",
        422,
        "invalid_features",
        body={"instances": [row(x=nested(100))]},
    ),
    case(
        "an unknown feature",
        "POST",
        f"/models/{MODEL}/predict",
        "predict",
        422,
        "invalid_features",
        body={"instances": [row(zz=1)]},
    ),
    case(
        "rows in two fields",
        "POST",
        f"/models/{MODEL}/predict",
        "predict",
        422,
        "validation_error",
        body={"instances": [ROW], "inputs": {"f0": [1]}},
    ),
    # --- predict: the formats clients send
    case("instances", "POST", f"/models/{MODEL}/predict", "predict", 200, None, body={"instances": [ROW]}),
    case(
        "MLflow dataframe_split",
        "POST",
        f"/models/{MODEL}/predict",
        "predict",
        200,
        None,
        body={"dataframe_split": {"columns": FEATURES, "data": [list(ROW.values())]}},
    ),
    case(
        "MLflow dataframe_records",
        "POST",
        f"/models/{MODEL}/predict",
        "predict",
        200,
        None,
        body={"dataframe_records": [ROW]},
    ),
    case(
        "MLflow inputs as columns",
        "POST",
        f"/models/{MODEL}/predict",
        "predict",
        200,
        None,
        body={"inputs": {name: [value] for name, value in ROW.items()}},
    ),
    case(
        "dataframe_split with a missing column",
        "POST",
        f"/models/{MODEL}/predict",
        "predict",
        422,
        "missing_input",
        body={"dataframe_split": {"columns": FEATURES[:-1], "data": [list(ROW.values())[:-1]]}},
    ),
    case(
        "dataframe_split ragged",
        "POST",
        f"/models/{MODEL}/predict",
        "predict",
        422,
        None,
        body={"dataframe_split": {"columns": FEATURES, "data": [[1.0]]}},
    ),
    case(
        "no rows",
        "POST",
        f"/models/{MODEL}/predict",
        "predict",
        422,
        "validation_error",
        body={"instances": []},
    ),
    case(
        "an unknown model",
        "POST",
        "/models/nope/predict",
        "predict",
        404,
        "no_production_alias",
        body={"instances": [ROW]},
    ),
    case(
        "traversal in the model name",
        "POST",
        "/models/..%2F..%2Fetc/predict",
        "predict",
        404,
        "model_not_found",
        body={"instances": [ROW]},
    ),
    case(
        "NUL in the model name",
        "POST",
        "/models/a%00b/predict",
        "predict",
        404,
        "model_not_found",
        body={"instances": [ROW]},
    ),
    case(
        "unicode model name",
        "POST",
        "/models/%C3%A9t%C3%A9/predict",
        "predict",
        404,
        "model_not_found",
        body={"instances": [ROW]},
    ),
    case(
        "a 3,000-character model name",
        "POST",
        "/models/" + "a" * 3000 + "/predict",
        "predict",
        404,
        "model_not_found",
        body={"instances": [ROW]},
    ),
    # --- the Open Inference Protocol (V2)
    case("v2 server metadata", "GET", "/v2", "predict", 200, None),
    case("v2 live", "GET", "/v2/health/live", "predict", 200, None),
    case("v2 ready", "GET", "/v2/health/ready", "predict", 200, None),
    case("v2 model metadata", "GET", f"/v2/models/{MODEL}", "predict", 200, None),
    case("v2 model ready", "GET", f"/v2/models/{MODEL}/ready", "predict", 200, None),
    case("v2 version metadata", "GET", f"/v2/models/{MODEL}/versions/1", "predict", 200, None),
    case("v2 unknown version", "GET", f"/v2/models/{MODEL}/versions/99", "predict", 404, None),
    case("v2 version not a number", "GET", f"/v2/models/{MODEL}/versions/abc/ready", "predict", 404, None),
    case(
        "v2 infer JSON",
        "POST",
        f"/v2/models/{MODEL}/infer",
        "predict",
        200,
        None,
        body={"inputs": [{"name": "X", "datatype": "FP32", "shape": [1, 20], "data": list(range(20))}]},
    ),
    case(
        "v2 infer: shape and data disagree",
        "POST",
        f"/v2/models/{MODEL}/infer",
        "predict",
        422,
        "shape_mismatch",
        body={"inputs": [{"name": "X", "datatype": "FP32", "shape": [1, 20], "data": [0, 1]}]},
    ),
    case(
        "v2 infer: a shape of 10^12 values",
        "POST",
        f"/v2/models/{MODEL}/infer",
        "predict",
        413,
        "too_many_instances",
        body={"inputs": [{"name": "X", "datatype": "FP32", "shape": [1_000_000, 1_000_000], "data": [0]}]},
    ),
    case(
        "v2 infer: wrong datatype",
        "POST",
        f"/v2/models/{MODEL}/infer",
        "predict",
        422,
        "wrong_datatype",
        body={"inputs": [{"name": "X", "datatype": "BYTES", "shape": [1, 20], "data": ["a"] * 20}]},
    ),
    case(
        "v2 infer: an unknown input",
        "POST",
        f"/v2/models/{MODEL}/infer",
        "predict",
        422,
        None,
        body={"inputs": [{"name": "nope", "datatype": "FP32", "shape": [1, 20], "data": list(range(20))}]},
    ),
    case(
        "v2 infer: INT64 data beyond 64 bits",
        "POST",
        f"/v2/models/{MODEL}/infer",
        "predict",
        422,
        None,
        raw=b'{"inputs": [{"name": "X", "datatype": "INT64", "shape": [1, 1], "data": [123456789012345678901234567890]}]}',
    ),
    case(
        "v2 binary tensor",
        "POST",
        f"/v2/models/{MODEL}/infer",
        "predict",
        200,
        None,
        raw=v2_binary,
        headers=v2_binary_headers(None),
    ),
    case(
        "v2 binary: header length beyond the body",
        "POST",
        f"/v2/models/{MODEL}/infer",
        "predict",
        400,
        None,
        raw=v2_binary,
        headers=v2_binary_headers(10_000),
    ),
    case(
        "v2 binary: header length not a number",
        "POST",
        f"/v2/models/{MODEL}/infer",
        "predict",
        400,
        None,
        raw=v2_binary,
        headers=v2_binary_headers(-5),
    ),
    case(
        "v2 binary: binary_data_size lies",
        "POST",
        f"/v2/models/{MODEL}/infer",
        "predict",
        400,
        None,
        raw=lambda w: v2_binary(w)[:-8],
        headers=v2_binary_headers(None),
    ),
    case(
        "v2 versioned infer of an unknown version",
        "POST",
        f"/v2/models/{MODEL}/versions/99/infer",
        "predict",
        404,
        None,
        body={"inputs": [{"name": "X", "datatype": "FP32", "shape": [1, 20], "data": list(range(20))}]},
    ),
    # --- registry
    case("list models", "GET", "/models", "registry:read", 200, None),
    case("limit 0", "GET", "/models?limit=0", "registry:read", 422, "validation_error"),
    case("limit -1", "GET", "/models?limit=-1", "registry:read", 422, "validation_error"),
    case("limit 10^30", "GET", "/models?limit=" + "1" * 31, "registry:read", 422, "validation_error"),
    case("limit not a number", "GET", "/models?limit=abc", "registry:read", 422, "validation_error"),
    # pydantic's lax mode read these as 9 and 10 (the fuzzer's ST201): a query integer is digits
    case(
        "limit with a carriage return", "GET", "/models?limit=9%0D", "registry:read", 422, "validation_error"
    ),
    case("limit with a space", "GET", "/models?limit=%209", "registry:read", 422, "validation_error"),
    case("limit with an underscore", "GET", "/models?limit=1_0", "registry:read", 422, "validation_error"),
    case("forged page token", "GET", "/models?next_token=abc", "registry:read", 400, "invalid_token"),
    case(
        "page token of another listing",
        "GET",
        f"/models/{MODEL}/versions?next_token={{models_token}}",
        "registry:read",
        400,
        "invalid_token",
    ),
    case(
        "page token with another filter",
        "GET",
        "/models?limit=1&owner=ann&next_token={models_token}",
        "registry:read",
        400,
        "invalid_token",
    ),
    case(
        "altered page token",
        "GET",
        "/models?limit=1&next_token={altered_token}",
        "registry:read",
        400,
        "invalid_token",
    ),
    case(
        "page token of 10,000 characters",
        "GET",
        "/models?next_token=" + "A" * 10_000,
        "registry:read",
        422,
        "validation_error",
    ),
    case(
        "forged version page token",
        "GET",
        f"/models/{MODEL}/versions?next_token=eyJ4IjoxfQ",
        "registry:read",
        400,
        "invalid_token",
    ),
    case(
        "forged history page token",
        "GET",
        f"/models/{MODEL}/history?next_token=eyJ4IjoxfQ",
        "registry:read",
        400,
        "invalid_token",
    ),
    case(
        "forged evaluations page token",
        "GET",
        f"/models/{MODEL}/evaluations?next_token=eyJ4IjoxfQ",
        "registry:write",
        400,
        "invalid_token",
    ),
    case(
        "create a model with traversal in its name",
        "POST",
        "/models",
        "registry:write",
        422,
        "validation_error",
        body={"name": "../keys"},
    ),
    case(
        "create a model with a NUL in its name",
        "POST",
        "/models",
        "registry:write",
        422,
        "validation_error",
        body={"name": "a\x00b"},
    ),
    case(
        "create a model with a unicode name",
        "POST",
        "/models",
        "registry:write",
        422,
        "validation_error",
        body={"name": "modèle"},
    ),
    case(
        "create a model with a 100,000-character description",
        "POST",
        "/models",
        "registry:write",
        422,
        "validation_error",
        body={"name": "long-description", "description": "x" * 100_000},
    ),
    case(
        "create the seeded model again", "POST", "/models", "registry:write", 409, None, body={"name": MODEL}
    ),
    case("read a model named ..", "GET", "/models/..", "registry:read", 400, "invalid_model_name"),
    case(
        "encoded traversal to another route", "GET", "/models/%2e%2e%2fkeys", "registry:read", 404, "no_route"
    ),
    case("read an unknown model", "GET", "/models/does-not-exist", "registry:read", 404, "model_not_found"),
    case(
        "a version that is not a number",
        "GET",
        f"/models/{MODEL}/versions/abc",
        "registry:read",
        400,
        "invalid_version",
    ),
    case(
        "a version beyond the bound",
        "GET",
        f"/models/{MODEL}/versions/99999999999999999999",
        "registry:read",
        400,
        "invalid_version",
    ),
    case(
        "an alias with a slash-like name",
        "GET",
        f"/models/{MODEL}/aliases/..%2Fx",
        "registry:read",
        404,
        "no_route",
    ),
    case(
        "move an alias to a version with a 31-digit number",
        "PUT",
        f"/models/{MODEL}/aliases/staging",
        "registry:write",
        422,
        "validation_error",
        body={"version": 1234567890123456789012345678901},
    ),
    case(
        "tags with 40-level nesting",
        "PATCH",
        f"/models/{MODEL}",
        "registry:write",
        422,
        "validation_error",
        body={"tags": nested(40)},
    ),
    case(
        "register an upload key of another model",
        "POST",
        f"/models/{MODEL}/versions",
        "registry:write",
        400,
        "invalid_upload_key",
        body={"upload_key": f"uploads/{LEAK}/x/model.onnx"},
    ),
    case(
        "register an upload key with traversal",
        "POST",
        f"/models/{MODEL}/versions",
        "registry:write",
        400,
        "invalid_upload_key",
        body={"upload_key": f"uploads/{MODEL}/../../models/{MODEL}/v1.onnx"},
    ),
    case(
        "upload with a traversal filename",
        "POST",
        f"/models/{MODEL}/uploads",
        "registry:write",
        422,
        "validation_error",
        body={"filename": "../../etc/passwd"},
    ),
    case(
        "sparse initializer reading a server file: registered, then FAILED and deleted",
        "POST",
        f"/models/{LEAK}/versions",
        "registry:write",
        202,
        None,
        body=lambda w: {"upload_key": w.ids["leak_upload"], "feature_names": ["a", "b", "c", "d"]},
        check=_leak_refused,
    ),
    case(
        "an upload that is not ONNX: FAILED and deleted",
        "POST",
        f"/models/{LEAK}/versions",
        "registry:write",
        202,
        None,
        body=lambda w: {"upload_key": w.ids["corrupt_upload"], "feature_names": ["a", "b", "c", "d"]},
        check=_corrupt_refused,
    ),
    case(
        "delete a model an alias points at",
        "DELETE",
        f"/models/{MODEL}",
        "registry:write",
        409,
        "model_has_aliases",
    ),
    case(
        "rollback with no previous version",
        "POST",
        f"/models/{MODEL}/rollback",
        "registry:write",
        409,
        "nothing_to_roll_back",
        body={},
    ),
    case("history", "GET", f"/models/{MODEL}/history", "registry:read", 200, None),
    case(
        "history at a time",
        "GET",
        f"/models/{MODEL}/history?alias=production&at=2026-01-31T12:00:00Z",
        "registry:read",
        200,
        None,
    ),
    # pydantic's lax mode read a number as seconds since the epoch (the fuzzer's ST201)
    case(
        "history at a number",
        "GET",
        f"/models/{MODEL}/history?alias=production&at=1700000000",
        "registry:read",
        422,
        "validation_error",
    ),
    # --- endpoint configs: read-modify-write, revisions, the gate for every target
    case(
        "split keeps the rules and cache it does not name",
        "PATCH",
        ENDPOINT,
        "registry:write",
        200,
        None,
        body={
            "variants": [
                {"name": "production", "target": "production", "weight": 90},
                {"name": "v1", "target": "v1", "weight": 10},
            ]
        },
        headers=_if_match,
        check=_split_kept_rules,
    ),
    case(
        "a stale revision",
        "PATCH",
        ENDPOINT,
        "registry:write",
        409,
        "conflict",
        body={"sticky_key": "user_id"},
        headers={"If-Match": '"1"'},
    ),
    case(
        "replace without If-Match",
        "PUT",
        ENDPOINT,
        "registry:write",
        428,
        "precondition_required",
        body={"variants": MAIN_ONLY},
    ),
    case(
        "a variant that fails the gate",
        "PUT",
        ENDPOINT,
        "registry:write",
        422,
        "gate_failed",
        headers=_if_match,
        body={
            "variants": [
                {"name": "main", "target": "production", "weight": 95},
                {"name": "canary", "target": "v2", "weight": 5},
            ]
        },
    ),
    case(
        "a shadow that fails the gate",
        "PATCH",
        ENDPOINT,
        "registry:write",
        422,
        "gate_failed",
        headers=_if_match,
        body={"shadow": {"target": "v2", "sample_percent": 50}},
    ),
    case(
        "weights that do not sum to 100",
        "PATCH",
        ENDPOINT,
        "registry:write",
        422,
        None,
        headers=_if_match,
        body={"variants": [{"name": "main", "target": "production", "weight": 50}]},
    ),
    case(
        "fallback response holding 1e999",
        "PATCH",
        ENDPOINT,
        "registry:write",
        422,
        None,
        headers=_if_match,
        raw=b'{"rules": {"fallback": {"response": {"label": 1e999}, "timeout_ms": 300}}}',
    ),
    case(
        "fallback response nested 40 levels",
        "PATCH",
        ENDPOINT,
        "registry:write",
        422,
        None,
        headers=_if_match,
        body={"rules": {"fallback": {"response": nested(40), "timeout_ms": 300}}},
    ),
    case(
        "exclude_recently_seen item_field of 500,000 characters",
        "PATCH",
        ENDPOINT,
        "registry:write",
        422,
        None,
        headers=_if_match,
        body={"rules": {"exclude_recently_seen": {"item_field": "x" * 500_000, "interactions": ["click"]}}},
    ),
    case("endpoint of an unknown model", "GET", "/models/nope/endpoint", "registry:read", 404, None),
    # --- events
    case(
        "1e300 increment: the event rejected alone (207), a resend applied once",
        "POST",
        "/events",
        "ingest",
        207,
        None,
        raw=_spend_batch,
        headers={"Content-Type": "application/json"},
        check=_events_applied_once,
    ),
    case(
        "1e300 value",
        "POST",
        "/events",
        "ingest",
        207,
        None,
        body=lambda w: {
            "events": [
                event_body("corpus-v300", "feature_update", "corpus-u", now(), group="g", values={"v": 1e300})
            ]
        },
    ),
    case(
        "31-digit integer value",
        "POST",
        "/events",
        "ingest",
        207,
        None,
        raw=lambda w: (
            json.dumps(
                {
                    "events": [
                        event_body(
                            "corpus-v31", "feature_update", "corpus-u", now(), group="g", values={"v": 0}
                        )
                    ]
                }
            )
            .replace('"v": 0', '"v": 1234567890123456789012345678901')
            .encode()
        ),
        headers={"Content-Type": "application/json"},
    ),
    case(
        "a 10,000-character value",
        "POST",
        "/events",
        "ingest",
        207,
        None,
        body=lambda w: {
            "events": [
                event_body(
                    "corpus-long", "feature_update", "corpus-u", now(), group="g", values={"v": "x" * 10_000}
                )
            ]
        },
    ),
    case(
        "an unknown event type",
        "POST",
        "/events",
        "ingest",
        207,
        None,
        body=lambda w: {
            "events": [
                {
                    "type": "click",
                    "event_id": "corpus-t",
                    "entity_id": "u",
                    "timestamp": now().isoformat(),
                    "payload": {},
                }
            ]
        },
    ),
    case(
        "an event from the far future",
        "POST",
        "/events",
        "ingest",
        207,
        None,
        body={
            "events": [
                event_body(
                    "corpus-future", "interaction", "u", datetime(2999, 1, 1, tzinfo=UTC), kind="opt_out"
                )
            ]
        },
    ),
    case("no events", "POST", "/events", "ingest", 400, "validation_error", body={"events": []}),
    case("events not a list", "POST", "/events", "ingest", 400, "validation_error", body={"events": "x"}),
    # --- items
    case(
        "a 40-digit item attribute",
        "POST",
        "/items",
        "ingest",
        422,
        "validation_error",
        raw=b'{"items": [{"item_id": "i40", "attributes": {"a": 1234567890123456789012345678901234567890}, "updated_at": "2026-01-01T00:00:00Z"}]}',
        headers={"Content-Type": "application/json"},
    ),
    case(
        "100 attributes of 6,000 characters",
        "POST",
        "/items",
        "ingest",
        422,
        "validation_error",
        body={
            "items": [
                {
                    "item_id": "ibig",
                    "attributes": {f"a{i}": "x" * 6000 for i in range(100)},
                    "updated_at": "2026-01-01T00:00:00Z",
                }
            ]
        },
    ),
    case(
        "an item attribute nested 40 levels",
        "POST",
        "/items",
        "ingest",
        422,
        "validation_error",
        body={
            "items": [
                {"item_id": "ideep", "attributes": {"a": nested(40)}, "updated_at": "2026-01-01T00:00:00Z"}
            ]
        },
    ),
    case(
        "an item",
        "POST",
        "/items",
        "ingest",
        200,
        None,
        body={
            "items": [
                {
                    "item_id": "corpus-item",
                    "attributes": {"genre": "rock"},
                    "updated_at": "2026-01-01T00:00:00Z",
                }
            ]
        },
    ),
    case("delete an unknown item", "DELETE", "/items/never-was", "ingest", 200, None),
    case(
        "delete an item with a 3,000-character id",
        "DELETE",
        "/items/" + "i" * 3000,
        "ingest",
        400,
        "invalid_item_id",
    ),
    # --- entities and features
    case("features of the seeded entity", "GET", f"/entities/{ENTITY}/features", "ingest", 200, None),
    case(
        "100 groups: the bound",
        "GET",
        f"/entities/{ENTITY}/features?" + "&".join(f"group=g{i}" for i in range(100)),
        "ingest",
        200,
        None,
    ),
    case(
        "101 groups",
        "GET",
        f"/entities/{ENTITY}/features?" + "&".join(f"group=g{i}" for i in range(101)),
        "ingest",
        422,
        "validation_error",
    ),
    case(
        "an entity id of 3,000 characters",
        "GET",
        "/entities/" + "e" * 3000 + "/features",
        "ingest",
        400,
        "invalid_entity_id",
    ),
    case("feature groups", "GET", "/feature-groups", "ingest", 200, None),
    case(
        "feature groups with a forged token",
        "GET",
        "/feature-groups?next_token=eyJ4IjoxfQ",
        "ingest",
        400,
        "invalid_token",
    ),
    # --- jobs and their uploads
    case("jobs without a model", "GET", "/jobs", "predict", 422, "validation_error"),
    case("jobs, limit 0", "GET", f"/jobs?model={MODEL}&limit=0", "predict", 422, "validation_error"),
    case(
        "jobs, limit 100,000", "GET", f"/jobs?model={MODEL}&limit=100000", "predict", 422, "validation_error"
    ),
    case(
        "jobs, forged token",
        "GET",
        f"/jobs?model={MODEL}&next_token=eyJ4IjoxfQ",
        "predict",
        400,
        "invalid_token",
    ),
    case("the seeded job", "GET", "/jobs/{job}", "predict", 200, None),
    case("its files", "GET", "/jobs/{job}/files", "predict", 200, None),
    case("its rejects", "GET", "/jobs/{job}/rejects", "predict", 200, None),
    case("retry a complete job", "POST", "/jobs/{job}/retry", "predict", 409, "job_complete", body={}),
    case("an unknown job", "GET", "/jobs/nope", "predict", 404, "job_not_found"),
    case("a job id of 3,000 characters", "GET", "/jobs/" + "j" * 3000, "predict", 404, "job_not_found"),
    case(
        "a job on a key with traversal",
        "POST",
        "/jobs",
        "predict",
        400,
        "invalid_key",
        body={"key": "input/../output/x.csv"},
    ),
    case(
        "a job on a key outside input/", "POST", "/jobs", "predict", 400, None, body={"key": "output/x.csv"}
    ),
    case(
        "a job upload with traversal",
        "POST",
        "/jobs/uploads",
        "predict",
        422,
        "validation_error",
        body={"model": MODEL, "filename": "../x.csv"},
    ),
    case(
        "a job upload for a NUL model name",
        "POST",
        "/jobs/uploads",
        "predict",
        422,
        "validation_error",
        body={"model": "a\x00b", "filename": "x.csv"},
    ),
    case(
        "a job upload",
        "POST",
        "/jobs/uploads",
        "predict",
        201,
        None,
        body={"model": MODEL, "filename": "x.csv"},
    ),
    # --- monitoring
    case("monitoring", "GET", f"/models/{MODEL}/monitoring", "registry:read", 200, None),
    case(
        "monitoring of an unknown model: an empty view",
        "GET",
        "/models/nope/monitoring",
        "registry:read",
        200,
        None,
    ),
    case(
        "monitoring, limit -1",
        "GET",
        f"/models/{MODEL}/monitoring?limit=-1",
        "registry:read",
        422,
        "validation_error",
    ),
    # --- evaluations
    case("the seeded evaluation", "GET", "/evaluations/{evaluation}", "evaluate", 200, None),
    case("its rows", "GET", "/evaluations/{evaluation}/rows", "evaluate", 200, None),
    case("its rows still to judge", "GET", "/evaluations/{evaluation}/rows?todo=true", "evaluate", 200, None),
    case(
        "todo=yes (lax mode read it as true)",
        "GET",
        "/evaluations/{evaluation}/rows?todo=yes",
        "evaluate",
        422,
        "validation_error",
    ),
    case("a row", "GET", "/evaluations/{evaluation}/rows/0", "evaluate", 200, None),
    case(
        "a row beyond the last", "GET", "/evaluations/{evaluation}/rows/99", "evaluate", 404, "row_not_found"
    ),
    case(
        "a row index of 31 digits", "GET", "/evaluations/{evaluation}/rows/" + "9" * 31, "evaluate", 404, None
    ),
    case("a negative row index", "GET", "/evaluations/{evaluation}/rows/-1", "evaluate", 404, None),
    # str.isdigit is true of both: int() refused the first (500, the fuzzer's ST101), read the second as 3
    case(
        "a superscript row index",
        "GET",
        "/evaluations/{evaluation}/rows/%C2%B3",
        "evaluate",
        404,
        "row_not_found",
    ),
    case(
        "an Arabic-Indic row index",
        "GET",
        "/evaluations/{evaluation}/rows/%D9%A3",
        "evaluate",
        404,
        "row_not_found",
    ),
    case(
        "a superscript version's evaluations",
        "GET",
        f"/models/{MODEL}/versions/v%C2%B3/evaluations",
        "registry:read",
        400,
        "invalid_version",
    ),
    case(
        "a verdict without a verdict",
        "PUT",
        "/evaluations/{evaluation}/rows/0/verdict",
        "evaluate",
        422,
        "validation_error",
        body={},
    ),
    case(
        "a verdict with a 100,000-character comment",
        "PUT",
        "/evaluations/{evaluation}/rows/0/verdict",
        "evaluate",
        422,
        "validation_error",
        body={"verdict": "correct", "comment": "x" * 100_000},
    ),
    case(
        "verdicts, forged token",
        "GET",
        "/evaluations/{evaluation}/verdicts?next_token=eyJ4IjoxfQ",
        "evaluate",
        400,
        "invalid_token",
    ),
    case("results", "GET", "/evaluations/{evaluation}/results", "evaluate", 200, None),
    case("an unknown evaluation", "GET", "/evaluations/nope", "evaluate", 404, "evaluation_not_found"),
    case(
        "an evaluation of 100,000 inline rows",
        "POST",
        f"/models/{MODEL}/evaluations",
        "registry:write",
        422,
        None,
        body={"version": 1, "source": {"type": "rows", "rows": [{"f0": 1}] * 100_000}},
    ),
    # --- keys
    case("list keys", "GET", "/keys", "admin", 200, None),
    case(
        "a key with an unknown scope",
        "POST",
        "/keys",
        "admin",
        422,
        "validation_error",
        body={"name": "x", "scopes": ["root"]},
    ),
    case(
        "a key with an unknown plan",
        "POST",
        "/keys",
        "admin",
        400,
        "unknown_plan",
        body={"name": "x", "scopes": ["predict"], "plan": "gold"},
    ),
    case(
        "a key named with 10,000 characters",
        "POST",
        "/keys",
        "admin",
        422,
        "validation_error",
        body={"name": "x" * 10_000, "scopes": ["predict"]},
    ),
    case("revoke an unknown key", "DELETE", "/keys/000000000000", "admin", 404, "key_not_found"),
    case(
        "revoke a key id of 3,000 characters", "DELETE", "/keys/" + "k" * 3000, "admin", 404, "key_not_found"
    ),
    case(
        "plan of an unknown key",
        "PUT",
        "/keys/000000000000/plan",
        "admin",
        404,
        "key_not_found",
        body={"plan": "bulk"},
    ),
    case(
        "plan of a revoked key",
        "PUT",
        "/keys/{revoked_id}/plan",
        "admin",
        409,
        "key_revoked",
        body={"plan": "bulk"},
    ),
    # --- the document and routes that do not exist
    case("the OpenAPI document, no key needed", "GET", "/openapi.json", None, 200, None),
    case("POST to the document", "POST", "/openapi.json", None, 404, "no_route", body={}),
    case("the console", "GET", "/console/", None, 200, None),
    case(
        "a console path with traversal",
        "GET",
        "/console/..%2F..%2F.mlambda%2Fadmin_key",
        None,
        404,
        None,
        check=_no_file_read,
    ),
    case("an undeclared method", "DELETE", f"/models/{MODEL}/predict", "predict", 404, "no_route"),
    case("an unknown route", "GET", "/admin", "admin", 404, "no_route"),
    case("NUL in a path", "GET", "/models/a\x00b", "registry:read", 404, None),
]


def _chunked(body: bytes) -> bytes:
    return b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body)


# ------------------------------------------------------------------------------------ the world


def _s3(platform: Platform) -> Any:
    return boto3.client("s3", endpoint_url=platform.cloud.endpoint_url, region_name="us-east-1")


def _split_model(platform: Platform) -> None:
    """churn-split v1 in production with an endpoint config holding rules and a cache, and a v2 whose
    artifact was replaced after registration (it fails the gate's integrity check)."""
    outputs = platform.cloud.outputs
    s3 = _s3(platform)
    register_model(
        s3, outputs["RegistryTableName"], outputs["ArtifactsBucketName"], platform.cloud.endpoint_url, SPLIT
    )
    settings = FunctionSettings.model_validate(
        {"AWS_ENDPOINT_URL": platform.cloud.endpoint_url, "AWS_REGION": "us-east-1"}
    )
    store = DynamoRegistryStore(DynamoTable(outputs["RegistryTableName"], settings))
    tampered = model_version(model=SPLIT, version=2)
    s3.put_object(
        Bucket=outputs["ArtifactsBucketName"], Key=tampered.artifact_key, Body=b"replaced after registration"
    )
    assert hashlib.sha256(b"replaced after registration").hexdigest() != tampered.artifact_sha256
    publish(store, tampered, aliases=())
    platform.admin.request(
        "PUT",
        ENDPOINT,
        body={
            "variants": MAIN_ONLY,
            "cache": {"enabled": True, "ttl_seconds": 60},
            "rules": {"fallback": {"response": {"label": 0}, "timeout_ms": 300}, "honour_opt_out": True},
        },
    )
    platform.admin.request("PATCH", ENDPOINT, body={"sticky_key": None}, headers={"If-Match": '"1"'})


def _uploads(platform: Platform) -> dict[str, str]:
    """Two uploads of the leak model: sparse weights pointing at the admin key, and bytes that are not ONNX."""
    platform.admin.post("/models", {"name": LEAK})
    leak = platform.data_dir / "leak.onnx"
    leak.write_bytes(sparse_initializer_values(".mlambda/admin_key"))
    corrupt = platform.data_dir / "corrupt.onnx"
    corrupt.write_bytes(b"definitely not onnx")
    return {
        "leak_upload": platform.admin.upload(LEAK, leak, kind="model"),
        "corrupt_upload": platform.admin.upload(LEAK, corrupt, kind="model"),
    }


def _tokens(platform: Platform) -> dict[str, str]:
    """A real page token of ``/models?limit=1`` and the same with one character changed."""
    token = platform.admin.get("/models", params={"limit": 1})["next_token"]
    assert token, "two models are needed for a page token"
    altered = token[:-3] + ("A" if token[-3] != "A" else "B") + token[-2:]
    return {"models_token": token, "altered_token": altered}


@pytest.fixture(scope="module")
def world(platform: Platform) -> World:
    """The seeded cloud plus what only the corpus needs."""
    seeded = seed(platform)
    admin = platform.admin
    revoked = admin.post("/keys", {"name": "corpus-revoked", "scopes": ["admin"]})
    admin.request("DELETE", f"/keys/{revoked['key_id']}")
    standard = admin.post("/keys", {"name": "corpus-standard", "scopes": ["predict"], "plan": "standard"})
    _split_model(platform)
    keys = {
        **seeded.keys,
        "revoked": revoked["api_key"],
        "standard": standard["api_key"],
        "unknown": "mlk.000000000000." + "A" * 43,
    }
    ids = {
        "job": seeded.job_id,
        "evaluation": seeded.evaluation_id,
        "revoked_id": revoked["key_id"],
        **_uploads(platform),
        **_tokens(platform),
        **keys,
    }
    return World(platform, seeded, keys, ids)


SUMMARY: Counter[str] = Counter()


@pytest.fixture(scope="module", autouse=True)
def _summary() -> Iterator[None]:
    """Print the cases by status class once the module is done (``-s`` or the captured output)."""
    yield
    classes = ", ".join(f"{name} {SUMMARY[name]}" for name in sorted(SUMMARY))
    print(f"\nadversarial corpus: {sum(SUMMARY.values())} cases passed ({classes})")


def _key(world: World, scope: str | None) -> str | None:
    return None if scope is None else world.keys[scope]


def _templated(world: World, headers: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    """Header values naming a key by scope (``{admin}``) get that key."""
    out = []
    for name, value in headers:
        text = value.decode("utf-8", "surrogateescape")
        named = text.startswith("{") and text.endswith("}") and text[1:-1] in world.keys
        out.append((name, world.keys[text[1:-1]].encode() if named else value))
    return out


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_adversarial_case_gets_its_status_and_code(world: World, case: Case) -> None:
    # Given the seeded cloud and the case's request
    path, headers, body = case.request(world)
    headers = _templated(world, headers)
    key = _key(world, case.key_scope)
    # When it is sent (``repeat`` times at once for a burst)
    if case.repeat > 1:
        with ThreadPoolExecutor(16) as pool:
            answers = list(
                pool.map(lambda _: world.send(case.method, path, key, headers, body), range(case.repeat))
            )
        others = [a for a in answers if a.status != case.expected_status]
        assert all(a.status == 200 for a in others), Counter(a.status for a in answers)
        answer = next(a for a in answers if a.status == case.expected_status)
    else:
        answer = world.send(case.method, path, key, headers, body)
    # Then its status and code are the case's, and every error has the shape {code, message, details}
    assert (answer.status, answer.code if answer.status >= 400 else None) == (
        case.expected_status,
        case.expected_code if case.expected_code is not None or case.expected_status < 400 else answer.code,
    ), answer.body[:600]
    if answer.status >= 400 and isinstance(answer.json, dict):
        assert {"code", "message", "details"} <= set(answer.json), answer.body[:600]
    if case.check is not None:
        case.check(world, answer)
    SUMMARY[f"{answer.status // 100}xx"] += 1


def test_the_corpus_covers_every_route_and_holds_at_least_100_cases() -> None:
    # Given the OpenAPI document's operations
    from mlambda_local.openapi import DOCUMENT

    paths = json.loads(DOCUMENT.read_text())["paths"]
    prefixes = {path.split("/")[1] for path in paths}
    # When the corpus's paths are grouped the same way
    covered = {case.path.split("?")[0].split("/")[1] for case in CASES}
    # Then every top-level route has cases, and there are at least 100
    assert prefixes <= covered, prefixes - covered
    assert len(CASES) >= 100
    assert len({case.name for case in CASES}) == len(CASES), "case names are their test ids"


CLIENTS = 64
"""Parallel clients at once: the first wave's gateway (listen backlog 5) reset their connections."""


@pytest.mark.parametrize("plan", ["trial", "bulk"])
def test_64_parallel_clients_each_get_an_answer_200_or_429_and_no_connection_is_reset(
    world: World, plan: str
) -> None:
    # Given a fresh key of the plan and 64 clients, each on its own connection, held at a barrier
    created = world.platform.admin.post(
        "/keys", {"name": f"parallel-{plan}", "scopes": ["predict"], "plan": plan}
    )
    start = threading.Barrier(CLIENTS)
    body = json.dumps({"instances": [ROW]}).encode()
    content = [(b"Content-Type", b"application/json")]

    def client(_: int) -> list[Answer | str]:
        start.wait()
        answers: list[Answer | str] = []
        for method, path, sent in (("GET", "/me", None), ("POST", f"/models/{MODEL}/predict", body)):
            try:
                answers.append(world.send(method, path, created["api_key"], content if sent else [], sent))
            except OSError as exc:  # a reset, a refused or a timed-out connection
                answers.append(f"{type(exc).__name__}: {exc}")
        return answers

    # When they all send at once: GET /me then a one-row predict
    with ThreadPoolExecutor(CLIENTS) as pool:
        answers = [answer for answers in pool.map(client, range(CLIENTS)) for answer in answers]
    # Then every request got an answer: 200, or 429 throttled with Retry-After
    failures = [answer for answer in answers if isinstance(answer, str)]
    assert failures == [], failures[:5]
    statuses = Counter(answer.status for answer in answers if isinstance(answer, Answer))
    assert set(statuses) <= {200, 429} and statuses[200] > 0, statuses
    # (a trial key's bucket holds 5: most wait; a bulk key's holds 2,000: none does)
    assert statuses[429] > 0 if plan == "trial" else statuses == {200: 2 * CLIENTS}, statuses
    for answer in answers:
        if isinstance(answer, Answer) and answer.status == 429:
            assert answer.code == "throttled" and int(answer.headers["retry-after"]) >= 1
