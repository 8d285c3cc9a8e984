"""``make demo``: a fresh local cloud, the platform driven end to end over HTTP, printed as it goes.

Steps live in ``mlambda_local.demo_steps``: every module there exposes ``STEPS``, a list of
``DemoStep`` (order, title, function); they run in order and share one ``DemoContext``, so a
feature adds its step without editing this file.
"""

from __future__ import annotations

import importlib
import pkgutil
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mlambda.client import ApiError
from mlambda_local import demo_steps
from mlambda_local.client import ApiClient, CliError, Target


@dataclass
class DemoContext:
    """What the steps share: the cloud, an admin client, a scratch folder, and notes for later steps."""

    cloud: Any
    admin: ApiClient
    workdir: Path
    notes: dict[str, Any] = field(default_factory=dict)

    def client(self, api_key: str | None) -> ApiClient:
        """A client of the same API with another key (None: no key at all)."""
        return ApiClient(Target(api_url=self.admin.target.api_url, api_key=api_key))


@dataclass(frozen=True)
class DemoStep:
    """One titled step; ``order`` places it in the story (foundation 0-99, registry 100s, ...)."""

    order: int
    title: str
    run: Callable[[DemoContext], None]


def say(text: str) -> None:
    """One line of demo output."""
    print(text, flush=True)


def expect_error(call: Callable[[], Any], status: int) -> ApiError:
    """Run ``call``, which must fail with ``status``; the error, for printing."""
    try:
        call()
    except ApiError as exc:
        if exc.status != status:
            raise
        return exc
    raise AssertionError(f"expected HTTP {status}, the call succeeded")


def all_steps() -> list[DemoStep]:
    """Every step of every module in ``demo_steps``, in order."""
    steps: list[DemoStep] = []
    for info in pkgutil.iter_modules(demo_steps.__path__):
        module = importlib.import_module(f"{demo_steps.__name__}.{info.name}")
        steps.extend(module.STEPS)
    return sorted(steps, key=lambda step: step.order)


def run_demo(template: Path, data_dir: Path) -> int:
    """Run every step on a fresh local cloud in ``data_dir``; stops the cloud whatever happens."""
    from mlambda_local.bootstrap import ensure_admin_key
    from mlambda_local.cloud import LocalCloud
    from mlambda_local.cloud.logs import LOG_DIRECTORY

    shutil.rmtree(data_dir, ignore_errors=True)
    started = time.perf_counter()
    say("== Starting the local cloud (moto server + one worker process per function instance, no Docker)")
    with LocalCloud(template, data_dir) as cloud:
        say(
            f"  AWS endpoint {cloud.endpoint_url}, API {cloud.api_url} ({time.perf_counter() - started:.1f} s)"
        )
        say(
            f"  each function's log group (its logs, EMF metrics and REPORT lines): {data_dir / LOG_DIRECTORY}/<function>/"
        )
        key = ensure_admin_key(data_dir, cloud.outputs["ApiKeysTableName"], cloud.endpoint_url)
        workdir = data_dir / "work"
        workdir.mkdir(parents=True, exist_ok=True)
        api_url = cloud.api_url
        if api_url is None:
            raise CliError("the local cloud started without an API; check template.yaml")
        ctx = DemoContext(cloud=cloud, admin=ApiClient(Target(api_url=api_url, api_key=key)), workdir=workdir)
        for step in all_steps():
            say(f"== {step.title}")
            begun = time.perf_counter()
            step.run(ctx)
            say(f"  ({time.perf_counter() - begun:.2f} s)")
        say("== Stopping the local cloud")
    say(f"Demo finished in {time.perf_counter() - started:.1f} s: every step passed.")
    return 0
