"""The template's functions as the runner sees them (``FunctionSpec``), and the in-process mode.

``Function`` is what every trigger (API, queues, schedules, log subscriptions) calls: ``invoke``
(synchronous), ``submit`` (asynchronous), ``status`` and ``close``. Two kinds implement it:

- ``execution.FunctionPool``, the default: worker processes behind the Lambda Runtime API;
- ``LocalFunction``, the in-process mode kept for fast tests: every function shares the runner's
  process, each invocation runs in a thread with the function's variables overlaid through
  ``mlambda.config.function_environment`` (a contextvar the shared layer's settings read), and
  its output goes to the function's log group like a worker's. Handlers are loaded from
  ``<template dir>/<CodeUri>/<module>.py`` under a unique module name, because every function
  calls its module ``app.py``. No Timeout kill, no MemorySize, one process for all.

Only the in-process mode imports the shared layer (``mlambda.config``, powertools) into the
runner: with worker processes the runner never loads it.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import sys
import threading
import time
import traceback
import uuid
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeoutError
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any, Protocol

from mlambda_local.cloud.errors import FunctionInvocationError, TemplateError
from mlambda_local.cloud.function_output import function_output
from mlambda_local.cloud.logs import LineWriter, LogGroup
from mlambda_local.cloud.template import NO_VALUE, IntrinsicResolver, Template

logger = logging.getLogger("mlambda.local")

DEFAULT_CONCURRENCY = 4
DEFAULT_TIMEOUT_SECONDS = 3
DEFAULT_MEMORY_MB = 128
DEFAULT_RUNTIME = "python3.12"

Handler = Callable[[Any, Any], Any]


@dataclass
class LambdaContext:
    """The context object Lambda passes as a handler's second argument."""

    function_name: str
    invoked_function_arn: str
    memory_limit_in_mb: int
    timeout_seconds: float
    function_version: str = "$LATEST"
    aws_request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    log_group_name: str = ""
    log_stream_name: str = ""
    identity: Any = None
    client_context: Any = None
    _deadline: float = 0.0

    def __post_init__(self) -> None:
        self._deadline = time.monotonic() + self.timeout_seconds
        if not self.log_group_name:
            self.log_group_name = f"/aws/lambda/{self.function_name}"
        if not self.log_stream_name:
            self.log_stream_name = f"{time.strftime('%Y/%m/%d')}/[$LATEST]{uuid.uuid4().hex}"

    def get_remaining_time_in_millis(self) -> int:
        """Milliseconds left before the function's Timeout, as on Lambda."""
        return max(0, int((self._deadline - time.monotonic()) * 1000))


@dataclass(frozen=True)
class FunctionSpec:
    """What the runner needs to know about one AWS::Lambda::Function of the template."""

    logical_id: str
    name: str
    arn: str
    code_dir: Path
    handler: str
    environment: dict[str, str]
    timeout: float
    memory_mb: int
    reserved_concurrency: int | None
    runtime: str = DEFAULT_RUNTIME
    layer_dirs: tuple[Path, ...] = ()  # each local layer's content directory, in the template's order

    @property
    def module_path(self) -> Path:
        """``app.handler`` -> ``<code_dir>/app.py``; ``pkg/mod.fn`` or ``pkg.mod.fn`` -> ``pkg/mod.py``."""
        module = self.handler.rsplit(".", 1)[0]
        relative = module.replace(".", "/")
        candidate = self.code_dir / f"{relative}.py"
        if not candidate.exists() and (self.code_dir / relative / "__init__.py").exists():
            return self.code_dir / relative / "__init__.py"
        return candidate

    @property
    def handler_attribute(self) -> str:
        return self.handler.rsplit(".", 1)[-1]


def _environment_value(value: Any) -> str:
    """CloudFormation turns every environment value into a string."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict | list):
        return json.dumps(value)
    return str(value)


def _layer_dirs(template: Template, logical_id: str, layers: Any) -> tuple[Path, ...]:
    """The content directories of the function's layers declared in this template (``!Ref``)."""
    found: list[Path] = []
    for layer in layers or []:
        name = layer.get("Ref") if isinstance(layer, dict) else None
        resource = template.sam_resource(name) if isinstance(name, str) else {}
        content = (resource.get("Properties") or {}).get("ContentUri")
        if not isinstance(content, str) or content.startswith("s3://"):
            raise TemplateError(
                f"function {logical_id}: layer {layer!r} is not a layer of this template with a local ContentUri"
            )
        found.append((template.directory / content).resolve())
    return tuple(found)


