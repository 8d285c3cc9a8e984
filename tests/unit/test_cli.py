"""The CLI's own rules, without a cloud: the project root, global options anywhere, exit codes,
one-line messages, the table layout, ``local up``'s banner, ``monitor report --open``."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import pytest

from mlambda.client import (
    AuthenticationError,
    ConflictError,
    InvalidRequestError,
    NotFoundError,
    PermissionDeniedError,
    RateLimitedError,
    ServerError,
    TransportError,
    VersionFailedError,
    WaitTimeoutError,
)
from mlambda_local.cli import _message, build_parser, main
from mlambda_local.client import CliError, Project, exit_code
from mlambda_local.commands import local as local_commands
from mlambda_local.commands import monitor as monitor_commands
from mlambda_local.output import table


def test_the_project_root_is_the_nearest_directory_up_with_a_template(tmp_path: Path) -> None:
    # Given a project with a template, and a directory deep inside it
    (tmp_path / "template.yaml").write_text("Resources: {}\n")
    deep = tmp_path / "notebooks" / "2026"
    deep.mkdir(parents=True)
    # When
    project = Project.find(deep, environ={})
    # Then
    assert project.root == tmp_path.resolve()
    assert (project.data_dir, project.template) == (
        tmp_path.resolve() / ".mlambda",
        tmp_path.resolve() / "template.yaml",
    )


def test_mlambda_home_names_the_root_and_flags_override_either_part(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    assert Project.find(tmp_path, environ={"MLAMBDA_HOME": str(home)}).data_dir == home.resolve() / ".mlambda"
    chosen = Project.find(
        tmp_path, data_dir="/srv/state", template="/srv/t.yaml", environ={"MLAMBDA_HOME": str(home)}
    )
    assert (chosen.data_dir, chosen.template) == (Path("/srv/state"), Path("/srv/t.yaml"))


def test_without_a_project_the_current_directory_is_the_root(tmp_path: Path) -> None:
    assert Project.find(tmp_path, environ={}).root == tmp_path.resolve()


@pytest.mark.parametrize(
    ("argv", "output", "url"),
    [
        (["-o", "json", "--api-url", "http://a/v1", "models", "list"], "json", "http://a/v1"),
        (["models", "list", "-o", "json", "--api-url", "http://a/v1"], "json", "http://a/v1"),
        (["models", "-o", "json", "list"], "json", None),
        (["-o", "json", "models", "list", "--output", "table"], "table", None),
        (["models", "list"], "table", None),
    ],
)
def test_global_options_are_taken_before_or_after_the_command(
    argv: list[str], output: str, url: str | None
) -> None:
    args = build_parser().parse_args(argv)
    assert (args.output, args.api_url, args.run.__name__) == (output, url, "models_list")


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (AuthenticationError(401, "unauthorized", "no key"), 3),
        (PermissionDeniedError(403, "forbidden", "scope"), 3),
        (NotFoundError(404, "model_not_found", "no model"), 4),
        (ConflictError(409, "conflict", "moved"), 5),
        (InvalidRequestError(422, "invalid", "bad"), 5),
        (VersionFailedError("m", 1, "invalid_model", "not ONNX"), 5),
        (RateLimitedError(429, "too_many_requests", "slow down"), 6),
        (ServerError(502, "bad_gateway", "crashed"), 6),
        (TransportError("refused", sent=False), 6),
        (WaitTimeoutError("still running"), 1),
        (CliError("bad flag"), 2),
        (CliError("no key", 3), 3),
    ],
)
def test_errors_map_to_the_documented_exit_codes(error: Exception, code: int) -> None:
    assert exit_code(error) == code


def test_missing_aws_credentials_and_a_missing_extra_are_one_line_messages() -> None:
    from botocore.exceptions import NoCredentialsError

    assert _message(NoCredentialsError()) == (
        3,
        "AWS: Unable to locate credentials (configure credentials: aws configure, or AWS_PROFILE)",
    )
    assert _message(ModuleNotFoundError("No module named 'moto'", name="moto")) == (
        2,
        "this command needs moto: pip install 'mlambda[local]'",
    )
    assert _message(ModuleNotFoundError("No module named 'pyarrow'", name="pyarrow"))[1].endswith(
        "'mlambda[data]'"
    )  # type: ignore[index]
    assert _message(ModuleNotFoundError("No module named 'mlambda.nowhere'", name="mlambda.nowhere")) is None
    assert _message(KeyError("bug")) is None


def test_a_list_is_laid_out_in_columns_and_an_object_as_key_value_lines() -> None:
    rows = [{"name": "churn", "latest": "v3", "tags": {"team": "growth"}}, {"name": "fraud", "latest": None}]
    assert table(rows) == [
        "NAME   LATEST  TAGS",
        'churn  v3      {"team":"growth"}',
        "fraud  -       -",
    ]
    assert table({"key_id": "abc", "scopes": ["predict"]}) == ["key_id  abc", 'scopes  ["predict"]']


def test_local_up_tells_the_buckets_and_the_environment_for_the_aws_cli_and_boto3(tmp_path: Path) -> None:
    # Given a cloud on the embedded moto
    class Cloud:
        region = "us-east-1"
        endpoint_url = "http://127.0.0.1:5000"
        api_url = "http://127.0.0.1:3000/v1"
        outputs = {
            "BatchBucketName": "mlambda-local-batch",
            "ApiKeysTableName": "keys",
            "DataBucketName": "mlambda-local-data",
        }

    args = argparse.Namespace(endpoint_url=None, from_build=None, in_process=False)
    # When
    info = local_commands.up_info(Cloud(), "mlk.a.b", tmp_path, args)
    lines = local_commands.up_lines(info)
    # Then
    assert info["buckets"] == {
        "BatchBucketName": "mlambda-local-batch",
        "DataBucketName": "mlambda-local-data",
    }
    assert "  export AWS_ENDPOINT_URL=http://127.0.0.1:5000" in lines
    assert "  export AWS_DEFAULT_REGION=us-east-1" in lines
    assert "  export AWS_ACCESS_KEY_ID=testing" in lines and "  export MLAMBDA_API_KEY=mlk.a.b" in lines
    assert "  aws s3 ls s3://mlambda-local-batch/" in lines
    # And against an endpoint of the user's own, no dummy credentials are offered
    own = local_commands.up_info(
        Cloud(),
        "k",
        tmp_path,
        argparse.Namespace(endpoint_url="http://ls:4566", from_build=None, in_process=False),
    )
    assert "AWS_ACCESS_KEY_ID" not in own["environment"]


def test_monitor_report_open_without_a_browser_says_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given no browser on this machine
    class Reports:
        def monitoring_report(self, model: str) -> str:
            return f"<html>{model}</html>"

    monkeypatch.setattr(monitor_commands, "api", lambda _args: Reports())
    monkeypatch.setattr(monitor_commands.webbrowser, "open", lambda _url: False)
    target = tmp_path / "report.html"
    # When
    code = main(["monitor", "report", "churn", "--open", "--file", str(target), "--data-dir", str(tmp_path)])
    # Then the report is written and the missing browser named
    assert code == 2
    assert target.read_text() == "<html>churn</html>"
    assert "no web browser could be started here" in capsys.readouterr().err


def test_every_command_has_the_global_options(capsys: pytest.CaptureFixture[str]) -> None:
    parser = build_parser()
    leaves: list[Any] = []
    pending = [parser]
    while pending:
        current = pending.pop()
        children = [a for a in current._actions if isinstance(a, argparse._SubParsersAction)]
        if not children:
            leaves.append(current)
        for action in children:
            pending.extend(dict.fromkeys(action.choices.values()))
    assert len(leaves) > 30
    for leaf in leaves:
        options = {o for a in leaf._actions for o in a.option_strings}
        assert {"--output", "--api-url", "--api-key", "--data-dir", "--debug"} <= options, leaf.prog
