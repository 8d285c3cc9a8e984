"""Build every function as ``sam build`` lays it out, print its size, and prove each artifact alone.

``python -m mlambda_local.packaging`` (``make package-check``):

1. **Build** into ``.aws-sam/build/``, the layout ``sam build`` makes: ``<FunctionLogicalId>/`` holds
   the function's ``CodeUri`` and its ``requirements.txt`` installed; ``<LayerLogicalId>/python/``
   holds the layer's ``ContentUri`` and its requirements. Dependencies are resolved as SAM's
   Python builder does (aws-lambda-builders): wheels only, CPython 3.12 ABI, the manylinux tags
   Lambda's Amazon Linux 2023 accepts (up to glibc 2.34), nothing compiled to ``.pyc``. Resolved
   sets are cached in ``.aws-sam/deps/`` by the hash of the requirements, and hard-linked in.
2. **Size**: function + layers in bytes (unzipped, what Lambda counts) against 262,144,000; any
   function above 90% fails. A layer carrying boto3 or botocore fails too: it would shadow the
   runtime's SDK.
3. **Alone**: a moto server with the template's stores (no function runs in it), then for each
   function a fresh Python 3.12 (``-I -S``: no site-packages, no environment paths) whose
   ``sys.path`` is the artifact, its layers and a directory standing for the runtime (the boto3
   the Lambda runtime ships, pinned below), imports the handler and answers a sample event from
   ``tests/events/``. A missing module, a wrong handler path or an oversized artifact fails and
   names the function.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.request import Request, urlopen

from mlambda_local.cloud.template import load_yaml

LAMBDA_LIMIT_BYTES = 262_144_000
BUDGET_SHARE = 0.90
PYTHON_VERSION = "3.12"
PLATFORMS = (
    "manylinux2014_x86_64",
    "manylinux_2_17_x86_64",
    "manylinux_2_28_x86_64",
    "manylinux_2_34_x86_64",
)
# The SDK the python3.12 runtime includes (the runtime's own boto3 stands in /var/lang).
RUNTIME_SDK = ("boto3==1.40.4", "botocore==1.40.4")
SDK_PACKAGES = ("boto3", "botocore")
CHECK_TIMEOUT_SECONDS = 120
_IMPORT_FAILURE = "No module named"


class PackagingError(RuntimeError):
    """The build or the check failed; the message names the function and what is wrong."""


def find_python312() -> Path:
    """The Python 3.12 interpreter SAM builds with: $MLAMBDA_PYTHON312, pyenv's 3.12, or python3.12."""
    candidates: list[str] = []
    if os.environ.get("MLAMBDA_PYTHON312"):
        candidates.append(os.environ["MLAMBDA_PYTHON312"])
    for version in ("3.12.1", "3.12"):
        try:
            prefix = subprocess.run(
                ["pyenv", "prefix", version], capture_output=True, text=True, check=True, timeout=30
            ).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            continue
        candidates.append(str(Path(prefix) / "bin" / "python3.12"))
    if which := shutil.which("python3.12"):
        candidates.append(which)
    for candidate in candidates:
        try:
            found = subprocess.run(
                [candidate, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
                check=False,
                capture_output=True,
                text=True,
                timeout=30,
            )
        except (OSError, subprocess.SubprocessError):
            continue
        if found.returncode == 0 and found.stdout.strip() == PYTHON_VERSION:
            return Path(candidate)
    raise PackagingError(
        "Python 3.12 (the template's runtime) was not found: install it (pyenv install 3.12) or point "
        "MLAMBDA_PYTHON312 at a python3.12 executable"
    )


# -- what the template builds ---------------------------------------------------------------------


@dataclass(frozen=True)
class FunctionSource:
    """A function of the template: where its code is and which layers it has."""

    logical_id: str
    code_uri: Path
    handler: str
    layers: tuple[str, ...]


@dataclass(frozen=True)
class Sources:
    """The template's zip functions and the local layers they use (logical id -> ContentUri)."""

    functions: list[FunctionSource]
    layers: dict[str, Path]


def _layer_ids(values: Sequence[Any]) -> tuple[str, ...]:
    return tuple(str(v["Ref"]) for v in values if isinstance(v, dict) and "Ref" in v)


def read_sources(template_path: Path) -> Sources:
    """Functions and layers from the SAM template (Globals' layers included)."""
    template = load_yaml(template_path)
    root = template_path.parent
    globals_ = (template.get("Globals") or {}).get("Function") or {}
    resources: dict[str, Any] = template["Resources"]
    layers = {
        logical_id: root / str(resource["Properties"]["ContentUri"])
        for logical_id, resource in resources.items()
        if resource.get("Type") == "AWS::Serverless::LayerVersion"
    }
    functions = []
    for logical_id, resource in resources.items():
        if resource.get("Type") != "AWS::Serverless::Function":
            continue
        properties = resource.get("Properties") or {}
        if properties.get("PackageType") == "Image":
            continue
        layer_refs = _layer_ids(properties.get("Layers", globals_.get("Layers", [])))
        functions.append(
            FunctionSource(
                logical_id=logical_id,
                code_uri=root / str(properties["CodeUri"]),
                handler=str(properties.get("Handler", globals_.get("Handler"))),
                layers=tuple(ref for ref in layer_refs if ref in layers),
            )
        )
    return Sources(functions=functions, layers=layers)


# -- build ----------------------------------------------------------------------------------------


def _copy_source(source: Path, target: Path) -> None:
    shutil.copytree(
        source, target, dirs_exist_ok=True, ignore=shutil.ignore_patterns("__pycache__", "*.pyc", ".*")
    )


def resolved_dependencies(python: Path, requirements: Sequence[str], cache: Path) -> Path:
    """A directory with ``requirements`` installed for Lambda (cached by their hash)."""
    key = hashlib.sha256("\n".join([PYTHON_VERSION, *PLATFORMS, *requirements]).encode()).hexdigest()[:20]
    target = cache / key
    if (target / ".complete").exists():
        return target
    staging = Path(tempfile.mkdtemp(prefix=f"{key}-", dir=cache))
    if not requirements:
        (staging / ".complete").write_text("")
        staging.rename(target)
        return target
    command = [
        str(python),
        "-m",
        "pip",
        "install",
        "--quiet",
        "--disable-pip-version-check",
        "--no-compile",
        "--only-binary=:all:",
        "--implementation",
        "cp",
        "--python-version",
        PYTHON_VERSION,
        *(argument for platform in PLATFORMS for argument in ("--platform", platform)),
        "--target",
        str(staging),
        *requirements,
    ]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        shutil.rmtree(staging, ignore_errors=True)
        raise PackagingError(f"pip could not resolve {list(requirements)}:\n{result.stderr[-3000:]}")
    shutil.rmtree(staging / "bin", ignore_errors=True)
    (staging / ".complete").write_text(" ".join(requirements))
    shutil.rmtree(target, ignore_errors=True)
    staging.rename(target)
    return target


def _requirements(directory: Path) -> list[str]:
    path = directory / "requirements.txt"
    if not path.exists():
        return []
    lines = (line.split("#", 1)[0].strip() for line in path.read_text().splitlines())
    return [line for line in lines if line]


def _link_tree(source: Path, target: Path) -> None:
    shutil.copytree(
        source, target, dirs_exist_ok=True, copy_function=os.link, ignore=shutil.ignore_patterns(".complete")
    )


def build(root: Path, python: Path, out: Path | None = None) -> dict[str, Path]:
    """Every layer and function of ``root/template.yaml`` built under ``.aws-sam/build``; their dirs."""
    sources = read_sources(root / "template.yaml")
    out = out or root / ".aws-sam" / "build"
    cache = root / ".aws-sam" / "deps"
    cache.mkdir(parents=True, exist_ok=True)
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    jobs: dict[str, tuple[Path, Path]] = {}
    for layer_id, content in sources.layers.items():
        jobs[layer_id] = (content, out / layer_id / "python")
    for function in sources.functions:
        jobs[function.logical_id] = (function.code_uri, out / function.logical_id)
    distinct = {tuple(_requirements(source)) for source, _ in jobs.values()}
    with ThreadPoolExecutor(max_workers=4) as pool:
        resolved = dict(
            zip(distinct, pool.map(lambda r: resolved_dependencies(python, r, cache), distinct), strict=True)
        )
    built: dict[str, Path] = {}
    for logical_id, (source, target) in jobs.items():
        _copy_source(source, target)
        _link_tree(resolved[tuple(_requirements(source))], target)
        built[logical_id] = out / logical_id
    return built


def tree_bytes(directory: Path) -> int:
    """Bytes of every file under ``directory`` (unzipped, as Lambda counts them)."""
    return sum(p.stat().st_size for p in directory.rglob("*") if p.is_file() and not p.is_symlink())


@dataclass(frozen=True)
class SizeRow:
    """One function's size with its layers."""

    logical_id: str
    function_bytes: int
    layer_bytes: int

    @property
    def total(self) -> int:
        return self.function_bytes + self.layer_bytes

    @property
    def share(self) -> float:
        return self.total / LAMBDA_LIMIT_BYTES


def sizes(sources: Sources, built: Mapping[str, Path]) -> list[SizeRow]:
    """Function + layers per function, largest first."""
    layer_bytes = {layer_id: tree_bytes(built[layer_id]) for layer_id in sources.layers}
    rows = [
        SizeRow(
            logical_id=f.logical_id,
            function_bytes=tree_bytes(built[f.logical_id]),
            layer_bytes=sum(layer_bytes[layer] for layer in f.layers),
        )
        for f in sources.functions
    ]
    return sorted(rows, key=lambda row: -row.total)


def size_table(rows: Sequence[SizeRow]) -> str:
    """The table ``make package-check`` prints (Markdown, so the README can quote it)."""
    lines = [
        "| function | function bytes | + layers | total bytes | % of 262,144,000 |",
        "|---|---:|---:|---:|---:|",
    ]
    lines += [
        f"| {r.logical_id} | {r.function_bytes:,} | {r.layer_bytes:,} | {r.total:,} | {r.share:.1%} |"
        for r in rows
    ]
    return "\n".join(lines)


def size_problems(rows: Sequence[SizeRow], built: Mapping[str, Path], layers: Sequence[str]) -> list[str]:
    """Every function over budget, every layer carrying the SDK."""
    problems = [
        f"{r.logical_id} is {r.total:,} bytes with its layers, {r.share:.1%} of Lambda's limit "
        f"(the budget is {BUDGET_SHARE:.0%})"
        for r in rows
        if r.share > BUDGET_SHARE
    ]
    for layer_id in layers:
        shadowing = [name for name in SDK_PACKAGES if (built[layer_id] / "python" / name).exists()]
        if shadowing:
            problems.append(
                f"layer {layer_id} carries {', '.join(shadowing)}: it would shadow the runtime's SDK"
            )
    return problems


# -- alone: import and answer ---------------------------------------------------------------------

# Runs in the fresh interpreter: argv = [handler, event file, sys.path entries...]. Prints one line:
# the stage reached, the answer or the error, the import and handler times, the process's CPU time
# so far and the wall clock at the answer (the parent, which noted the clock before starting the
# process, takes process-to-answer).
_BOOTSTRAP = """
import time
started = time.perf_counter()
import importlib, json, sys, traceback
handler, event_path, *paths = sys.argv[1:]
sys.path[:0] = paths
module_name, _, attribute = handler.rpartition(".")

class Context:
    function_name = "package-check"
    function_version = "$LATEST"
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:package-check"
    memory_limit_in_mb = 512
    aws_request_id = "00000000-0000-0000-0000-000000000000"
    log_group_name = "/aws/lambda/package-check"
    log_stream_name = "check"
    def get_remaining_time_in_millis(self):
        return 30000

def report(outcome):
    outcome["answered_at"] = time.time()
    outcome["cpu_seconds"] = time.process_time()
    print(json.dumps(outcome, default=str))

try:
    function = getattr(importlib.import_module(module_name), attribute)
except BaseException:
    report({"stage": "import", "error": traceback.format_exc(limit=3)})
    sys.exit(0)
imported = time.perf_counter()
event = json.load(open(event_path))
timed = time.perf_counter()
try:
    result = function(event, Context())
    outcome = {"stage": "answer", "result": result}
except BaseException as exc:
    outcome = {"stage": "answer", "exception": type(exc).__name__, "error": str(exc)}
outcome["import_seconds"] = imported - started
outcome["handler_seconds"] = time.perf_counter() - timed
report(outcome)
"""


@dataclass(frozen=True)
class SampleEvent:
    """The event a function answers in the check, and what a correct answer looks like."""

    name: str
    overrides: Mapping[str, Any]
    accepts: Callable[[Mapping[str, Any]], bool]
    expected: str


def _api_answer(outcome: Mapping[str, Any]) -> bool:
    result = outcome.get("result")
    return (
        isinstance(result, dict) and isinstance(result.get("statusCode"), int) and result["statusCode"] < 500
    )


def _batch_answer(outcome: Mapping[str, Any]) -> bool:
    result = outcome.get("result")
    return isinstance(result, dict) and "batchItemFailures" in result


def _answered(outcome: Mapping[str, Any]) -> bool:
    return "result" in outcome


def _unauthorized(outcome: Mapping[str, Any]) -> bool:
    return outcome.get("exception") == "UnauthorizedError" or outcome.get("error") == "Unauthorized"


def _api(method: str, path: str, scopes: str, body: Any = None) -> dict[str, Any]:
    return {
        "httpMethod": method,
        "path": path,
        "resource": path,
        "body": None if body is None else json.dumps(body),
        "requestContext_authorizer": {"key_id": "packagecheck", "name": "package-check", "scopes": scopes},
    }


SAMPLE_EVENTS: dict[str, SampleEvent] = {
    "AuthorizerFunction": SampleEvent(
        "apigw_authorizer_request", {}, _unauthorized, "401 for an unknown key"
    ),
    "KeysFunction": SampleEvent("apigw_rest", _api("GET", "/keys", "admin"), _api_answer, "a 2xx-4xx answer"),
    "RegistryFunction": SampleEvent(
        "apigw_rest", _api("GET", "/models", "registry:read"), _api_answer, "a 2xx-4xx answer"
    ),
    "PredictFunction": SampleEvent("predict_request", {}, _api_answer, "a 2xx-4xx answer"),
    "IngestFunction": SampleEvent(
        "apigw_rest",
        _api("POST", "/events", "ingest", {"events": []}),
        _api_answer,
        "a 2xx-4xx answer",
    ),
    "JobsFunction": SampleEvent(
        "apigw_rest",
        _api("GET", "/jobs/00000000000000000000", "registry:read"),
        _api_answer,
        "a 2xx-4xx answer",
    ),
    "EvaluationsFunction": SampleEvent("evaluations_request", {}, _api_answer, "a 2xx-4xx answer"),
    "ArchiverFunction": SampleEvent("sqs_message", {}, _batch_answer, "a partial batch response"),
    "BatchWorkerFunction": SampleEvent("sqs_message", {}, _batch_answer, "a partial batch response"),
    "ValidatorFunction": SampleEvent("validation_message", {}, _batch_answer, "a partial batch response"),
    "BatchFanoutFunction": SampleEvent("batch_s3_object_created", {}, _answered, "an answer"),
    "MonitorFunction": SampleEvent("monitor_schedule", {}, _answered, "an answer"),
    "ConsoleFunction": SampleEvent("console_request", {}, _api_answer, "a 2xx-4xx answer"),
}


def sample_event(events_dir: Path, sample: SampleEvent) -> dict[str, Any]:
    """The sample file with the sample's overrides (the authorizer context goes in requestContext)."""
    event: dict[str, Any] = json.loads((events_dir / f"{sample.name}.json").read_text())
    for key, value in sample.overrides.items():
        if key == "requestContext_authorizer":
            event.setdefault("requestContext", {})["authorizer"] = value
        else:
            event[key] = value
    return event


def runtime_sdk(python: Path, cache: Path) -> Path:
    """A directory standing for the runtime's site-packages: the boto3 Lambda's python3.12 ships."""
    return resolved_dependencies(python, list(RUNTIME_SDK), cache)


@dataclass(frozen=True)
class Alone:
    """What one fresh interpreter did with one artifact and one event."""

    outcome: dict[str, Any]  # {"stage": "import" | "answer", "result" | "exception" + "error", ...}
    stdout: str
    stderr: str
    returncode: int
    process_seconds: float  # from starting the process to the handler's answer

    @property
    def import_seconds(self) -> float:
        return float(self.outcome.get("import_seconds", float("nan")))

    @property
    def handler_seconds(self) -> float:
        return float(self.outcome.get("handler_seconds", float("nan")))

    @property
    def cpu_seconds(self) -> float:
        """CPU time of the process (all threads) from its start to the answer: less moved by a busy
        machine than the wall clock."""
        return float(self.outcome.get("cpu_seconds", float("nan")))


def run_alone(
    function: FunctionSource,
    event: Mapping[str, Any],
    *,
    built: Mapping[str, Path],
    python: Path,
    runtime: Path,
    environment: Mapping[str, str],
    timeout: float = CHECK_TIMEOUT_SECONDS,
) -> Alone:
    """A bare Python 3.12 that sees only the function's artifact, its layers and the runtime's SDK
    imports the handler and answers ``event``; PackagingError if it never answers."""
    paths = [
        str(built[function.logical_id]),
        *(str(built[layer] / "python") for layer in function.layers),
        str(runtime),
    ]
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as handle:
        json.dump(event, handle)
    try:
        started_at = time.time()
        result = subprocess.run(
            [str(python), "-I", "-S", "-c", _BOOTSTRAP, function.handler, handle.name, *paths],
            capture_output=True,
            text=True,
            env=dict(environment),
            cwd=built[function.logical_id],
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise PackagingError(f"{function.logical_id} did not answer within {timeout:.0f} s") from None
    finally:
        Path(handle.name).unlink(missing_ok=True)
    lines = [line for line in result.stdout.splitlines() if line.startswith('{"stage"')]
    if not lines:
        raise PackagingError(
            f"{function.logical_id} crashed (exit {result.returncode}): {result.stderr[-1500:]}"
        )
    outcome: dict[str, Any] = json.loads(lines[-1])
    return Alone(
        outcome=outcome,
        stdout=result.stdout,
        stderr=result.stderr,
        returncode=result.returncode,
        process_seconds=float(outcome["answered_at"]) - started_at,
    )


def check_alone(
    function: FunctionSource,
    *,
    built: Mapping[str, Path],
    python: Path,
    runtime: Path,
    environment: Mapping[str, str],
    events_dir: Path,
) -> str | None:
    """None when the artifact imports and answers its sample event alone; else what went wrong."""
    sample = SAMPLE_EVENTS.get(function.logical_id)
    if sample is None:
        return f"{function.logical_id} has no sample event in the package check (add one to SAMPLE_EVENTS)"
    try:
        alone = run_alone(
            function,
            sample_event(events_dir, sample),
            built=built,
            python=python,
            runtime=runtime,
            environment=environment,
        )
    except PackagingError as exc:
        return str(exc)
    if alone.outcome["stage"] == "import":
        return f"{function.logical_id} does not import from its artifact alone:\n{alone.outcome['error']}"
    # A module missing behind a handler that catches errors (an SQS record failed, a 500) shows in its logs.
    missing = next((line for line in alone.stdout.splitlines() if _IMPORT_FAILURE in line), None)
    if missing is not None:
        return f"{function.logical_id} failed an import while answering: {missing[:800]}"
    if not sample.accepts(alone.outcome):
        shown = json.dumps(alone.outcome)[:800]
        return f"{function.logical_id} answered {shown}, expected {sample.expected}"
    return None


@contextmanager
def provisioned_stores(template_path: Path, stack_name: str) -> Iterator[dict[str, dict[str, str]]]:
    """A moto server holding the template's tables, buckets, queues and topics, and each function's
    environment (as the template resolves it, pointed at that server). No function runs in it: the
    artifacts under check are the only code that answers."""
    import boto3
    from moto.server import ThreadedMotoServer

    from mlambda_local.cloud.functions import function_specs
    from mlambda_local.cloud.provision import Provisioner
    from mlambda_local.cloud.template import IntrinsicResolver, load_template

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one line per request otherwise
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        endpoint = f"http://{host}:{port}"
        # moto's backends are per process: a second stack in this process starts from nothing.
        urlopen(Request(f"{endpoint}/moto-api/reset", method="POST"), timeout=30).close()
        template = load_template(template_path, stack_name=stack_name)
        resolver = IntrinsicResolver(template, queue_url_base=endpoint)
        session = boto3.session.Session(
            region_name=template.region, aws_access_key_id="testing", aws_secret_access_key="testing"
        )
        Provisioner(template, resolver, session, endpoint).provision()
        base = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_SESSION_TOKEN": "testing",
            "AWS_REGION": template.region,
            "AWS_DEFAULT_REGION": template.region,
            "AWS_ENDPOINT_URL": endpoint,
            "LAMBDA_TASK_ROOT": "/var/task",
            "AWS_EXECUTION_ENV": f"AWS_Lambda_python{PYTHON_VERSION}",
        }
        yield {spec.logical_id: {**base, **spec.environment} for spec in function_specs(template, resolver)}
    finally:
        server.stop()


def run(root: Path, *, check: bool = True) -> int:
    """Build, print the size table, check each artifact alone; 0 when all is well."""
    started = time.perf_counter()
    python = find_python312()
    sources = read_sources(root / "template.yaml")
    built = build(root, python)
    rows = sizes(sources, built)
    print(
        f"package-check: {len(rows)} functions built with {python} in {time.perf_counter() - started:.0f} s"
    )
    print(size_table(rows))
    problems = size_problems(rows, built, list(sources.layers))
    if check:
        runtime = runtime_sdk(python, root / ".aws-sam" / "deps")
        with (
            provisioned_stores(root / "template.yaml", "package-check") as environments,
            ThreadPoolExecutor(max_workers=4) as pool,
        ):
            outcomes = list(
                pool.map(
                    lambda f: check_alone(
                        f,
                        built=built,
                        python=python,
                        runtime=runtime,
                        environment=environments[f.logical_id],
                        events_dir=root / "tests" / "events",
                    ),
                    sources.functions,
                )
            )
        problems += [outcome for outcome in outcomes if outcome]
        passed = len(sources.functions) - sum(1 for outcome in outcomes if outcome)
        print(
            f"alone: {passed} of {len(sources.functions)} artifacts imported their handler and answered "
            f"a sample event in a bare Python {PYTHON_VERSION} (runtime SDK {', '.join(RUNTIME_SDK)})"
        )
    for problem in problems:
        print(f"FAILED: {problem}", file=sys.stderr)
    print(f"package-check: {'failed' if problems else 'passed'} in {time.perf_counter() - started:.0f} s")
    return 1 if problems else 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m mlambda_local.packaging", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--root", type=Path, default=Path.cwd(), help="the repository (template.yaml) root")
    parser.add_argument("--build-only", action="store_true", help="build .aws-sam/build and print sizes only")
    arguments = parser.parse_args(argv)
    try:
        return run(arguments.root.resolve(), check=not arguments.build_only)
    except PackagingError as exc:
        print(f"package-check: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