def function_specs(template: Template, resolver: IntrinsicResolver) -> list[FunctionSpec]:
    """Every enabled AWS::Lambda::Function, with CodeUri from the SAM resource (or Globals)."""
    specs: list[FunctionSpec] = []
    globals_function = template.function_globals()
    for logical_id, resource in template.resources.items():
        if resource.get("Type") != "AWS::Lambda::Function" or not resolver.is_enabled(resource):
            continue
        properties = resource.get("Properties") or {}
        sam_properties = template.sam_resource(logical_id).get("Properties") or {}
        code_uri = sam_properties.get("CodeUri", globals_function.get("CodeUri"))
        code = properties.get("Code") or {}
        if code_uri is None and "ZipFile" in code:
            raise TemplateError(f"function {logical_id}: inline code (ZipFile/InlineCode) cannot run locally")
        if code_uri is None:
            raise TemplateError(f"function {logical_id}: no CodeUri in the template")
        code_uri = resolver.resolve(code_uri)
        if not isinstance(code_uri, str) or code_uri.startswith("s3://"):
            raise TemplateError(f"function {logical_id}: CodeUri {code_uri!r} is not a local directory")
        handler = resolver.resolve(properties.get("Handler", sam_properties.get("Handler")))
        if not isinstance(handler, str) or "." not in handler:
            raise TemplateError(f"function {logical_id}: Handler {handler!r} is not '<module>.<function>'")
        variables = resolver.resolve((properties.get("Environment") or {}).get("Variables") or {})
        reserved = resolver.resolve(properties.get("ReservedConcurrentExecutions"))
        layers = sam_properties.get("Layers", globals_function.get("Layers"))
        specs.append(
            FunctionSpec(
                logical_id=logical_id,
                name=resolver.physical_name(logical_id),
                arn=resolver.arn(logical_id),
                code_dir=(template.directory / code_uri).resolve(),
                handler=handler,
                environment={
                    key: _environment_value(value)
                    for key, value in variables.items()
                    if value is not NO_VALUE
                },
                timeout=float(resolver.resolve(properties.get("Timeout", DEFAULT_TIMEOUT_SECONDS))),
                memory_mb=int(resolver.resolve(properties.get("MemorySize", DEFAULT_MEMORY_MB))),
                reserved_concurrency=None if reserved is None else int(reserved),
                runtime=str(resolver.resolve(properties.get("Runtime", DEFAULT_RUNTIME))),
                layer_dirs=_layer_dirs(template, logical_id, layers),
            )
        )
    return specs


def check_code(spec: FunctionSpec) -> Path:
    """The handler's module file; TemplateError naming the function when it or its directory is missing."""
    if not spec.code_dir.is_dir():
        raise TemplateError(f"function {spec.logical_id}: CodeUri directory {spec.code_dir} does not exist")
    path = spec.module_path
    if not path.is_file():
        raise TemplateError(f"function {spec.logical_id}: handler module {path} does not exist")
    return path


def load_handler(spec: FunctionSpec) -> Handler:
    """Import the function's module under ``mlambda_fn_<LogicalId>`` and return its handler."""
    from mlambda.config import function_environment

    path = check_code(spec)
    module_name = f"mlambda_fn_{spec.logical_id}"
    module_spec = importlib.util.spec_from_file_location(module_name, path)
    if module_spec is None or module_spec.loader is None:
        raise TemplateError(f"function {spec.logical_id}: cannot load {path}")
    module: ModuleType = importlib.util.module_from_spec(module_spec)
    sys.modules[module_name] = module
    try:
        with function_environment(spec.environment):
            module_spec.loader.exec_module(module)
    except Exception as exc:
        sys.modules.pop(module_name, None)
        raise TemplateError(f"function {spec.logical_id}: importing {path} failed: {exc!r}") from exc
    handler = getattr(module, spec.handler_attribute, None)
    if not callable(handler):
        sys.modules.pop(module_name, None)
        raise TemplateError(
            f"function {spec.logical_id}: {path.name} has no callable {spec.handler_attribute!r} "
            f"(Handler {spec.handler})"
        )
    return handler  # type: ignore[no-any-return]


@contextmanager
def lambda_log_keys(spec: FunctionSpec, context: LambdaContext) -> Iterator[None]:
    """This invocation's service and Lambda keys on the shared powertools Logger, for this thread.

    On Lambda each function has its own process, so powertools reads the service name once
    and keeps the Lambda context keys process-wide. Here every function shares one Logger;
    thread-local keys (which win over process-wide ones) keep concurrent invocations' log
    lines apart.
    """
    from mlambda.observability import logger as function_logger

    function_logger.thread_safe_append_keys(
        service=spec.environment.get("POWERTOOLS_SERVICE_NAME", spec.logical_id),
        function_name=spec.name,
        function_arn=spec.arn,
        function_memory_size=spec.memory_mb,
        function_request_id=context.aws_request_id,
    )
    try:
        yield
    finally:
        function_logger.thread_safe_clear_keys()


