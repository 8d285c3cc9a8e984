"""Unit tests of the pieces with no I/O: schedules, policies, intrinsics, template loading."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from mlambda_local.cloud import CronExpression, RateExpression, TemplateError, load_template, parse_schedule
from mlambda_local.cloud.apigateway import _path_pattern, evaluate_policy
from mlambda_local.cloud.template import IntrinsicResolver, load_yaml

ARN = "arn:aws:execute-api:us-east-1:123456789012:abc123/v1/GET/items/x"


def test_cron_every_weekday_morning_skips_weekend() -> None:
    # Given: 08:30 on MON-FRI
    cron = parse_schedule("cron(30 8 ? * MON-FRI *)")
    # When: asking for the next time after Friday 09:00
    after = datetime(2030, 1, 4, 9, 0, tzinfo=UTC)  # a Friday
    # Then: it is Monday 08:30
    assert isinstance(cron, CronExpression)
    assert cron.next_after(after) == datetime(2030, 1, 7, 8, 30, tzinfo=UTC)


def test_cron_supports_steps_lists_and_ranges() -> None:
    # Given
    cron = CronExpression.parse("0/15 1,13 1-3 JAN,JUL ? 2030-2031")
    # When / Then
    assert cron.minutes == frozenset({0, 15, 30, 45})
    assert cron.hours == frozenset({1, 13})
    assert cron.days_of_month == frozenset({1, 2, 3})
    assert cron.months == frozenset({1, 7})
    assert cron.matches(datetime(2030, 7, 2, 13, 45, tzinfo=UTC))
    assert not cron.matches(datetime(2030, 7, 4, 13, 45, tzinfo=UTC))
    assert cron.next_after(datetime(2031, 7, 3, 13, 45, tzinfo=UTC)) is None


def test_cron_day_of_week_numbers_start_on_sunday() -> None:
    # Given: day-of-week 1 is Sunday on EventBridge
    cron = CronExpression.parse("0 0 ? * 1 *")
    # Then
    assert cron.matches(datetime(2030, 1, 6, 0, 0, tzinfo=UTC))  # a Sunday
    assert not cron.matches(datetime(2030, 1, 7, 0, 0, tzinfo=UTC))


@pytest.mark.parametrize(
    "expression",
    ["cron(0 3 * * * *)", "cron(0 3 * *)", "cron(0 3 L * ? *)", "cron(0 3 ? * 2#1 *)", "cron(61 3 * * ? *)"],
)
def test_cron_rejects_what_eventbridge_rejects_or_we_cannot_run(expression: str) -> None:
    # When / Then
    with pytest.raises(ValueError):
        parse_schedule(expression)


@pytest.mark.parametrize(
    ("expression", "seconds"),
    [("rate(1 minute)", 60), ("rate(5 minutes)", 300), ("rate(2 hours)", 7200), ("rate(1 day)", 86400)],
)
def test_rate_expressions_parse_to_seconds(expression: str, seconds: int) -> None:
    assert parse_schedule(expression) == RateExpression(seconds)


@pytest.mark.parametrize("expression", ["rate(1 minutes)", "rate(5 minute)", "rate(0 hours)", "rate(1 week)"])
def test_rate_rejects_malformed_expressions(expression: str) -> None:
    with pytest.raises(ValueError):
        parse_schedule(expression)


def test_policy_explicit_deny_wins_over_allow() -> None:
    # Given
    policy = {
        "Statement": [
            {"Effect": "Allow", "Action": "execute-api:Invoke", "Resource": "arn:aws:execute-api:*"},
            {"Effect": "Deny", "Action": ["execute-api:*"], "Resource": ["*/v1/GET/items/*"]},
        ]
    }
    # When / Then
    assert evaluate_policy(policy, ARN) is False


def test_policy_without_matching_allow_denies_implicitly() -> None:
    policy = {"Statement": {"Effect": "Allow", "Action": "execute-api:Invoke", "Resource": "*/v1/POST/*"}}
    assert evaluate_policy(policy, ARN) is None
    assert (
        evaluate_policy({"Statement": [{**policy["Statement"], "Resource": "*/v1/*/items/?"}]}, ARN) is True
    )


def test_greedy_path_parameter_spans_segments() -> None:
    # Given
    pattern = _path_pattern("/files/{proxy+}")
    # When
    match = pattern.match("/files/a/b/c.txt")
    # Then
    assert match is not None
    assert _path_pattern("/items/{name}").match("/items/a/b") is None


def test_short_form_tags_load_as_long_form(tmp_path: Path) -> None:
    # Given
    path = tmp_path / "t.yaml"
    path.write_text(
        "Resources:\n  Q:\n    Type: AWS::SQS::Queue\n    Properties:\n"
        "      QueueName: !Sub '${AWS::StackName}-q'\n      Tags: [!GetAtt A.Arn, !Ref B, !Select [0, [x]]]\n"
    )
    # When
    loaded = load_yaml(path)
    # Then
    properties = loaded["Resources"]["Q"]["Properties"]
    assert properties["QueueName"] == {"Fn::Sub": "${AWS::StackName}-q"}
    assert properties["Tags"] == [{"Fn::GetAtt": ["A", "Arn"]}, {"Ref": "B"}, {"Fn::Select": [0, ["x"]]}]


def test_resolver_handles_conditions_sub_join_select_split_and_maps(tmp_path: Path) -> None:
    # Given
    path = tmp_path / "template.yaml"
    path.write_text(
        """
