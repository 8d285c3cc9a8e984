"""How the platform reaches AWS: samconfig.toml's stages and the pipeline in .github/workflows.

The pipeline cannot run here, so every workflow file goes through two linters that work offline:
check-jsonschema with GitHub's workflow schema (vendored in the package) and zizmor's security
audit. The tests after them check what neither linter knows: the pipeline's own contract.
"""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

from mlambda_local.cloud.template import load_template
from tests.conftest import REPO_ROOT

SAMCONFIG = REPO_ROOT / "samconfig.toml"
WORKFLOWS = sorted((REPO_ROOT / ".github" / "workflows").glob("*.y*ml"))
PIPELINE = REPO_ROOT / ".github" / "workflows" / "pipeline.yml"
STAGES = ("default", "staging", "prod")
BIN = Path(sys.executable).parent
PINNED = re.compile(r"^[\w.-]+/[\w.-]+(/[\w./-]+)?@[0-9a-f]{40}$")


def stage_settings(stage: str) -> dict[str, Any]:
    """What ``sam deploy --config-env <stage>`` reads: the stage's global and deploy parameters."""
    config = tomllib.loads(SAMCONFIG.read_text())[stage]
    return {**config.get("global", {}).get("parameters", {}), **config["deploy"]["parameters"]}


def overrides(stage: str) -> dict[str, str]:
    """The stage's parameter_overrides ("Key=Value Key=Value", as SAM CLI splits them)."""
    pairs = (item.split("=", 1) for item in shlex.split(stage_settings(stage)["parameter_overrides"]))
    return dict(pairs)


def workflow(path: Path) -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(path.read_text())
    return loaded


def lint(path: Path) -> list[str]:
    """Every finding of both linters on ``path`` (empty when clean)."""
    findings = []
    schema = subprocess.run(
        [str(BIN / "check-jsonschema"), "--builtin-schema", "vendor.github-workflows", str(path)],
        capture_output=True,
        text=True,
        check=False,
    )
    if schema.returncode != 0:
        findings.append(f"check-jsonschema: {schema.stdout}{schema.stderr}")
    audit = subprocess.run(
        [str(BIN / "zizmor"), "--offline", "--persona=pedantic", "--no-progress", str(path)],
        capture_output=True,
        text=True,
        check=False,
    )
    if audit.returncode != 0:
        findings.append(f"zizmor: {audit.stdout}{audit.stderr}")
    return findings


# -- samconfig.toml ----------------------------------------------------------------------------------


def test_every_stage_is_its_own_stack_with_its_own_bucket_prefix() -> None:
    stacks = [stage_settings(stage)["stack_name"] for stage in STAGES]
    prefixes = [overrides(stage)["ResourcePrefix"] for stage in STAGES]
    assert len(set(stacks)) == len(STAGES)
    assert len(set(prefixes)) == len(STAGES), "bucket names are global: stages need their own prefix"


@pytest.mark.parametrize("stage", STAGES)
def test_a_stages_parameters_are_the_templates_and_allowed_by_it(stage: str) -> None:
    declared = load_template(REPO_ROOT / "template.yaml").original["Parameters"]
    for name, value in overrides(stage).items():
        assert name in declared, f"{stage}: {name} is not a template parameter"
        if "AllowedValues" in declared[name]:
            assert value in [str(v) for v in declared[name]["AllowedValues"]], f"{stage}: {name}={value}"
        if "AllowedPattern" in declared[name]:
            assert re.fullmatch(declared[name]["AllowedPattern"], value), f"{stage}: {name}={value}"
    # and the template expands with them, as SAM would deploy it
    expanded = load_template(REPO_ROOT / "template.yaml", parameters=overrides(stage))
    assert expanded.parameters["ResourcePrefix"] == overrides(stage)["ResourcePrefix"]


