"""Every API route of template.yaml with the function serving it and the Access it declares.

Read from the template (the routes API Gateway really has), so a route added there is in every
test that walks this table without anyone listing it.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from functools import cache
from typing import Any

from mlambda.api import Access, ScopedResolver
from mlambda_local.cloud.template import load_yaml
from tests.conftest import REPO_ROOT


@dataclass(frozen=True)
class ApiRoute:
    """One method of one path of the deployed API."""

    function: str  # logical id
    module: str  # functions.<name>.app
    method: str
    path: str  # the resource template: /models/{name}
    public: bool  # Auth: { Authorizer: NONE }

    @property
    def id(self) -> str:
        return f"{self.method} {self.path}"

    def handler(self) -> Any:
        return importlib.import_module(self.module).handler

    def access(self) -> Access | None:
        """The Access the function declares for this route (None: it declares none)."""
        module = importlib.import_module(self.module)
        app = getattr(module, "app", None)
        if isinstance(app, ScopedResolver):
            return app.routes.get((self.method, self.path))
        declared = getattr(module, "ACCESS", None)  # predict: one Access for its hand-dispatched routes
        routes = getattr(module, "ROUTES", {})
        return declared if (self.method, self.path) in routes else None

    def concrete_path(self, **values: str) -> str:
        """The path with each ``{parameter}`` filled (``x`` unless given)."""
        path = self.path
        for name in self.parameters:
            path = path.replace(f"{{{name}}}", values.get(name, "x")).replace(f"{{{name}+}}", "x")
        return path

    @property
    def parameters(self) -> list[str]:
        return [part.strip("{}+") for part in self.path.split("/") if part.startswith("{")]


@cache
def api_routes() -> tuple[ApiRoute, ...]:
    """Every ``Type: Api`` event of template.yaml, in the template's order."""
    template = load_yaml(REPO_ROOT / "template.yaml")
    found: list[ApiRoute] = []
    for logical_id, resource in template["Resources"].items():
        properties = resource.get("Properties") or {}
        for event in (properties.get("Events") or {}).values():
            if event.get("Type") != "Api":
                continue
            spec = event["Properties"]
            code = str(properties["CodeUri"]).strip("/").split("/")[-1]
            auth = spec.get("Auth") or {}
            found.append(
                ApiRoute(
                    function=logical_id,
                    module=f"functions.{code}.app",
                    method=str(spec["Method"]).upper(),
                    path=str(spec["Path"]),
                    public=auth.get("Authorizer") == "NONE",
                )
            )
    return tuple(found)


def keyed_routes() -> list[ApiRoute]:
    """The routes behind the authorizer."""
    return [route for route in api_routes() if not route.public]
