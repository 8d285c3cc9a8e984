"""The local HTTP front door: ``/<stage>/...`` goes to the emulated API, ``/_mlambda/...`` to the control API."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote, urlsplit

from mlambda_local.cloud.apigateway import MAX_BODY_BYTES, HttpRequest, HttpResponse, RestApi

logger = logging.getLogger("mlambda.local")

CONTROL_PREFIX = "/_mlambda/"

ControlHandler = Callable[[HttpRequest], HttpResponse]


class _Handler(BaseHTTPRequestHandler):
    server: LocalHttpServer
    protocol_version = "HTTP/1.1"
    # Headers and body go out in two writes; with Nagle on, the body waits for the client's
    # delayed ACK (~40 ms a request on Linux). TCP_NODELAY sends it at once.
    disable_nagle_algorithm = True

    def log_message(self, format: str, *args: object) -> None:
        logger.debug("http %s - %s", self.client_address[0], format % args)

    def _read_body(self) -> bytes | None:
        """The body, or ``None`` when it is over API Gateway's cap (it is then discarded unread)."""
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY_BYTES:
            # Drain it so the client sees the 413 instead of a reset connection.
            remaining = length
            while remaining > 0:
                chunk = self.rfile.read(min(remaining, 1 << 20))
                if not chunk:
                    break
                remaining -= len(chunk)
            return None
        return self.rfile.read(length) if length else b""

    def _dispatch(self) -> None:
        body = self._read_body()
        request = HttpRequest(
            method=self.command,
            target=self.path,
            headers=list(self.headers.items()),
            body=b"" if body is None else body,
            source_ip=self.client_address[0],
            host=self.headers.get("Host", "127.0.0.1"),
        )
        try:
            response = self.server.route(request, too_large=body is None)
        except Exception:
            logger.exception("local HTTP server failed on %s %s", self.command, self.path)
            response = HttpResponse.json(500, {"code": "internal_error", "message": "local cloud error"})
        self.send_response(response.status)
        for key, value in response.headers:
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(response.body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(response.body)

    # http.server looks handlers up by these names.
    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = _dispatch  # noqa: N815


class LocalHttpServer(ThreadingHTTPServer):
    """Serves every RestApi of the template under its stage, plus the control API."""

    daemon_threads = True

    def __init__(
        self, apis: list[RestApi], control: ControlHandler, host: str = "127.0.0.1", port: int = 0
    ) -> None:
        self.apis = {api.stage: api for api in apis}
        self.control = control
        super().__init__((host, port), _Handler)
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return int(self.server_address[1])

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
            return HttpResponse.json(
                404, {"code": "not_found", "message": f"no API stage at {path}; stages: {stages}"}
            )
        if too_large:
            return api.gateway_response("REQUEST_TOO_LARGE", "Request Too Long", "local")
        return api.handle(request, "/" + rest)

    def start(self) -> None:
        self._thread = threading.Thread(target=self.serve_forever, name="mlambda-http", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        if self._thread is not None:
            self.shutdown()
            self._thread.join()
            self._thread = None
        self.server_close()
