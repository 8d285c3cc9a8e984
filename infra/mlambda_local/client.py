"""Where the CLI sends its calls and what its exit codes mean.

The project root (``MLAMBDA_HOME``, else the nearest directory above the current one holding
``template.yaml`` or ``.mlambda``) gives the data directory and the template; the API and its
key come from flags, then ``MLAMBDA_API_URL`` / ``MLAMBDA_API_KEY``, then the local cloud's state
in the data directory. The calls themselves go through the SDK (``mlambda.client``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mlambda.client import (
    NO_RETRY,
    ApiError,
    AuthenticationError,
    Client,
    ConflictError,
    InvalidRequestError,
    MlambdaClientError,
    NotFoundError,
    PermissionDeniedError,
    RateLimitedError,
    RetryPolicy,
    ServerError,
    TransportError,
    VersionFailedError,
    WaitTimeoutError,
)

DATA_DIR_NAME = ".mlambda"
TEMPLATE_NAME = "template.yaml"
STATE_FILE = "state.json"
ADMIN_KEY_FILE = "admin_key"
HOME_VARIABLE = "MLAMBDA_HOME"

EXIT_OK = 0
EXIT_PARTIAL = 1
EXIT_USAGE = 2
EXIT_AUTH = 3
EXIT_NOT_FOUND = 4
EXIT_INVALID = 5
EXIT_UNAVAILABLE = 6
EXIT_CODES = {
    EXIT_OK: "success",
    EXIT_PARTIAL: "partial success: some events or rows were rejected, a job failed or a wait ran out",
    EXIT_USAGE: "usage: a bad flag or argument, a missing file, nothing to talk to, a missing extra",
    EXIT_AUTH: "authentication or permission: no key, a wrong or revoked key, a missing scope, no AWS credentials",
    EXIT_NOT_FOUND: "not found: no such model, version, job or key",
    EXIT_INVALID: "refused: invalid input, a conflict, a failing gate, a version that failed validation",
    EXIT_UNAVAILABLE: "the server failed or could not be reached (after the retries)",
}


class CliError(Exception):
    """Something the user can fix; printed on one line, and the process exits with ``code``."""

    def __init__(self, message: str, code: int = EXIT_USAGE) -> None:
        super().__init__(message)
        self.code = code


def exit_code(exc: BaseException) -> int:
    """The documented exit code of an error a command raised."""
    if isinstance(exc, CliError):
        return exc.code
    if isinstance(exc, AuthenticationError | PermissionDeniedError):
        return EXIT_AUTH
    if isinstance(exc, NotFoundError):
        return EXIT_NOT_FOUND
    if isinstance(exc, ConflictError | InvalidRequestError | VersionFailedError):
        return EXIT_INVALID
    if isinstance(exc, RateLimitedError | ServerError | TransportError):
        return EXIT_UNAVAILABLE
    if isinstance(exc, WaitTimeoutError):
        return EXIT_PARTIAL
    if isinstance(exc, ApiError):
        return EXIT_INVALID if 400 <= exc.status < 500 else EXIT_UNAVAILABLE
    if isinstance(exc, MlambdaClientError):
        return EXIT_USAGE
    return EXIT_UNAVAILABLE


@dataclass(frozen=True)
class Project:
    """The project's root and what is found from it: the data directory and the template."""

    root: Path
    data_dir: Path
    template: Path

    @classmethod
    def find(
        cls,
        start: Path | None = None,
        *,
        data_dir: str | None = None,
        template: str | None = None,
        environ: dict[str, str] | None = None,
    ) -> Project:
        """``MLAMBDA_HOME``, else the nearest of ``start`` (the current directory) and its parents
        holding ``template.yaml`` or ``.mlambda``, else ``start`` itself; flags override either part."""
        env = os.environ if environ is None else environ
        here = (start or Path.cwd()).resolve()
        home = env.get(HOME_VARIABLE)
        if home:
            root = Path(home).expanduser().resolve()
        else:
            root = next(
                (
                    p
                    for p in (here, *here.parents)
                    if (p / TEMPLATE_NAME).is_file() or (p / DATA_DIR_NAME).is_dir()
                ),
                here,
            )
        return cls(
            root=root,
            data_dir=Path(data_dir) if data_dir else root / DATA_DIR_NAME,
            template=Path(template) if template else root / TEMPLATE_NAME,
        )


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
        if not key:
            raise CliError(
                f"no API key: pass --api-key or set MLAMBDA_API_KEY (a local cloud's is {key_file})",
                EXIT_AUTH,
            )
        return cls(
            api_url=str(url).rstrip("/"),
            api_key=key,
            endpoint_url=state.get("endpoint_url"),
            outputs=dict(state.get("outputs", {})),
        )

    def client(self, retry: RetryPolicy | None = None) -> Client:
        """The SDK on this target (retrying as the SDK does by default)."""
        return Client(self.api_url, self.api_key, retry=retry)


class ApiClient(Client):
    """The SDK without retries, plus ``get``/``post``/``delete``: what the demo, the tests and the
    benchmarks drive the API with, where a retry would hide the answer they are looking at."""

    def __init__(self, target: Target, timeout: float = 60.0) -> None:
        super().__init__(target.api_url, target.api_key, timeout=timeout, retry=NO_RETRY)
        self.target = target

    def get(self, path: str, **kwargs: Any) -> Any:
        """GET ``path``."""
        return self.request("GET", path, **kwargs)

    def post(self, path: str, body: Any = None, **kwargs: Any) -> Any:
        """POST ``body`` as JSON to ``path``."""
        return self.request("POST", path, body=body, **kwargs)

    def delete(self, path: str, **kwargs: Any) -> Any:
        """DELETE ``path``."""
        return self.request("DELETE", path, **kwargs)


__all__ = [
    "ADMIN_KEY_FILE",
    "EXIT_CODES",
    "ApiClient",
    "ApiError",
    "CliError",
    "Project",
    "Target",
    "exit_code",
    "read_state",
]
