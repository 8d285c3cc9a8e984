"""Property-based fuzzing of the whole API from its OpenAPI document, against a seeded local cloud.

schemathesis (its ``run`` command, configured by ``tests/e2e/schemathesis.toml``) sends every
operation of ``functions/console/openapi.json`` positive and negative data in its four phases
(examples, coverage, fuzzing, stateful sequences over the links it infers), each with the key of
the operation's scope, and checks every answer: no 5xx, and status, content type, headers and body
as the document states them. The time budget is ``MLAMBDA_FUZZ_SECONDS`` (60 s in ``make test``;
``make fuzz`` gives it more). ``make test`` fuzzes from one fixed seed, so a run on a fresh clone
sends what the last green run sent and main stays reproducible; ``make fuzz`` draws a new seed
each run to explore (``MLAMBDA_FUZZ_SEED=random``; a number replays the run that printed it).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from mlambda_local.openapi import DOCUMENT
from tests.e2e.conftest import Platform
from tests.e2e.seeding import ENTITY, ITEM, MODEL, Seeded, seed

pytestmark = pytest.mark.e2e

CONFIG = Path(__file__).with_name("schemathesis.toml")
DEFAULT_SECONDS = 60
MAX_EXAMPLES = 8
DEFAULT_SEED = "186055979567787414559677009935533781680"
"""The seed of the CI run whose two findings (ST201: limit=9\\r, a boolean row) are fixed."""


@pytest.fixture(scope="module")
def seeded(platform: Platform) -> Seeded:
    """churn v1 in production, an item, an entity's features, an evaluation, a job; a key per scope."""
    return seed(platform)


def _environment(seeded: Seeded) -> dict[str, str]:
    names = {scope: "MLAMBDA_FUZZ_KEY_" + scope.replace(":", "_").upper() for scope in seeded.keys}
    return {**os.environ, **{names[scope]: key for scope, key in seeded.keys.items()}}


def _configuration(directory: Path, seeded: Seeded) -> Path:
    """The committed configuration beside the dictionaries of this cloud's ids."""
    directory.mkdir(parents=True, exist_ok=True)
    dictionaries = {
        "model": MODEL,
        "evaluation": seeded.evaluation_id,
        "job": seeded.job_id,
        "entity": ENTITY,
        "item": ITEM,
    }
    for name, value in dictionaries.items():
        (directory / f"fuzz_{name}.txt").write_text(json.dumps(value) + "\n")
    config = directory / CONFIG.name
    shutil.copyfile(CONFIG, config)
    return config


def summary(report: dict[str, Any]) -> str:
    """What a run tried and found, as ``make fuzz`` prints it."""
    operations = report["operations"]
    cases = report["test_cases"]
    lines = [
        f"fuzz: {operations['tested']}/{operations['total']} operations tested, "
        f"{cases['generated']} test cases, {cases['unique_failures']} unique failures "
        f"({cases['with_failures']} cases), {len(report['errors'])} errors, "
        f"{report['running_time']:.0f} s, seed {report['seed']}",
        "phases: " + ", ".join(f"{name} {phase['status']}" for name, phase in report["phases"].items()),
    ]
    lines += [
        f"  {failure['code']} {failure['title']} x{failure['count']}: {', '.join(failure['operations'])}"
        for failure in report["failures"]
    ]
    return "\n".join(lines)


def test_fuzzing_every_operation_finds_no_server_error_and_no_answer_the_document_does_not_state(
    platform: Platform, seeded: Seeded, tmp_path: Path
) -> None:
    # Given the document, a seeded cloud, a key per scope and a time budget
    seconds = int(os.environ.get("MLAMBDA_FUZZ_SECONDS", DEFAULT_SECONDS))
    config = _configuration(tmp_path / "fuzz", seeded)
    command = [
        str(Path(sys.executable).with_name("schemathesis")),
        "--config-file",
        str(config),
        "--no-color",
        "run",
        str(DOCUMENT),
        "--url",
        platform.api_url,
        "--max-time",
        str(seconds),
        "--max-examples",
        str(MAX_EXAMPLES),
        "--generation-database",
        "none",
        "--report",
        "json",
        "--report-json-path",
        str(tmp_path / "report.json"),
    ]
    chosen = os.environ.get("MLAMBDA_FUZZ_SEED") or DEFAULT_SEED
    if chosen != "random":
        command += ["--seed", chosen]
    # When schemathesis runs every phase over every operation
    run = subprocess.run(
        command,
        env=_environment(seeded),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=seconds + 300,
        check=False,
    )
    print(run.stdout[-20_000:], run.stderr[-5_000:], sep="\n")
    assert (tmp_path / "report.json").exists(), f"schemathesis did not run: {run.stdout[-2_000:]}"
    report = json.loads((tmp_path / "report.json").read_text())
    print(summary(report))
    # Then every operation was tested and nothing failed
    operations = report["operations"]
    assert operations["tested"] == operations["total"] == _operation_count(), summary(report)
    assert report["failures"] == [] and report["errors"] == [], summary(report)
    assert run.returncode == 0, summary(report)


def _operation_count() -> int:
    paths = json.loads(DOCUMENT.read_text())["paths"]
    return sum(len(operations) for operations in paths.values())
