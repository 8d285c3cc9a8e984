"""Suite-wide settings: no real AWS credentials or endpoints ever leak into a test."""

from __future__ import annotations

import base64
import json
import os
from pathlib import Path
from typing import Any

import pytest

EVENTS_DIR = Path(__file__).parent / "events"
REPO_ROOT = Path(__file__).parent.parent

for _name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL", "AWS_SECURITY_TOKEN"):
    os.environ.pop(_name, None)
os.environ.update(
    {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_REGION": "us-east-1",
        "AWS_DEFAULT_REGION": "us-east-1",
        "POWERTOOLS_METRICS_NAMESPACE": "mlambda-test",
        "POWERTOOLS_SERVICE_NAME": "mlambda-test",
        "POWERTOOLS_TRACE_DISABLED": "true",
        "POWERTOOLS_DEV": "false",
    }
)


def load_event(name: str, **overrides: Any) -> dict[str, Any]:
    """A sample event from tests/events/, with top-level keys replaced by ``overrides``."""
    event: dict[str, Any] = json.loads((EVENTS_DIR / f"{name}.json").read_text())
    event.update(overrides)
    return event


def forged_token(key: dict[str, str]) -> str:
    """A page token as a client could forge one: a key encoded the way tokens looked before signing."""
    return base64.urlsafe_b64encode(json.dumps(key).encode()).decode().rstrip("=")


@pytest.fixture
def lambda_context() -> Any:
    """A Lambda context object as the runtime passes it."""

    class Context:
        function_name = "test-function"
        function_version = "$LATEST"
        invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:test-function"
        memory_limit_in_mb = 512
        aws_request_id = "00000000-0000-0000-0000-000000000000"
        log_group_name = "/aws/lambda/test-function"
        log_stream_name = "stream"

        @staticmethod
        def get_remaining_time_in_millis() -> int:
            return 30_000

    return Context()
