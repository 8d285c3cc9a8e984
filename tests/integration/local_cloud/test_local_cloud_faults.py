"""Faults the local cloud survives or states: moto's server dying, an endpoint that cannot be used."""

from __future__ import annotations

import json
import shutil
import socket
from pathlib import Path

import boto3
import pytest

from mlambda_local.cli import main
from mlambda_local.cloud import LocalCloud, MlambdaLocalError

from .support import FIXTURE_DIR, FIXTURE_TEMPLATE, wait_for


def _kill_moto_server(cloud: LocalCloud) -> int:
    """Stop moto's HTTP server under the cloud, as a crash of its thread would; returns its port."""
    moto = cloud._moto
    assert moto is not None and moto._server is not None
    port = int(moto._server.server_address[1])
    moto._server.shutdown()
    return port


def test_a_dead_moto_server_is_restarted_on_its_port_with_its_state(tmp_path: Path) -> None:
    # Given: a running cloud with an item stored
    template_dir = tmp_path / "stack"
    shutil.copytree(FIXTURE_DIR, template_dir)
    with LocalCloud(template_dir / FIXTURE_TEMPLATE.name, tmp_path / "data", stack_name="phoenix") as cloud:
        table = boto3.resource("dynamodb", endpoint_url=cloud.endpoint_url, region_name="us-east-1").Table(
            cloud.outputs["RecordsTableName"]
        )
        table.put_item(Item={"id": "before"})
        # When: its moto server stops serving
        _kill_moto_server(cloud)
        # Then: the same URL answers again, with the item, and the queue pollers deliver new work
        wait_for(lambda: _answers(table), timeout=30)
        assert table.get_item(Key={"id": "before"})["Item"] == {"id": "before"}
        sqs = boto3.client("sqs", endpoint_url=cloud.endpoint_url, region_name="us-east-1")
        sqs.send_message(QueueUrl=cloud.outputs["WorkQueueUrl"], MessageBody=json.dumps({"id": "after"}))
        wait_for(lambda: table.get_item(Key={"id": "sqs#after"}).get("Item"), timeout=30)
        assert cloud.fault is None


def _answers(table: object) -> bool:
    try:
        table.load()  # type: ignore[attr-defined]
    except Exception:
        return False
    return True


def test_a_moto_server_that_cannot_serve_again_stops_the_cloud_with_one_message(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # Given: a running cloud whose moto port another program takes as soon as moto dies
    cloud = LocalCloud(FIXTURE_TEMPLATE, tmp_path / "data", stack_name="squatted").start()
    squatter = socket.socket()
    squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # the pollers' closed connections linger
    try:
        port = _kill_moto_server(cloud)
        cloud._moto._server.server_close()  # type: ignore[union-attr]
        squatter.bind(("127.0.0.1", port))
        squatter.listen()
        # When
        wait_for(lambda: cloud.fault, timeout=30)
    finally:
        squatter.close()  # (it never answers: the pollers' requests to it fail once it is gone)
    wait_for(lambda: not json.loads((tmp_path / "data" / "state.json").read_text())["pid"], timeout=60)
    # Then: stopped, saying why, once
    assert cloud.fault is not None and f"port {port}" in cloud.fault and "cannot serve again" in cloud.fault
    assert [r.getMessage() for r in caplog.records if r.levelname == "ERROR"] == [
        f"{cloud.fault}; the local cloud stops (its state is kept in {tmp_path / 'data'})"
    ]


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_local_up_with_an_unreachable_endpoint_fails_at_once_with_a_message(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "test")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "test")
    endpoint = f"http://127.0.0.1:{_closed_port()}"
    # When
    code = main(
        [
            "--data-dir",
            str(tmp_path),
            "--template",
            str(FIXTURE_TEMPLATE),
            "local",
            "up",
            "--endpoint-url",
            endpoint,
        ]
    )
    # Then
    err = capsys.readouterr().err
    assert code == 6
    assert err.startswith(f"error: nothing answers at {endpoint}") and "Traceback" not in err


def test_an_endpoint_without_credentials_fails_with_a_message(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given: no credentials anywhere boto3 looks
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    # When / Then
    with pytest.raises(MlambdaLocalError, match=r"no AWS credentials to call http://127\.0\.0\.1:4566"):
        LocalCloud(FIXTURE_TEMPLATE, tmp_path / "data", endpoint_url="http://127.0.0.1:4566").start()


def test_an_endpoint_that_is_not_a_url_fails_with_a_message(tmp_path: Path) -> None:
    with pytest.raises(MlambdaLocalError, match="'localhost:4566' is not an http"):
        LocalCloud(FIXTURE_TEMPLATE, tmp_path / "data", endpoint_url="localhost:4566").start()
