"""How the SDK talks HTTP: a ``Transport`` sends one request and answers an ``HttpResponse``, or
raises ``TransportError`` saying whether any of the request left (``sent``).

The retry rules live in the client, above this seam, so they are tested on a fake transport;
``RequestsTransport`` is the real one (requests, imported when the first one is made).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import IO, TYPE_CHECKING, Protocol

from mlambda.client.errors import TransportError

if TYPE_CHECKING:
    import requests

Body = bytes | IO[bytes] | None


@dataclass(frozen=True)
class HttpResponse:
    """An HTTP answer: status, headers (names lower-cased) and the whole body."""

    status: int
    body: bytes = b""
    headers: Mapping[str, str] = field(default_factory=dict)

    def header(self, name: str) -> str | None:
        """A header's value by case-insensitive name, or None."""
        return self.headers.get(name.lower())


class Transport(Protocol):
    """Sends one HTTP request; no retries (the client decides those)."""

    def send(
        self, method: str, url: str, *, headers: Mapping[str, str], body: Body, timeout: float
    ) -> HttpResponse:
        """The answer, whatever its status; TransportError when there is none."""
        ...


class RequestsTransport:
    """``Transport`` on a ``requests.Session`` (connection pooling, TLS verification)."""

    def __init__(self, session: requests.Session | None = None) -> None:
        import requests

        self._requests = requests
        self._session = session or requests.Session()

    def send(
        self, method: str, url: str, *, headers: Mapping[str, str], body: Body, timeout: float
    ) -> HttpResponse:
        """One request; TransportError(sent=False) only when the connection never opened."""
        requests = self._requests
        try:
            response = self._session.request(
                method, url, headers=dict(headers), data=body, timeout=timeout, allow_redirects=False
            )
        except requests.exceptions.ConnectTimeout as exc:
            raise TransportError(f"cannot connect to {_origin(url)}: timed out", sent=False) from exc
        except requests.exceptions.ConnectionError as exc:
            if _never_opened(exc):
                raise TransportError(f"cannot connect to {_origin(url)}: {_reason(exc)}", sent=False) from exc
            raise TransportError(f"connection to {_origin(url)} broke: {_reason(exc)}", sent=True) from exc
        except requests.exceptions.Timeout as exc:
            raise TransportError(f"{_origin(url)} did not answer within {timeout:g} s", sent=True) from exc
        except requests.exceptions.RequestException as exc:
            raise TransportError(f"request to {_origin(url)} failed: {exc}", sent=True) from exc
        return HttpResponse(
            status=response.status_code,
            body=response.content,
            headers={name.lower(): value for name, value in response.headers.items()},
        )


def _origin(url: str) -> str:
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def _never_opened(exc: Exception) -> bool:
    """Whether a requests ConnectionError happened before the connection opened (refused, DNS)."""
    from urllib3.exceptions import MaxRetryError, NewConnectionError

    reason: object = exc.args[0] if exc.args else None
    if isinstance(reason, MaxRetryError):
        reason = reason.reason
    return isinstance(reason, NewConnectionError)


def _reason(exc: Exception) -> str:
    """The innermost cause's message (``Connection refused``), not urllib3's nested reprs."""
    cause: BaseException = exc
    while cause.__context__ is not None and cause.__context__ is not cause:
        cause = cause.__context__
    text = str(cause) or type(cause).__name__
    for known in ("Connection refused", "Connection reset by peer", "Name or service not known"):
        if known in text:
            return known
    return text.split(": ", 1)[-1][:200]