class Function(Protocol):
    """A function of the template as its triggers see it (``LocalFunction`` or ``execution.FunctionPool``)."""

    spec: FunctionSpec
    group: LogGroup

    @property
    def environment(self) -> dict[str, str]:
        """The variables the function sees (its template's, and Lambda's own)."""
        ...

    def invoke(self, event: Any, *, throttle: bool = False) -> Any:
        """Run ``event`` synchronously; the result, or FunctionInvocationError.

        ``throttle``: a synchronous invoker's call (API Gateway, Invoke), refused as Lambda refuses
        it (TooManyRequestsException) when the function's reserved concurrency is all in use.
        """
        ...

    def submit(self, event: Any) -> Future[Any]:
        """Start an asynchronous invocation."""
        ...

    def status(self) -> dict[str, Any]:
        """Counters for ``mlambda local status``."""
        ...

    def close(self) -> None:
        """Stop running it."""
        ...


class LocalFunction:
    """One function run in this process: a bounded thread pool, counters, and the Lambda calling convention."""

    def __init__(
        self,
        spec: FunctionSpec,
        handler: Handler,
        concurrency: int,
        base_environment: Mapping[str, str],
        group: LogGroup,
    ) -> None:
        self.spec = spec
        self.group = group
        self._stream = group.new_stream()
        self.output = LineWriter(self._stream)
        self.handler = handler
        self.concurrency = max(1, concurrency)
        self._environment = {
            **base_environment,
            "AWS_LAMBDA_FUNCTION_NAME": spec.name,
            "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(spec.memory_mb),
            "AWS_LAMBDA_LOG_GROUP_NAME": f"/aws/lambda/{spec.name}",
            "_HANDLER": spec.handler,
            **spec.environment,
        }
        self._pool = ThreadPoolExecutor(
            max_workers=self.concurrency, thread_name_prefix=f"fn-{spec.logical_id}"
        )
        self._lock = threading.Lock()
        self.invocations = 0
        self.errors = 0
        self.last_error: str | None = None

    @property
    def environment(self) -> dict[str, str]:
        """The variables this function sees on top of the process environment."""
        return dict(self._environment)

    def _run(self, event: Any, started: threading.Event | None = None) -> Any:
        if started is not None:
            started.set()
        context = LambdaContext(
            function_name=self.spec.name,
            invoked_function_arn=self.spec.arn,
            memory_limit_in_mb=self.spec.memory_mb,
            timeout_seconds=self.spec.timeout,
        )
        from mlambda.config import function_environment

        with self._lock:
            self.invocations += 1
        try:
            with (
                function_environment(self._environment),
                function_output(self.output),
                lambda_log_keys(self.spec, context),
            ):
                return self.handler(event, context)
        except BaseException as exc:
            with self._lock:
                self.errors += 1
                self.last_error = f"{type(exc).__name__}: {exc}"
            if str(exc) == "Unauthorized":
                # An authorizer's way to say 401 (API Gateway's contract): an answer, not a fault.
                logger.info("function %s answered Unauthorized", self.spec.logical_id)
            else:
                logger.error(
                    "function %s failed (request %s):\n%s",
                    self.spec.logical_id,
                    context.aws_request_id,
                    "".join(traceback.format_exception(exc)),
                )
            raise

    def submit(self, event: Any, started: threading.Event | None = None) -> Future[Any]:
        """Start an invocation (asynchronous, as S3 and EventBridge invoke); at most ``concurrency`` run at once."""
        # A JSON round trip gives the handler its own copy, shaped exactly as Lambda would deliver it.
        payload = json.loads(json.dumps(event))
        return self._pool.submit(self._run, payload, started)

    def invoke(self, event: Any, *, throttle: bool = False) -> Any:
        """Invoke synchronously; raises FunctionInvocationError (with the cause) on error or timeout.

        The Timeout counts from when a worker picks the invocation up, not while it waits for one.
        In process nothing is throttled (``throttle`` is accepted for the protocol): every function
        shares the runner's threads.
        """
        started = threading.Event()
        future = self.submit(event, started)
        while not started.wait(0.05) and not future.done():
            continue
        try:
            return future.result(timeout=self.spec.timeout + 1.0)
        except FutureTimeoutError as exc:
            with self._lock:
                self.errors += 1
                self.last_error = f"Task timed out after {self.spec.timeout:.2f} seconds"
            raise FunctionInvocationError(
                self.spec.logical_id, self.last_error, error_type="Sandbox.Timedout"
            ) from exc
        except Exception as exc:
            raise FunctionInvocationError(
                self.spec.logical_id,
                f"{type(exc).__name__}: {exc}",
                error_type=type(exc).__name__,
                error_message=str(exc),
            ) from exc

    def status(self) -> dict[str, Any]:
        """Counters for ``LocalCloud.status()``."""
        with self._lock:
            return {
                "name": self.spec.name,
                "handler": self.spec.handler,
                "code_dir": str(self.spec.code_dir),
                "mode": "in-process",
                "concurrency": self.concurrency,
                "invocations": self.invocations,
                "errors": self.errors,
                "last_error": self.last_error,
            }

    def close(self) -> None:
        """Wait for running invocations and release the workers."""
        self._pool.shutdown(wait=True, cancel_futures=True)
