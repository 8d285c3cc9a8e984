"""The ``mlambda`` command: run the local cloud, manage keys, and drive the platform's API.

Command groups live in ``mlambda_local.commands``; every module there with a
``register(groups)`` function is added, so a feature adds its commands without editing this file.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys
from collections.abc import Callable, Sequence

from mlambda_local import commands
from mlambda_local.client import DEFAULT_DATA_DIR, CliError
from mlambda_local.cloud.errors import MlambdaLocalError

Handler = Callable[[argparse.Namespace], int]


def build_parser() -> argparse.ArgumentParser:
    """The full command line."""
    parser = argparse.ArgumentParser(prog="mlambda", description=__doc__)
    parser.add_argument(
        "--data-dir", default=str(DEFAULT_DATA_DIR), help="local cloud state (default .mlambda)"
    )
    parser.add_argument("--api-url", help="API base URL (default: MLAMBDA_API_URL or the local cloud)")
    parser.add_argument("--api-key", help="API key (default: MLAMBDA_API_KEY or the local admin key)")
    parser.add_argument("--template", default="template.yaml", help="SAM template (default template.yaml)")
    groups = parser.add_subparsers(dest="group", required=True)
    for info in sorted(pkgutil.iter_modules(commands.__path__), key=lambda m: m.name):
        module = importlib.import_module(f"{commands.__name__}.{info.name}")
        module.register(groups)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``mlambda`` console script."""
    args = build_parser().parse_args(argv)
    run: Handler = args.run
    try:
        return run(args)
    except (CliError, MlambdaLocalError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
