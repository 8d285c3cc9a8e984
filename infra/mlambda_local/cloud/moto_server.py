"""An in-process moto server whose state survives restarts within a data directory.

moto keeps everything in memory. To keep tables, objects and queues across ``mlambda local``
runs, every state-changing request is appended to ``<data_dir>/moto_recording.jsonl`` (moto's
own recorder format) and replayed on the next start, before the template is provisioned again.

Queues are special: receives and deletes cannot be replayed (receipt handles change), so on a
clean stop every send/publish is dropped from the recording and replaced by one SendMessage
per message still in a queue (visible or in flight). S3 notification configurations are
replayed after the objects, so replayed uploads do not notify again.

What does not survive a restart:

- SQS in-flight state and receive counts: a message in flight at stop is visible again after
  the restart, with a receive count of zero (at-least-once, as SQS promises anyway), and its
  message id and sent timestamp are new.
- After a crash (no clean stop) the queues are not compacted: every message ever sent is
  delivered again. Consumers must be idempotent.
- Anything moto does not record, read-only calls, and timestamps (replayed items are new).

moto's backends and recorder are process-global: one recording ``MotoServer`` per process.
"""

from __future__ import annotations

import base64
import io
import json
import logging
import re
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import moto.moto_api
import requests
from moto.core.request import Request
from moto.moto_api._internal.recorder.models import Recorder
from moto.moto_server.threaded_moto_server import ThreadedMotoServer
from moto.moto_server.werkzeug_app import (
    DomainDispatcherApplication,
    MotoRequestHandler,
    create_backend_app,
)
from werkzeug.serving import make_server

from mlambda_local.cloud.errors import MlambdaLocalError

logger = logging.getLogger("mlambda.local")


