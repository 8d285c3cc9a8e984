"""The Lambda Runtime API one execution environment's runtime talks to (as on Lambda, one per sandbox).

A worker process started with ``AWS_LAMBDA_RUNTIME_API=127.0.0.1:<port>`` runs AWS's own runtime
interface client (``awslambdaric``), which loops on these routes exactly as it does on Lambda:

- ``GET  /2018-06-01/runtime/invocation/next``: blocks until the runner hands this environment
  an invocation; the event is the body, and Lambda's headers carry the request id, the deadline
  (epoch ms), the function ARN, the trace id and the client context;
- ``POST /2018-06-01/runtime/invocation/{id}/response``: the handler's result (202);
- ``POST /2018-06-01/runtime/invocation/{id}/error``: the handler raised (202), the error type in
  ``Lambda-Runtime-Function-Error-Type``;
- ``POST /2018-06-01/runtime/init/error``: importing the handler failed (202).

Answers and errors follow the emulator's (aws-lambda-runtime-interface-emulator): 400
``InvalidRequestID`` for an id that is not the current invocation, 403
``InvalidStateTransition`` for a second answer, 413 when a response is over Lambda's 6 MB.
The HTTP is a small HTTP/1.1 reader with keep-alive: the client holds one connection (libcurl)
and every invocation crosses it twice, so http.server's per-request parsing would be most of
the local overhead.
"""

from __future__ import annotations

import _thread
import contextlib
import json
import logging
import socket
import threading
from dataclasses import dataclass, field
from typing import Protocol

from mlambda_local.cloud.http_wire import BadRequestError, RequestReader, WireRequest, accept_forever

logger = logging.getLogger("mlambda.local")

API_PREFIX = "/2018-06-01/runtime/"
MAX_RESPONSE_BYTES = 6 * 1024 * 1024 + 100  # Lambda's synchronous response limit (6,291,556 bytes)
ERROR_TYPE_HEADER = "lambda-runtime-function-error-type"
RESPONSE_TOO_LARGE = "Function.ResponseSizeTooLarge"


class Signal:
    """A one-shot flag threads wait on: a bare lock, cheaper than ``threading.Event`` (two per invocation)."""

    __slots__ = ("_flag", "_lock")

    def __init__(self) -> None:
        self._lock = _thread.allocate_lock()
        self._lock.acquire()
        self._flag = False

    def set(self) -> None:
        if self._flag:
            return
        self._flag = True
        with contextlib.suppress(RuntimeError):  # two setters at once: the lock is released once
            self._lock.release()

    def is_set(self) -> bool:
        return self._flag

    def wait(self, timeout: float | None = None) -> bool:
        """True once set; False if ``timeout`` seconds pass first."""
        if self._flag:
            return True
        if self._lock.acquire(timeout=-1 if timeout is None else max(0.0, timeout)):
            self._lock.release()
        return self._flag


@dataclass(slots=True)
class Invocation:
    """One invocation as the Runtime API serves it, and its outcome once the runtime answers."""

    request_id: str
    payload: bytes
    function_arn: str
    trace_id: str
    client_context: str | None = None
    deadline_ms: int = 0
    picked: Signal = field(default_factory=Signal)  # taken by /next, or over
    done: Signal = field(default_factory=Signal)
    picked_at: float | None = None  # perf_counter when the runtime took it
    answered_at: float | None = None  # perf_counter when the runtime answered
    result: bytes = b""
    error_type: str | None = None

    @property
    def failed(self) -> bool:
        return self.error_type is not None

    def succeed(self, body: bytes) -> None:
        self.result = body
        self.done.set()
        self.picked.set()

    def fail(self, error_type: str, body: bytes) -> None:
        self.error_type = error_type or "Unhandled"
        self.result = body
        self.done.set()
        self.picked.set()


class RuntimeApiHandler(Protocol):
    """What the endpoint asks of its execution environment (``execution.ExecutionEnvironment``)."""

    def next_invocation(self) -> Invocation | None:
        """Block until an invocation is assigned; ``None`` when the environment shuts down."""
        ...

    def respond(self, request_id: str, body: bytes) -> int:
        """Record the response; the HTTP status to answer (202, or 400/403/413)."""
        ...

    def report_error(self, request_id: str, error_type: str, body: bytes) -> int:
        """Record the handler's error; the HTTP status to answer."""
        ...

    def report_init_error(self, error_type: str, body: bytes) -> int:
        """Record that the runtime could not initialise; the HTTP status to answer."""
        ...


def _status_line(status: int) -> bytes:
    reason = {200: "OK", 202: "Accepted", 400: "Bad Request", 403: "Forbidden", 404: "Not Found"}.get(
        status, "Request Entity Too Large" if status == 413 else "Error"
    )
    return f"HTTP/1.1 {status} {reason}\r\n".encode()


def _json_answer(status: int, document: dict[str, str]) -> bytes:
    body = json.dumps(document).encode()
    return (
        _status_line(status)
        + b"Content-Type: application/json\r\nContent-Length: "
        + str(len(body)).encode()
        + b"\r\n\r\n"
        + body
    )


