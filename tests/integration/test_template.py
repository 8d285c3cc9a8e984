"""template.yaml: cfn-lint clean, expands with the SAM translator offline, and keeps the platform's rules."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cfnlint.api import ManualArgs, lint_file

from mlambda.auth import authorizer_context
from mlambda.schemas.keys import Principal, Scope
from mlambda_local.cloud.template import IntrinsicResolver, Template, load_template
from tests.conftest import REPO_ROOT

TEMPLATE_PATH = REPO_ROOT / "template.yaml"


@pytest.fixture(scope="module")
def template() -> Template:
    return load_template(TEMPLATE_PATH)


def resources_of(template: Template, kind: str) -> dict[str, dict[str, Any]]:
    return {lid: r for lid, r in template.resources.items() if r["Type"] == kind}


def iam_actions(document: Any) -> Iterator[str]:
    """Every action string in a policy document (or any nested structure holding one)."""
    if isinstance(document, dict):
        for key, value in document.items():
            if key in ("Action", "NotAction"):
                yield from [value] if isinstance(value, str) else value
            else:
                yield from iam_actions(value)
    elif isinstance(document, list):
        for item in document:
            yield from iam_actions(item)


def test_cfn_lint_reports_nothing_not_even_informational_findings() -> None:
    # I3011 among them: every stateful resource states its DeletionPolicy and UpdateReplacePolicy.
    matches = lint_file(TEMPLATE_PATH, config=ManualArgs(regions=["us-east-1"], include_checks=["I"]))
    assert [str(match) for match in matches] == []


def test_sam_translator_expands_every_function(template: Template) -> None:
    functions = resources_of(template, "AWS::Lambda::Function")
    assert {"AuthorizerFunction", "KeysFunction"} <= set(functions)
    for logical_id, function in functions.items():
        assert function["Properties"]["Runtime"] == "python3.12", logical_id


def test_every_function_has_code_with_a_handler(template: Template) -> None:
    for logical_id in resources_of(template, "AWS::Lambda::Function"):
        sam = template.sam_resource(logical_id)["Properties"]
        module, _, attribute = sam["Handler"].rpartition(".")
        source = Path(template.directory, sam["CodeUri"], f"{module}.py")
        assert source.exists(), f"{logical_id}: {source} missing"
        assert f"def {attribute}(" in source.read_text(), f"{logical_id}: no {attribute}() in {source}"


def test_every_function_names_its_service_for_logs_and_metrics(template: Template) -> None:
    for logical_id, function in resources_of(template, "AWS::Lambda::Function").items():
        variables = function["Properties"]["Environment"]["Variables"]
        assert variables.get("POWERTOOLS_SERVICE_NAME"), logical_id
        assert variables.get("POWERTOOLS_METRICS_NAMESPACE") == "mlambda", logical_id


def test_every_sqs_consumer_reports_partial_batch_failures(template: Template) -> None:
    mappings = resources_of(template, "AWS::Lambda::EventSourceMapping")
    for logical_id, mapping in mappings.items():
        assert "ReportBatchItemFailures" in mapping["Properties"].get("FunctionResponseTypes", []), logical_id


def test_every_queue_has_a_dead_letter_queue(template: Template) -> None:
    queues = resources_of(template, "AWS::SQS::Queue")
    dead_letter_targets = {
        q["Properties"]["RedrivePolicy"]["deadLetterTargetArn"]["Fn::GetAtt"][0]
        for q in queues.values()
        if "RedrivePolicy" in q.get("Properties", {})
    }
    for logical_id, queue in queues.items():
        assert logical_id in dead_letter_targets or "RedrivePolicy" in queue["Properties"], logical_id


def test_sqs_consumers_visibility_timeout_is_six_times_the_function_timeout(template: Template) -> None:
    queues = resources_of(template, "AWS::SQS::Queue")
    functions = resources_of(template, "AWS::Lambda::Function")
    for logical_id, mapping in resources_of(template, "AWS::Lambda::EventSourceMapping").items():
        queue = queues[mapping["Properties"]["EventSourceArn"]["Fn::GetAtt"][0]]
        function = functions[mapping["Properties"]["FunctionName"]["Ref"]]
        assert queue["Properties"]["VisibilityTimeout"] >= 6 * function["Properties"]["Timeout"], logical_id


def test_no_policy_grants_wildcard_actions(template: Template) -> None:
    for logical_id, role in resources_of(template, "AWS::IAM::Role").items():
        for action in iam_actions(role["Properties"].get("Policies", [])):
            assert action != "*" and not action.endswith(":*"), f"{logical_id} grants {action}"
        for arn in role["Properties"].get("ManagedPolicyArns", []):
            assert "AdministratorAccess" not in str(arn) and "FullAccess" not in str(arn), logical_id


# The console's static files and the OpenAPI document hold no data (the page asks the API for
# everything, with a key).
PUBLIC_ROUTES = {("get", "/console"), ("get", "/console/{proxy+}"), ("get", "/openapi.json")}


def test_every_api_route_goes_through_the_authorizer_but_the_console_files(template: Template) -> None:
    (api,) = resources_of(template, "AWS::ApiGateway::RestApi").values()
    paths = api["Properties"]["Body"]["paths"]
    assert paths, "the API has no routes"
    for path, methods in paths.items():
        for method, operation in methods.items():
            # Keyed routes: the authorizer, and the API key it returns (usage plans, per key throttling).
            expected: list[Any] = []  # public: neither the authorizer nor an API key
            if (method, path) not in PUBLIC_ROUTES:
                expected = [{"ApiKeyAuthorizer": []}, {"api_key": []}]
            assert operation.get("security") == expected, f"{method} {path}"


def test_every_gateway_response_has_the_platform_error_shape(template: Template) -> None:
    # Given the answers API Gateway gives itself (401, 403, 404, 413, 429, 4xx, 5xx)
    (api,) = resources_of(template, "AWS::ApiGateway::RestApi").values()
    responses = api["Properties"]["Body"]["x-amazon-apigateway-gateway-responses"]
    assert {
        "UNAUTHORIZED",
        "ACCESS_DENIED",
        "THROTTLED",
        "QUOTA_EXCEEDED",
        "DEFAULT_4XX",
        "DEFAULT_5XX",
    } <= set(responses)
    for kind, response in responses.items():
        # When its template is rendered as API Gateway renders it
        rendered = (
            response["responseTemplates"]["application/json"]
            .replace("$context.error.messageString", json.dumps('a "quoted" message'))
            .replace("$context.error.responseType", kind)
        )
        # Then it is {code, message, details}, details null or an object
        body = json.loads(rendered)
        assert set(body) == {"code", "message", "details"}, kind
        assert body["details"] is None or isinstance(body["details"], dict), kind


def test_every_table_has_ttl_or_is_kept_forever_on_purpose(template: Template) -> None:
    # Evaluations are the record behind a production decision (who judged what, before it shipped):
    # kept like the registry's history, and Retained on stack deletion.
    kept_forever = {"ApiKeysTable", "EvaluationsTable"}
    for logical_id, table in resources_of(template, "AWS::DynamoDB::Table").items():
        has_ttl = table["Properties"].get("TimeToLiveSpecification", {}).get("Enabled")
        assert has_ttl or logical_id in kept_forever, logical_id


# -- production data and operations (issue 12) -----------------------------------------------------

DATA_RESOURCE_TYPES = ("AWS::DynamoDB::Table", "AWS::S3::Bucket", "AWS::SQS::Queue")
# The authorizer's Errors count every rejected key (API Gateway's 401 is an "Unauthorized" error);
# its real failures are 500s (AUTHORIZER_FAILURE), which the API's 5xx alarm catches.
NO_ERRORS_ALARM = {"AuthorizerFunction"}


@pytest.fixture(scope="module")
def resolver(template: Template) -> IntrinsicResolver:
    return IntrinsicResolver(template)


def alarms_on(template: Template, resolver: IntrinsicResolver, namespace: str, metric: str) -> dict[str, Any]:
    """Alarms on ``namespace/metric``, by their resolved dimensions (one name -> value dict each)."""
    found = {}
    for logical_id, alarm in resources_of(template, "AWS::CloudWatch::Alarm").items():
        properties = alarm["Properties"]
        if (properties.get("Namespace"), properties.get("MetricName")) == (namespace, metric):
            found[logical_id] = {d["Name"]: resolver.resolve(d["Value"]) for d in properties["Dimensions"]}
    return found


def dead_letter_queues(template: Template) -> set[str]:
    """Queues that receive what failed: redrive targets and asynchronous invocations' OnFailure."""
    targets = {
        q["Properties"]["RedrivePolicy"]["deadLetterTargetArn"]["Fn::GetAtt"][0]
        for q in resources_of(template, "AWS::SQS::Queue").values()
        if "RedrivePolicy" in q.get("Properties", {})
    }
    for config in resources_of(template, "AWS::Lambda::EventInvokeConfig").values():
        destination = (
            config["Properties"].get("DestinationConfig", {}).get("OnFailure", {}).get("Destination")
        )
        if isinstance(destination, dict) and "Fn::GetAtt" in destination:
            targets.add(destination["Fn::GetAtt"][0])
    return targets


