"""The foundation as a user meets it: keys and scopes over HTTP, the CLI, and `mlambda local up`."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from mlambda_local.cli import main
from tests.conftest import REPO_ROOT
from tests.e2e.conftest import Platform

pytestmark = pytest.mark.e2e


def test_every_error_has_the_json_shape_and_status(platform: Platform) -> None:
    # Given
    url = platform.api_url
    # When
    responses = {
        "no key": requests.get(f"{url}/me", timeout=10),
        "unknown key": requests.get(f"{url}/me", headers={"x-api-key": "mlk.000000000000.nope"}, timeout=10),
        "unknown route": requests.get(
            f"{url}/nowhere", headers={"x-api-key": platform.admin_key}, timeout=10
        ),
    }
    # Then
    assert {name: r.status_code for name, r in responses.items()} == {
        "no key": 401,
        "unknown key": 401,
        "unknown route": 404,
    }
    for response in responses.values():
        body = response.json()
        assert set(body) >= {"code", "message"}


def test_scopes_are_enforced_per_route(platform: Platform) -> None:
    # Given a key that may predict and ingest only
    created = platform.admin.post("/keys", {"name": "scoped", "scopes": ["predict", "ingest"]})
    # When
    me = requests.get(f"{platform.api_url}/me", headers={"x-api-key": created["api_key"]}, timeout=10)
    keys = requests.get(f"{platform.api_url}/keys", headers={"x-api-key": created["api_key"]}, timeout=10)
    # Then
    assert me.status_code == 200
    assert me.json()["scopes"] == ["ingest", "predict"]
    assert keys.status_code == 403
    assert keys.json()["code"] == "forbidden"


def test_cli_creates_lists_and_revokes_keys(platform: Platform, capsys: pytest.CaptureFixture[str]) -> None:
    # Given
    flags = ["--api-url", platform.api_url, "--api-key", platform.admin_key]
    # When
    assert (
        main([*flags, "keys", "create", "--name", "cli-made", "--scopes", "registry:read", "-o", "json"]) == 0
    )
    created = json.loads(capsys.readouterr().out)
    assert main([*flags, "keys", "list"]) == 0
    listing = capsys.readouterr().out
    assert main([*flags, "keys", "revoke", created["key_id"]]) == 0
    capsys.readouterr()
    # Then: the revoked key (never used, so not in the authorizer's cache) is refused
    assert created["key_id"] in listing and "cli-made" in listing
    refused = requests.get(f"{platform.api_url}/me", headers={"x-api-key": created["api_key"]}, timeout=10)
    assert refused.status_code == 401


def test_cli_reports_api_errors_without_a_traceback(
    platform: Platform, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["--api-url", platform.api_url, "--api-key", "mlk.000000000000.bad", "whoami"])
    assert code == 3
    assert "HTTP 401 unauthorized" in capsys.readouterr().err


def start_up(data_dir: Path) -> tuple[subprocess.Popen[str], dict[str, str]]:
    """`mlambda local up` in the background; returns the process and what it printed before ready."""
    process = subprocess.Popen(
        [sys.executable, "-m", "mlambda_local.cli", "--data-dir", str(data_dir), "local", "up"],
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    printed: dict[str, str] = {}
    # Worker processes start while the cloud provisions: on a loaded 2-core machine that takes a while.
    deadline = time.monotonic() + 180
    assert process.stdout is not None
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line:
            break
        if ":" in line and line.startswith("  "):
            name, _, value = line.strip().partition(":")
            printed[name.strip()] = value.strip()
        if line.startswith("Ctrl-C stops it."):
            return process, printed
    process.kill()
    raise AssertionError(f"local up never became ready; printed {printed}")


def stop(process: subprocess.Popen[str]) -> str:
    process.send_signal(signal.SIGINT)
    remaining, _ = process.communicate(timeout=30)
    assert process.returncode == 0, remaining
    return remaining


def run_cli(data_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mlambda_local.cli", "--data-dir", str(data_dir), *args],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_local_up_prints_a_working_stack_stops_cleanly_and_keeps_state(tmp_path: Path) -> None:
    # Given a cloud started from the command line
    process, printed = start_up(tmp_path)
    try:
        # When a user follows what it printed
        me = requests.get(f"{printed['API URL']}/me", headers={"x-api-key": printed["admin key"]}, timeout=10)
        console = requests.get(printed["console"].split()[0], timeout=30)
        status = run_cli(tmp_path, "local", "status", "-o", "json")
        created = run_cli(tmp_path, "-o", "json", "keys", "create", "--name", "kept", "--scopes", "predict")
    finally:
        output = stop(process)
    # Then
    assert me.status_code == 200
    assert console.status_code == 200 and "default-src 'self'" in console.headers["Content-Security-Policy"]
    assert printed["console"].startswith(f"{printed['API URL']}/console/")
    assert printed["AWS endpoint"].startswith("http://127.0.0.1:")
    assert status.returncode == 0, status.stderr
    assert "KeysFunction" in json.loads(status.stdout)["functions"]
    assert "stopped." in output
    kept_key = json.loads(created.stdout)["api_key"]

    # When it starts again in the same data directory
    process, printed_again = start_up(tmp_path)
    try:
        again = requests.get(f"{printed_again['API URL']}/me", headers={"x-api-key": kept_key}, timeout=10)
    finally:
        stop(process)
    # Then the admin key and the key created before the restart still work
    assert printed_again["admin key"] == printed["admin key"]
    assert again.status_code == 200
    assert again.json()["name"] == "kept"


def test_status_of_a_stopped_cloud_is_a_clear_error(tmp_path: Path) -> None:
    result = run_cli(tmp_path, "local", "status")
    assert result.returncode == 6
    assert "mlambda local up" in result.stderr


def run_smoke_test(platform: Platform, cwd: Path, **extra: str) -> subprocess.CompletedProcess[str]:
    """infra/smoke_test.sh as the pipeline runs it, with the local cloud standing for the stack."""
    env = {key: value for key, value in os.environ.items() if key != "MLAMBDA_API_KEY"}
    env.update(
        {
            "MLAMBDA_API_URL": platform.api_url,
            "MLAMBDA_KEYS_TABLE": platform.cloud.outputs["ApiKeysTableName"],
            "AWS_ENDPOINT_URL": str(platform.cloud.endpoint_url),
            "MLAMBDA_CLI": str(Path(sys.executable).parent / "mlambda"),
            **extra,
        }
    )
    return subprocess.run(
        ["bash", str(REPO_ROOT / "infra" / "smoke_test.sh"), "mlambda-local"],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def smoke_keys(platform: Platform, run_id: str) -> list[dict[str, object]]:
    return [key for key in platform.admin.get("/keys")["keys"] if key["name"] == f"smoke-{run_id}"]


def test_the_pipelines_smoke_test_passes_on_a_stack_and_revokes_its_key(
    platform: Platform, tmp_path: Path
) -> None:
    # Given a deployed stack (the local cloud) and its outputs
    # When the pipeline's smoke test runs against it
    result = run_smoke_test(platform, tmp_path, GITHUB_RUN_ID="4242")
    # Then it passes through the authorizer, /me and the registry
    assert result.returncode == 0, result.stderr
    assert "GET /me without a key -> 401" in result.stdout
    assert "smoke test passed" in result.stdout
    # and the admin key it made is revoked
    (key,) = smoke_keys(platform, "4242")
    assert key["revoked_at"]


def test_a_failing_smoke_test_fails_the_step_and_still_revokes_its_key(
    platform: Platform, tmp_path: Path
) -> None:
    # Given a prediction from a model the stack does not have
    # When
    result = run_smoke_test(
        platform, tmp_path, GITHUB_RUN_ID="4343", SMOKE_MODEL="no-such-model", SMOKE_INSTANCES='[{"x": 1}]'
    )
    # Then the step fails, naming the API's answer, and leaves no live key behind
    assert result.returncode != 0
    assert "404" in result.stderr
    (key,) = smoke_keys(platform, "4343")
    assert key["revoked_at"]
