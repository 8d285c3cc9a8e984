"""End-to-end fixtures: the platform's own template on a local cloud, driven over HTTP."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from mlambda_local.bootstrap import ensure_admin_key
from mlambda_local.client import ApiClient, Target
from mlambda_local.cloud import LocalCloud
from tests.conftest import REPO_ROOT


class Platform:
    """A running local cloud of template.yaml with an admin client."""

    def __init__(self, cloud: LocalCloud, data_dir: Path, admin_key: str) -> None:
        self.cloud = cloud
        self.data_dir = data_dir
        self.admin_key = admin_key
        self.admin = self.client(admin_key)

    @property
    def api_url(self) -> str:
        return str(self.cloud.api_url)

    def client(self, api_key: str | None) -> ApiClient:
        """An API client with ``api_key`` (None: no key)."""
        return ApiClient(Target(api_url=self.api_url, api_key=api_key))


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    """One local cloud per test module (start-up costs seconds)."""
    data_dir = tmp_path_factory.mktemp("cloud")
    # In process: seconds faster to start than worker processes; the process mode has its own tests.
    with LocalCloud(REPO_ROOT / "template.yaml", data_dir, mode="in-process") as cloud:
        key = ensure_admin_key(data_dir, cloud.outputs["ApiKeysTableName"], cloud.endpoint_url)
        yield Platform(cloud, data_dir, key)
