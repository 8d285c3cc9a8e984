"""The stack and its API keys: what every later step stands on."""

from __future__ import annotations

from mlambda_local.demo import DemoContext, DemoStep, expect_error, say


def show_stack(ctx: DemoContext) -> None:
    """What the local cloud provisioned from template.yaml."""
    status = ctx.cloud.status()
    by_type: dict[str, list[str]] = {}
    for resource in status["resources"]["resources"]:
        if resource.get("status") != "skipped":
            by_type.setdefault(resource["type"], []).append(resource["logical_id"])
    for kind, names in sorted(by_type.items()):
        say(f"  {kind:28} {', '.join(sorted(names))}")
    say(f"  {'functions':28} {', '.join(sorted(status['functions']))}")
    routes = status["triggers"]["api"]
    say(
        f"  {'API routes':28} {len(routes)} behind the {routes[0]['authorizer']} authorizer" if routes else ""
    )


def keys_and_scopes(ctx: DemoContext) -> None:
    """Authorized, unauthorized, forbidden, unknown route."""
    me = ctx.admin.get("/me")
    say(f"  GET /me with the admin key     -> 200 {me['name']} scopes={','.join(me['scopes'])}")
    created = ctx.admin.post("/keys", {"name": "demo-app", "scopes": ["predict", "ingest"]})
    app = ctx.client(created["api_key"])
    say(
        f"  POST /keys                     -> 201 key {created['key_id']} scopes={','.join(created['scopes'])}"
    )
    say(f"  GET /me with the app key       -> 200 {app.get('/me')['name']}")
    error = expect_error(lambda: ctx.client(None).get("/me"), 401)
    say(f"  GET /me with no key            -> {error.status} {error.code}: {error.message}")
    error = expect_error(lambda: ctx.client("mlk.000000000000.wrong").get("/me"), 401)
    say(f"  GET /me with an unknown key    -> {error.status} {error.code}")
    error = expect_error(lambda: app.get("/keys"), 403)
    say(f"  GET /keys with the app key     -> {error.status} {error.code}: {error.message}")
    error = expect_error(lambda: ctx.admin.get("/no/such/route"), 404)
    say(f"  GET /no/such/route             -> {error.status} {error.code}")
    ctx.notes["app_key"] = created["api_key"]


STEPS = [
    DemoStep(0, "The stack, provisioned from template.yaml", show_stack),
    DemoStep(10, "API keys and scopes", keys_and_scopes),
]
