"""``stack``: every store of template.yaml on in-process moto, and its functions ready to invoke.

The same provisioning and function loading as the local cloud, so integration tests exercise
the real template (table keys, GSIs, queue redrive, environment variables) without a server.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import cache
from typing import Any

import boto3
import pytest
from moto import mock_aws

from mlambda.config import function_environment
from mlambda_local.cloud.functions import FunctionSpec, LambdaContext, function_specs, load_handler
from mlambda_local.cloud.provision import Provisioner
from mlambda_local.cloud.template import IntrinsicResolver, Template, load_template
from tests.conftest import REPO_ROOT


@cache
def platform_template() -> Template:
    """template.yaml, expanded once per test process."""
    return load_template(REPO_ROOT / "template.yaml")


@dataclass
class Stack:
    """The provisioned template: resolved outputs, and each function's environment and handler."""

    outputs: dict[str, Any]
    functions: dict[str, FunctionSpec]
    _handlers: dict[str, Any] = field(default_factory=dict)

    def env(self, logical_id: str) -> dict[str, str]:
        """The function's environment as template.yaml resolves it."""
        return dict(self.functions[logical_id].environment)

    def invoke(self, logical_id: str, event: Any) -> Any:
        """Run the function's handler with its environment and a Lambda context, as the runner does."""
        spec = self.functions[logical_id]
        if logical_id not in self._handlers:
            self._handlers[logical_id] = load_handler(spec)
        context = LambdaContext(
            function_name=spec.name,
            invoked_function_arn=spec.arn,
            memory_limit_in_mb=spec.memory_mb,
            timeout_seconds=spec.timeout,
        )
        with function_environment(spec.environment):
            return self._handlers[logical_id](event, context)


@pytest.fixture
def stack() -> Iterator[Stack]:
    """Every table, bucket, queue, topic and rule of template.yaml, on moto, for one test."""
    with mock_aws():
        template = platform_template()
        resolver = IntrinsicResolver(template)
        session = boto3.session.Session(region_name=template.region)
        Provisioner(template, resolver, session, endpoint_url=None).provision()
        yield Stack(
            outputs=resolver.outputs(),
            functions={spec.logical_id: spec for spec in function_specs(template, resolver)},
        )
