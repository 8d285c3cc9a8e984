"""``mlambda demo``: the platform end to end on a fresh local cloud."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any


def demo(args: argparse.Namespace) -> int:
    """Start a local cloud, run every demo step, print what happened, stop."""
    from mlambda_local.demo import run_demo

    return run_demo(Path(args.template), Path(args.data_dir) / "demo")


def register(groups: Any) -> None:
    """Add ``mlambda demo``."""
    groups.add_parser("demo", help="run the end-to-end demo on a fresh local cloud").set_defaults(run=demo)
