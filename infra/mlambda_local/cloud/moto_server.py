"""An in-process moto server, behind a front server that makes it safe, cheap and persistent.

moto answers AWS requests from in-memory models. Requests reach it over kept-alive connections
(``wsgi_server``: werkzeug's server, moto's own, closes every connection after one response)
and through a stack of small WSGI layers, outermost first:

- ``_SerialApp``: DynamoDB and SQS requests run one at a time (moto's models for them are not
  thread-safe; see ``moto_patches``), and SQS long polls wait here, outside the lock, instead
  of inside moto holding it.
- ``_PersistingApp``: every request that can change state records what it changed and, with a
  data directory, has it written by ``persistence.StateStore`` before the response leaves.
- ``_RangedGetApp``: S3 ranged GETs served by seeking in the stored body, not by reading it all.
- moto's dispatcher, remembering which backend serves a host.

moto's backends are process-global: one persistent ``MotoServer`` per process.
"""

from __future__ import annotations

import io
import json
import logging
import re
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, parse_qsl, unquote, urlencode, urlsplit
from xml.etree import ElementTree

from mlambda_local.cloud import moto_patches
from mlambda_local.cloud.errors import MlambdaLocalError
from mlambda_local.cloud.http_wire import WireRequest
from mlambda_local.cloud.persistence import StateStore
from mlambda_local.cloud.wsgi_server import WsgiServer, wsgi_environ

logger = logging.getLogger("mlambda.local")

OLD_RECORDING_FILE = "moto_recording.jsonl"
# A long poll whose queue shows a message it could not receive (a FIFO group in flight) tries again this often.
LONG_POLL_RECHECK_SECONDS = 0.5

StartResponse = Callable[..., Any]
WsgiApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]


def _caching_dispatcher() -> WsgiApp:
    """moto's dispatcher, remembering which backend serves a host.

    moto works that out on every request by listing its package folder (~150 stat calls) and
    trying hundreds of URL patterns: a tenth of the local cloud's CPU under load, for an
    answer that never changes for a given host. moto is imported here, when the server starts:
    the runner starts its first workers before paying for it.
    """
    from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app

    class CachingDispatcher(DomainDispatcherApplication):
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

    return CachingDispatcher(create_backend_app)


# -- what a request is -------------------------------------------------------------------------------

_CREDENTIAL_SCOPE = re.compile(r"Credential=[^/,\s]+/\d{8}/([^/,\s]+)/([^/,\s]+)/aws4_request")
_TARGET_SERVICES = {"DynamoDB_": "dynamodb", "AmazonSQS.": "sqs", "AWSEvents.": "events"}


def _read_body(environ: dict[str, Any]) -> bytes:
    """The request body, put back so the next layer reads it again."""
    try:
        length = int(environ.get("CONTENT_LENGTH") or 0)
    except ValueError:
        length = 0
    body: bytes = environ["wsgi.input"].read(length) if length > 0 else b""
    _set_body(environ, body)
    return body


def _set_body(environ: dict[str, Any], body: bytes) -> None:
    environ["wsgi.input"] = io.BytesIO(body)
    environ["CONTENT_LENGTH"] = str(len(body))


def _is_form(environ: dict[str, Any]) -> bool:
    return "x-www-form-urlencoded" in environ.get("CONTENT_TYPE", "")


