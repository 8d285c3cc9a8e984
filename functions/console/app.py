"""``GET /console`` and ``GET /console/{proxy+}``: the web console's static files, no API key needed.

The console is a no-build ES-modules app (``static/``) that runs in the browser and calls this
same API with the key the user signs in with; this function only hands out its files. They are
read once per instance and served with an ETag (a revalidation costs no body), and every answer
carries a Content-Security-Policy that lets the page load and fetch nothing but this origin
(``default-src 'self'``, scripts only from files: no inline script can run even if some text
slipped into the page as markup, which the console never lets happen).

Inline *styles* are allowed for one reason: the monitoring report is a self-contained HTML file
with a ``<style>`` block, shown in a sandboxed ``srcdoc`` frame that inherits this policy.
Nothing can load from elsewhere either way (``img-src``/``connect-src`` stay on this origin).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from mlambda.observability import logger

STATIC = Path(__file__).resolve().parent / "static"
INDEX = "index.html"
CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml; charset=utf-8",
    ".json": "application/json",
    ".txt": "text/plain; charset=utf-8",
}
CONTENT_SECURITY_POLICY = "; ".join(
    [
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self' 'unsafe-inline'",
        "img-src 'self' data:",
        "connect-src 'self'",
        "frame-src 'self'",
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    ]
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
    "Permissions-Policy": "camera=(), microphone=(), geolocation=(), payment=()",
}


@dataclass(frozen=True)
class Asset:
    """One file of the console, as served."""

    body: str
    content_type: str
    etag: str


@lru_cache(maxsize=1)
def assets() -> dict[str, Asset]:
    """Every servable file under ``static/`` by its path there (read once per instance).

    Only files with a known type are listed, and a request can only name a listed path: there
    is no path from the URL to the file system, so ``..`` and friends have nothing to climb.
    """
    found: dict[str, Asset] = {}
    for path in sorted(STATIC.rglob("*")):
        content_type = CONTENT_TYPES.get(path.suffix)
        if not path.is_file() or content_type is None:
            continue
        body = path.read_text(encoding="utf-8")
        digest = hashlib.sha256(body.encode()).hexdigest()[:32]
        found[path.relative_to(STATIC).as_posix()] = Asset(body, content_type, f'"{digest}"')
    return found


def _response(
    status: int, body: str, content_type: str, headers: dict[str, str] | None = None
) -> dict[str, Any]:
    return {
        "statusCode": status,
        "headers": {"Content-Type": content_type, **SECURITY_HEADERS, **(headers or {})},
        "body": body,
        "isBase64Encoded": False,
    }


def _error(status: int, code: str, message: str) -> dict[str, Any]:
    body = json.dumps({"code": code, "message": message, "details": {}})
    return _response(status, body, "application/json", {"Cache-Control": "no-store"})


def _header(event: dict[str, Any], name: str) -> str | None:
    for key, value in (event.get("headers") or {}).items():
        if key.lower() == name:
            return str(value)
    return None


def _requested(event: dict[str, Any]) -> str:
    """The asset path a request names ("" for the console's root)."""
    return str((event.get("pathParameters") or {}).get("proxy") or "")


def serve(event: dict[str, Any]) -> dict[str, Any]:
    """The file ``event`` asks for: 200 (or 304 when the browser's copy is current), 301, 404 or 405.

    Only listed files are served (a dictionary lookup, never a path on disk), so a request
    cannot reach anything else in the function's package, whatever it names.
    """
    if event.get("httpMethod") not in ("GET", "HEAD"):
        return _error(405, "method_not_allowed", "the console only answers GET")
    requested = _requested(event)
    if requested == "":
        # /console without its slash: relative URLs in index.html would resolve one level up.
        if not str(event.get("path") or "").endswith("/"):
            return _response(301, "", "text/plain; charset=utf-8", {"Location": "console/"})
        requested = INDEX
    asset = assets().get(requested)
    if asset is None:
        return _error(404, "not_found", f"no console file {requested[:256]!r}")
    # Files are not content-hashed (no build step), so the browser revalidates each time; an
    # unchanged file costs a 304 with no body.
    caching = {"ETag": asset.etag, "Cache-Control": "no-cache"}
    if _header(event, "if-none-match") == asset.etag:
        return _response(304, "", asset.content_type, caching)
    return _response(200, asset.body, asset.content_type, caching)


@logger.inject_lambda_context
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    """Serve one console file."""
    return serve(event)