@pytest.mark.parametrize("stage", STAGES)
def test_a_stage_deploys_with_iam_capability_and_an_artifact_bucket(stage: str) -> None:
    settings = stage_settings(stage)
    assert "CAPABILITY_IAM" in settings["capabilities"].split()
    assert settings["resolve_s3"] is True
    assert settings["fail_on_empty_changeset"] is False


def test_a_person_deploying_prod_by_hand_reviews_the_change_set() -> None:
    assert stage_settings("prod")["confirm_changeset"] is True
    assert stage_settings("staging")["confirm_changeset"] is False


# -- the workflows -----------------------------------------------------------------------------------


def test_there_is_a_pipeline_workflow() -> None:
    assert PIPELINE in WORKFLOWS


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
def test_every_workflow_passes_the_schema_and_the_security_audit(path: Path) -> None:
    assert lint(path) == []


def test_the_linters_catch_a_broken_workflow_and_an_injectable_one(tmp_path: Path) -> None:
    # Given a workflow with a misspelt key, and one that pastes a PR title into a shell
    broken = tmp_path / "broken.yml"
    broken.write_text("on: push\njobs:\n  a:\n    run-on: ubuntu-latest\n    steps:\n      - run: make\n")
    injectable = tmp_path / "injectable.yml"
    injectable.write_text(
        "on: pull_request_target\npermissions: {}\njobs:\n  a:\n    runs-on: ubuntu-latest\n"
        "    steps:\n      - run: echo '${{ github.event.pull_request.title }}'\n"
    )
    # When / Then
    assert any(finding.startswith("check-jsonschema") for finding in lint(broken))
    assert any("template-injection" in finding for finding in lint(injectable))


def test_the_pipeline_goes_test_build_staging_production() -> None:
    jobs = workflow(PIPELINE)["jobs"]
    assert jobs["build"]["needs"] == "test"
    assert jobs["staging"]["needs"] == "build"
    assert jobs["production"]["needs"] == "staging"
    assert "make test" in " ".join(step.get("run", "") for step in jobs["test"]["steps"])
    assert "sam build" in " ".join(step.get("run", "") for step in jobs["build"]["steps"])
    # pull requests are tested, never deployed
    assert "pull_request" in jobs["build"]["if"]


def test_production_waits_for_approval_in_its_environment() -> None:
    jobs = workflow(PIPELINE)["jobs"]
    assert jobs["production"]["environment"]["name"] == "production"
    assert jobs["staging"]["environment"]["name"] == "staging"


@pytest.mark.parametrize(("job", "stage"), [("staging", "staging"), ("production", "prod")])
def test_each_deploy_assumes_its_environments_role_by_oidc_and_smoke_tests_its_own_stack(
    job: str, stage: str
) -> None:
    definition = workflow(PIPELINE)["jobs"][job]
    steps = definition["steps"]
    # OIDC: the job may mint an ID token, and trades it for a role; no stored AWS keys anywhere
    assert definition["permissions"]["id-token"] == "write"
    (credentials,) = [s for s in steps if "configure-aws-credentials" in s.get("uses", "")]
    assert credentials["with"]["role-to-assume"] == "${{ vars.AWS_DEPLOY_ROLE_ARN }}"
    assert "aws-access-key-id" not in credentials["with"]
    assert "secrets.AWS" not in PIPELINE.read_text()
    # it deploys the build job's artifact with the stage's config, then smoke-tests that stack
    runs = "\n".join(s.get("run", "") for s in steps)
    assert any("download-artifact" in s.get("uses", "") for s in steps)
    assert f"sam deploy --config-env {stage}" in runs
    stack = stage_settings(stage)["stack_name"]
    assert f"infra/smoke_test.sh {stack}" in runs
    assert f"--stack-name {stack}" in runs


def test_every_action_is_pinned_to_a_commit() -> None:
    for path in WORKFLOWS:
        for job in workflow(path)["jobs"].values():
            for step in job.get("steps", []):
                if "uses" in step:
                    assert PINNED.match(step["uses"]), (
                        f"{path.name}: {step['uses']} is not pinned to a commit"
                    )