Parameters:
  Env: {Type: String, Default: dev}
  Names: {Type: CommaDelimitedList, Default: "a,b"}
Mappings:
  Sizes: {dev: {memory: "256"}}
Conditions:
  IsDev: !Equals [!Ref Env, dev]
  IsProd: !Not [!Condition IsDev]
  Either: !Or [!Condition IsDev, !Condition IsProd]
Resources:
  Dlq: {Type: AWS::SQS::Queue}
  Queue:
    Type: AWS::SQS::Queue
    Properties:
      QueueName: !If [IsDev, !Sub "${AWS::StackName}-${Env}-work", !Ref AWS::NoValue]
      RedrivePolicy: {deadLetterTargetArn: !GetAtt Dlq.Arn, maxReceiveCount: 3}
  Only:
    Type: AWS::SNS::Topic
    Condition: IsProd
Outputs:
  Joined: {Value: !Join ["/", [!Select [1, !Ref Names], !FindInMap [Sizes, !Ref Env, memory]]]}
  Split: {Value: !Select [2, !Split [":", !GetAtt Queue.Arn]]}
  Url: {Value: !GetAtt Queue.QueueUrl}
  Sub: {Value: !Sub ["${Q}|${Dlq.Arn}|${!Literal}", {Q: !GetAtt Queue.QueueName}]}
  Either: {Value: !If [Either, "yes", "no"]}
