"""The running cloud's state file and the client a separate process (the CLI) drives it with.

``<data_dir>/state.json`` says where the cloud is (endpoint, API URL, outputs) and holds the
control token; the control API (``/_mlambda/`` on the API server, loopback only) requires it in
the ``x-mlambda-control`` header, so other local users and web pages cannot trigger functions.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any
from urllib.parse import quote

from mlambda_local.cloud.errors import MlambdaLocalError
from mlambda_local.private_files import write_private_json

STATE_FILE = "state.json"
CONTROL_HEADER = "x-mlambda-control"


def write_state(data_dir: Path, state: dict[str, Any]) -> Path:
    """Write ``state.json``, readable by the owner only (it holds the control token)."""
    return write_private_json(data_dir / STATE_FILE, state, indent=2)


def read_state(data_dir: Path | str) -> dict[str, Any]:
    """The last state written by a local cloud in ``data_dir``."""
    path = Path(data_dir) / STATE_FILE
    try:
        state: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise MlambdaLocalError(
            f"no local cloud state in {data_dir}: start one with `mlambda local up`"
        ) from exc
    except json.JSONDecodeError as exc:
        raise MlambdaLocalError(f"{path} is corrupt: {exc}") from exc
    return state


class ControlClient:
    """Talks to a running local cloud's control API."""

    def __init__(self, control_url: str, token: str, timeout: float = 60.0) -> None:
        import requests  # here, not at import: the local cloud itself never needs it

        self.control_url = control_url.rstrip("/")
        self.token = token
        self.timeout = timeout
        self._http = requests.Session()

    @classmethod
    def from_data_dir(cls, data_dir: Path | str, timeout: float = 60.0) -> ControlClient:
        """A client for the cloud whose ``state.json`` is in ``data_dir``; fails if it is not running."""
        state = read_state(data_dir)
        if not state.get("pid") or not state.get("control_url"):
            raise MlambdaLocalError(f"the local cloud of {data_dir} is not running")
        return cls(str(state["control_url"]), str(state["control_token"]), timeout)

    def _call(self, method: str, path: str, payload: Any = None) -> Any:
        import requests

        try:
            response = self._http.request(
                method,
                f"{self.control_url}/{path}",
                headers={CONTROL_HEADER: self.token},
                data=None if payload is None else json.dumps(payload),
                timeout=self.timeout,
            )
        except requests.ConnectionError as exc:
            raise MlambdaLocalError(f"the local cloud at {self.control_url} is not answering: {exc}") from exc
        try:
            body = response.json()
        except ValueError:
            body = {"message": response.text}
        if response.status_code >= 400:
            raise MlambdaLocalError(
                f"control API {method} {path}: {response.status_code} {body.get('message', body)}"
            )
        return body

    def status(self) -> dict[str, Any]:
        """Resources, functions (invocations, errors) and triggers of the running cloud."""
        result: dict[str, Any] = self._call("GET", "status")
        return result

    def trigger(self, name: str) -> list[Any]:
        """Fire a schedule rule (logical id, name, or the function it targets); its functions' results."""
        results: list[Any] = self._call("POST", f"trigger/{quote(name, safe='')}")["results"]
        return results

    def invoke(self, function: str, event: Any = None) -> Any:
        """Invoke a function (logical id or name) with ``event``; its result."""
        return self._call("POST", f"invoke/{quote(function, safe='')}", {} if event is None else event)[
            "result"
        ]
