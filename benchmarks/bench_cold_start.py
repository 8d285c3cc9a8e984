"""Cold start of predict, batch_worker and monitor: a fresh Python 3.12 process to its first answer,
from each function's built artifact, before and after issue 12's data-stack swap, in one run.

    make bench-cold-start        (python benchmarks/bench_cold_start.py --before f454d5d)

For each tree, the commit before (a git worktree under the system's temp dir) and this checkout:

1. build every function as ``sam build`` lays it out (``mlambda_local.packaging.build``: the same
   pip resolution for CPython 3.12 manylinux);
2. a moto server with the tree's template stores, and data put there by the tree's own code
   (``benchmarks/cold_start_seed.py``): a model to score, a planned batch job per run, a model in
   production with a drifted hour of predictions;
3. per function and run (after one uncounted run), a bare ``python3.12 -I -S`` that sees only the
   artifact, its layers and the runtime's boto3 (``packaging.run_alone``, as the package check)
   imports the handler and answers one event that does real work: a prediction (ONNX session
   included), a 10,000-row chunk scored and written, a monitoring run with drift and data quality.

Printed: the median over runs of the handler's import, of process start to first answer, and of
the process's CPU time to that answer. The sizes are the package check's (``make package-check``).

The "before" tree gets one change: ``onnx`` added to predict's, batch_worker's and monitor's
requirements, and ``onnxruntime`` to monitor's. At f454d5d those functions imported them without
shipping them (3fa5cce moved the imports to where they are used), so their artifacts could not
answer at all; with them they run the code as it was.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from mlambda_local.packaging import (
    Alone,
    PackagingError,
    build,
    find_python312,
    provisioned_stores,
    read_sources,
    run_alone,
    runtime_sdk,
)

REPO = Path(__file__).resolve().parent.parent
FUNCTIONS = ("PredictFunction", "BatchWorkerFunction", "MonitorFunction")
# What these functions imported at f454d5d without shipping it (3fa5cce moved the imports to use).
UNSHIPPED_IMPORTS = {
    "functions/predict": ["onnx>=1.16,<2"],
    "functions/batch_worker": ["onnx>=1.16,<2"],
    "functions/monitor": ["onnx>=1.16,<2", "onnxruntime>=1.18,<2"],
}
WORK = Path(tempfile.gettempdir()) / "mlambda-bench-cold-start"


def worktree(commit: str) -> Path:
    """A checkout of ``commit`` (kept between runs: its dependency cache makes the next build quick)."""
    sha = subprocess.run(
        ["git", "-C", str(REPO), "rev-parse", "--verify", f"{commit}^{{commit}}"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    path = WORK / sha[:12]
    if not (path / "template.yaml").exists():
        WORK.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            ["git", "-C", str(REPO), "worktree", "add", "--detach", str(path), sha],
            capture_output=True,
            check=True,
        )
        for directory, packages in UNSHIPPED_IMPORTS.items():
            requirements = path / directory / "requirements.txt"
            requirements.write_text(requirements.read_text() + "".join(f"{p}\n" for p in packages))
    return path


def seed(root: Path, environments: dict[str, dict[str, str]], runs: int, rows: int) -> dict[str, Any]:
    """The tree's own code puts the data in place; one event per function and run comes back."""
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(str(root / part) for part in ("shared", "infra", ".")),
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }
    result = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "cold_start_seed.py")],
        input=json.dumps({"environments": environments, "runs": runs, "rows": rows}),
        capture_output=True,
        text=True,
        env=env,
        cwd=root,
        check=False,
    )
    if result.returncode != 0:
        raise PackagingError(f"seeding {root} failed:\n{result.stderr[-3000:]}")
    events: dict[str, Any] = json.loads(result.stdout.strip().splitlines()[-1])
    return events