class _Request:
    """The service and operation of a request, found the way moto finds them (once per request)."""

    @classmethod
    def of(cls, environ: dict[str, Any]) -> _Request:
        request = environ.get("mlambda.request")
        if not isinstance(request, _Request):
            request = environ["mlambda.request"] = cls(environ)
        return request

    def __init__(self, environ: dict[str, Any]) -> None:
        self.environ = environ
        self.method = str(environ.get("REQUEST_METHOD", "GET")).upper()
        target = str(environ.get("HTTP_X_AMZ_TARGET", ""))
        self.service = next(
            (name for prefix, name in _TARGET_SERVICES.items() if target.startswith(prefix)), ""
        )
        self.operation = target.rsplit(".", 1)[-1] if target else ""
        scope = _CREDENTIAL_SCOPE.search(
            str(environ.get("HTTP_AUTHORIZATION", "")) + " Credential=" + _query_credential(environ)
        )
        self.region = scope.group(1) if scope else "us-east-1"
        if not self.service:
            self.service = scope.group(2) if scope else "s3"
        if not self.operation and _is_form(environ) and self.method == "POST":
            self.operation = dict(parse_qsl(_read_body(environ).decode("utf-8", "replace"))).get("Action", "")
        if not self.operation:
            self.operation = dict(parse_qsl(str(environ.get("QUERY_STRING", "")))).get("Action", "")
        raw = str(environ.get("RAW_URI") or environ.get("REQUEST_URI") or environ.get("PATH_INFO", "/"))
        self.raw_path = raw
        self.path = unquote(raw.split("?", 1)[0])
        self.query = parse_qs(str(environ.get("QUERY_STRING", "")), keep_blank_values=True)
        bucket, _, key = self.path.lstrip("/").partition("/")
        # Bucket settings and DeleteObjects are recorded with their (small) body, read before moto reads it.
        self.body = (
            _read_body(environ)
            if self.service == "s3" and bucket and not key and self.method != "GET"
            else b""
        )


def _query_credential(environ: dict[str, Any]) -> str:
    """A presigned URL's X-Amz-Credential (``key/date/region/service/aws4_request``)."""
    values = parse_qs(str(environ.get("QUERY_STRING", ""))).get("X-Amz-Credential", [""])
    return values[0]


# Operations per service that change nothing (everything else is recorded).
_READ_PREFIXES = ("Get", "List", "Describe", "Query", "Scan", "BatchGet", "TransactGet", "Test")
# Operations whose changes the model hooks see (items, messages); any other write changes configuration.
_DATA_OPERATIONS = {
    "dynamodb": frozenset(
        {
            "PutItem",
            "UpdateItem",
            "DeleteItem",
            "BatchWriteItem",
            "TransactWriteItems",
            "ExecuteStatement",
            "BatchExecuteStatement",
            "ExecuteTransaction",
        }
    ),
    "sqs": frozenset(
        {
            "SendMessage",
            "SendMessageBatch",
            "ReceiveMessage",
            "DeleteMessage",
            "DeleteMessageBatch",
            "ChangeMessageVisibility",
            "ChangeMessageVisibilityBatch",
            "PurgeQueue",
        }
    ),
    "sns": frozenset({"Publish", "PublishBatch"}),
    "events": frozenset({"PutEvents"}),
}
# Query parameters that are not an S3 subresource.
_S3_NOT_SUBRESOURCE = re.compile(r"^(x-id|X-Amz-.*|AWSAccessKeyId|Signature|Expires)$")
_REPLAYED_HEADERS_DROPPED = frozenset({"host", "content-length", "connection", "expect", "transfer-encoding"})


def _is_read(request: _Request) -> bool:
    if request.path.startswith("/moto-api/"):
        return True
    if request.service == "s3":
        return request.method in ("GET", "HEAD", "OPTIONS")
    if request.service in _DATA_OPERATIONS:
        return request.operation.startswith(_READ_PREFIXES)
    return request.method in ("GET", "HEAD", "OPTIONS")


def _describe_changes(request: _Request, changes: moto_patches.Changes) -> None:
    """Add what the hooks cannot see: S3 keys, uploads and bucket settings, configuration changes."""
    if request.service == "s3":
        _describe_s3(request, changes)
    elif request.service in _DATA_OPERATIONS and request.operation not in _DATA_OPERATIONS[request.service]:
        changes.configs.add(request.service)


