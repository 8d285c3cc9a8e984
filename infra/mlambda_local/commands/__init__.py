"""``mlambda`` command groups: each module here has ``register(groups)`` and is found automatically.

A command takes the parsed arguments and returns an ``Outcome`` (what ``--output json`` prints,
and the lines ``--output table`` prints) or an exit code when it printed as it went.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from mlambda.client import Client
from mlambda_local.client import CliError, Target


def target(args: argparse.Namespace) -> Target:
    """Where the command line points: flags, environment, or the local cloud in the data dir."""
    return Target.resolve(Path(args.data_dir), args.api_url, args.api_key)


def api(args: argparse.Namespace) -> Client:
    """The SDK client the command line points at (with the SDK's retries)."""
    return target(args).client()


def pairs(values: list[str] | None, flag: str) -> dict[str, str]:
    """``["k=v", ...]`` -> ``{k: v}``: the one syntax of tags and other key/value flags."""
    found: dict[str, str] = {}
    for value in values or []:
        key, sep, item = value.partition("=")
        if not sep or not key:
            raise CliError(f"{flag} takes key=value, got {value!r}")
        found[key] = item
    return found


def columns(value: str | None) -> list[str] | None:
    """``"a, b,c"`` -> ``["a", "b", "c"]``; None when not given."""
    return [c.strip() for c in value.split(",") if c.strip()] if value else None
