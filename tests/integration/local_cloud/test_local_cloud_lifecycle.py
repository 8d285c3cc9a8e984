"""Start-up validation, restart persistence and shutdown of the local cloud."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import boto3
import pytest
import requests

from mlambda_local.cloud import ControlClient, LocalCloud, MlambdaLocalError, TemplateError

from .support import FIXTURE_DIR, FIXTURE_TEMPLATE, wait_for

MINIMAL = """
Transform: AWS::Serverless-2016-10-31
Resources:
  Thing:
    Type: AWS::Serverless::Function
    Properties:
      Runtime: python3.11
      CodeUri: {code_uri}
      Handler: {handler}
{events}
"""


def _template(
    tmp_path: Path, *, handler: str = "app.handler", code_uri: str = "fn/", events: str = ""
) -> Path:
    (tmp_path / "fn").mkdir(exist_ok=True)
    (tmp_path / "fn" / "app.py").write_text("def handler(event, context):\n    return {'ok': True}\n")
    path = tmp_path / "template.yaml"
    path.write_text(MINIMAL.format(code_uri=code_uri, handler=handler, events=events))
    return path


def test_in_process_missing_handler_attribute_fails_at_start_naming_the_function(tmp_path: Path) -> None:
    # Given (in worker processes it is the first invocation's init error, as on Lambda)
    template = _template(tmp_path, handler="app.main")
    # When / Then
    with pytest.raises(TemplateError, match=r"function Thing: app\.py has no callable 'main'"):
        LocalCloud(template, tmp_path / "data", mode="in-process").start()


def test_missing_module_or_code_dir_fails_at_start_naming_the_function(tmp_path: Path) -> None:
    with pytest.raises(TemplateError, match=r"function Thing: handler module .*missing\.py does not exist"):
        LocalCloud(_template(tmp_path, handler="missing.handler"), tmp_path / "data").start()
    with pytest.raises(TemplateError, match=r"function Thing: CodeUri directory .*nowhere does not exist"):
        LocalCloud(_template(tmp_path, code_uri="nowhere/"), tmp_path / "data").start()


def test_unsupported_trigger_fails_at_start_naming_the_function(tmp_path: Path) -> None:
    # Given: a Kinesis stream event, which the local cloud cannot deliver
    events = """      Events:
        Stream:
          Type: Kinesis
          Properties:
            Stream: arn:aws:kinesis:us-east-1:123456789012:stream/s
            StartingPosition: LATEST