def _describe_s3(request: _Request, changes: moto_patches.Changes) -> None:
    bucket, _, key = request.path.lstrip("/").partition("/")
    if not bucket:
        return
    if key:
        multipart = "uploads" in request.query or "uploadId" in request.query
        if multipart:
            changes.s3_uploads.add(bucket)
        if not multipart or (request.method == "POST" and "uploadId" in request.query):
            changes.s3_keys.add((bucket, key))
        return
    subresources = [name for name in request.query if not _S3_NOT_SUBRESOURCE.match(name)]
    if request.method == "POST" and subresources == ["delete"]:
        changes.s3_keys |= {(bucket, name) for name in _deleted_keys(request.body)}
        return
    if request.method == "POST":  # a browser form upload: the key is in the form
        changes.s3_buckets_resync.add(bucket)
        return
    subresource = subresources[0] if subresources else ""
    if request.method == "DELETE" and not subresource:
        changes.s3_bucket_requests.append({"kind": "drop_bucket", "bucket": bucket, "subresource": ""})
        return
    record: dict[str, Any] = {
        "kind": "put" if request.method == "PUT" else "delete",
        "bucket": bucket,
        "subresource": subresource,
        "method": request.method,
        "path": request.raw_path,
        "headers": _replayed_headers(request.environ),
        "body": request.body,
    }
    changes.s3_bucket_requests.append(record)


def _deleted_keys(body: bytes) -> list[str]:
    """The keys of a DeleteObjects request."""
    try:
        root = ElementTree.fromstring(body)
    except ElementTree.ParseError:
        return []
    return [element.text or "" for element in root.iter() if element.tag.rsplit("}", 1)[-1] == "Key"]


def _replayed_headers(environ: dict[str, Any]) -> dict[str, str]:
    headers = {
        name[5:].replace("_", "-").lower(): str(value)
        for name, value in environ.items()
        if name.startswith("HTTP_")
    }
    if environ.get("CONTENT_TYPE"):
        headers["content-type"] = str(environ["CONTENT_TYPE"])
    return {name: value for name, value in headers.items() if name not in _REPLAYED_HEADERS_DROPPED}


# -- the layers ----------------------------------------------------------------------------------------


class _Captured:
    """A response held back until its changes are persisted."""

    def __init__(self, app: WsgiApp, environ: dict[str, Any]) -> None:
        self.status = "500 Internal Server Error"
        self.headers: list[tuple[str, str]] = []

        def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            self.status, self.headers = status, list(headers)
            return lambda _: None

        result = app(environ, start_response)
        try:
            self.body = b"".join(result)
        finally:
            close = getattr(result, "close", None)
            if close is not None:
                close()

    @property
    def ok(self) -> bool:
        return self.status[:1] in ("2", "3")

    def send(self, start_response: StartResponse) -> list[bytes]:
        start_response(self.status, self.headers)
        return [self.body]


