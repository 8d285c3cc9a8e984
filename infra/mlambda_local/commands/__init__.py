"""``mlambda`` command groups: each module here has ``register(groups)`` and is found automatically."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from mlambda_local.client import ApiClient, Target


def print_json(value: Any) -> None:
    """Pretty-print ``value`` as JSON."""
    print(json.dumps(value, indent=2, sort_keys=True, default=str))


def api(args: argparse.Namespace) -> ApiClient:
    """The API client the command line points at."""
    return ApiClient(Target.resolve(Path(args.data_dir), args.api_url, args.api_key))