"""
    )
    template = load_template(path, stack_name="st", parameters={"Env": "dev"})
    resolver = IntrinsicResolver(template, queue_url_base="http://127.0.0.1:5000")
    # When
    outputs = resolver.outputs()
    # Then
    assert outputs == {
        "Joined": "b/256",
        "Split": "sqs",
        "Url": "http://127.0.0.1:5000/123456789012/st-dev-work",
        "Sub": "st-dev-work|arn:aws:sqs:us-east-1:123456789012:st-Dlq|${Literal}",
        "Either": "yes",
    }
    assert not resolver.is_enabled(template.resources["Only"])


def test_import_value_is_a_clear_error(tmp_path: Path) -> None:
    # Given
    path = tmp_path / "template.yaml"
    path.write_text(
        "Resources:\n  T:\n    Type: AWS::SNS::Topic\n    Properties:\n      TopicName: !ImportValue shared\n"
    )
    resolver = IntrinsicResolver(load_template(path))
    # When / Then
    with pytest.raises(TemplateError, match="ImportValue"):
        resolver.physical_name("T")


def test_the_expansion_cached_in_the_data_dir_is_the_translators_and_follows_template_changes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given: the project's template expanded once with a cache directory
    from mlambda_local.cloud import template as template_module
    from tests.conftest import REPO_ROOT

    fresh = load_template(REPO_ROOT / "template.yaml")
    first = load_template(REPO_ROOT / "template.yaml", cache_dir=tmp_path)
    translations: list[str] = []
    translate = template_module._translate
    monkeypatch.setattr(
        template_module,
        "_translate",
        lambda path, *rest: translations.append(path.name) or translate(path, *rest),
    )
    # When: loaded again (from the cache), then another template, then that one edited
    cached = load_template(REPO_ROOT / "template.yaml", cache_dir=tmp_path)
    path = tmp_path / "template.yaml"
    path.write_text("Resources:\n  T:\n    Type: AWS::SNS::Topic\n")
    load_template(path, cache_dir=tmp_path)
    path.write_text("Resources:\n  T:\n    Type: AWS::SQS::Queue\n")
    edited = load_template(path, cache_dir=tmp_path)
    # Then: the cached expansion is the translator's, and each change is translated again
    assert first.translated == cached.translated == fresh.translated
    assert translations == ["template.yaml", "template.yaml"]
    assert edited.resources["T"]["Type"] == "AWS::SQS::Queue"


class _ListingS3:
    """An S3 client that records which buckets were listed (and holds nothing)."""

    def __init__(self) -> None:
        self.listed: list[str] = []

    def get_paginator(self, _name: str) -> _ListingS3:
        return self

    def paginate(self, Bucket: str, Prefix: str) -> list[dict[str, list[object]]]:
        self.listed.append(Bucket)
        return [{"Versions": [], "DeleteMarkers": []}]


def test_the_lifecycle_sweep_is_no_part_of_the_start_and_comes_soon_after() -> None:
    # Given: one rule, and a sweeper whose first sweep comes 0.2 s after its start
    from mlambda_local.cloud.lifecycle import ExpirationRule, LifecycleSweeper

    from .support import wait_for

    s3 = _ListingS3()
    rule = ExpirationRule("uploads", "expire", "uploads/", 1, None)
    sweeper = LifecycleSweeper(s3, [rule], clock=lambda: datetime(2030, 1, 1, tzinfo=UTC), first_sweep=0.2)
    # When
    sweeper.start()
    try:
        # Then: nothing listed while starting, then the bucket swept
        assert s3.listed == []
        wait_for(lambda: s3.listed, timeout=10)
        assert set(s3.listed) == {"uploads"}
    finally:
        sweeper.stop()


class _ThrottledFunction:
    """A function whose reserved concurrency is all in use: Lambda refuses its synchronous calls."""

    def __init__(self, spec: object) -> None:
        self.spec = spec
        self.calls: list[bool] = []

    def invoke(self, event: object, *, throttle: bool = False) -> object:
        from mlambda_local.cloud.errors import FunctionInvocationError

        self.calls.append(throttle)
        raise FunctionInvocationError(
            "ApiFunction", "TooManyRequestsException: Rate Exceeded.", error_type="TooManyRequestsException"
        )


def test_a_throttled_function_behind_the_api_is_a_500_as_a_rest_proxy_answers_it() -> None:
    # Given: the fixture's public /health route, its function throttled
    from mlambda_local.cloud.apigateway import HttpRequest, RestApi
    from mlambda_local.cloud.functions import function_specs

    from .support import FIXTURE_TEMPLATE

    template = load_template(FIXTURE_TEMPLATE, stack_name="fx")
    resolver = IntrinsicResolver(template)
    functions = {spec.logical_id: _ThrottledFunction(spec) for spec in function_specs(template, resolver)}
    (api_id,) = [lid for lid, r in template.resources.items() if r.get("Type") == "AWS::ApiGateway::RestApi"]
    api = RestApi.from_template(api_id, template, resolver, functions)  # type: ignore[arg-type]
    # When
    response = api.handle(HttpRequest("GET", "/health", [], b"", "127.0.0.1"), "/health")
    # Then: called as a synchronous invoker, and answered as API Gateway answers Lambda's 429
    assert functions["ApiFunction"].calls == [True]
    assert response.status == 500
    assert ("x-amzn-ErrorType", "INTEGRATION_FAILURE") in response.headers


def test_the_control_api_answers_a_throttled_invoke_as_lambda_s_invoke_does(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given: a cloud whose function is throttled, and the control token
    from mlambda_local.cloud import LocalCloud
    from mlambda_local.cloud.apigateway import HttpRequest
    from mlambda_local.cloud.control import CONTROL_HEADER
    from mlambda_local.cloud.errors import FunctionInvocationError

    from .support import FIXTURE_TEMPLATE

    cloud = LocalCloud(FIXTURE_TEMPLATE, tmp_path)

    def throttled(function: str, event: object = None) -> object:
        raise FunctionInvocationError(
            function, "TooManyRequestsException: Rate Exceeded.", error_type="TooManyRequestsException"
        )

    monkeypatch.setattr(cloud, "invoke", throttled)
    headers = [(CONTROL_HEADER, cloud._token)]
    # When
    response = cloud._control(
        HttpRequest("POST", "/_mlambda/invoke/ApiFunction", headers, b"{}", "127.0.0.1")
    )
    # Then
    assert response.status == 429
    assert ("Retry-After", "1") in response.headers
    assert json.loads(response.body)["code"] == "throttled"


def test_the_cli_and_the_cloud_module_load_without_moto_boto3_the_translator_or_the_schemas() -> None:
    # Given: what a `mlambda` command imports before it runs, and what local up imports before
    # its first workers start
    import subprocess
    import sys

    probe = (
        "import sys\n"
        "from mlambda_local.cli import build_parser\n"
        "build_parser()\n"
        "import mlambda_local.cloud.local_cloud\n"
        "heavy = ('moto', 'samtranslator', 'boto3', 'botocore', 'mlambda.schemas', 'mlambda.config')\n"
        "print(sorted({m.split('.')[0] if not m.startswith('mlambda.') else '.'.join(m.split('.')[:2])"
        " for m in sys.modules if m.startswith(heavy)}))\n"
    )
    # When
    loaded = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    # Then: none of them (each is tenths of a second of a start)
    assert loaded.stdout.strip() == "[]"
