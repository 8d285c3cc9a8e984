"""``Client``: the platform's API for application code, with retries that never repeat a change.

Retries, with exponential backoff and full jitter, honouring ``Retry-After``:

- a connection that never opened (refused, DNS, connect timeout) and a 429 are retried for every
  call: the server did nothing;
- 500, 502, 503, 504, a broken connection and a read timeout are retried only for idempotent
  calls: GET, PUT, DELETE, and the POSTs that are safe to repeat (predict with its request id,
  events with their event ids, a batch job keyed by its object, an upload URL). Registering a
  version, creating a model, a rollback or a PATCH are never repeated after the server may have
  acted: their error is raised.

Only the standard library and requests are imported (requests when the first client is made):
no numpy, boto3, onnxruntime or pydantic, so the SDK installs and imports in milliseconds.
"""

from __future__ import annotations

import json
import random
import re
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import IO, Any, Literal
from urllib.parse import quote, urlencode

from mlambda import __version__
from mlambda.client.errors import (
    ApiError,
    MlambdaClientError,
    NotFoundError,
    TransportError,
    VersionFailedError,
    WaitTimeoutError,
    error_for,
)
from mlambda.client.results import EventTotals, Fetched, Json, Predictions
from mlambda.client.transport import Body, HttpResponse, RequestsTransport, Transport

MAX_EVENTS_PER_REQUEST = 500
MAX_EVENTS_BODY_BYTES = 5 * 1024 * 1024  # under the API's 6 MB, with room for the envelope
REJECTS_PAGE = 500
TERMINAL_JOB_STATES = ("completed", "failed")
IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "PUT", "DELETE", "OPTIONS"})
RETRIED_SERVER_STATUSES = frozenset({500, 502, 503, 504})
UploadKind = Literal["model", "reference", "evaluation"]
Progress = Callable[[int], None]
"""Called with the number of bytes (uploads, downloads), rows or events just done."""


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how long to retry: ``attempts`` in all (1 = never retry), exponential backoff
    from ``backoff`` seconds up to ``max_backoff`` with full jitter; a ``Retry-After`` longer than
    ``max_retry_after`` is not waited for (the error is raised)."""

    attempts: int = 4
    backoff: float = 0.25
    max_backoff: float = 8.0
    max_retry_after: float = 60.0
    jitter: Callable[[], float] = field(default=random.random, repr=False, compare=False)

    def delay(self, retry: int, retry_after: float | None) -> float:
        """Seconds before retry number ``retry`` (1, 2...): at least what the server asked for."""
        ceiling = min(self.max_backoff, self.backoff * 2 ** (retry - 1))
        return float(max(retry_after or 0.0, ceiling * self.jitter()))


NO_RETRY = RetryPolicy(attempts=1)


def retry_after_seconds(value: str | None, now: Callable[[], float] = time.time) -> float | None:
    """``Retry-After`` as seconds: a number, or an HTTP date; None when absent or unreadable."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        return max(0.0, parsedate_to_datetime(value).timestamp() - now())
    except (TypeError, ValueError):
        return None


class _ProgressReader:
    """A file opened for an upload that reports each read; ``len`` gives requests the Content-Length
    (presigned S3 PUTs refuse chunked bodies)."""

    def __init__(self, handle: IO[bytes], size: int, progress: Progress | None) -> None:
        self._handle = handle
        self._size = size
        self._progress = progress

    def __len__(self) -> int:
        return self._size

    def read(self, amount: int = -1) -> bytes:
        chunk = self._handle.read(amount)
        if chunk and self._progress is not None:
            self._progress(len(chunk))
        return chunk


def _plain(values: Any) -> Any:
    """numpy arrays and scalars as Python lists/numbers (``tolist``); anything else as it is."""
    return values.tolist() if hasattr(values, "tolist") else values


def _split(rows: Sequence[Mapping[str, Any]]) -> tuple[list[str], list[list[Any]]]:
    """Rows by name as MLflow's ``dataframe_split``: the columns in first-seen order, a row each."""
    columns: dict[str, None] = {}
    for row in rows:
        columns.update(dict.fromkeys(row))
    names = list(columns)
    return names, [[_plain(row.get(name)) for name in names] for row in rows]


