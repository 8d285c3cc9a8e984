"""The CLI as a user meets it, against the local cloud: issue 15's defects, each checked.

Exit codes, ``--output json`` on every command, one-line errors, a closed pipe, missing
credentials, global options after the command, ``register`` creating the model, streaming
``predict --csv`` with id columns, ``batch`` through a presigned upload and ``fetch`` by extension
with the rejects' rows, one tag syntax, ``history --at``.
"""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq
import pytest

from mlambda_local.cli import main
from mlambda_local.cloud.function_output import function_output
from tests.conftest import REPO_ROOT
from tests.e2e.conftest import Platform
from tests.unit.fakes_registry import TrainedModel, breast_cancer

pytestmark = pytest.mark.e2e

MODEL = "cli-cancer"


class Cli:
    """``mlambda`` in this process with the platform's URL and key; each run's exit code and output."""

    def __init__(self, platform: Platform, capsys: pytest.CaptureFixture[str]) -> None:
        self.platform = platform
        self.capsys = capsys

    def __call__(self, *args: str, key: str | None = None) -> tuple[int, str, str]:
        flags = ["--api-url", self.platform.api_url, "--api-key", key or self.platform.admin_key]
        self.capsys.readouterr()
        out = io.StringIO()
        # This thread's stdout only: the in-process cloud's own threads (pollers, a function's thread
        # pool) may print meanwhile, which a user's CLI, in a process of its own, never sees.
        with function_output(out):
            code = main([*args, *flags])  # global options after the command
        return code, out.getvalue(), self.capsys.readouterr().err

    def json(self, *args: str) -> Any:
        code, out, err = self(*args, "-o", "json")
        assert code == 0, err
        return json.loads(out)


@pytest.fixture(scope="module")
def model(platform: Platform, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TrainedModel]:
    """The breast cancer model registered through the CLI (the model created by ``register``) and promoted."""
    trained = breast_cancer(1.0)
    folder = tmp_path_factory.mktemp("cli")
    onnx_file = folder / "model.onnx"
    onnx_file.write_bytes(trained.onnx)
    reference = folder / "reference.parquet"
    held_out = trained.frame.drop(index=trained.trained_on)
    held_out.assign(patient_id=[f"p{i}" for i in range(len(held_out))]).to_parquet(reference, index=False)
    flags = ["--api-url", platform.api_url, "--api-key", platform.admin_key]
    code = main(
        ["models", "register", MODEL, str(onnx_file), "--reference", str(reference), "--target", "target",
         "--exclude", "patient_id", "--owner", "ana", "--tag", "team=risk", *flags]
    )  # fmt: skip
    assert code == 0
    assert main(["models", "promote", MODEL, "v1", *flags]) == 0
    yield trained


@pytest.fixture
def cli(platform: Platform, capsys: pytest.CaptureFixture[str]) -> Cli:
    return Cli(platform, capsys)


def test_register_creates_a_missing_model_and_takes_a_labelled_sample(model: TrainedModel, cli: Cli) -> None:
    shown = cli.json("models", "show", MODEL)
    assert (shown["owner"], shown["tags"], shown["aliases"]) == ("ana", {"team": "risk"}, {"production": 1})
    version = shown["versions"][0]
    assert version["status"] == "READY" and version["reference"]["labelled_rows"] > 200
    assert "no_target" not in [w["code"] for w in version["warnings"]]


def test_tags_are_key_equals_value_when_set_and_when_filtering(model: TrainedModel, cli: Cli) -> None:
    found = cli.json("models", "list", "--tag", "team=risk")
    assert [m["name"] for m in found] == [MODEL]
    assert cli.json("models", "list", "--tag", "team=other") == []


@pytest.mark.parametrize(
    "command",
    [
        ["whoami"],
        ["keys", "list"],
        ["models", "list"],
        ["models", "show", MODEL],
        ["models", "history", MODEL],
        ["models", "history", MODEL, "--at", "2020-01-01T00:00:00Z"],
        ["predict", MODEL, "--json", "{}"],
        ["batch", "list", "--model", MODEL],
        ["features", "get", "nobody"],
        ["evaluations", "list", MODEL],
        ["local", "status"],
    ],
    ids=lambda c: " ".join(c[:2]),
)
def test_every_command_prints_json_with_output_json(
    model: TrainedModel, cli: Cli, platform: Platform, command: list[str]
) -> None:
    if command[0] == "predict":
        command = [*command[:3], json.dumps(dict.fromkeys(model.features, 1.0))]
    code, out, err = cli(*command, "-o", "json", "--data-dir", str(platform.data_dir))
    assert code == 0, err
    assert isinstance(json.loads(out), dict | list)