def did_the_work(function: str, alone: Alone) -> str | None:
    """None when the answer is the real one (a prediction, a scored chunk, a monitoring run)."""
    outcome = alone.outcome
    result = outcome.get("result")
    if outcome["stage"] != "answer" or "exception" in outcome:
        return json.dumps(outcome)[:1500]
    if function == "PredictFunction" and not (isinstance(result, dict) and result.get("statusCode") == 200):
        return f"predict answered {json.dumps(result)[:800]}"
    if function == "BatchWorkerFunction" and not (
        isinstance(result, dict) and result.get("batchItemFailures") == []
    ):
        return f"the worker answered {json.dumps(result)[:800]}\n{alone.stdout[-1500:]}"
    return None


def measure(label: str, root: Path, python: Path, runs: int, rows: int) -> dict[str, list[Alone]]:
    """``runs`` cold starts of each of FUNCTIONS for the tree at ``root``."""
    started = time.perf_counter()
    built = build(root, python, out=WORK / "build" / label)
    by_id = {f.logical_id: f for f in read_sources(root / "template.yaml").functions}
    runtime = runtime_sdk(python, root / ".aws-sam" / "deps")
    print(f"{label}: built {root} in {time.perf_counter() - started:.0f} s", flush=True)
    timings: dict[str, list[Alone]] = {}
    with provisioned_stores(root / "template.yaml", f"bench-{label}") as environments:
        events = seed(root, environments, runs + 1, rows)
        for function in FUNCTIONS:
            timings[function] = []
            # The first run of each reads the artifact from disk and is not counted: both trees then
            # start from the page cache, and the figures compare code, not what the disk last read.
            for run, event in enumerate(events[function]):
                alone = run_alone(
                    by_id[function],
                    event,
                    built=built,
                    python=python,
                    runtime=runtime,
                    environment=environments[function],
                    timeout=600,
                )
                problem = did_the_work(function, alone)
                if problem:
                    raise PackagingError(f"{label} {function}: {problem}")
                if run > 0:
                    timings[function].append(alone)
            shown = ", ".join(f"{a.process_seconds:.2f}" for a in timings[function])
            print(f"{label}: {function} first answers {shown} s", flush=True)
    return timings


def ms(runs: list[Alone], field: str) -> str:
    """The median of one timing over ``runs``, in milliseconds."""
    return f"{statistics.median(getattr(run, field) for run in runs) * 1000:,.0f} ms"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--before", default="f454d5d", help="the commit to compare with (default f454d5d)")
    parser.add_argument("--runs", type=int, default=5, help="fresh processes per function (median shown)")
    parser.add_argument(
        "--rows", type=int, default=10_000, help="rows of the batch chunk and the monitored hour"
    )
    args = parser.parse_args(argv)
    python = find_python312()
    before = measure("before", worktree(args.before), python, args.runs, args.rows)
    after = measure("after", REPO, python, args.runs, args.rows)
    print(
        f"\nCold start from the built artifact, bare Python 3.12 ({python}), median of {args.runs} "
        f"fresh processes; before = {args.before} (+ its unshipped imports, see the docstring), "
        "after = this checkout\n"
    )
    print(
        "| function | import before | import after | first answer before | first answer after "
        "| CPU before | CPU after |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|")
    for function in FUNCTIONS:
        b, a = before[function], after[function]
        print(
            f"| {function} | {ms(b, 'import_seconds')} | {ms(a, 'import_seconds')} "
            f"| {ms(b, 'process_seconds')} | {ms(a, 'process_seconds')} "
            f"| {ms(b, 'cpu_seconds')} | {ms(a, 'cpu_seconds')} |"
        )
    print(
        "\nimport: the handler module imported (what it imports at module level). first answer: process "
        "start to the handler's return on its event (interpreter, imports, clients, the work). CPU: the "
        "process's CPU time to that answer, all threads: the figure a busy machine moves least."
    )
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except PackagingError as exc:
        print(f"bench-cold-start: {exc}", file=sys.stderr)
        sys.exit(1)