def _error(start_response: StartResponse, status: str, code: str, message: str) -> list[bytes]:
    body = json.dumps({"__type": code, "message": message}).encode()
    start_response(status, [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
    return [body]


class _PersistingApp:
    """Records what each request changed and has it persisted before answering."""

    def __init__(self, app: WsgiApp) -> None:
        self.app = app
        self.store: StateStore | None = None

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        request = _Request.of(environ)
        if request.path.rstrip("/") == "/moto-api/reset":
            return _error(
                start_response,
                "403 Forbidden",
                "Forbidden",
                "the local cloud keeps its state: resetting moto under it is refused (use a new --data-dir)",
            )
        if _is_read(request):
            return self.app(environ, start_response)
        changes = moto_patches.begin()
        try:
            captured = _Captured(self.app, environ)
            if captured.ok:
                _describe_changes(request, changes)
            store = self.store
            if store is not None:
                try:
                    store.persist(changes)
                except Exception as exc:
                    logger.exception("could not save the changes of %s %s", request.method, request.path)
                    return _error(
                        start_response,
                        "500 Internal Server Error",
                        "InternalFailure",
                        f"the local cloud could not save this change: {exc}",
                    )
            return captured.send(start_response)
        finally:
            moto_patches.end()


class _SerialApp:
    """DynamoDB and SQS requests one at a time; SQS long polls wait outside the lock.

    DynamoDB applies each request to an item atomically; moto's backend is not thread-safe (a
    read deep-copying an item while another thread updates it raises "dictionary changed size
    during iteration", and a conditional update is check-then-write), so concurrent workers
    counting chunks could see 500s or, worse, both pass a condition. SQS is the same (a message
    received twice by concurrent receives, a delete undone by another). Persisting happens
    inside the lock, so no reader sees a change that a crash could still lose.

    A long poll that found nothing sleeps until a message is added or made visible anywhere, or
    until the first of its queue's in-flight or delayed messages becomes visible, and runs
    moto's receive again only when its queue holds a visible message: re-running the whole
    request on a timer (twice a second per poller) was a tenth of a core with every queue empty.
    """

    def __init__(self, app: WsgiApp) -> None:
        self.app = app
        self._dynamodb = threading.Lock()

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        target = str(environ.get("HTTP_X_AMZ_TARGET", ""))
        if target.startswith("DynamoDB_"):
            with self._dynamodb:
                return _Captured(self.app, environ).send(start_response)
        request = _Request.of(environ)
        if request.service != "sqs":
            return self.app(environ, start_response)
        queue_url = ""
        wait = 0
        if request.operation == "ReceiveMessage":
            wait, queue_url = _long_poll_seconds(request)
        deadline = time.monotonic() + wait
        body = _read_body(environ)
        with moto_patches.SQS_ARRIVALS:
            while True:
                _set_body(environ, body)
                captured = _Captured(self.app, environ)
                if wait == 0 or not captured.ok or _received_any(captured.body):
                    return captured.send(start_response)
                if not self._wait_for_visible(_queue(queue_url), deadline):
                    return captured.send(start_response)

    @staticmethod
    def _wait_for_visible(queue: Any, deadline: float) -> bool:
        """Wait (releasing the SQS lock) until ``queue`` may hold a visible message: True, or False at the deadline.

        Called after a receive found nothing: a message that looks visible even so (its FIFO
        group in flight) is tried again after a recheck interval, not at once.
        """
        just_received = True
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            until = _seconds_until_visible(queue)
            if until == 0.0:
                if not just_received:
                    return True
                timeout = LONG_POLL_RECHECK_SECONDS
            else:
                timeout = left if until is None else until + 0.001
            just_received = False
            moto_patches.SQS_ARRIVALS.wait(min(left, timeout))


def _long_poll_seconds(request: _Request) -> tuple[int, str]:
    """How long a ReceiveMessage may wait, and its queue URL; the request is rewritten to ask moto not to wait."""
    environ = request.environ
    body = _read_body(environ)
    form = _is_form(environ)
    params: dict[str, Any] = dict(parse_qsl(body.decode())) if form else json.loads(body or b"{}")
    queue_url = str(params.get("QueueUrl", ""))
    given = params.get("WaitTimeSeconds")
    try:
        wait = int(given) if given is not None else _queue_default_wait(queue_url)
    except (TypeError, ValueError):
        return 0, queue_url  # moto answers the invalid value
    if not 1 <= wait <= 20:
        return 0, queue_url
    params["WaitTimeSeconds"] = 0 if not form else "0"
    _set_body(environ, urlencode(params).encode() if form else json.dumps(params).encode())
    return wait, queue_url


def _queue(queue_url: str) -> Any:
    """moto's queue behind ``queue_url`` (``.../<account>/<name>``), or None."""
    from moto.sqs.models import sqs_backends

    parts = urlsplit(queue_url).path.strip("/").split("/")
    if len(parts) < 2:
        return None
    account, name = parts[-2], parts[-1]
    for _, backend in list(sqs_backends[account].items()):
        queue = backend.queues.get(name)
        if queue is not None:
            return queue
    return None


def _queue_default_wait(queue_url: str) -> int:
    queue = _queue(queue_url)
    return 0 if queue is None else int(getattr(queue, "receive_message_wait_time_seconds", 0) or 0)


def _seconds_until_visible(queue: Any) -> float | None:
    """0.0 if ``queue`` holds a visible message, else seconds until its first one may become
    visible (in flight or delayed), or None when it holds none (only an arrival can change that)."""
    if queue is None:
        return None
    from moto.core.utils import unix_time_millis

    now = unix_time_millis()
    earliest: float | None = None
    for message in queue._messages:
        at = max(message.visible_at, message.delayed_until)
        if now > at:
            return 0.0
        earliest = at if earliest is None else min(earliest, at)
    return None if earliest is None else (earliest - now) / 1000


def _received_any(body: bytes) -> bool:
    if body.startswith(b"{"):
        return bool(json.loads(body).get("Messages"))
    return b"<Message>" in body


_BYTE_RANGE = re.compile(r"^bytes=(\d+)-(\d*)$")
_S3_SIGNATURE = "/s3/aws4_request"


class _RangedGetApp:
    """Serve plain S3 ranged GETs by seeking in the stored object.

    moto answers a ranged GET by reading the whole object and slicing it, so every chunk a batch
    worker reads costs O(file): a 10M-row (2 GB) job could not finish. S3 serves a range in
    O(range); this does too. Anything else (presigned or versioned GETs, suffix or multiple
    ranges, unknown keys, ranges past the end) goes to moto unchanged, errors included.
    """

    def __init__(self, app: WsgiApp) -> None:
        self.app = app

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
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
        self, environ: dict[str, Any], match: re.Match[str], start_response: StartResponse
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


# -- the server ----------------------------------------------------------------------------------------


def _reset_moto() -> None:
    """Empty every moto backend, as a new process would start."""
    from moto.moto_api._internal.models import moto_api_backend

    moto_api_backend.reset()
    moto_patches.forget_all_messages()


class MotoServer:
    """moto on 127.0.0.1 (a free port unless one is given), its state kept in ``data_dir`` if given."""

    def __init__(self, data_dir: Path | None = None, port: int = 0, host: str = "127.0.0.1") -> None:
        self.data_dir = data_dir
        self.host = host
        self.port = port
        self.store = StateStore(data_dir) if data_dir is not None else None
        self._persisting: _PersistingApp | None = None
        self._server: WsgiServer | None = None
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self._watchdog: threading.Thread | None = None

    @property
    def url(self) -> str:
        """``http://127.0.0.1:<port>`` once bound."""
        if self._server is None:
            raise MlambdaLocalError("the moto server is not running")
        return f"http://{self.host}:{self._server.server_address[1]}"

    def bind(self) -> str:
        """Take the port now, before moto is even imported; the URL.

        Connections made before ``start`` wait in the port's backlog and are served once it has
        started: the runner can give the URL to workers it starts while moto comes up.
        """
        if self._server is None:
            self._server = self._listen(self.port)
            self.port = self._server.server_address[1]
        return self.url

    def start(self) -> str:
        """Serve the stored state (or an empty one); returns the URL."""
        if self._persisting is not None:
            return self.url
        self.bind()
        moto_patches.install()
        self._persisting = _PersistingApp(_RangedGetApp(_caching_dispatcher()))
        assert self._server is not None
        self._run(self._server)
        _reset_moto()
        if self.store is not None:
            assert self.data_dir is not None
            if (self.data_dir / OLD_RECORDING_FILE).exists():
                logger.warning(
                    "%s holds the state of an older mlambda (a request journal), which is not read any more; "
                    "remove it once you no longer need it",
                    self.data_dir / OLD_RECORDING_FILE,
                )
            started = time.perf_counter()
            self.store.open()
            counts = self.store.restore(self._replay)
            logger.info(
                "state restored from %s in %.2f s: %s",
                self.store.directory,
                time.perf_counter() - started,
                ", ".join(f"{value} {name}" for name, value in counts.items()),
            )
            self._persisting.store = self.store
        logger.info("moto server listening on %s", self.url)
        return self.url

    def _replay(self, method: str, target: str, headers: dict[str, str], body: bytes) -> tuple[int, bytes]:
        """A request to moto in this thread, without a socket: the restore's replay of bucket settings."""
        assert self._persisting is not None and self._server is not None
        host, port = self._server.server_address
        wire = WireRequest(
            method, target, "HTTP/1.1", [("Host", f"{host}:{port}"), *headers.items()], body, True
        )
        status: list[str] = []

        def start_response(line: str, _headers: list[tuple[str, str]], _exc_info: Any = None) -> Any:
            status.append(line)
            return lambda _data: None

        result = self._persisting(wsgi_environ(wire, (host, port), ("127.0.0.1", 0)), start_response)
        try:
            answer = b"".join(result)
        finally:
            close = getattr(result, "close", None)
            if close is not None:
                close()
        return int(status[0].split(" ", 1)[0]), answer

    def _listen(self, port: int) -> WsgiServer:
        try:
            return WsgiServer(self.host, port)
        except OSError as exc:
            raise OSError(f"port {port} of {self.host} is in use ({exc.strerror})") from exc

    def _run(self, server: WsgiServer) -> None:
        assert self._persisting is not None
        server.app = _SerialApp(self._persisting)
        thread = threading.Thread(target=server.serve_forever, name="moto-server", daemon=True)
        thread.start()
        self._server, self._thread = server, thread

    def missing(self, names: dict[str, set[str]], account: str, region: str) -> list[str]:
        """Which of ``names`` (physical names by CloudFormation type) the state being served lacks."""
        from moto.dynamodb.models import dynamodb_backends
        from moto.events.models import events_backends
        from moto.s3.models import s3_backends
        from moto.sns.models import sns_backends
        from moto.sqs.models import sqs_backends

        held: dict[str, Callable[[str], bool]] = {
            "AWS::DynamoDB::Table": lambda name: name in dynamodb_backends[account][region].tables,
            "AWS::S3::Bucket": lambda name: name in s3_backends[account]["aws"].buckets,
            "AWS::SQS::Queue": lambda name: name in sqs_backends[account][region].queues,
            "AWS::SNS::Topic": lambda name: (
                f"arn:aws:sns:{region}:{account}:{name}" in sns_backends[account][region].topics
            ),
            "AWS::Events::Rule": lambda name: any(
                name in bus.rules for bus in events_backends[account][region].event_buses.values()
            ),
        }
        return sorted(
            f"{kind} {name}"
            for kind, wanted in names.items()
            for name in wanted
            if kind not in held or not held[kind](name)
        )

    def alive(self) -> bool:
        """True while the server thread serves requests."""
        return self._thread is not None and self._thread.is_alive()

    def restart(self) -> None:
        """Serve again on the same port after the server thread died; the state in memory is intact."""
        if self._server is not None:
            self._server.server_close()
        self._run(self._listen(self.port))

    def supervise(self, on_fault: Callable[[str], None], interval: float = 1.0) -> None:
        """Watch the server: if it stops serving, serve again on the same port (clients keep their
        URL), or call ``on_fault`` once with the reason it cannot."""

        def watch() -> None:
            while not self._stopping.wait(interval):
                if self.alive():
                    continue
                logger.warning("the moto server on port %d stopped; restarting it", self.port)
                try:
                    self.restart()
                except OSError as exc:
                    on_fault(f"the moto server on port {self.port} stopped and cannot serve again: {exc}")
                    return
                logger.warning("the moto server serves again on %s, with its state", self.url)

        self._watchdog = threading.Thread(target=watch, name="moto-watchdog", daemon=True)
        self._watchdog.start()

    def stop(self) -> None:
        """Stop serving and close the store; safe to call twice."""
        self._stopping.set()
        if self._watchdog is not None and self._watchdog is not threading.current_thread():
            self._watchdog.join()
        if self._server is not None:
            server, self._server = self._server, None
            if self._thread is not None and self._thread.is_alive():
                server.shutdown()
            server.server_close()
        if self._persisting is not None:
            self._persisting.store = None
        if self.store is not None:
            self.store.close()