def test_every_table_bucket_and_queue_is_kept_when_the_stack_goes_or_replaces_it(template: Template) -> None:
    for kind in DATA_RESOURCE_TYPES:
        for logical_id, resource in resources_of(template, kind).items():
            assert resource.get("DeletionPolicy") == "Retain", logical_id
            assert resource.get("UpdateReplacePolicy") == "Retain", logical_id


def test_every_function_has_a_log_group_with_a_retention(
    template: Template, resolver: IntrinsicResolver
) -> None:
    log_groups = {
        resolver.resolve(group["Properties"].get("LogGroupName")): group
        for group in resources_of(template, "AWS::Logs::LogGroup").values()
    }
    for logical_id in resources_of(template, "AWS::Lambda::Function"):
        group = log_groups.get(f"/aws/lambda/{resolver.physical_name(logical_id)}")
        assert group is not None, (
            f"{logical_id} has no log group: Lambda would make one that keeps logs for ever"
        )
        assert group["Properties"].get("RetentionInDays"), logical_id


def test_no_two_log_groups_claim_the_same_name(template: Template, resolver: IntrinsicResolver) -> None:
    # Given every log group the stack creates
    names = [
        resolver.resolve(group["Properties"].get("LogGroupName"))
        for group in resources_of(template, "AWS::Logs::LogGroup").values()
    ]

    # Then each name is created once: a second resource with the same name fails the deploy
    duplicates = sorted({name for name in names if names.count(name) > 1})
    assert not duplicates, f"log groups created twice: {duplicates}"


