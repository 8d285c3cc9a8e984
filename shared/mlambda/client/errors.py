"""What the SDK raises: one base class, an ``ApiError`` per kind of HTTP answer, and the failures
that are not HTTP answers (unreachable, a version that failed validation, a wait that ran out).

Every ``ApiError`` carries the API's ``{code, message, details}`` as attributes, so callers branch
on ``code`` (``model_not_found``, ``gate_failed``...) rather than on message text.
"""

from __future__ import annotations

from typing import Any


class MlambdaClientError(Exception):
    """Base of everything the SDK raises on purpose."""


class ApiError(MlambdaClientError):
    """The API answered with an error status and its ``{code, message, details}`` body."""

    def __init__(
        self, status: int, code: str, message: str, details: Any = None, *, retry_after: float | None = None
    ) -> None:
        super().__init__(f"HTTP {status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.details = details
        self.retry_after = retry_after


class InvalidRequestError(ApiError):
    """400, 413, 415, 422: the request itself is wrong; ``details`` names the field."""


class AuthenticationError(ApiError):
    """401: no key, an unknown key or a revoked one."""


class PermissionDeniedError(ApiError):
    """403: the key lacks the route's scope."""


class NotFoundError(ApiError):
    """404: no such model, version, job, key or route."""


class ConflictError(ApiError):
    """409, 412, 428: the state moved (a stale revision, an alias in the way, a version not READY)."""


class RateLimitedError(ApiError):
    """429 after the retries: the key's usage plan is exhausted for now (``retry_after`` seconds)."""


class ServerError(ApiError):
    """5xx after the retries (or at once for a call that is not safe to repeat)."""


class TransportError(MlambdaClientError):
    """The API could not be reached, or the connection broke before an answer arrived.

    ``sent`` is False when no byte of the request left (refused, DNS, connect timeout): only
    then is repeating a call that is not idempotent safe.
    """

    def __init__(self, message: str, *, sent: bool) -> None:
        super().__init__(message)
        self.sent = sent


class VersionFailedError(MlambdaClientError):
    """A registered version ended ``FAILED`` validation; ``code``/``details`` say why."""

    def __init__(self, model: str, version: int, code: str, message: str, details: Any = None) -> None:
        super().__init__(f"{model} v{version} FAILED validation: {code}: {message}")
        self.model = model
        self.version = version
        self.code = code
        self.message = message
        self.details = details


class WaitTimeoutError(MlambdaClientError):
    """A wait (a version to be READY, a job to finish) ran past its timeout; the work goes on."""


_BY_STATUS: dict[int, type[ApiError]] = {
    400: InvalidRequestError,
    401: AuthenticationError,
    403: PermissionDeniedError,
    404: NotFoundError,
    409: ConflictError,
    412: ConflictError,
    413: InvalidRequestError,
    415: InvalidRequestError,
    422: InvalidRequestError,
    428: ConflictError,
    429: RateLimitedError,
}


def error_for(
    status: int, code: str, message: str, details: Any = None, *, retry_after: float | None = None
) -> ApiError:
    """The ``ApiError`` subclass for ``status`` (ServerError for 5xx, ApiError for anything else)."""
    kind = _BY_STATUS.get(status) or (ServerError if status >= 500 else ApiError)
    return kind(status, code, message, details, retry_after=retry_after)
