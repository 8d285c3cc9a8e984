"""``mlambda keys bootstrap`` against a deployed stack: the first admin key, in the stack's region."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest
from moto import mock_aws

from mlambda_local.bootstrap import key_service
from mlambda_local.cli import main

STACK_REGION = "eu-west-1"
TABLE = "mlambda-prod-ApiKeysTable-1A2B3C"


@pytest.fixture
def deployed_keys_table(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[str]:
    """The stack's keys table in eu-west-1 on moto, and a shell whose AWS region is eu-west-1."""
    monkeypatch.setenv("AWS_REGION", STACK_REGION)
    monkeypatch.setenv("AWS_DEFAULT_REGION", STACK_REGION)
    monkeypatch.chdir(tmp_path)  # no local cloud state in .mlambda
    with mock_aws():
        boto3.client("dynamodb", region_name=STACK_REGION).create_table(
            TableName=TABLE,
            KeySchema=[{"AttributeName": "key_id", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "key_id", "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
        )
        yield TABLE


def test_bootstrap_writes_the_key_to_the_table_in_the_shells_region(
    deployed_keys_table: str, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given a stack deployed in eu-west-1 and AWS_REGION=eu-west-1 (as the pipeline's credentials set it)
    # When
    code = main(["keys", "bootstrap", "--table", deployed_keys_table, "--name", "ci-smoke", "-o", "json"])
    # Then the key exists in that region's table and authenticates there
    assert code == 0
    created = json.loads(capsys.readouterr().out)
    principal = key_service(deployed_keys_table, None, STACK_REGION).authenticate(created["api_key"])
    assert principal.name == "ci-smoke"


def test_bootstrap_takes_the_region_from_the_command_line(
    deployed_keys_table: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given a shell set to another region
    monkeypatch.setenv("AWS_REGION", "us-east-1")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    # When
    code = main(["keys", "bootstrap", "--table", deployed_keys_table, "--region", STACK_REGION, "-o", "json"])
    # Then
    assert code == 0
    created = json.loads(capsys.readouterr().out)
    assert key_service(deployed_keys_table, None, STACK_REGION).authenticate(created["api_key"])


def test_bootstrap_on_aws_without_a_stack_says_api_gateway_will_refuse_the_key(
    deployed_keys_table: str, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given a deployed stack's table and no --stack (so no usage plan can be found for the key)
    # When
    code = main(["keys", "bootstrap", "--table", deployed_keys_table, "-o", "json"])
    # Then the key is made, and stderr says it joins no usage plan and how to avoid that
    assert code == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out)["api_key"]
    assert "no usage plan" in captured.err and "--stack" in captured.err