def test_every_function_alarms_on_its_errors_and_throttles(
    template: Template, resolver: IntrinsicResolver
) -> None:
    errors = {d.get("FunctionName") for d in alarms_on(template, resolver, "AWS/Lambda", "Errors").values()}
    throttles = {
        d.get("FunctionName") for d in alarms_on(template, resolver, "AWS/Lambda", "Throttles").values()
    }
    for logical_id in resources_of(template, "AWS::Lambda::Function"):
        name = resolver.physical_name(logical_id)
        assert name in throttles, f"{logical_id} has no Throttles alarm"
        if logical_id not in NO_ERRORS_ALARM:
            assert name in errors, f"{logical_id} has no Errors alarm"


def test_every_dead_letter_queue_alarms_on_its_first_message(
    template: Template, resolver: IntrinsicResolver
) -> None:
    alarms = alarms_on(template, resolver, "AWS/SQS", "ApproximateNumberOfMessagesVisible")
    watched = {
        dimensions["QueueName"]
        for logical_id, dimensions in alarms.items()
        if template.resources[logical_id]["Properties"]["Threshold"] == 0
        and template.resources[logical_id]["Properties"]["ComparisonOperator"] == "GreaterThanThreshold"
    }
    queues = dead_letter_queues(template)
    assert {"ChunkDeadLetterQueue", "ArchiveDeadLetterQueue"} <= queues
    for logical_id in queues:
        assert resolver.physical_name(logical_id) in watched, f"{logical_id} has no depth alarm"


