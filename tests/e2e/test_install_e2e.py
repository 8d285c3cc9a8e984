"""``pip install mlambda`` with no extras, in a fresh virtualenv, as a user of the SDK and CLI gets it.

Costs one virtualenv and one install from pip's cache (about 60 s on the loaded 2-core machine: the
build of the wheel and requests, tqdm, shtab); the package is built from a copy of its sources
so the build never writes into the working tree other tests run from.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT
from tests.e2e.conftest import Platform

pytestmark = pytest.mark.e2e

SOURCES = ("pyproject.toml", "README.md", "shared", "infra")
INSTALL_BUDGET_BYTES = (
    12 * 1024 * 1024
)  # measured 8.4 MB: the two packages, requests, tqdm, shtab, their .pyc
SERVER_PACKAGES = (
    "numpy",
    "boto3",
    "botocore",
    "onnxruntime",
    "pydantic",
    "aws_lambda_powertools",
    "moto",
    "pandas",
)


@pytest.fixture(scope="module")
def venv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A virtualenv with ``pip install <repo>`` (no extras) done in it."""
    root = tmp_path_factory.mktemp("install")
    source = root / "src"
    source.mkdir()
    for name in SOURCES:
        origin = REPO_ROOT / name
        if origin.is_dir():
            shutil.copytree(origin, source / name, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
        else:
            shutil.copy2(origin, source / name)
    env_dir = root / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(env_dir)], check=True, timeout=120)
    (root / "bare-bytes").write_text(str(tree_bytes(site_packages(env_dir))))  # pip (and setuptools) alone
    installed = subprocess.run(
        [str(env_dir / "bin" / "python"), "-m", "pip", "install", "--quiet", str(source)],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert installed.returncode == 0, installed.stderr[-3000:]
    yield env_dir


def site_packages(env_dir: Path) -> Path:
    return next((env_dir / "lib").glob("python3*/site-packages"))


def tree_bytes(folder: Path) -> int:
    return sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())


def test_a_plain_install_is_light_and_installs_no_generic_top_level_name(venv: Path) -> None:
    # Given a plain install
    packages = site_packages(venv)
    # When its contents are listed
    top_level = {p.name for p in packages.iterdir()}
    added = tree_bytes(packages) - int((venv.parent / "bare-bytes").read_text())
    # Then the SDK and the CLI are there, the functions and the server's dependencies are not
    assert {"mlambda", "mlambda_local", "requests", "tqdm", "shtab"} <= top_level
    assert "functions" not in top_level
    assert not [name for name in SERVER_PACKAGES if name in top_level]
    assert added < INSTALL_BUDGET_BYTES, f"{added / 1e6:.1f} MB installed"


def test_the_installed_cli_answers_its_version_and_calls_the_api(venv: Path, platform: Platform) -> None:
    # When
    version = subprocess.run(
        [str(venv / "bin" / "mlambda"), "--version"], capture_output=True, text=True, timeout=60, check=False
    )
    whoami = subprocess.run(
        [
            str(venv / "bin" / "mlambda"),
            "whoami",
            "-o",
            "json",
            "--api-url",
            platform.api_url,
            "--api-key",
            platform.admin_key,
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    # Then
    assert version.returncode == 0 and version.stdout.strip() == "mlambda 0.1.0", version.stderr
    assert whoami.returncode == 0, whoami.stderr
    assert json.loads(whoami.stdout)["name"] == "local-admin"


def test_the_installed_sdk_calls_the_api_without_the_servers_modules(venv: Path, platform: Platform) -> None:
    # Given
    script = (
        "import sys, json\n"
        "from mlambda.client import Client, NotFoundError\n"
        f"client = Client({platform.api_url!r}, {platform.admin_key!r})\n"
        "me = client.whoami()\n"
        "try:\n"
        "    client.model('no-such-model')\n"
        "except NotFoundError as exc:\n"
        "    missing = exc.code\n"
        f"print(json.dumps({{'me': me['name'], 'missing': missing, 'heavy': [m for m in {SERVER_PACKAGES!r} if m in sys.modules]}}))\n"
    )
    # When
    ran = subprocess.run(
        [str(venv / "bin" / "python"), "-c", script], capture_output=True, text=True, timeout=60, check=False
    )
    # Then
    assert ran.returncode == 0, ran.stderr
    assert json.loads(ran.stdout) == {"me": "local-admin", "missing": "model_not_found", "heavy": []}


def test_a_command_needing_an_extra_says_which_one(venv: Path, tmp_path: Path) -> None:
    # When the local cloud is asked of a plain install
    ran = subprocess.run(
        [str(venv / "bin" / "mlambda"), "--data-dir", str(tmp_path), "local", "up"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    # Then one line names the extra, without a traceback
    assert ran.returncode == 2
    assert "pip install 'mlambda[local]'" in ran.stderr and "Traceback" not in ran.stderr
