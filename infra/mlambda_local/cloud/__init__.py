"""The local cloud: a SAM template running in one process against moto, without Docker.

``LocalCloud`` is the entry point; ``ControlClient`` drives a running one from another process.
"""

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