ACCEPTED = _json_answer(202, {"status": "OK"})
NOT_FOUND = _json_answer(404, {"errorType": "NotFound", "errorMessage": "no such Runtime API route"})
ERRORS: dict[int, bytes] = {
    202: ACCEPTED,
    400: _json_answer(400, {"errorType": "InvalidRequestID", "errorMessage": "Invalid request ID"}),
    403: _json_answer(
        403,
        {
            "errorType": "InvalidStateTransition",
            "errorMessage": "State transition is not allowed: the invocation already has an answer",
        },
    ),
    413: _json_answer(
        413,
        {
            "errorType": "RequestEntityTooLarge",
            "errorMessage": f"Exceeded maximum allowed payload size ({MAX_RESPONSE_BYTES} bytes).",
        },
    ),
}


def _too_large(body: bytes | None) -> bytes:
    size = "over twice the limit" if body is None else f"{len(body)} bytes"
    return json.dumps(
        {
            "errorType": RESPONSE_TOO_LARGE,
            "errorMessage": f"Response payload size ({size}) exceeded maximum allowed payload size "
            f"({MAX_RESPONSE_BYTES} bytes).",
        }
    ).encode()


def next_answer(invocation: Invocation) -> bytes:
    """The ``/next`` response: the event and Lambda's invocation headers, in one buffer."""
    headers = [
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nLambda-Runtime-Aws-Request-Id: ",
        invocation.request_id.encode(),
        b"\r\nLambda-Runtime-Deadline-Ms: ",
        str(invocation.deadline_ms).encode(),
        b"\r\nLambda-Runtime-Invoked-Function-Arn: ",
        invocation.function_arn.encode(),
        b"\r\nLambda-Runtime-Trace-Id: ",
        invocation.trace_id.encode(),
    ]
    if invocation.client_context:
        headers += [b"\r\nLambda-Runtime-Client-Context: ", invocation.client_context.encode()]
    headers += [b"\r\nContent-Length: ", str(len(invocation.payload)).encode(), b"\r\n\r\n"]
    return b"".join(headers) + invocation.payload


class RuntimeApiEndpoint:
    """A listening socket on 127.0.0.1 serving the Runtime API for one execution environment."""

    def __init__(self, handler: RuntimeApiHandler, name: str) -> None:
        self._handler = handler
        self._name = name
        self._socket = socket.create_server(("127.0.0.1", 0))
        self._connections: list[socket.socket] = []
        self._lock = threading.Lock()
        self._closed = False
        self._thread = threading.Thread(target=self._accept, name=f"rapi-{name}", daemon=True)
        self._thread.start()

    @property
    def address(self) -> str:
        """``host:port``, the value of ``AWS_LAMBDA_RUNTIME_API``."""
        host, port = self._socket.getsockname()[:2]
        return f"{host}:{port}"

    def _accept(self) -> None:
        accept_forever(self._socket, self._serve, self._track, f"rapi-{self._name}-conn")

    def _track(self, connection: socket.socket) -> bool:
        with self._lock:
            if self._closed:
                return False
            self._connections.append(connection)
        return True

    def _serve(self, connection: socket.socket, _address: tuple[str, int] | None = None) -> None:
        reader = RequestReader(connection, MAX_RESPONSE_BYTES * 2)
        try:
            while True:
                request = reader.read()
                if request is None:
                    return
                answer = self._dispatch(request)
                if answer is None:  # the environment is shutting down: hang up, as Lambda freezes it
                    return
                connection.sendall(answer)
        except BadRequestError as exc:
            logger.warning("runtime API of %s: %s", self._name, exc)
        except OSError:
            return
        finally:
            connection.close()
            with self._lock:
                if connection in self._connections:
                    self._connections.remove(connection)

    def _dispatch(self, request: WireRequest) -> bytes | None:
        path = request.target
        if not path.startswith(API_PREFIX):
            return NOT_FOUND
        route = path[len(API_PREFIX) :]
        if request.method == "GET" and route == "invocation/next":
            invocation = self._handler.next_invocation()
            return None if invocation is None else next_answer(invocation)
        if request.method != "POST":
            return NOT_FOUND
        body = request.body
        if route == "init/error":
            error_type = request.header(ERROR_TYPE_HEADER) or "Runtime.Unknown"
            return ERRORS[self._handler.report_init_error(error_type, body or b"")]
        if route.startswith("invocation/"):
            request_id, _, action = route[len("invocation/") :].partition("/")
            if action == "response":
                if body is None or len(body) > MAX_RESPONSE_BYTES:
                    self._handler.report_error(request_id, RESPONSE_TOO_LARGE, _too_large(body))
                    return ERRORS[413]
                return ERRORS[self._handler.respond(request_id, body)]
            if action == "error":
                error_type = request.header(ERROR_TYPE_HEADER) or "Unhandled"
                return ERRORS[self._handler.report_error(request_id, error_type, body or b"")]
        return NOT_FOUND

    def close(self) -> None:
        """Stop accepting and hang up every connection (a blocked ``/next`` returns)."""
        with self._lock:
            self._closed = True
            connections = list(self._connections)
        for connection in connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)
        with contextlib.suppress(OSError):
            self._socket.shutdown(socket.SHUT_RDWR)
        self._socket.close()