class Client:
    """The mlambda API at ``api_url`` (the stage's base URL) with ``api_key``.

    >>> client = Client("http://127.0.0.1:3000/v1", "mlk.abc.secret")   # doctest: +SKIP
    >>> client.predict("churn", [{"tenure": 3, "monthly_spend": 42.0}]).predictions  # doctest: +SKIP
    [1]
    """

    def __init__(
        self,
        api_url: str,
        api_key: str | None = None,
        *,
        timeout: float = 60.0,
        retry: RetryPolicy | None = None,
        transport: Transport | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if not api_url.startswith(("http://", "https://")):
            raise MlambdaClientError(f"api_url must be an http(s) URL, got {api_url!r}")
        self.api_url = api_url.rstrip("/")
        self.api_key = api_key
        self.timeout = timeout
        self.retry = retry or RetryPolicy()
        self._transport = transport
        self._sleep = sleep

    @property
    def transport(self) -> Transport:
        """The HTTP transport (requests, made on first use)."""
        if self._transport is None:
            self._transport = RequestsTransport()
        return self._transport

    # ------------------------------------------------------------------ HTTP with retries

    def request(
        self,
        method: str,
        path: str,
        *,
        body: Any = None,
        params: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
        idempotent: bool | None = None,
    ) -> Any:
        """Call ``method path`` with a JSON ``body``; the decoded answer, or the ``ApiError`` for
        its status. ``idempotent`` (default: by method) decides what may be retried."""
        query = {k: v for k, v in (params or {}).items() if v is not None}
        url = f"{self.api_url}{path}" + (f"?{urlencode(query, doseq=True)}" if query else "")
        sent_headers = {"accept": "application/json", "user-agent": f"mlambda-sdk/{__version__}"}
        if self.api_key:
            sent_headers["x-api-key"] = self.api_key
        payload: bytes | None = None
        if body is not None:
            payload = json.dumps(body, separators=(",", ":"), allow_nan=False).encode()
            sent_headers["content-type"] = "application/json"
        sent_headers.update(headers or {})
        safe = method.upper() in IDEMPOTENT_METHODS if idempotent is None else idempotent
        response = self._send(method, url, headers=sent_headers, body=lambda: payload, idempotent=safe)
        return _decoded(response)

    def _send(
        self,
        method: str,
        url: str,
        *,
        headers: Mapping[str, str],
        body: Callable[[], Body],
        idempotent: bool,
    ) -> HttpResponse:
        """One call with the retry rules; ``body`` makes the body afresh for every attempt."""
        attempt = 0
        while True:
            attempt += 1
            last = attempt >= self.retry.attempts
            try:
                response = self.transport.send(
                    method, url, headers=headers, body=body(), timeout=self.timeout
                )
            except TransportError as exc:
                if last or (exc.sent and not idempotent):
                    raise
                self._sleep(self.retry.delay(attempt, None))
                continue
            if response.status < 400:
                return response
            retry_after = retry_after_seconds(response.header("retry-after"))
            retryable = response.status == 429 or (idempotent and response.status in RETRIED_SERVER_STATUSES)
            too_long = retry_after is not None and retry_after > self.retry.max_retry_after
            if last or not retryable or too_long:
                raise _error(response, retry_after)
            self._sleep(self.retry.delay(attempt, retry_after))

    def _put_file(
        self, url: str, path: Path, headers: Mapping[str, str] | None, progress: Progress | None
    ) -> HttpResponse:
        """PUT a file to a presigned URL (no API key sent there); retried like any idempotent call."""
        size = path.stat().st_size
        handles: list[IO[bytes]] = []

        def body() -> Body:
            for handle in handles:
                handle.close()
            handle = path.open("rb")
            handles.append(handle)
            return _ProgressReader(handle, size, progress)  # type: ignore[return-value]

        try:
            return self._send("PUT", url, headers=dict(headers or {}), body=body, idempotent=True)
        finally:
            for handle in handles:
                handle.close()

    def download(self, url: str) -> bytes:
        """GET a presigned URL (a job's part, rejects or manifest); its bytes."""
        return self._send("GET", url, headers={}, body=lambda: None, idempotent=True).body

    # ------------------------------------------------------------------ identity and keys

    def whoami(self) -> Json:
        """The key in use: id, name, scopes."""
        return dict(self.request("GET", "/me"))

    def create_key(self, name: str, scopes: Sequence[str], *, plan: str | None = None) -> Json:
        """Issue a key (admin) on a usage plan (the API's default when None); the answer holds
        ``api_key``, shown this once."""
        body: Json = {"name": name, "scopes": list(scopes)}
        if plan is not None:
            body["plan"] = plan
        return dict(self.request("POST", "/keys", body=body))

    def set_key_plan(self, key_id: str, plan: str) -> Json:
        """Move a key to another usage plan (admin)."""
        return dict(self.request("PUT", f"/keys/{_segment(key_id)}/plan", body={"plan": plan}))

    def keys(self) -> list[Json]:
        """Every key, without secrets."""
        return list(self.request("GET", "/keys")["keys"])

    def revoke_key(self, key_id: str) -> Json:
        """Revoke a key by id (repeating it changes nothing)."""
        return dict(self.request("DELETE", f"/keys/{_segment(key_id)}"))

    # ------------------------------------------------------------------ predict

    def predict(
        self,
        model: str,
        rows: Sequence[Mapping[str, Any]],
        *,
        variant: str | None = None,
        entity_id: str | None = None,
        request_id: str | None = None,
        explain: bool | Mapping[str, Any] = False,
    ) -> Predictions:
        """Score rows given by feature name; sent columnar (``dataframe_split``, the fast path)."""
        if not rows:
            raise MlambdaClientError("predict needs at least one row")
        columns, data = _split(rows)
        return self.predict_split(
            model, columns, data, variant=variant, entity_id=entity_id, request_id=request_id, explain=explain
        )

    def predict_split(
        self,
        model: str,
        columns: Sequence[str],
        data: Sequence[Sequence[Any]],
        *,
        variant: str | None = None,
        entity_id: str | None = None,
        request_id: str | None = None,
        explain: bool | Mapping[str, Any] = False,
    ) -> Predictions:
        """Score ``data`` (one list of values per row, in ``columns`` order)."""
        body = {"dataframe_split": {"columns": list(columns), "data": _plain(data)}}
        return self._predict(model, body, variant, entity_id, request_id, explain)

    def predict_columns(
        self,
        model: str,
        columns: Mapping[str, Sequence[Any]],
        *,
        variant: str | None = None,
        request_id: str | None = None,
        explain: bool | Mapping[str, Any] = False,
    ) -> Predictions:
        """Score columns (``{feature: [values...]}``, lists or numpy arrays of one length)."""
        body = {"inputs": {name: _plain(values) for name, values in columns.items()}}
        return self._predict(model, body, variant, None, request_id, explain)

    def predict_frame(
        self,
        model: str,
        frame: Any,
        *,
        variant: str | None = None,
        request_id: str | None = None,
        explain: bool | Mapping[str, Any] = False,
    ) -> Predictions:
        """Score a pandas DataFrame (its columns are the features); ``.to_frame(index=frame.index)``
        on the answer lines the predictions up with the input."""
        columns = [str(c) for c in frame.columns]
        return self.predict_split(
            model, columns, frame.to_numpy().tolist(), variant=variant, request_id=request_id, explain=explain
        )

    def predict_entity(
        self,
        model: str,
        entity_id: str,
        features: Mapping[str, Any] | None = None,
        *,
        variant: str | None = None,
        request_id: str | None = None,
        explain: bool | Mapping[str, Any] = False,
    ) -> Predictions:
        """Score one entity from its online features, ``features`` overriding them."""
        body: Json = {"features": dict(features)} if features else {}
        return self._predict(model, body, variant, entity_id, request_id, explain)

    def predict_body(self, model: str, body: Mapping[str, Any]) -> Json:
        """Send a predict body as it is (any format the route takes); the answer as it is."""
        sent = dict(body)
        sent.setdefault("request_id", uuid.uuid4().hex)
        return dict(self.request("POST", f"/models/{_segment(model)}/predict", body=sent, idempotent=True))

    def _predict(  # noqa: PLR0917 (private: every public predict_* passes the same options)
        self,
        model: str,
        body: Json,
        variant: str | None,
        entity_id: str | None,
        request_id: str | None,
        explain: bool | Mapping[str, Any],
    ) -> Predictions:
        """A predict call; the request id (made here when absent) makes a retry the same request."""
        body.update({k: v for k, v in (("variant", variant), ("entity_id", entity_id)) if v is not None})
        if explain:
            body["explain"] = dict(explain) if isinstance(explain, Mapping) else True
        body["request_id"] = request_id or uuid.uuid4().hex
        answer = self.request("POST", f"/models/{_segment(model)}/predict", body=body, idempotent=True)
        return Predictions.from_response(answer)

    def serving_version(self, model: str, *, variant: str | None = None) -> Json:
        """The version predict answers with (the variant's, or the split's first: the gate keeps
        every version taking traffic on the same features), READY."""
        target = "production"
        try:
            variants = self.endpoint(model)["variants"]
        except NotFoundError:
            if variant is not None:
                raise
        else:
            chosen = [v for v in variants if variant is None or v["name"] == variant]
            if not chosen:
                raise MlambdaClientError(f"{model} has no variant {variant!r}")
            target = str(chosen[0]["target"])
        if re.fullmatch(r"v?\d+", target) is None:
            target = str(
                self.request("GET", f"/models/{_segment(model)}/aliases/{_segment(target)}")["version"]
            )
        return self.version(model, target)

    def feature_names(self, model: str, *, variant: str | None = None) -> list[str]:
        """The features predict expects, in the model's order."""
        schema = self.serving_version(model, variant=variant)["feature_schema"]
        return [str(feature["name"]) for feature in schema["features"]]

    # ------------------------------------------------------------------ events and features

    def send_events(
        self,
        events: Iterable[Mapping[str, Any]],
        *,
        batch_size: int = MAX_EVENTS_PER_REQUEST,
        on_progress: Progress | None = None,
    ) -> EventTotals:
        """POST events in requests within the API's limits (``batch_size`` events, 5 MB); rejections
        carry ``index`` counted over all of ``events``. Retried safely: event ids make a resent
        event a duplicate, applied once."""
        if not 1 <= batch_size <= MAX_EVENTS_PER_REQUEST:
            raise MlambdaClientError(f"batch_size must be 1..{MAX_EVENTS_PER_REQUEST}")
        totals = EventTotals()
        batch: list[Mapping[str, Any]] = []
        size = 0
        first = 0

        def flush() -> None:
            nonlocal batch, size, first
            if not batch:
                return
            body = self.request("POST", "/events", body={"events": batch}, idempotent=True)
            totals.requests += 1
            totals.accepted += body["accepted"]
            totals.duplicates += body["duplicates"]
            totals.rejected += body["rejected"]
            totals.rejections.extend(
                {**result, "index": first + result["index"]}
                for result in body["results"]
                if result["status"] == "rejected"
            )
            if on_progress is not None:
                on_progress(len(batch))
            first += len(batch)
            batch, size = [], 0

        for event in events:
            encoded = len(json.dumps(event, separators=(",", ":"), default=str))
            if batch and (len(batch) >= batch_size or size + encoded > MAX_EVENTS_BODY_BYTES):
                flush()
            batch.append(event)
            size += encoded + 1
        flush()
        return totals

    def features(self, entity_id: str, *, groups: Sequence[str] | None = None) -> Json:
        """An entity's live feature groups and aggregates."""
        params = {"group": list(groups)} if groups else None
        return dict(self.request("GET", f"/entities/{_segment(entity_id)}/features", params=params))

    # ------------------------------------------------------------------ registry

    def create_model(
        self,
        name: str,
        *,
        description: str = "",
        owner: str = "",
        tags: Mapping[str, str] | None = None,
    ) -> Json:
        """Register a model name (409 ``ConflictError`` when it exists)."""
        body = {"name": name, "description": description, "owner": owner, "tags": dict(tags or {})}
        return dict(self.request("POST", "/models", body=body))

    def model(self, name: str) -> Json:
        """A model: aliases, latest version, owner, tags."""
        return dict(self.request("GET", f"/models/{_segment(name)}"))

    def models(self, *, owner: str | None = None, tag: tuple[str, str] | None = None) -> Iterator[Json]:
        """Every model (all pages), optionally only ``owner``'s or those tagged ``tag`` (key, value)."""
        params: Json = {"limit": 100, "owner": owner, "tag": None if tag is None else f"{tag[0]}:{tag[1]}"}
        while True:
            page = self.request("GET", "/models", params=params)
            yield from page["models"]
            if not page.get("next_token"):
                return
            params["next_token"] = page["next_token"]

    def update_model(self, name: str, **fields: Any) -> Json:
        """Change a model's description, owner, tags or settings (a merge patch)."""
        return dict(self.request("PATCH", f"/models/{_segment(name)}", body=fields))

    def upload(
        self, model: str, path: str | Path, *, kind: UploadKind = "model", on_progress: Progress | None = None
    ) -> str:
        """PUT a file through a presigned URL; the upload key to register it by."""
        file = Path(path)
        if not file.is_file():
            raise MlambdaClientError(f"no such file: {file}")
        ticket = self.request(
            "POST",
            f"/models/{_segment(model)}/uploads",
            body={"filename": file.name, "kind": kind},
            idempotent=True,
        )
        self._put_file(ticket["url"], file, ticket.get("headers"), on_progress)
        return str(ticket["upload_key"])

    def register(
        self,
        model: str,
        model_file: str | Path,
        *,
        reference: str | Path | None = None,
        target: str | None = None,
        exclude: Sequence[str] | None = None,
        features: Sequence[str] | None = None,
        feature_types: Sequence[str] | None = None,
        metrics: Mapping[str, float] | None = None,
        params: Mapping[str, Any] | None = None,
        description: str | None = None,
        owner: str | None = None,
        tags: Mapping[str, str] | None = None,
        training_data_uri: str | None = None,
        training_data_version: str | None = None,
        source_code_version: str | None = None,
        create_model: bool = True,
        wait: bool = True,
        timeout: float = 900.0,
        on_status: Callable[[Json], None] | None = None,
        on_upload: Progress | None = None,
    ) -> Json:
        """Upload an ONNX file (and a held-out reference sample with its ``target`` column), register
        it as the model's next version and, with ``wait``, return it READY (``VersionFailedError`` if the
        validator refused it). A model not created yet is created first (``create_model``), as
        MLflow's ``register_model`` does."""
        try:
            upload_key = self.upload(model, model_file, kind="model", on_progress=on_upload)
        except NotFoundError as exc:
            if not create_model or exc.code != "model_not_found":
                raise
            self._create_if_missing(model, description=description or "", owner=owner or "", tags=tags)
            upload_key = self.upload(model, model_file, kind="model", on_progress=on_upload)
        body: Json = {"upload_key": upload_key}
        if reference is not None:
            body["reference_key"] = self.upload(model, reference, kind="reference", on_progress=on_upload)
        optional = {
            "target": target,
            "exclude": list(exclude) if exclude else None,
            "feature_names": list(features) if features else None,
            "feature_types": list(feature_types) if feature_types else None,
            "metrics": dict(metrics) if metrics else None,
            "params": dict(params) if params else None,
            "description": description,
            "owner": owner,
            "tags": dict(tags) if tags else None,
            "training_data_uri": training_data_uri,
            "training_data_version": training_data_version,
            "source_code_version": source_code_version,
        }
        body.update({k: v for k, v in optional.items() if v is not None})
        pending = dict(self.request("POST", f"/models/{_segment(model)}/versions", body=body))
        if not wait:
            return pending
        return self.wait_until_ready(model, int(pending["version"]), timeout=timeout, on_status=on_status)

    def _create_if_missing(
        self, name: str, *, description: str, owner: str, tags: Mapping[str, str] | None
    ) -> None:
        try:
            self.create_model(name, description=description, owner=owner, tags=tags)
        except ApiError as exc:
            if exc.code != "model_exists" and exc.status != 409:
                raise

    def version(self, model: str, version: int | str) -> Json:
        """One version (``3`` or ``v3``), whatever its status."""
        return dict(self.request("GET", f"/models/{_segment(model)}/versions/{_segment(str(version))}"))

    def versions(self, model: str, *, limit: int = 20) -> list[Json]:
        """The newest ``limit`` versions."""
        return list(
            self.request("GET", f"/models/{_segment(model)}/versions", params={"limit": limit})["versions"]
        )

    def wait_until_ready(
        self,
        model: str,
        version: int,
        *,
        timeout: float = 900.0,
        poll: float = 0.5,
        on_status: Callable[[Json], None] | None = None,
    ) -> Json:
        """Poll until the version leaves PENDING_VALIDATION: READY, or ``VersionFailedError`` with the reason."""
        deadline = time.monotonic() + timeout
        while True:
            record = self.version(model, version)
            if on_status is not None:
                on_status(record)
            if record["status"] == "READY":
                return record
            if record["status"] == "FAILED":
                failure = record.get("failure") or {}
                raise VersionFailedError(
                    model,
                    version,
                    str(failure.get("code", "failed")),
                    str(failure.get("message", "")),
                    failure.get("details"),
                )
            if time.monotonic() > deadline:
                raise WaitTimeoutError(f"{model} v{version} still {record['status']} after {timeout:.0f} s")
            self._sleep(poll)

    def promote(
        self,
        model: str,
        version: int,
        *,
        alias: str = "production",
        force: bool = False,
        reason: str | None = None,
    ) -> Json:
        """Point ``alias`` at ``version``; ``production`` runs the gate (``force`` needs a ``reason``)."""
        body: Json = {"version": int(version), "force": force}
        if reason:
            body["reason"] = reason
        return dict(self.request("PUT", f"/models/{_segment(model)}/aliases/{_segment(alias)}", body=body))

    def rollback(self, model: str, *, alias: str = "production", reason: str | None = None) -> Json:
        """Move ``alias`` back to its previous version (never retried: a repeat would go back further)."""
        body: Json = {"alias": alias}
        if reason:
            body["reason"] = reason
        return dict(self.request("POST", f"/models/{_segment(model)}/rollback", body=body))

    def endpoint(self, model: str) -> Json:
        """The endpoint config (variants, shadow, rules, cache) with its ``revision``."""
        return dict(self.request("GET", f"/models/{_segment(model)}/endpoint"))

    def split(
        self,
        model: str,
        weights: Mapping[str, int],
        *,
        shadow: tuple[str, float] | None = None,
        no_shadow: bool = False,
        sticky_key: str | None = None,
    ) -> Json:
        """Set the traffic split (``{"v3": 90, "v4": 10}``: versions or aliases), keeping rules and
        cache: a PATCH conditional on the revision just read (``ConflictError`` when it moved)."""
        patch: Json = {
            "variants": [
                {"name": target, "target": target, "weight": int(w)} for target, w in weights.items()
            ]
        }
        if shadow is not None:
            patch["shadow"] = {"target": shadow[0], "sample_percent": float(shadow[1])}
        elif no_shadow:
            patch["shadow"] = None
        if sticky_key:
            patch["sticky_key"] = sticky_key
        headers: dict[str, str] = {}
        try:
            headers["If-Match"] = f'"{self.endpoint(model)["revision"]}"'
        except NotFoundError as exc:
            if exc.code != "no_endpoint_config":
                raise
        return dict(self.request("PATCH", f"/models/{_segment(model)}/endpoint", body=patch, headers=headers))

    def history(self, model: str, *, alias: str | None = None, limit: int = 50) -> list[Json]:
        """The change log, newest first (one alias's with ``alias``)."""
        params = {"limit": limit, "alias": alias}
        return list(self.request("GET", f"/models/{_segment(model)}/history", params=params)["entries"])

    def alias_at(self, model: str, at: str, *, alias: str = "production") -> Json:
        """Where ``alias`` pointed at time ``at`` (ISO 8601): ``version`` (None: nowhere) and ``since``."""
        params = {"alias": alias, "at": at}
        return dict(self.request("GET", f"/models/{_segment(model)}/history", params=params))

    # ------------------------------------------------------------------ batch

    def upload_batch_file(
        self,
        model: str,
        path: str | Path,
        *,
        alias: str = "production",
        chunk_rows: int | None = None,
        explain: bool = False,
        passthrough: Sequence[str] | None = None,
        on_progress: Progress | None = None,
    ) -> str:
        """PUT a CSV/Parquet file under ``input/<model>/`` of the batch bucket through a presigned URL
        (no AWS credentials needed); its key. The upload's S3 event plans the job."""
        file = Path(path)
        if not file.is_file():
            raise MlambdaClientError(f"no such file: {file}")
        body = {
            "model": model,
            "filename": file.name,
            **_job_options(alias, chunk_rows, explain, passthrough),
        }
        ticket = self.request("POST", "/jobs/uploads", body=body, idempotent=True)
        self._put_file(ticket["url"], file, ticket.get("headers"), on_progress)
        return str(ticket["key"])

    def submit_batch(
        self,
        model: str,
        path: str | Path,
        *,
        alias: str = "production",
        chunk_rows: int | None = None,
        explain: bool = False,
        passthrough: Sequence[str] | None = None,
        on_progress: Progress | None = None,
    ) -> Json:
        """Upload a file and start its job; the job (``GET /jobs/{id}``'s view)."""
        key = self.upload_batch_file(
            model,
            path,
            alias=alias,
            chunk_rows=chunk_rows,
            explain=explain,
            passthrough=passthrough,
            on_progress=on_progress,
        )
        return self.submit_key(
            key, alias=alias, chunk_rows=chunk_rows, explain=explain, passthrough=passthrough
        )

    def submit_key(
        self,
        key: str,
        *,
        alias: str = "production",
        chunk_rows: int | None = None,
        explain: bool = False,
        passthrough: Sequence[str] | None = None,
    ) -> Json:
        """Score an object already under ``input/``: its job, the same one however often this is
        called (the job id derives from the object and the options; safe to retry)."""
        body = {"key": key, **_job_options(alias, chunk_rows, explain, passthrough)}
        return dict(self.request("POST", "/jobs", body=body, idempotent=True))

    def job(self, job_id: str) -> Json:
        """A job's record, progress, output location and failed chunks."""
        return dict(self.request("GET", f"/jobs/{_segment(job_id)}"))

    def jobs(self, model: str, *, limit: int = 20) -> list[Json]:
        """A model's jobs, newest first."""
        return list(self.request("GET", "/jobs", params={"model": model, "limit": limit})["jobs"])

    def retry_job(self, job_id: str) -> Json:
        """Re-send the chunks of a job that are not done."""
        return dict(self.request("POST", f"/jobs/{_segment(job_id)}/retry"))

    def wait_for_job(
        self,
        job_id: str,
        *,
        timeout: float = 3600.0,
        poll: float = 0.5,
        on_progress: Callable[[Json], None] | None = None,
    ) -> Json:
        """Poll until the job completes or fails (``on_progress`` gets each view); the last view."""
        deadline = time.monotonic() + timeout
        while True:
            view = self.job(job_id)
            if on_progress is not None:
                on_progress(view)
            if view["job"]["status"] in TERMINAL_JOB_STATES:
                return view
            if time.monotonic() > deadline:
                raise WaitTimeoutError(f"job {job_id} not done after {timeout:.0f} s")
            self._sleep(poll)

    def job_files(self, job_id: str) -> Json:
        """Short-lived download URLs of the job's parts, rejects files and manifest."""
        return dict(self.request("GET", f"/jobs/{_segment(job_id)}/files"))

    def rejects(self, job_id: str) -> Iterator[Json]:
        """Every row the job refused, in file order: ``row`` (of the input's data rows), ``chunk``,
        ``chunk_row``, ``byte_offset`` (CSV), ``reason``."""
        offset = 0
        while True:
            page = self.request(
                "GET", f"/jobs/{_segment(job_id)}/rejects", params={"offset": offset, "limit": REJECTS_PAGE}
            )
            yield from page["rows"]
            offset += len(page["rows"])
            if not page["rows"] or offset >= page["total"]:
                return

    def fetch_job(
        self,
        job_id: str,
        path: str | Path,
        *,
        rejects: str | Path | None = None,
        on_progress: Progress | None = None,
    ) -> Fetched:
        """Write a completed job's output to ``path``, Parquet or CSV by its extension (parts in chunk
        order, one at a time), and its rejected rows to the CSV ``rejects``. Needs pyarrow."""
        from mlambda.client import files

        out = Path(path)
        writer = files.table_writer(out)
        view = self.job(job_id)
        if view["job"]["status"] != "completed":
            raise MlambdaClientError(
                f"job {job_id} is {view['job']['status']}, not completed: nothing to fetch yet"
            )
        parts = sorted(
            (f for f in self.job_files(job_id)["files"] if f["kind"] == "part"), key=lambda f: f["chunk"]
        )
        rows = 0
        with writer:
            for part in parts:
                data = self.download(part["url"])
                rows += writer.write_parquet_part(data)
                if on_progress is not None:
                    on_progress(len(data))
        rejected = 0
        if rejects is not None:
            rejected = files.write_rejects_csv(Path(rejects), self.rejects(job_id))
        return Fetched(
            path=str(out),
            rows=rows,
            parts=len(parts),
            rejects_path=None if rejects is None else str(rejects),
            rows_rejected=rejected,
        )

    # ------------------------------------------------------------------ monitoring

    def monitoring(self, model: str, *, limit: int = 24) -> Json:
        """A model's latest monitoring summaries and report."""
        return dict(self.request("GET", f"/models/{_segment(model)}/monitoring", params={"limit": limit}))

    def monitoring_report(self, model: str) -> str:
        """The latest HTML report."""
        url = f"{self.api_url}/models/{_segment(model)}/monitoring?format=html"
        headers = {"accept": "text/html", "user-agent": f"mlambda-sdk/{__version__}"}
        if self.api_key:
            headers["x-api-key"] = self.api_key
        return self._send("GET", url, headers=headers, body=lambda: None, idempotent=True).body.decode()


def _job_options(
    alias: str, chunk_rows: int | None, explain: bool, passthrough: Sequence[str] | None
) -> Json:
    """A batch job's options as ``POST /jobs/uploads`` and ``POST /jobs`` take them (the same ones,
    so both name the same job)."""
    options: Json = {"alias": alias, "explain": explain}
    if chunk_rows is not None:
        options["chunk_rows"] = chunk_rows
    if passthrough is not None:
        options["passthrough"] = list(passthrough)
    return options


def _segment(value: str) -> str:
    """A path segment, percent-encoded (a name can never add a segment or a query)."""
    return quote(str(value), safe="")


def _decoded(response: HttpResponse) -> Any:
    if not response.body:
        return None
    try:
        return json.loads(response.body)
    except ValueError as exc:
        raise MlambdaClientError(
            f"HTTP {response.status}: the answer is not JSON: {response.body[:200]!r}"
        ) from exc


def _error(response: HttpResponse, retry_after: float | None) -> ApiError:
    """The ApiError for an error answer: the API's ``{code, message, details}``, or the status alone."""
    info: Any = None
    try:
        info = json.loads(response.body) if response.body else None
    except ValueError:
        info = None
    if not isinstance(info, dict):
        text = response.body[:200].decode(errors="replace").strip()
        return error_for(
            response.status, "http_error", text or f"HTTP {response.status}", retry_after=retry_after
        )
    return error_for(
        response.status,
        str(info.get("code", "http_error")),
        str(info.get("message", f"HTTP {response.status}")),
        info.get("details"),
        retry_after=retry_after,
    )