class _CachingDispatcher(DomainDispatcherApplication):
    """moto's dispatcher, remembering which backend serves a host.

    moto works that out on every request by listing its package folder (~150 stat calls) and
    trying hundreds of URL patterns: a tenth of the local cloud's CPU under load, for an
    answer that never changes for a given host.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._backend_by_host: dict[str, Any] = {}

    def get_backend_for_host(self, host: str | None) -> Any:
        if host is None:
            return None
        try:
            return self._backend_by_host[host]
        except KeyError:
            backend = super().get_backend_for_host(host)
            self._backend_by_host[host] = backend
            return backend


class _NoDelayRequestHandler(MotoRequestHandler):
    """Headers and body leave in separate writes; without TCP_NODELAY the body can wait ~40 ms."""

    disable_nagle_algorithm = True


_BYTE_RANGE = re.compile(r"^bytes=(\d+)-(\d*)$")
_S3_SIGNATURE = "/s3/aws4_request"


class _RangedGetApp:
    """Serve plain S3 ranged GETs by seeking in moto's stored object.

    moto answers a ranged GET by reading the whole object and slicing it, so every chunk a batch
    worker reads costs O(file): a 10M-row (2 GB) job could not finish. S3 serves a range in
    O(range); this does too. Anything else (presigned or versioned GETs, suffix or multiple
    ranges, unknown keys, ranges past the end) goes to moto unchanged, errors included.
    """

    def __init__(self, app: Any) -> None:
        self.app = app

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        if (
            environ.get("REQUEST_METHOD") == "GET"
            and not environ.get("QUERY_STRING")
            and _S3_SIGNATURE in environ.get("HTTP_AUTHORIZATION", "")
        ):
            match = _BYTE_RANGE.match(environ.get("HTTP_RANGE", ""))
            served = self._serve(environ, match, start_response) if match else None
            if served is not None:
                return served
        return self.app(environ, start_response)

    def _serve(
        self, environ: dict[str, Any], match: re.Match[str], start_response: Any
    ) -> list[bytes] | None:
        from moto.core.models import DEFAULT_ACCOUNT_ID
        from moto.s3.exceptions import S3ClientError
        from moto.s3.models import FakeKey, s3_backends

        raw_path = (environ.get("RAW_URI") or environ.get("REQUEST_URI") or "").split("?", 1)[0]
        bucket, _, key_name = unquote(raw_path).lstrip("/").partition("/")
        if not bucket or not key_name:
            return None
        try:
            key = s3_backends[DEFAULT_ACCOUNT_ID]["aws"].get_object(bucket, key_name)
        except S3ClientError:  # no such bucket: moto's own handler answers with the S3 error
            return None
        if not isinstance(key, FakeKey):
            return None
        begin = int(match.group(1))
        size = key.size
        if begin >= size:
            return None
        end = min(int(match.group(2)) if match.group(2) else size - 1, size - 1)
        if end < begin:
            return None
        with key.lock:
            headers = {k: v for k, v in key.response_dict.items() if not k.startswith("x-amz-checksum")}
            key._value_buffer.seek(begin)
            body = key._value_buffer.read(end - begin + 1)
        headers.update({k: str(v) for k, v in key.metadata.items()})
        headers.update(
            {
                "content-length": str(len(body)),
                "content-range": f"bytes {begin}-{end}/{size}",
                "accept-ranges": "bytes",
            }
        )
        start_response("206 Partial Content", list(headers.items()))
        return [body]


class _SerialDynamoDbApp:
    """One DynamoDB request at a time.

    DynamoDB applies each request to an item atomically; moto's backend is not thread-safe
    (a read deep-copying an item while another thread updates it raises "dictionary changed
    size during iteration", and a conditional update is check-then-write), so concurrent
    workers counting chunks could see 500s or, worse, both pass a condition. Serialising
    DynamoDB calls restores the atomicity the platform's exactly-once counting relies on.
    """

    def __init__(self, app: Any) -> None:
        self.app = app
        self._lock = threading.Lock()

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        if not environ.get("HTTP_X_AMZ_TARGET", "").startswith("DynamoDB_"):
            return self.app(environ, start_response)
        with self._lock:
            # moto builds the whole body before returning; materialise it inside the lock.
            return list(self.app(environ, start_response))


class _FastMotoServer(ThreadedMotoServer):
    """moto's threaded server with the fixes above (same API as ThreadedMotoServer)."""

    def _server_entry(self) -> None:
        self._server = make_server(
            self._ip_address,
            self._port,
            _SerialDynamoDbApp(_RangedGetApp(_CachingDispatcher(create_backend_app))),
            True,
            request_handler=_NoDelayRequestHandler,
        )
        self._server_ready_event.set()
        self._server.serve_forever()


RECORDING_FILE = "moto_recording.jsonl"

# Operations that change nothing worth restoring (reads, polls, and receipt-handle operations
# whose handles cannot be valid after a restart).
_NOISE_OPERATIONS = frozenset(
    {
        "ReceiveMessage",
        "ChangeMessageVisibility",
        "ChangeMessageVisibilityBatch",
        "DeleteMessage",
        "DeleteMessageBatch",
        "GetQueueAttributes",
        "GetQueueUrl",
        "ListQueues",
        "GetItem",
        "BatchGetItem",
        "Query",
        "Scan",
        "ListTables",
        "GetTopicAttributes",
        "ListTopics",
        "ListSubscriptions",
        "ListRules",
        "ListTargetsByRule",
    }
)
_NOISE_PREFIXES = ("Describe", "List", "Get")
# Messages these create are restored from the queue snapshot taken at stop, not by replay.
_SNAPSHOT_OPERATIONS = frozenset({"SendMessage", "SendMessageBatch", "Publish", "PublishBatch", "PutEvents"})


def operation_name(method: str, headers: dict[str, str], url: str, body: bytes | str | None) -> str | None:
    """The AWS operation of a recorded request, when its protocol names one (JSON or query)."""
    lowered = {key.lower(): value for key, value in headers.items()}
    target = lowered.get("x-amz-target")
    if target:
        return target.rsplit(".", 1)[-1]
    query = parse_qs(urlsplit(url).query)
    if "Action" in query:
        return query["Action"][0]
    if "x-www-form-urlencoded" in lowered.get("content-type", "") and body:
        text = body.decode("utf-8", "replace") if isinstance(body, bytes) else body
        action = parse_qs(text).get("Action")
        if action:
            return action[0]
    return None


def is_noise(method: str, headers: dict[str, str], url: str, body: bytes | str | None = None) -> bool:
    """True for calls that need not be recorded or replayed: reads (S3 GET/HEAD...) and SQS polling."""
    if method.upper() in ("GET", "HEAD", "OPTIONS"):
        return True
    if urlsplit(url).path.startswith("/moto-api/"):
        return True
    operation = operation_name(method, headers, url, body)
    if operation is None:
        return False
    return operation in _NOISE_OPERATIONS or operation.startswith(_NOISE_PREFIXES)


class FilteringRecorder(Recorder):
    """moto's recorder, writing to a chosen file, skipping noise, and safe under concurrent requests."""

    def __init__(self, location: Path) -> None:
        super().__init__()
        self._location = str(location)
        self._user_enabled = False
        self._lock = threading.Lock()

    @property
    def lock(self) -> threading.Lock:
        """Held while a request is written; take it to rewrite the file safely."""
        return self._lock

    def _record_request(self, request: Request, body: bytes | None = None) -> None:
        """Record one request unless it is noise; moto calls this for every request it serves."""
        if not self._user_enabled:
            return
        peeked = body if body is not None else _peek_form_body(request)
        if is_noise(request.method, dict(request.headers), request.raw_url, peeked):
            return
        with self._lock:
            super()._record_request(request, body)


def _peek_form_body(request: Request) -> bytes | None:
    """Read a form-encoded body (query protocol) without consuming it, to find its Action."""
    if "x-www-form-urlencoded" not in request.headers.get("Content-Type", ""):
        return None
    try:
        length = int(request.headers.get("Content-Length") or 0)
        data: bytes = request.environ["wsgi.input"].read(length)
    except (KeyError, ValueError, AttributeError):
        return None
    # Put the body back exactly as moto's own recorder does, so the handler still reads it.
    request.environ["wsgi.input"] = io.BytesIO(data)
    return data


def read_recording(path: Path) -> Iterator[dict[str, Any]]:
    """The recorded entries of ``path``; a torn last line (crash mid-write) is skipped with a warning."""
    with path.open(encoding="utf-8") as stream:
        for number, line in enumerate(stream, start=1):
            if not line.strip():
                continue
            try:
                yield json.loads(line)
            except json.JSONDecodeError:
                logger.warning("skipping unreadable line %d of %s", number, path)


_DROPPED_REPLAY_HEADERS = frozenset({"host", "content-length", "transfer-encoding", "expect", "connection"})


def _is_bucket_notification(method: str, url: str) -> bool:
    query = parse_qs(urlsplit(url).query, keep_blank_values=True)
    return method.upper() == "PUT" and "notification" in query


def replay_recording(path: Path, endpoint_url: str, session: requests.Session | None = None) -> int:
    """Send every state-changing request of ``path`` to ``endpoint_url``; returns how many were sent.

    Bucket notification configurations go last, so replayed uploads do not emit events again.
    """
    target = urlsplit(endpoint_url)
    http = session or requests.Session()
    deferred: list[tuple[str, str, dict[str, str], bytes | str]] = []
    sent = 0

    def send(method: str, url: str, headers: dict[str, str], body: bytes | str) -> None:
        parts = urlsplit(url)
        rewritten = f"{target.scheme}://{target.netloc}{parts.path}" + (
            f"?{parts.query}" if parts.query else ""
        )
        kept = {key: value for key, value in headers.items() if key.lower() not in _DROPPED_REPLAY_HEADERS}
        response = http.request(method, rewritten, headers=kept, data=body, timeout=30)
        if response.status_code >= 400:
            logger.debug("replayed %s %s -> %d", method, parts.path, response.status_code)

    for entry in read_recording(path):
        method = str(entry.get("method", "GET"))
        url = str(entry.get("url", ""))
        headers = {str(k): str(v) for k, v in (entry.get("headers") or {}).items()}
        body: bytes | str = entry.get("body") or b""
        if entry.get("body_encoded") and isinstance(body, str):
            body = base64.b64decode(body)
        if is_noise(method, headers, url, body):
            continue
        if _is_bucket_notification(method, url):
            deferred.append((method, url, headers, body))
            continue
        send(method, url, headers, body)
        sent += 1
    for method, url, headers, body in deferred:
        send(method, url, headers, body)
        sent += 1
    return sent


def queue_snapshot(endpoint_url: str) -> list[dict[str, Any]]:
    """One recorder entry (a SendMessage) per message now in any queue of this process's moto."""
    from moto.sqs.models import sqs_backends

    entries: list[dict[str, Any]] = []
    for account_id in list(sqs_backends.keys()):
        for region, backend in list(sqs_backends[account_id].items()):
            for queue in list(backend.queues.values()):
                for message in list(queue._messages):
                    request: dict[str, Any] = {
                        "QueueUrl": f"{endpoint_url}/{account_id}/{queue.name}",
                        "MessageBody": message.body,
                    }
                    if message.message_attributes:
                        request["MessageAttributes"] = {
                            name: {
                                key: base64.b64encode(value).decode() if isinstance(value, bytes) else value
                                for key, value in attribute.items()
                            }
                            for name, attribute in message.message_attributes.items()
                        }
                    if queue.fifo_queue:
                        request["MessageGroupId"] = message.group_id or "default"
                        request["MessageDeduplicationId"] = message.deduplication_id or message.id
                    entries.append(
                        {
                            "method": "POST",
                            "url": f"{endpoint_url}/",
                            "headers": {
                                "X-Amz-Target": "AmazonSQS.SendMessage",
                                "Content-Type": "application/x-amz-json-1.0",
                                "Authorization": f"AWS4-HMAC-SHA256 Credential=testing/20240101/{region}/sqs/aws4_request",
                            },
                            "body": json.dumps(request),
                            "body_encoded": False,
                        }
                    )
    return entries


def compact_recording(path: Path, snapshot: list[dict[str, Any]]) -> None:
    """Replace every recorded send/publish by ``snapshot`` (what is still queued), atomically."""
    kept: list[str] = []
    for entry in read_recording(path):
        headers = {str(k): str(v) for k, v in (entry.get("headers") or {}).items()}
        body = entry.get("body") or ""
        if entry.get("body_encoded") and isinstance(body, str):
            body = base64.b64decode(body)
        operation = operation_name(str(entry.get("method", "")), headers, str(entry.get("url", "")), body)
        if operation not in _SNAPSHOT_OPERATIONS:
            kept.append(json.dumps(entry))
    kept.extend(json.dumps(entry) for entry in snapshot)
    temporary = path.with_suffix(".jsonl.tmp")
    temporary.write_text("".join(f"{line}\n" for line in kept), encoding="utf-8")
    temporary.replace(path)


class MotoServer:
    """A moto server on 127.0.0.1 (a free port unless one is given), optionally persistent."""

    def __init__(self, data_dir: Path | None = None, port: int = 0, host: str = "127.0.0.1") -> None:
        self.data_dir = data_dir
        self.host = host
        self.port = port
        self._server: _FastMotoServer | None = None
        self._recorder: FilteringRecorder | None = None
        self._previous_recorder: Any = None

    @property
    def url(self) -> str:
        """``http://127.0.0.1:<port>`` once started."""
        if self._server is None:
            raise MlambdaLocalError("the moto server is not running")
        host, port = self._server.get_host_and_port()
        return f"http://{host}:{port}"

    @property
    def recording_path(self) -> Path | None:
        """Where requests are recorded, if persistent."""
        return None if self.data_dir is None else self.data_dir / RECORDING_FILE

    def start(self) -> str:
        """Start serving on a fresh, empty state (then the replayed recording); returns the URL."""
        if self._server is not None:
            return self.url
        werkzeug_logger = logging.getLogger("werkzeug")
        if werkzeug_logger.level == logging.NOTSET:
            # werkzeug logs every request at INFO; pollers would drown everything else.
            werkzeug_logger.setLevel(logging.WARNING)
        server = _FastMotoServer(ip_address=self.host, port=self.port, verbose=False)
        server.start()
        self._server = server
        # Backends are process-global: a server started after another one in this process
        # would otherwise see its leftovers. Start as empty as a new process would.
        requests.post(f"{self.url}/moto-api/reset", timeout=10).raise_for_status()
        path = self.recording_path
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._previous_recorder = moto.moto_api.recorder
            self._recorder = FilteringRecorder(path)
            moto.moto_api.recorder = self._recorder  # moto looks the recorder up on every request
            if path.exists():
                sent = replay_recording(path, self.url)
                logger.info("replayed %d recorded requests from %s", sent, path)
            self._recorder.start_recording()
        logger.info("moto server listening on %s", self.url)
        return self.url

    def stop(self) -> None:
        """Stop recording and serving; safe to call twice."""
        if self._recorder is not None:
            recorder, self._recorder = self._recorder, None
            recorder.stop_recording()
            path = self.recording_path
            if path is not None and path.exists() and self._server is not None:
                with recorder.lock:
                    compact_recording(path, queue_snapshot(self.url))
            moto.moto_api.recorder = self._previous_recorder
        if self._server is not None:
            server, self._server = self._server, None
            server.stop()