def test_the_archive_queue_alarms_when_its_oldest_message_gets_old(
    template: Template, resolver: IntrinsicResolver
) -> None:
    alarms = alarms_on(template, resolver, "AWS/SQS", "ApproximateAgeOfOldestMessage")
    assert {"QueueName": resolver.physical_name("ArchiveQueue")} in alarms.values()


def test_the_api_alarms_on_its_5xx_rate_by_its_own_name_and_stage(
    template: Template, resolver: IntrinsicResolver
) -> None:
    (api,) = resources_of(template, "AWS::ApiGateway::RestApi").values()
    (stage,) = resources_of(template, "AWS::ApiGateway::Stage").values()
    expected = {
        "ApiName": resolver.resolve(api["Properties"]["Name"]),
        "Stage": resolver.resolve(stage["Properties"]["StageName"]),
    }
    assert expected in alarms_on(template, resolver, "AWS/ApiGateway", "5XXError").values()


def test_every_alarm_tells_the_alerts_topic_when_it_fires_and_when_it_clears(template: Template) -> None:
    alarms = resources_of(template, "AWS::CloudWatch::Alarm")
    assert alarms
    for logical_id, alarm in alarms.items():
        assert {"Ref": "AlertsTopic"} in alarm["Properties"]["AlarmActions"], logical_id
        assert {"Ref": "AlertsTopic"} in alarm["Properties"]["OKActions"], logical_id
        assert alarm["Properties"]["TreatMissingData"] == "notBreaching", logical_id


def render_access_log(format_: str, values: dict[str, str]) -> str:
    """The line API Gateway writes: every $context variable replaced by its value ('-' when unset)."""
    return re.sub(r"\$context\.[A-Za-z0-9_.]+", lambda m: values.get(m.group(0), "-"), format_)


def test_the_access_log_is_one_json_line_per_request_naming_the_callers_key(
    template: Template, resolver: IntrinsicResolver
) -> None:
    # Given the stage's access log format and the authorizer's context for a caller
    (stage,) = resources_of(template, "AWS::ApiGateway::Stage").values()
    setting = stage["Properties"]["AccessLogSetting"]
    format_ = setting["Format"]
    principal = Principal(key_id="k_2f9a", name="churn-service", scopes=frozenset({Scope.PREDICT}))
    context = authorizer_context(principal)
    values = {f"$context.authorizer.{key}": value for key, value in context.items()}
    # an error message with a quote in it, as API Gateway quotes and escapes messageString
    values["$context.error.messageString"] = json.dumps('Invalid key "x"')

    # When API Gateway writes a line for a request
    line = render_access_log(format_, values)

    # Then it is one line of JSON with the caller's key id and name
    assert "\n" not in format_
    record = json.loads(line)
    assert record["key_id"] == "k_2f9a"
    assert record["key_name"] == "churn-service"
    assert record["error"] == 'Invalid key "x"'
    # and every authorizer property it logs is one the authorizer returns
    builtins = {"principalId", "status", "latency", "integrationLatency", "integrationStatus", "error"}
    for prop in re.findall(r"\$context\.authorizer\.([A-Za-z0-9_]+)", format_):
        assert prop in context or prop in builtins, prop
    # and the log group it goes to keeps lines for a set time and outlives the stack
    group = template.resources[setting["DestinationArn"]["Fn::GetAtt"][0]]
    assert group["Properties"].get("RetentionInDays")
    assert group["DeletionPolicy"] == "Retain"
