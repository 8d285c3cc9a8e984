"""The local HTTP front door: ``/<stage>/...`` goes to the emulated API, ``/_mlambda/...`` to the control API.

A thread per connection, connections kept alive, TCP_NODELAY (headers and body leave in one
``sendall`` anyway), a listen backlog of 1,024 so bursts of clients queue instead of being reset,
and requests read by ``http_wire`` instead of ``http.server`` (whose header parsing cost more
than a prediction).
"""

from __future__ import annotations

import contextlib
import logging
import socket
import threading
from collections.abc import Callable
from http import HTTPStatus
from urllib.parse import unquote, urlsplit

from mlambda_local.cloud.apigateway import MAX_BODY_BYTES, HttpRequest, HttpResponse, RestApi
from mlambda_local.cloud.http_wire import BadRequestError, RequestReader, accept_forever, response_bytes

logger = logging.getLogger("mlambda.local")

CONTROL_PREFIX = "/_mlambda/"
LISTEN_BACKLOG = 1024

ControlHandler = Callable[[HttpRequest], HttpResponse]


def _reason(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Unknown"


class LocalHttpServer:
    """Serves every RestApi of the template under its stage, plus the control API."""

    def __init__(
        self,
        apis: list[RestApi],
        control: ControlHandler,
        host: str = "127.0.0.1",
        port: int = 0,
        on_first_answer: Callable[[], None] | None = None,
    ) -> None:
        """``on_first_answer``: called once, after the first API response has been sent (start-up timeline)."""
        self.apis = {api.stage: api for api in apis}
        self.control = control
        self._on_first_answer = on_first_answer
        self._socket = socket.create_server((host, port), backlog=LISTEN_BACKLOG)
        self._connections: set[socket.socket] = set()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._stopped = False

    @property
    def port(self) -> int:
        return int(self._socket.getsockname()[1])

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def route(self, request: HttpRequest, too_large: bool = False) -> HttpResponse:
        """Pick the API (by stage) or the control API for ``request``."""
        path = urlsplit(request.target).path
        if path.startswith(CONTROL_PREFIX):
            return self.control(request)
        stage, _, rest = path.lstrip("/").partition("/")
        api = self.apis.get(unquote(stage))
        if api is None:
            stages = ", ".join(f"/{name}" for name in self.apis) or "none"
            return HttpResponse.error(404, "not_found", f"no API stage at {path}; stages: {stages}")
        if too_large:
            return api.gateway_response("REQUEST_TOO_LARGE", "Request Too Long", "local")
        return api.handle(request, "/" + rest)

    def _accept(self) -> None:
        accept_forever(self._socket, self._serve, self._track, "mlambda-http-conn")

    def _track(self, connection: socket.socket) -> bool:
        with self._lock:
            if self._stopped:
                return False
            self._connections.add(connection)
        return True

    def _serve(self, connection: socket.socket, address: tuple[str, int]) -> None:
        reader = RequestReader(connection, MAX_BODY_BYTES)
        try:
            while True:
                try:
                    wire = reader.read()
                except BadRequestError as exc:
                    body = HttpResponse.error(400, "bad_request", str(exc))
                    connection.sendall(
                        response_bytes(
                            400, "Bad Request", [*body.headers, ("Connection", "close")], body.body
                        )
                    )
                    return
                if wire is None:
                    return
                request = HttpRequest(
                    method=wire.method,
                    target=wire.target,
                    headers=wire.headers,
                    body=b"" if wire.body is None else wire.body,
                    source_ip=address[0],
                    host=wire.header("Host") or "127.0.0.1",
                )
                try:
                    response = self.route(request, too_large=wire.body is None)
                except Exception:
                    logger.exception("local HTTP server failed on %s %s", wire.method, wire.target)
                    response = HttpResponse.error(500, "internal_error", "local cloud error")
                headers = (
                    response.headers if wire.keep_alive else [*response.headers, ("Connection", "close")]
                )
                connection.sendall(
                    response_bytes(
                        response.status,
                        _reason(response.status),
                        headers,
                        response.body,
                        head=wire.method == "HEAD",
                    )
                )
                if self._on_first_answer is not None and not request.target.startswith(CONTROL_PREFIX):
                    callback, self._on_first_answer = self._on_first_answer, None
                    callback()
                if not wire.keep_alive:
                    return
        except OSError:
            return
        finally:
            with self._lock:
                self._connections.discard(connection)
            connection.close()

    def start(self) -> None:
        self._thread = threading.Thread(target=self._accept, name="mlambda-http", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop accepting and close every open connection."""
        with self._lock:
            self._stopped = True
        with contextlib.suppress(OSError):
            self._socket.shutdown(socket.SHUT_RDWR)
        self._socket.close()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        with self._lock:
            connections = list(self._connections)
        for connection in connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)
