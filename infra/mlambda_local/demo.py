"""``make demo``: a fresh local cloud, the platform driven end to end over HTTP, printed as it goes.

Each feature adds a step function to ``STEPS``; steps share one ``DemoContext``.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mlambda_local.client import ApiClient, ApiError, Target


@dataclass
class DemoContext:
    """What the steps share: the cloud, an admin client, and notes for later steps."""

    cloud: Any
    admin: ApiClient
    notes: dict[str, Any] = field(default_factory=dict)

    def client(self, api_key: str | None) -> ApiClient:
        """A client of the same API with another key (None: no key at all)."""
        return ApiClient(Target(api_url=self.admin.target.api_url, api_key=api_key))


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


def step_stack(ctx: DemoContext) -> None:
    """What the local cloud provisioned from template.yaml."""
    status = ctx.cloud.status()
    resources = status["resources"]
    by_type: dict[str, list[str]] = {}
    for resource in resources:
        if resource.get("status") != "skipped":
            by_type.setdefault(resource["type"], []).append(resource["logical_id"])
    for kind, names in sorted(by_type.items()):
        say(f"  {kind:28} {', '.join(sorted(names))}")
    say(f"  functions                    {', '.join(sorted(f['logical_id'] for f in status['functions']))}")


def step_keys(ctx: DemoContext) -> None:
    """Keys and scopes: authorized, unauthorized, forbidden, unknown route."""
    me = ctx.admin.get("/me")
    say(f"  GET /me with the admin key          -> 200 {me['name']} scopes={','.join(me['scopes'])}")
    created = ctx.admin.post("/keys", {"name": "demo-app", "scopes": ["predict", "ingest"]})
    app = ctx.client(created["api_key"])
    say(f"  POST /keys (admin) -> 201 key {created['key_id']} with scopes {','.join(created['scopes'])}")
    me = app.get("/me")
    say(f"  GET /me with the app key            -> 200 {me['name']}")
    error = expect_error(lambda: ctx.client(None).get("/me"), 401)
    say(f"  GET /me with no key                 -> {error.status} {error.code}: {error.message}")
    error = expect_error(lambda: ctx.client("mlk.nope.nope").get("/me"), 401)
    say(f"  GET /me with an unknown key         -> {error.status} {error.code}")
    error = expect_error(lambda: app.get("/keys"), 403)
    say(f"  GET /keys with the app key          -> {error.status} {error.code}: {error.message}")
    error = expect_error(lambda: ctx.admin.get("/no/such/route"), 404)
    say(f"  GET /no/such/route                  -> {error.status} {error.code}")
    ctx.notes["app_key"] = created["api_key"]


STEPS: list[tuple[str, Callable[[DemoContext], None]]] = [
    ("The stack, provisioned from template.yaml", step_stack),
    ("API keys and scopes", step_keys),
]


def run_demo(template: Path, data_dir: Path) -> int:
    """Run every step on a fresh local cloud in ``data_dir``; stops the cloud whatever happens."""
    from mlambda_local.bootstrap import ensure_admin_key
    from mlambda_local.cloud import LocalCloud

    shutil.rmtree(data_dir, ignore_errors=True)
    started = time.perf_counter()
    say("== Starting the local cloud (moto server + function runner, no Docker)")
    with LocalCloud(template, data_dir) as cloud:
        say(f"  AWS endpoint {cloud.endpoint_url}, API {cloud.api_url} ({time.perf_counter() - started:.1f} s)")
        key = ensure_admin_key(data_dir, cloud.outputs["ApiKeysTableName"], cloud.endpoint_url)
        ctx = DemoContext(cloud=cloud, admin=ApiClient(Target(api_url=cloud.api_url, api_key=key)))
        for title, run in STEPS:
            say(f"== {title}")
            begun = time.perf_counter()
            run(ctx)
            say(f"  ({time.perf_counter() - begun:.2f} s)")
        say("== Stopping the local cloud")
    say(f"Demo finished in {time.perf_counter() - started:.1f} s: every step passed.")
    return 0
