"""The local cloud: a SAM template running in one process against moto, without Docker.

``LocalCloud`` is the entry point; ``ControlClient`` drives a running one from another process.
The names below are imported on first use (PEP 562): the CLI reads ``cloud.control`` and
``cloud.errors`` on every call, and must not load moto and the SAM translator to do it (a plain
``pip install mlambda`` has neither).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mlambda_local.cloud.control import ControlClient, read_state
    from mlambda_local.cloud.errors import (
        FunctionInvocationError,
        MlambdaLocalError,
        TemplateError,
        UnknownTargetError,
    )
    from mlambda_local.cloud.functions import LambdaContext
    from mlambda_local.cloud.local_cloud import LocalCloud
    from mlambda_local.cloud.moto_server import MotoServer
    from mlambda_local.cloud.provision import Inventory, InventoryItem
    from mlambda_local.cloud.schedule import CronExpression, RateExpression, parse_schedule
    from mlambda_local.cloud.template import IntrinsicResolver, Template, load_template

_HOMES = {
    "ControlClient": "control",
    "read_state": "control",
    "FunctionInvocationError": "errors",
    "MlambdaLocalError": "errors",
    "TemplateError": "errors",
    "UnknownTargetError": "errors",
    "LambdaContext": "functions",
    "LocalCloud": "local_cloud",
    "MotoServer": "moto_server",
    "Inventory": "provision",
    "InventoryItem": "provision",
    "CronExpression": "schedule",
    "RateExpression": "schedule",
    "parse_schedule": "schedule",
    "IntrinsicResolver": "template",
    "Template": "template",
    "load_template": "template",
}


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{home}"), name)


__all__ = [
    "ControlClient",
    "CronExpression",
    "FunctionInvocationError",
    "IntrinsicResolver",
    "Inventory",
    "InventoryItem",
    "LambdaContext",
    "LocalCloud",
    "MlambdaLocalError",
    "MotoServer",
    "RateExpression",
    "Template",
    "TemplateError",
    "UnknownTargetError",
    "load_template",
    "parse_schedule",
    "read_state",
]
