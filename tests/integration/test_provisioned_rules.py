"""Schedule rules are provisioned without their Lambda targets, so the event bus keeps working."""

from __future__ import annotations

import boto3

from tests.integration.conftest import Stack


def test_schedule_rules_exist_without_lambda_targets_and_put_events_succeeds(stack: Stack) -> None:
    events = boto3.client("events", region_name="us-east-1")
    schedules = [rule for rule in events.list_rules()["Rules"] if "ScheduleExpression" in rule]
    assert schedules, "template.yaml declares the monitoring schedule"
    for rule in schedules:
        targets = events.list_targets_by_rule(Rule=rule["Name"])["Targets"]
        assert not [t for t in targets if ":lambda:" in t["Arn"]]
    answer = events.put_events(
        Entries=[{"Source": "mlambda.registry", "DetailType": "Model Alias Moved", "Detail": "{}"}]
    )
    assert answer["FailedEntryCount"] == 0
