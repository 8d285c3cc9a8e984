"""The mlambda SDK: ``Client(api_url, api_key)`` for predictions, events, the registry, batch jobs
and monitoring, with retries that never repeat a change and errors carrying the API's code.

Installs without the server's dependencies (``pip install mlambda``): it imports the standard
library and requests only.
"""

from mlambda.client.client import NO_RETRY, Client, RetryPolicy
from mlambda.client.errors import (
    ApiError,
    AuthenticationError,
    ConflictError,
    InvalidRequestError,
    MlambdaClientError,
    NotFoundError,
    PermissionDeniedError,
    RateLimitedError,
    ServerError,
    TransportError,
    VersionFailedError,
    WaitTimeoutError,
)
from mlambda.client.results import EventTotals, Fetched, Predictions
from mlambda.client.transport import HttpResponse, RequestsTransport, Transport

__all__ = [
    "NO_RETRY",
    "ApiError",
    "AuthenticationError",
    "Client",
    "ConflictError",
    "EventTotals",
    "Fetched",
    "HttpResponse",
    "InvalidRequestError",
    "MlambdaClientError",
    "NotFoundError",
    "PermissionDeniedError",
    "Predictions",
    "RateLimitedError",
    "RequestsTransport",
    "RetryPolicy",
    "ServerError",
    "Transport",
    "TransportError",
    "VersionFailedError",
    "WaitTimeoutError",
]