def test_history_at_says_where_the_alias_pointed(model: TrainedModel, cli: Cli) -> None:
    code, before, _ = cli("models", "history", MODEL, "--at", "2020-01-01T00:00:00Z")
    assert (
        code == 0
        and before.strip() == f"{MODEL} production at 2020-01-01T00:00:00Z: pointed at no version yet"
    )
    now = datetime.now(UTC).isoformat()
    code, after, _ = cli("models", "history", MODEL, "--at", now)
    assert code == 0 and ": v1 (since 20" in after and "None" not in after


@pytest.mark.parametrize(
    "case",
    [
        (["whoami"], "mlk.000000000000.bad", 3, "HTTP 401 unauthorized"),
        (["keys", "list"], "predict", 3, "HTTP 403 forbidden"),
        (["models", "show", "no-such-model"], None, 4, "HTTP 404 model_not_found"),
        (["models", "promote", MODEL, "v9"], None, 4, "version_not_found"),
        (["predict", MODEL, "--json", '{"mean_radius": 1}'], None, 5, "HTTP 422"),
        (["models", "create", MODEL], None, 5, "HTTP 409 model_exists"),
        (["models", "promote", MODEL, "nine"], None, 2, "expected a version like v3"),
    ],
)
def test_failures_exit_with_their_documented_code_and_one_line(
    model: TrainedModel, cli: Cli, platform: Platform, case: tuple[list[str], str | None, int, str]
) -> None:
    args, key, code, says = case
    if key == "predict":
        key = platform.admin.create_key("cli-predictor", ["predict"])["api_key"]
    got, _, err = cli(*args, key=key)
    assert got == code, err
    assert says in err and err.startswith("error: ") and err.count("\n") == 1 and "Traceback" not in err


def test_debug_adds_the_traceback(model: TrainedModel, cli: Cli) -> None:
    code, _, err = cli("models", "show", "no-such-model", "--debug")
    assert (
        code == 4
        and "Traceback" in err
        and err.strip().endswith("HTTP 404 model_not_found: model 'no-such-model' not found")
    )


def run(
    *args: str, env: dict[str, str] | None = None, cwd: Path = REPO_ROOT
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mlambda_local.cli", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd=cwd,
        env=env or dict(os.environ),
    )


def test_an_api_that_does_not_answer_exits_6_without_a_traceback() -> None:
    ran = run("whoami", "--api-url", "http://127.0.0.1:9/v1", "--api-key", "mlk.a.b")
    assert ran.returncode == 6
    assert ran.stderr == "error: cannot connect to http://127.0.0.1:9: Connection refused\n"


def test_no_api_key_anywhere_exits_3_naming_where_keys_come_from(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("MLAMBDA_API_KEY", "MLAMBDA_HOME")}
    ran = run("whoami", "--api-url", "http://127.0.0.1:9/v1", env=env, cwd=tmp_path)
    assert ran.returncode == 3
    assert "no API key: pass --api-key or set MLAMBDA_API_KEY" in ran.stderr and "Traceback" not in ran.stderr


def test_a_bad_flag_exits_2_and_version_and_completion_answer() -> None:
    assert run("models", "list", "--no-such-flag").returncode == 2
    version = run("--version")
    assert version.returncode == 0 and version.stdout.startswith("mlambda ")
    completion = run("completion", "bash")
    assert completion.returncode == 0 and "models" in completion.stdout and "complete" in completion.stdout


def rows_csv(model: TrainedModel, rows: int) -> str:
    frame = model.frame.drop(columns=["target"]).iloc[:rows]
    return frame.assign(patient_id=[f"p{i}" for i in range(rows)]).to_csv(index=False)


def test_predict_csv_streams_rows_with_id_columns_passed_through(
    model: TrainedModel, cli: Cli, tmp_path: Path
) -> None:
    # Given a CSV with the features and an id column
    source = tmp_path / "rows.csv"
    source.write_text(rows_csv(model, 250))
    # When
    code, out, err = cli("predict", MODEL, "--csv", str(source), "--batch-size", "100")
    # Then every row comes back with its id, its prediction and sklearn's probability
    assert code == 0, err
    written = list(csv.DictReader(io.StringIO(out)))
    assert [row["patient_id"] for row in written] == [f"p{i}" for i in range(250)]
    expected = model.estimator.predict_proba(model.frame[model.features].iloc[:250].to_numpy(np.float32))[
        :, 1
    ]
    got = np.array([float(row["proba_1"]) for row in written])
    assert float(np.max(np.abs(got - expected))) < 1e-5
    assert {row["version"] for row in written} == {"1"}


