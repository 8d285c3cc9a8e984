"""A WSGI application (moto's) served on 127.0.0.1 over ``http_wire``, with connections kept alive.

werkzeug's development server, which ``moto`` ships with, closes the connection after every
response ("Always close the connection", werkzeug 3): each AWS call a function, a poller or the
provisioner made opened a TCP connection, resolved the host and made the server start a thread
for it. Here a thread serves each connection for as long as the client keeps it (boto3 pools
them), requests are read by ``http_wire`` (the reader the front door and the Runtime API use),
TCP_NODELAY is set, and responses leave with ``Content-Length`` (or chunked when the application
gives none). The environ is the one werkzeug's server builds for moto, underscored S3 metadata
headers included (``moto.core.request``).

The interface is the part of ``socketserver.BaseServer`` the moto server uses:
``serve_forever``, ``shutdown`` (which also hangs up open connections, as a crash would) and
``server_close``.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import sys
import threading
from collections.abc import Callable, Iterable
from io import BytesIO
from typing import Any
from urllib.parse import unquote, urlsplit

from mlambda_local.cloud.http_wire import (
    BadRequestError,
    RequestReader,
    WireRequest,
    accept_forever,
    response_bytes,
)

logger = logging.getLogger("mlambda.local")

StartResponse = Callable[..., Any]
WsgiApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]

MAX_BODY_BYTES = 5 * 1024**3 + 1024  # S3's single PUT limit (5 GiB)
LISTEN_BACKLOG = 1024
PRESERVED_HEADER_NAMES = "moto.preserved_header_names"  # moto.core.request.PRESERVED_HEADER_NAMES_ENVIRON_KEY
_NO_BODY_STATUSES = frozenset({204, 304})
CLOSE = [("Connection", "close")]


def _environ_key(name: str) -> str:
    key = name.upper().replace("-", "_")
    return key if key in ("CONTENT_TYPE", "CONTENT_LENGTH") else f"HTTP_{key}"


def wsgi_environ(request: WireRequest, server: tuple[str, int], client: tuple[str, int]) -> dict[str, Any]:
    """The environ werkzeug's server gives moto for ``request``.

    Header names with an underscore are dropped (WSGI cannot tell ``X_Foo`` from ``X-Foo``),
    except S3 user metadata (``x-amz-meta-my_key``), kept under its own key with its spelling in
    ``moto.preserved_header_names``, as moto's request handler does.
    """
    body = request.body or b""
    target = request.target
    parts = urlsplit(target)
    path = f"/{parts.netloc}{parts.path}" if not parts.scheme and parts.netloc else parts.path
    environ: dict[str, Any] = {
        "wsgi.version": (1, 0),
        "wsgi.url_scheme": "http",
        "wsgi.input": BytesIO(body),
        "wsgi.errors": sys.stderr,
        "wsgi.multithread": True,
        "wsgi.multiprocess": False,
        "wsgi.run_once": False,
        "REQUEST_METHOD": request.method,
        "SCRIPT_NAME": "",
        "PATH_INFO": unquote(path).encode("utf-8").decode("latin-1"),
        "QUERY_STRING": parts.query,
        "REQUEST_URI": target,
        "RAW_URI": target,
        "REMOTE_ADDR": client[0],
        "REMOTE_PORT": client[1],
        "SERVER_NAME": server[0],
        "SERVER_PORT": str(server[1]),
        "SERVER_PROTOCOL": request.version,
    }
    preserved: dict[str, str] = {}
    preserved_values: dict[str, list[str]] = {}
    dashed = {_environ_key(name) for name, _ in request.headers if "_" not in name}
    for name, value in request.headers:
        key = _environ_key(name)
        if "_" in name:
            if name.lower().startswith("x-amz-meta-") and key not in dashed:
                preserved.setdefault(key, name)
                preserved_values.setdefault(key, []).append(value)
            continue
        environ[key] = f"{environ[key]},{value}" if key in environ and key.startswith("HTTP_") else value
    for key, values in preserved_values.items():
        environ[key] = ",".join(values)
    environ[PRESERVED_HEADER_NAMES] = preserved
    # A chunked body arrives decoded, its length known (werkzeug reads nothing of a body that
    # still says it is chunked without wsgi.input_terminated).
    environ.pop("HTTP_TRANSFER_ENCODING", None)
    environ["CONTENT_LENGTH"] = str(len(body))
    return environ


class WsgiServer:
    """Serves ``app`` on ``host:port`` (0: a free port): a thread per kept-alive connection.

    The port is taken at construction; ``app`` may be set later, before ``serve_forever``.
    """

    def __init__(self, host: str, port: int, app: WsgiApp | None = None) -> None:
        self.app = app
        self.socket = socket.create_server((host, port), backlog=LISTEN_BACKLOG)
        self.server_address: tuple[str, int] = self.socket.getsockname()[:2]
        self._connections: set[socket.socket] = set()
        self._lock = threading.Lock()
        self._stopped = threading.Event()

    def serve_forever(self) -> None:
        """Accept connections until ``shutdown``."""
        if self.app is None:
            raise RuntimeError("no WSGI application to serve")
        accept_forever(self.socket, self._serve, self._track, "moto-conn")

    def _track(self, connection: socket.socket) -> bool:
        with self._lock:
            if self._stopped.is_set():
                return False
            self._connections.add(connection)
        return True

    def _serve(self, connection: socket.socket, address: tuple[str, int]) -> None:
        reader = RequestReader(connection, MAX_BODY_BYTES)
        try:
            while True:
                try:
                    request = reader.read()
                except BadRequestError as exc:
                    connection.sendall(response_bytes(400, "Bad Request", CLOSE, str(exc).encode()))
                    return
                if request is None:
                    return
                if request.body is None:
                    connection.sendall(response_bytes(413, "Request Entity Too Large", CLOSE, b""))
                    return
                if not self._respond(connection, request, address) or not request.keep_alive:
                    return
        except OSError:
            return
        finally:
            with self._lock:
                self._connections.discard(connection)
            with contextlib.suppress(OSError):
                connection.close()

    def _respond(self, connection: socket.socket, request: WireRequest, address: tuple[str, int]) -> bool:
        """Run the application on ``request`` and write its response; False if the connection must close."""
        environ = wsgi_environ(request, self.server_address, address)
        started: list[Any] = []
        assert self.app is not None

        def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            if exc_info is not None and started:
                raise exc_info[1].with_traceback(exc_info[2])
            started[:] = [status, headers]
            return lambda _data: None

        try:
            result = self.app(environ, start_response)
        except Exception:
            logger.exception("the moto server failed on %s %s", request.method, request.target)
            connection.sendall(response_bytes(500, "Internal Server Error", CLOSE, b""))
            return False
        try:
            return self._write(connection, request, result, started)
        except OSError:
            raise
        except Exception:  # the body failed half way: the client sees the connection close
            logger.exception("the moto server failed writing %s %s", request.method, request.target)
            return False
        finally:
            close = getattr(result, "close", None)
            if close is not None:
                close()

    @staticmethod
    def _write(
        connection: socket.socket, request: WireRequest, result: Iterable[bytes], started: list[Any]
    ) -> bool:
        chunks = iter(result)
        first = next(chunks, b"")  # start_response may be called on the first iteration
        if not started:
            raise RuntimeError("the WSGI application returned without calling start_response")
        status, headers = started
        code = int(status.split(" ", 1)[0])
        bodiless = request.method == "HEAD" or code in _NO_BODY_STATUSES or 100 <= code < 200
        names = {name.lower() for name, _ in headers}
        chunked = not bodiless and "content-length" not in names
        lines = [f"HTTP/1.1 {status}", *(f"{name}: {value}" for name, value in headers)]
        if chunked:
            lines.append("Transfer-Encoding: chunked")
        if not request.keep_alive:
            lines.append("Connection: close")
        head = "\r\n".join(lines).encode("latin-1", "replace") + b"\r\n\r\n"
        if bodiless:
            connection.sendall(head)
            for _ in chunks:  # drained, not sent
                pass
            return True
        if not chunked:
            connection.sendall(head + first)
            for chunk in chunks:
                if chunk:
                    connection.sendall(chunk)
            return True
        connection.sendall(head + (_chunk(first) if first else b""))
        for chunk in chunks:
            if chunk:
                connection.sendall(_chunk(chunk))
        connection.sendall(b"0\r\n\r\n")
        return True

    def shutdown(self) -> None:
        """Stop accepting and hang up every open connection (what a crash of the server does)."""
        self._stopped.set()
        with contextlib.suppress(OSError):
            self.socket.shutdown(socket.SHUT_RDWR)
        with self._lock:
            connections = list(self._connections)
        for connection in connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)

    def server_close(self) -> None:
        """Release the port."""
        self.socket.close()


def _chunk(data: bytes) -> bytes:
    return f"{len(data):x}\r\n".encode() + data + b"\r\n"
