"""Logging and metrics shared by every function (AWS Lambda Powertools).

Service name and metrics namespace come from POWERTOOLS_SERVICE_NAME and
POWERTOOLS_METRICS_NAMESPACE, which template.yaml sets for each function.

No powertools Tracer: nothing here records X-Ray subsegments, and its extra (the X-Ray SDK and
botocore, 30 MB in the layer) would shadow the runtime's botocore under the runtime's boto3.
Lambda's active tracing (template.yaml) still traces every invocation.

Log lines go to whatever ``sys.stdout`` is when they are written, as ``print`` does, rather
than to the stream that was stdout at import: a host that redirects stdout (the local cloud's
per-function log file, pytest's capture) then gets the logs too.
"""

from __future__ import annotations

import logging
import sys

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit


class _CurrentStdout:
    """A stream that writes to ``sys.stdout`` as it is at each write."""

    def write(self, text: str) -> int:
        return sys.stdout.write(text)

    def flush(self) -> None:
        sys.stdout.flush()


logger = Logger(logger_handler=logging.StreamHandler(_CurrentStdout()))
metrics = Metrics()


__all__ = ["MetricUnit", "logger", "metrics"]
