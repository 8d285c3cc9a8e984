"""Logging, metrics and tracing shared by every function (AWS Lambda Powertools).

Service name and metrics namespace come from POWERTOOLS_SERVICE_NAME and
POWERTOOLS_METRICS_NAMESPACE, which template.yaml sets for each function.

``tracer`` is built on first use: importing powertools' Tracer pulls in the X-Ray SDK
(~0.4 s of cold start here), which only a function that traces should pay for.

Log lines go to whatever ``sys.stdout`` is when they are written, as ``print`` does, rather
than to the stream that was stdout at import: a host that redirects stdout (the local cloud's
per-function log file, pytest's capture) then gets the logs too.
"""

from __future__ import annotations

import logging
import sys
from functools import cache
from typing import TYPE_CHECKING, Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit

if TYPE_CHECKING:
    from aws_lambda_powertools import Tracer


class _CurrentStdout:
    """A stream that writes to ``sys.stdout`` as it is at each write."""

    def write(self, text: str) -> int:
        return sys.stdout.write(text)

    def flush(self) -> None:
        sys.stdout.flush()


logger = Logger(logger_handler=logging.StreamHandler(_CurrentStdout()))
metrics = Metrics()


@cache
def _tracer() -> Tracer:
    from aws_lambda_powertools import Tracer

    return Tracer()


def __getattr__(name: str) -> Any:
    """``observability.tracer`` on demand (module-level lazy attribute, PEP 562)."""
    if name == "tracer":
        return _tracer()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["MetricUnit", "logger", "metrics"]