"""
    template = _template(tmp_path, events=events)
    # When / Then
    with pytest.raises(TemplateError, match="function Thing: event Stream of type Kinesis is not supported"):
        LocalCloud(template, tmp_path / "data").start()


def test_failed_start_leaves_nothing_running(tmp_path: Path) -> None:
    # Given
    cloud = LocalCloud(_template(tmp_path, handler="missing.handler"), tmp_path / "data")
    # When
    with pytest.raises(TemplateError):
        cloud.start()
    # Then: no state file claims a running cloud, and stop() is harmless
    assert not (tmp_path / "data" / "state.json").exists()
    cloud.stop()


def test_restart_in_same_data_dir_keeps_dynamodb_items_and_s3_objects(tmp_path: Path) -> None:
    # Given: a copy of the fixture (its own data dir), with an item and an object written
    template_dir = tmp_path / "stack"
    shutil.copytree(FIXTURE_DIR, template_dir)
    data_dir = tmp_path / "data"
    with LocalCloud(template_dir / FIXTURE_TEMPLATE.name, data_dir, stack_name="keep") as first:
        dynamodb = boto3.client("dynamodb", endpoint_url=first.endpoint_url, region_name="us-east-1")
        dynamodb.put_item(
            TableName=first.outputs["RecordsTableName"], Item={"id": {"S": "kept"}, "kind": {"S": "manual"}}
        )
        s3 = boto3.client("s3", endpoint_url=first.endpoint_url, region_name="us-east-1")
        s3.put_object(
            Bucket=first.outputs["IngestBucketName"], Key="models/a b+c.onnx", Body=b"\x00weights\xff"
        )
        first_endpoint = first.endpoint_url
    # When: the cloud starts again on the same data dir (a new moto server, new port)
    with LocalCloud(template_dir / FIXTURE_TEMPLATE.name, data_dir, stack_name="keep") as second:
        # Then
        assert second.endpoint_url != first_endpoint
        dynamodb = boto3.client("dynamodb", endpoint_url=second.endpoint_url, region_name="us-east-1")
        item = dynamodb.get_item(TableName=second.outputs["RecordsTableName"], Key={"id": {"S": "kept"}})
        assert item["Item"]["kind"] == {"S": "manual"}
        s3 = boto3.client("s3", endpoint_url=second.endpoint_url, region_name="us-east-1")
        body = s3.get_object(Bucket=second.outputs["IngestBucketName"], Key="models/a b+c.onnx")[
            "Body"
        ].read()
        assert body == b"\x00weights\xff"
        assert second.inventory.items["RecordsTable"].status == "exists"
        assert requests.get(f"{second.api_url}/health", timeout=10).status_code == 200


def test_restart_restores_pending_messages_once_and_does_not_redeliver_consumed_events(
    tmp_path: Path,
) -> None:
    # Given: a processed upload, a processed message, and a message parked in the DLQ
    template_dir = tmp_path / "stack"
    shutil.copytree(FIXTURE_DIR, template_dir)
    template, data_dir = template_dir / FIXTURE_TEMPLATE.name, tmp_path / "data"
    # In process: the fixture's 1 s visibility timeout is shorter than a worker's cold start.
    with LocalCloud(template, data_dir, stack_name="again", mode="in-process") as first:
        table = boto3.resource("dynamodb", endpoint_url=first.endpoint_url, region_name="us-east-1").Table(
            first.outputs["RecordsTableName"]
        )
        s3 = boto3.client("s3", endpoint_url=first.endpoint_url, region_name="us-east-1")
        sqs = boto3.client("sqs", endpoint_url=first.endpoint_url, region_name="us-east-1")
        s3.put_object(Bucket=first.outputs["IngestBucketName"], Key="in/first.csv", Body=b"x")
        sqs.send_message(QueueUrl=first.outputs["WorkQueueUrl"], MessageBody=json.dumps({"id": "first"}))
        sqs.send_message(QueueUrl=first.outputs["WorkDeadLetterQueueUrl"], MessageBody="parked")
        wait_for(lambda: table.get_item(Key={"id": "s3#in/first.csv"}).get("Item"))
        wait_for(lambda: table.get_item(Key={"id": "sqs#first"}).get("Item"))
    # When: restarted, and new work arrives behind whatever was restored
    with LocalCloud(template, data_dir, stack_name="again", mode="in-process") as second:
        table = boto3.resource("dynamodb", endpoint_url=second.endpoint_url, region_name="us-east-1").Table(
            second.outputs["RecordsTableName"]
        )
        s3 = boto3.client("s3", endpoint_url=second.endpoint_url, region_name="us-east-1")
        sqs = boto3.client("sqs", endpoint_url=second.endpoint_url, region_name="us-east-1")
        s3.put_object(Bucket=second.outputs["IngestBucketName"], Key="in/second.csv", Body=b"x")
        sqs.send_message(QueueUrl=second.outputs["WorkQueueUrl"], MessageBody=json.dumps({"id": "second"}))
        wait_for(lambda: table.get_item(Key={"id": "s3#in/second.csv"}).get("Item"))
        wait_for(lambda: table.get_item(Key={"id": "sqs#second"}).get("Item"))
        # Then: consumed events were not delivered again, the parked message is there exactly once
        functions = second.status()["functions"]
        assert functions["IngestFunction"]["invocations"] == 1
        assert table.get_item(Key={"id": "attempts#first"})["Item"]["attempts"] == 1
        parked = sqs.receive_message(
            QueueUrl=second.outputs["WorkDeadLetterQueueUrl"], MaxNumberOfMessages=10
        )
        assert [message["Body"] for message in parked.get("Messages", [])] == ["parked"]


def test_stop_clears_the_pid_so_clients_know_the_cloud_is_down(tmp_path: Path) -> None:
    # Given
    data_dir = tmp_path / "data"
    cloud = LocalCloud(FIXTURE_TEMPLATE, data_dir, stack_name="down").start()
    assert json.loads((data_dir / "state.json").read_text())["pid"]
    # When
    cloud.stop()
    cloud.stop()
    # Then
    assert json.loads((data_dir / "state.json").read_text())["pid"] is None
    with pytest.raises(MlambdaLocalError, match="not running"):
        ControlClient.from_data_dir(data_dir)


def test_a_restart_provisions_only_when_the_template_changed_or_a_resource_is_gone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given: the fixture provisioned once, and every later provisioning counted
    from mlambda_local.cloud.provision import Provisioner

    template_dir = tmp_path / "stack"
    shutil.copytree(FIXTURE_DIR, template_dir)
    template, data_dir = template_dir / FIXTURE_TEMPLATE.name, tmp_path / "data"
    with LocalCloud(template, data_dir, stack_name="same", mode="in-process"):
        pass
    provisioned: list[str] = []
    provision = Provisioner.provision
    monkeypatch.setattr(
        Provisioner, "provision", lambda self: provisioned.append(self.template.stack_name) or provision(self)
    )
    # When: started again on the unchanged template
    with LocalCloud(template, data_dir, stack_name="same", mode="in-process") as again:
        # Then: nothing provisioned; what the last start made is there, and S3 events still arrive
        assert provisioned == []
        assert again.inventory.items["RecordsTable"].status == "exists"
        table = boto3.resource("dynamodb", endpoint_url=again.endpoint_url, region_name="us-east-1").Table(
            again.outputs["RecordsTableName"]
        )
        s3 = boto3.client("s3", endpoint_url=again.endpoint_url, region_name="us-east-1")
        s3.put_object(Bucket=again.outputs["IngestBucketName"], Key="in/after-restart.csv", Body=b"x")
        wait_for(lambda: table.get_item(Key={"id": "s3#in/after-restart.csv"}).get("Item"))
        # ... and a table goes away while it runs
        boto3.client("dynamodb", endpoint_url=again.endpoint_url, region_name="us-east-1").delete_table(
            TableName=again.outputs["RecordsTableName"]
        )
    # When: started after the table went, then after the template changed
    with LocalCloud(template, data_dir, stack_name="same", mode="in-process") as healed:
        assert provisioned == ["same"]
        assert "Table" in boto3.client(
            "dynamodb", endpoint_url=healed.endpoint_url, region_name="us-east-1"
        ).describe_table(TableName=healed.outputs["RecordsTableName"])
    template.write_text(
        template.read_text().replace("Status: Enabled", "Status: Suspended", 1), encoding="utf-8"
    )
    with LocalCloud(template, data_dir, stack_name="same", mode="in-process") as changed:
        # Then: each of them provisioned
        assert provisioned == ["same", "same"]
        versioning = boto3.client("s3", endpoint_url=changed.endpoint_url, region_name="us-east-1")
        assert (
            versioning.get_bucket_versioning(Bucket=changed.outputs["IngestBucketName"])["Status"]
            == "Suspended"
        )


def test_the_start_up_timeline_names_each_phase_with_its_cpu(tmp_path: Path) -> None:
    # Given / When: a cloud started
    with LocalCloud(FIXTURE_TEMPLATE, tmp_path / "data", stack_name="timed", mode="in-process") as cloud:
        startup = cloud.status()["startup"]
    # Then: the phases in start order, from the process's start, and the moment it was up
    phases = [phase["phase"] for phase in startup["phases"]]
    assert phases == ["interpreter and imports", "template", "functions", "moto", "provision", "triggers"]
    starts = [phase["start_s"] for phase in startup["phases"]]
    assert starts == sorted(starts)
    assert all(phase["seconds"] >= 0 and phase["cpu_s"] >= 0 for phase in startup["phases"])
    (up,) = [event for event in startup["events"] if event["event"] == "up"]
    last = startup["phases"][-1]
    assert up["at_s"] >= last["start_s"] + last["seconds"] - 0.01
