"""How the CLI reaches a deployment: the API over HTTP, found from flags, env or the local cloud's state."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests

DEFAULT_DATA_DIR = Path(".mlambda")
STATE_FILE = "state.json"
ADMIN_KEY_FILE = "admin_key"


class CliError(Exception):
    """Something the user can fix; printed without a traceback."""


class ApiError(CliError):
    """The API answered with an error body ``{code, message, details}``."""

    def __init__(self, status: int, code: str, message: str, details: Any = None) -> None:
        super().__init__(f"HTTP {status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.details = details


def read_state(data_dir: Path) -> dict[str, Any]:
    """The local cloud's state (endpoint, api_url, outputs) in ``data_dir``, or {} when there is none."""
    from mlambda_local.cloud.control import read_state as read_cloud_state

    return read_cloud_state(data_dir) if (data_dir / STATE_FILE).exists() else {}


@dataclass
class Target:
    """Where the CLI sends its calls."""

    api_url: str
    api_key: str | None
    endpoint_url: str | None = None
    outputs: dict[str, str] = field(default_factory=dict)

    @classmethod
    def resolve(cls, data_dir: Path, api_url: str | None = None, api_key: str | None = None) -> Target:
        """Flags win, then MLAMBDA_API_URL / MLAMBDA_API_KEY, then the local cloud in ``data_dir``."""
        state = read_state(data_dir)
        url = api_url or os.environ.get("MLAMBDA_API_URL") or state.get("api_url")
        if not url:
            raise CliError(
                f"no API to talk to: start one with `mlambda local up` (data dir {data_dir}), "
                "or pass --api-url / set MLAMBDA_API_URL"
            )
        key = api_key or os.environ.get("MLAMBDA_API_KEY")
        key_file = data_dir / ADMIN_KEY_FILE
        if not key and key_file.exists():
            key = key_file.read_text().strip()
        return cls(
            api_url=str(url).rstrip("/"),
            api_key=key,
            endpoint_url=state.get("endpoint_url"),
            outputs=dict(state.get("outputs", {})),
        )


class ApiClient:
    """The platform's HTTP API with an API key."""

    def __init__(self, target: Target, timeout: float = 60.0) -> None:
        self.target = target
        self._session = requests.Session()
        if target.api_key:
            self._session.headers["x-api-key"] = target.api_key
        self._timeout = timeout

    def request(
        self,
        method: str,
        path: str,
        *,
        body: Any = None,
        params: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
        expect: tuple[int, ...] = (200, 201, 202, 207),
    ) -> Any:
        """Call ``method path``; the decoded JSON body, or ApiError with the API's code and message."""
        response = self._session.request(
            method,
            f"{self.target.api_url}{path}",
            json=body,
            params=params,
            headers=headers,
            timeout=self._timeout,
        )
        try:
            payload = response.json() if response.content else None
        except ValueError:
            payload = {"code": "not_json", "message": response.text[:200]}
        if response.status_code not in expect:
            info = payload if isinstance(payload, dict) else {}
            raise ApiError(
                response.status_code,
                str(info.get("code", "error")),
                str(info.get("message", response.reason)),
                info.get("details"),
            )
        return payload

    def get(self, path: str, **kwargs: Any) -> Any:
        """GET ``path``."""
        return self.request("GET", path, **kwargs)

    def post(self, path: str, body: Any = None, **kwargs: Any) -> Any:
        """POST ``body`` as JSON to ``path``."""
        return self.request("POST", path, body=body, **kwargs)

    def delete(self, path: str, **kwargs: Any) -> Any:
        """DELETE ``path``."""
        return self.request("DELETE", path, **kwargs)