def test_predict_csv_into_a_closed_pipe_stops_quietly(
    model: TrainedModel, platform: Platform, tmp_path: Path
) -> None:
    # Given a CSV of many batches, read by `head -3`
    source = tmp_path / "rows.csv"
    source.write_text(rows_csv(model, 500))
    command = [sys.executable, "-m", "mlambda_local.cli", "predict", MODEL, "--csv", str(source), "--batch-size", "10",
               "--api-url", platform.api_url, "--api-key", platform.admin_key]  # fmt: skip
    # When
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as process:
        assert process.stdout is not None and process.stderr is not None
        head = [process.stdout.readline() for _ in range(3)]
        process.stdout.close()
        code = process.wait(timeout=120)
        err = process.stderr.read()
    # Then
    assert head[0].startswith("mean_radius,") and head[2].count(",") == head[0].count(",")
    assert code == 0, err
    assert "Traceback" not in err and "BrokenPipe" not in err


def test_batch_submits_through_a_presigned_upload_and_fetches_by_extension(
    model: TrainedModel, cli: Cli, tmp_path: Path
) -> None:
    # Given a CSV of 300 rows, rows 7 and 250 bad
    lines = rows_csv(model, 300).splitlines()
    for row in (7, 250):
        cells = lines[row + 1].split(",")
        cells[3] = "oops"
        lines[row + 1] = ",".join(cells)
    source = tmp_path / "scores.csv"
    source.write_text("\n".join(lines) + "\n")
    # When
    submitted = cli.json("batch", "submit", str(source), "--model", MODEL, "--chunk-rows", "100")
    job_id = submitted["job"]["job_id"]
    code, said, err = cli(
        "batch", "fetch", job_id, str(tmp_path / "out.csv"), "--rejects", str(tmp_path / "bad.csv")
    )
    assert code == 0, err
    assert cli("batch", "fetch", job_id, str(tmp_path / "out.parquet"))[0] == 0
    # Then the CSV is text, the Parquet is Parquet, both with the ids; the rejects name their rows
    chunks = submitted["job"]["total_chunks"]
    assert submitted["job"]["status"] == "completed" and chunks >= 2
    written = list(csv.DictReader((tmp_path / "out.csv").open()))
    ids = [f"p{i}" for i in range(300) if i not in (7, 250)]
    assert [row["patient_id"] for row in written] == ids
    assert pq.read_table(tmp_path / "out.parquet").column("patient_id").to_pylist() == ids
    rejects = list(csv.DictReader((tmp_path / "bad.csv").open()))
    assert [row["row"] for row in rejects] == ["7", "250"]
    assert f"wrote 298 rows ({chunks} parts)" in said and "wrote 2 rejected rows" in said


def test_a_fetch_to_an_unknown_extension_is_refused_before_anything_is_written(
    model: TrainedModel, cli: Cli, tmp_path: Path
) -> None:
    code, _, err = cli("batch", "fetch", "0" * 20, str(tmp_path / "out.txt"))
    assert code == 2 and "name the output *.parquet or *.csv" in err
    assert not (tmp_path / "out.txt").exists()


def free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_local_up_on_fixed_ports_prints_buckets_and_the_environment_for_aws_tools(tmp_path: Path) -> None:
    import boto3

    # Given two free ports
    api_port, moto_port = free_port(), free_port()
    command = [sys.executable, "-m", "mlambda_local.cli", "local", "up", "--port", str(api_port),
               "--moto-port", str(moto_port), "--in-process", "--no-prewarm", "--quiet", "--data-dir", str(tmp_path)]  # fmt: skip
    banner: list[str] = []
    # When it starts
    with subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, cwd=REPO_ROOT
    ) as process:
        try:
            assert process.stdout is not None
            for line in process.stdout:
                banner.append(line.rstrip("\n"))
                if line.startswith("Ctrl-C stops it."):
                    break
            exported = dict(
                line.removeprefix("  export ").split("=", 1)
                for line in banner
                if line.startswith("  export ")
            )
            # Then what it printed points boto3 (as the AWS CLI) at the local cloud, with nothing else set
            s3 = boto3.session.Session(
                aws_access_key_id=exported["AWS_ACCESS_KEY_ID"],
                aws_secret_access_key=exported["AWS_SECRET_ACCESS_KEY"],
                region_name=exported["AWS_DEFAULT_REGION"],
            ).client("s3", endpoint_url=exported["AWS_ENDPOINT_URL"])
            buckets = {b["Name"] for b in s3.list_buckets()["Buckets"]}
        finally:
            process.terminate()
            process.wait(timeout=60)
    assert exported["AWS_ENDPOINT_URL"] == f"http://127.0.0.1:{moto_port}"
    assert exported["MLAMBDA_API_URL"].startswith(f"http://127.0.0.1:{api_port}/")
    printed = next(line for line in banner if line.startswith("  buckets:"))
    batch_bucket = next(name for name in buckets if name.endswith("-batch"))
    assert batch_bucket in printed and f"aws s3 ls s3://{batch_bucket}/" in "\n".join(banner)
