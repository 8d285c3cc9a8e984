"""``LocalCloud``: the template running on one machine, without Docker.

Start order, the critical path first: read and validate the template (its SAM expansion cached
in the data dir, so a bad function fails before anything runs), take moto's port, set up every
function and start the first pre-warmed workers (``prewarm``: their init overlaps what follows),
then import and start moto with the restored state, provision what is missing (nothing, on a
restart of an unchanged template), open the triggers (HTTP API, SQS pollers, S3 pollers,
scheduler, log subscriptions), write ``state.json``, and let the other workers start. Each phase
is on the start-up timeline (``startup``), logged when the cloud is up and at its first API
answer. boto3, moto and the SAM translator are imported only where they are needed, after the
first workers have started.

Functions run in worker processes behind the Lambda Runtime API (``execution``), from the
source tree or from ``sam build``'s artifacts (``from_build``); ``mode="in-process"`` runs them
in threads of this process instead, for fast tests. Either way each function's output goes to
its log group under ``<data_dir>/logs`` (``logs``), where subscriptions deliver from.
"""

from __future__ import annotations

import hmac
import json
import logging
import os
import secrets
import threading
import time
from collections.abc import Callable
from contextlib import suppress
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Literal, Self
from urllib.parse import unquote, urlsplit

from mlambda_local.cloud.apigateway import HttpRequest, HttpResponse, RestApi
from mlambda_local.cloud.control import CONTROL_HEADER, STATE_FILE, read_state, write_state
from mlambda_local.cloud.errors import (
    FunctionInvocationError,
    MlambdaLocalError,
    TemplateError,
    UnknownTargetError,
)
from mlambda_local.cloud.execution import INIT_LIMIT_SECONDS, FunctionPool, Watchdog, WorkerLaunch
from mlambda_local.cloud.functions import (
    DEFAULT_CONCURRENCY,
    Function,
    FunctionSpec,
    LocalFunction,
    check_code,
    function_specs,
    load_handler,
)
from mlambda_local.cloud.lifecycle import LifecycleSweeper, rules_from_template
from mlambda_local.cloud.log_subscription import (
    FilterPattern,
    SubscriptionDelivery,
    SubscriptionFilter,
    SubscriptionRunner,
    subscription_error,
)
from mlambda_local.cloud.logs import LOG_DIRECTORY, LogGroup, LogTail
from mlambda_local.cloud.moto_server import MotoServer
from mlambda_local.cloud.prewarm import Prewarmer, UsageRecord, prewarm_order
from mlambda_local.cloud.runtimes import (
    built_launch,
    runtime_python,
    runtime_support,
    source_launch,
)
from mlambda_local.cloud.schedule import (
    ScheduledRule,
    Scheduler,
    ScheduleTarget,
    utc_now,
    validate_schedule,
)
from mlambda_local.cloud.server import CONTROL_PREFIX, LocalHttpServer
from mlambda_local.cloud.sqs import QueuePoller, S3NotificationPoller, SqsEventSourcePoller, SqsMapping
from mlambda_local.cloud.startup import StartupTimeline
from mlambda_local.cloud.template import DEFAULT_REGION, IntrinsicResolver, Template, load_template
from mlambda_local.private_files import private_directory, write_private_json

if TYPE_CHECKING:
    import boto3

    from mlambda_local.cloud.provision import Inventory

logger = logging.getLogger("mlambda.local")

SUPPORTED_EVENT_TYPES = frozenset({"Api", "SQS", "S3", "Schedule"})
DEFAULT_SQS_CONCURRENCY = 2
S3_POLLER_THREADS = 2
DELIVERIES_DIR = "deliveries"  # SQS batches being delivered (sqs.SqsEventSourcePoller)
PROVISIONED_FILE = "provisioned.json"  # what the last provisioning made, and of which template
_LOOPBACK = frozenset({"127.0.0.1", "::1", "::ffff:127.0.0.1"})
Mode = Literal["process", "in-process"]


def validate_event_sources(template: Template, resolver: IntrinsicResolver) -> None:
    """Fail, naming the function, on any trigger the local cloud cannot deliver."""
    for logical_id, resource in (template.original.get("Resources") or {}).items():
        if resource.get("Type") != "AWS::Serverless::Function":
            continue
        for event_name, event in ((resource.get("Properties") or {}).get("Events") or {}).items():
            kind = event.get("Type")
            if kind not in SUPPORTED_EVENT_TYPES:
                raise TemplateError(
                    f"function {logical_id}: event {event_name} of type {kind} is not supported by the local "
                    f"cloud (supported: {', '.join(sorted(SUPPORTED_EVENT_TYPES))})"
                )
    for logical_id, resource in template.resources.items():
        kind = resource.get("Type")
        properties = resource.get("Properties") or {}
        if kind == "AWS::Lambda::EventSourceMapping":
            source = str(resolver.resolve(properties.get("EventSourceArn", "")))
            if not source.startswith("arn:aws:sqs:"):
                raise TemplateError(
                    f"event source mapping {logical_id} of function {_function_ref(properties)}: "
                    f"source {source!r} is not an SQS queue; only SQS mappings run locally"
                )
            if properties.get("FilterCriteria"):
                raise TemplateError(
                    f"event source mapping {logical_id} of function {_function_ref(properties)}: "
                    "FilterCriteria is not supported locally"
                )
        elif kind == "AWS::Events::Rule":
            targets = [
                t for t in properties.get("Targets") or [] if ":function:" in str(resolver.resolve(t["Arn"]))
            ]
            if targets and "ScheduleExpression" not in properties:
                raise TemplateError(
                    f"rule {logical_id}: event-pattern rules targeting functions are not supported locally"
                )
            if targets:
                validate_schedule(logical_id, str(resolver.resolve(properties["ScheduleExpression"])))
        elif kind == "AWS::Logs::SubscriptionFilter":
            destination = str(resolver.resolve(properties.get("DestinationArn", "")))
            if resolver.logical_id_for_function_arn(destination) is None:
                raise subscription_error(
                    logical_id, f"destination {destination!r} is not a function of this template"
                )
            try:
                FilterPattern.parse(str(resolver.resolve(properties.get("FilterPattern", ""))))
            except ValueError as exc:
                raise subscription_error(logical_id, f"filter pattern: {exc}") from exc


def _function_ref(properties: dict[str, Any]) -> str:
    name = properties.get("FunctionName")
    if isinstance(name, dict) and "Ref" in name:
        return str(name["Ref"])
    return str(name)


class LocalCloud:
    """A SAM template running in this process against moto (or another endpoint)."""

    def __init__(
        self,
        template_path: Path | str,
        data_dir: Path | str,
        *,
        endpoint_url: str | None = None,
        api_port: int = 0,
        stack_name: str = "mlambda-local",
        parameters: dict[str, Any] | None = None,
        region: str = DEFAULT_REGION,
        moto_port: int = 0,
        clock: Callable[[], datetime] = utc_now,
        schedule_check_interval: float = 5.0,
        mode: Mode = "process",
        from_build: Path | str | None = None,
        python: str | None = None,
        max_instances: int = DEFAULT_CONCURRENCY,
        idle_seconds: float = 300.0,
        echo_logs: bool = False,
        prewarm: bool = False,
        log_poll_seconds: float = 1.0,
    ) -> None:
        """``template_path`` is ignored with ``from_build`` (the build folder's template is the one).

        ``mode``: worker processes (``process``, Lambda's way) or threads of this process
        (``in-process``, for fast tests). ``python``: the workers' interpreter in source mode.
        ``max_instances``: concurrency of a function with no reserved or mapping concurrency.
        ``echo_logs``: print the functions' log lines on this process's stdout. ``prewarm``:
        start one worker of each function behind the API while the rest comes up.
        ``log_poll_seconds``: how often log subscriptions look for new lines.
        """
        if mode not in ("process", "in-process"):
            raise MlambdaLocalError(f"mode must be 'process' or 'in-process', not {mode!r}")
        if from_build is not None and mode != "process":
            raise MlambdaLocalError(
                "built artifacts run in worker processes: from_build needs mode='process'"
            )
        self.from_build = None if from_build is None else Path(from_build)
        self.template_path = (
            Path(template_path) if self.from_build is None else self.from_build / "template.yaml"
        )
        self.mode: Mode = mode
        self.python = python
        self.max_instances = max_instances
        self.idle_seconds = idle_seconds
        self.echo_logs = echo_logs
        self.prewarm = prewarm
        self.log_poll_seconds = log_poll_seconds
        self.data_dir = Path(data_dir)
        self._endpoint_url = endpoint_url
        self.api_port = api_port
        self.stack_name = stack_name
        self.parameters = dict(parameters or {})
        self.region = region
        self.moto_port = moto_port
        self.clock = clock
        self.schedule_check_interval = schedule_check_interval
        self.template: Template | None = None
        self.resolver: IntrinsicResolver | None = None
        self.functions: dict[str, Function] = {}
        self.apis: list[RestApi] = []
        self.pollers: list[QueuePoller] = []
        self.scheduler: Scheduler | None = None
        self.lifecycle: LifecycleSweeper | None = None
        self.subscriptions: SubscriptionRunner | None = None
        self._watchdog: Watchdog | None = None
        self._echo: _LogEcho | None = None
        self._inventory: Inventory | None = None
        self._outputs: dict[str, Any] = {}
        self._moto: MotoServer | None = None
        self._server: LocalHttpServer | None = None
        self._saved_environment: dict[str, str | None] = {}
        self._token = secrets.token_urlsafe(24)
        self._lock = threading.Lock()
        self._running = False
        self.fault: str | None = None  # why the cloud stopped by itself, if it did
        self._prewarmer: Prewarmer | None = None
        self._sqs: Any = None  # the pollers' (and log subscriptions') SQS client
        # Built here, as early as the cloud exists: its first phase is the process's start and imports.
        self.timeline = StartupTimeline()
        self.timeline.add("interpreter and imports", 0.0, self.timeline.now(), time.process_time())

    # -- lifecycle ---------------------------------------------------------------------------------

    def start(self) -> Self:
        """Bring everything up; on any failure, tear down what started and re-raise."""
        with self._lock:
            if self._running:
                return self
            try:
                self._start()
            except BaseException:
                self._stop()
                raise
            self._running = True
        return self

    def _start(self) -> None:
        timeline = self.timeline
        private_directory(self.data_dir)
        with timeline.phase("template"):
            template = load_template(
                self.template_path,
                stack_name=self.stack_name,
                parameters=self.parameters,
                region=self.region,
                cache_dir=self.data_dir,
            )
            self.template = template
            validate_event_sources(template, IntrinsicResolver(template))
        if self._endpoint_url is None:
            self._moto = MotoServer(self.data_dir, port=self.moto_port)
            endpoint = self._moto.bind()  # the port, for the workers; moto itself starts below
            self._set_environment(endpoint, fake_credentials=True)
        else:
            endpoint = self._endpoint_url
            from mlambda_local.cloud.provision import check_endpoint

            check_endpoint(endpoint, self._session())
            self._set_environment(endpoint, fake_credentials=False)
        self._endpoint_url = endpoint
        resolver = IntrinsicResolver(template, queue_url_base=endpoint)
        self.resolver = resolver
        with timeline.phase("functions"):
            mappings = self._sqs_mappings(template, resolver)
            self._set_up_functions(function_specs(template, resolver), mappings, endpoint)
            rules = self._scheduled_rules(template, resolver)
            apis = [
                RestApi.from_template(logical_id, template, resolver, self.functions)
                for logical_id, resource in template.resources.items()
                if resource.get("Type") == "AWS::ApiGateway::RestApi" and resolver.is_enabled(resource)
            ]
            stages = [api.stage for api in apis]
            if len(stages) != len(set(stages)):
                raise TemplateError(
                    f"two APIs deploy the same stage name ({stages}); the local server mounts APIs by stage"
                )
            self.apis = apis
            if self.prewarm:
                self._start_prewarming()
        if self._moto is not None:
            with timeline.phase("moto"):
                self._moto.start()
                self._moto.supervise(self._on_fault)
        session = self._session()
        with timeline.phase("provision"):
            self._inventory = self._provision(template, resolver, session, endpoint)
        self._outputs = resolver.outputs()
        with timeline.phase("triggers"):
            self.lifecycle = LifecycleSweeper(
                lambda: session.client("s3", endpoint_url=endpoint),
                rules_from_template(template, resolver),
                self.clock,
            )
            self.lifecycle.start()
            self._server = LocalHttpServer(
                apis, self._control, port=self.api_port, on_first_answer=self._first_answer
            )
            self._server.start()
            self._start_pollers(session, endpoint, mappings)
            self.subscriptions = SubscriptionRunner(
                self._subscriptions(template, resolver, session, endpoint), interval=self.log_poll_seconds
            )
            self.subscriptions.start()
            self.scheduler = Scheduler(
                rules,
                self.region,
                template.account_id,
                clock=self.clock,
                check_interval=self.schedule_check_interval,
            )
            self.scheduler.start()
        write_state(self.data_dir, self._state(pid=os.getpid()))
        timeline.event("up")
        if self._prewarmer is not None:
            self._prewarmer.release()
        logger.info(
            "local cloud %s up in %.2f s since its process started (this process's CPU %.2f s; %s): API %s, endpoint %s",
            self.stack_name,
            timeline.now(),
            time.process_time(),
            timeline.summary(),
            self.api_url,
            endpoint,
        )

    def _provision(
        self, template: Template, resolver: IntrinsicResolver, session: boto3.session.Session, endpoint: str
    ) -> Inventory:
        """Provision the template's resources, or, on the embedded moto, reuse what the last start made.

        Reused when what provisioning depends on is unchanged (``Provisioner.fingerprint``) and
        every resource it made is in the restored state; anything else provisions (idempotently).
        """
        from mlambda_local.cloud.provision import Inventory, Provisioner

        provisioner = Provisioner(
            template,
            resolver,
            session,
            endpoint,
            {fid: fn.spec.timeout for fid, fn in self.functions.items()},
        )
        fingerprint = provisioner.fingerprint()
        record_path = self.data_dir / PROVISIONED_FILE
        if self._moto is not None and fingerprint is not None:
            try:
                record = json.loads(record_path.read_text(encoding="utf-8"))
                inventory = Inventory.from_dict(record["inventory"], resolver.queue_url)
            except (OSError, ValueError, KeyError, TypeError):
                record = None
            if record is not None and record.get("fingerprint") == fingerprint:
                missing = self._moto.missing(inventory.names(), template.account_id, template.region)
                if not missing:
                    logger.info("resources as provisioned at the last start: provisioning skipped")
                    return inventory
                logger.info("provisioning again: %s missing", ", ".join(missing[:5]))
        inventory = provisioner.provision()
        if fingerprint is not None:
            write_private_json(record_path, {"fingerprint": fingerprint, "inventory": inventory.as_dict()})
        else:
            record_path.unlink(missing_ok=True)
        return inventory

    def _start_prewarming(self) -> None:
        """One worker of each function behind the API, the critical ones now (``prewarm``)."""
        behind_api: dict[str, FunctionPool] = {}
        authorizers: set[str] = set()
        for api in self.apis:
            for route in api.routes:
                if route.authorizer is not None and isinstance(route.authorizer.function, FunctionPool):
                    authorizers.add(route.authorizer.function.spec.logical_id)
                    behind_api.setdefault(
                        route.authorizer.function.spec.logical_id, route.authorizer.function
                    )
                if isinstance(route.function, FunctionPool):
                    behind_api.setdefault(route.function.spec.logical_id, route.function)
        pools = [
            pool
            for fid, pool in self.functions.items()
            if fid in behind_api and isinstance(pool, FunctionPool)
        ]
        if not pools:
            return
        usage = UsageRecord(self.data_dir)
        first, then = prewarm_order(pools, authorizers, usage.previous)
        self._prewarmer = Prewarmer(first, then, usage=usage, counts=self._invocation_counts)
        self._prewarmer.start()

    def _invocation_counts(self) -> dict[str, int]:
        return {
            fid: function.invocations
            for fid, function in self.functions.items()
            if isinstance(function, FunctionPool)
        }

    def _first_answer(self) -> None:
        """The first API response is out: the start-up timeline, with the pre-warmed workers' inits."""
        timeline = self.timeline
        timeline.event("first API answer")
        if self._prewarmer is not None:
            for logical_id, environment in list(self._prewarmer.started):
                if environment.ready_at is not None:
                    timeline.add(
                        f"init {logical_id}",
                        environment.started_at - timeline.origin,
                        environment.ready_at - timeline.origin,
                    )
        logger.info(
            "first API answer %.2f s after the process started: %s", timeline.now(), timeline.summary()
        )

    def _set_up_functions(self, specs: list[FunctionSpec], mappings: list[SqsMapping], endpoint: str) -> None:
        """One ``Function`` per spec: worker pools (from source or build), or in-process runners."""
        base_environment = self._function_base_environment(endpoint)
        # In process the functions share this process's environment (set by _set_environment).
        in_process_environment = {
            "AWS_REGION": self.region,
            "AWS_DEFAULT_REGION": self.region,
            "AWS_ENDPOINT_URL": endpoint,
        }
        launches: dict[str, WorkerLaunch] = {}
        if self.mode == "process" and self.from_build is not None:
            pythons = {runtime: runtime_python(runtime) for runtime in {spec.runtime for spec in specs}}
            supports = {
                runtime: runtime_support(python, runtime, self.data_dir)
                for runtime, python in pythons.items()
            }
            launches = {
                spec.logical_id: built_launch(spec, pythons[spec.runtime], supports[spec.runtime])
                for spec in specs
            }
        for spec in specs:
            concurrency = spec.reserved_concurrency or max(
                (m.maximum_concurrency for m in mappings if m.function_logical_id == spec.logical_id),
                default=self.max_instances,
            )
            group = LogGroup(self.data_dir, spec.name)
            if self.mode == "in-process":
                self.functions[spec.logical_id] = LocalFunction(
                    spec, load_handler(spec), concurrency, in_process_environment, group
                )
                continue
            check_code(spec)  # what is missing fails now; an import error is the worker's init error
            launch = launches.get(spec.logical_id) or source_launch(spec, self.python)
            self.functions[spec.logical_id] = FunctionPool(
                spec,
                launch,
                group,
                concurrency=concurrency,
                base_environment=base_environment,
                idle_seconds=self.idle_seconds,
            )
        pools = [f for f in self.functions.values() if isinstance(f, FunctionPool)]
        if pools:
            self._watchdog = Watchdog(pools)
            self._watchdog.start()
        if self.echo_logs:
            self._echo = _LogEcho({fid: f.group for fid, f in self.functions.items()})
            self._echo.start()

    def _function_base_environment(self, endpoint: str) -> dict[str, str]:
        """What every worker sees besides its function's variables: Lambda's basics, the endpoint, credentials.

        Not this process's environment: a function sees what Lambda would give it. With moto the
        credentials are fake and the host's AWS config files are hidden, so no profile leaks in.
        """
        environment = {
            "PATH": os.environ.get("PATH", "/usr/local/bin:/usr/bin:/bin"),
            "LANG": "en_US.UTF-8",
            "TZ": ":UTC",
            "AWS_REGION": self.region,
            "AWS_DEFAULT_REGION": self.region,
            "AWS_ENDPOINT_URL": endpoint,
        }
        if self._moto is not None:
            environment |= {
                "AWS_ACCESS_KEY_ID": "testing",
                "AWS_SECRET_ACCESS_KEY": "testing",
                "AWS_SESSION_TOKEN": "testing",
                "AWS_CONFIG_FILE": os.devnull,
                "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
            }
        else:
            for key, value in os.environ.items():
                if (key.startswith("AWS_") and key not in environment) or key == "HOME":
                    environment[key] = value
        return environment

    def _subscriptions(
        self, template: Template, resolver: IntrinsicResolver, session: boto3.session.Session, endpoint: str
    ) -> list[SubscriptionDelivery]:
        """Every log subscription filter to a function, with its destination's async retry settings."""
        groups = {f.spec.name: f.group for f in self.functions.values()}
        deliveries: list[SubscriptionDelivery] = []
        sqs = self._sqs or session.client("sqs", endpoint_url=endpoint)
        for logical_id, resource in template.resources.items():
            if resource.get("Type") != "AWS::Logs::SubscriptionFilter" or not resolver.is_enabled(resource):
                continue
            properties = resolver.resolve(resource.get("Properties") or {})
            group_name = str(properties.get("LogGroupName", ""))
            group = groups.get(group_name.removeprefix("/aws/lambda/"))
            if group is None:
                raise subscription_error(
                    logical_id, f"log group {group_name!r} is not a function's log group"
                )
            destination_id = resolver.logical_id_for_function_arn(str(properties["DestinationArn"]))
            assert destination_id is not None  # validate_event_sources checked it
            retries, queue = self._async_invoke_config(template, resolver, destination_id)
            subscription = SubscriptionFilter(
                logical_id=logical_id,
                name=str(properties.get("FilterName") or resolver.physical_name(logical_id)),
                group=group,
                pattern=FilterPattern.parse(str(properties.get("FilterPattern", ""))),
                destination=self.functions[destination_id],
                max_retries=retries,
                on_failure_queue_url=queue,
            )
            deliveries.append(
                SubscriptionDelivery(
                    subscription,
                    self.data_dir / LOG_DIRECTORY / ".subscriptions",
                    account_id=template.account_id,
                    send_to_queue=lambda url, body: sqs.send_message(QueueUrl=url, MessageBody=body),
                )
            )
        return deliveries

    def _async_invoke_config(
        self, template: Template, resolver: IntrinsicResolver, function_id: str
    ) -> tuple[int, str | None]:
        """``AWS::Lambda::EventInvokeConfig`` of a function: retries, and the OnFailure queue's URL."""
        for resource in template.resources.values():
            if resource.get("Type") != "AWS::Lambda::EventInvokeConfig":
                continue
            properties = resolver.resolve(resource.get("Properties") or {})
            name = str(properties.get("FunctionName", ""))
            if (
                resolver.logical_id_for_function_arn(f"function:{name}") != function_id
                and name != function_id
            ):
                continue
            retries = int(properties.get("MaximumRetryAttempts", 2))
            destination = ((properties.get("DestinationConfig") or {}).get("OnFailure") or {}).get(
                "Destination"
            )
            queue = None
            if isinstance(destination, str) and destination.startswith("arn:aws:sqs:"):
                queue = resolver.queue_url(destination.rsplit(":", 1)[-1])
            return retries, queue
        return 2, None

    def stop(self) -> None:
        """Stop triggers, functions and moto, and mark the state file stopped; safe to call twice."""
        with self._lock:
            self._stop()

    def _stop(self) -> None:
        if self.lifecycle is not None:
            self.lifecycle.stop()
            self.lifecycle = None
        if self.scheduler is not None:
            self.scheduler.stop()
        for poller in self.pollers:
            poller.signal_stop()
        for poller in self.pollers:
            poller.join()
        self.pollers = []
        if self._server is not None:
            self._server.stop()
            self._server = None
        if self.subscriptions is not None:
            # A delivery in flight fails when its function stops, and stays journaled for the next start.
            self.subscriptions.signal_stop()
        if self._prewarmer is not None:
            self._prewarmer.stop()
            self._prewarmer = None
        if self._watchdog is not None:
            self._watchdog.stop()
            self._watchdog = None
        for function in self.functions.values():
            function.close()
        if self.subscriptions is not None:
            self.subscriptions.stop()
            self.subscriptions = None
        if self._echo is not None:
            self._echo.stop()
            self._echo = None
        if self._moto is not None:
            self._moto.stop()
            self._moto = None
        self._restore_environment()
        if self._running or (self.data_dir / STATE_FILE).exists():
            with suppress(MlambdaLocalError):
                state = read_state(self.data_dir)
                if state.get("control_token") == self._token:
                    state["pid"] = None
                    write_state(self.data_dir, state)
        self._running = False

    def _on_fault(self, message: str) -> None:
        """Something the cloud cannot run without is gone: say so once, and stop."""
        logger.error("%s; the local cloud stops (its state is kept in %s)", message, self.data_dir)
        self.fault = message
        threading.Thread(target=self.stop, name="stop-after-fault", daemon=True).start()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.stop()

    # -- wiring ------------------------------------------------------------------------------------

    def _set_environment(self, endpoint: str, fake_credentials: bool) -> None:
        """Process-wide AWS settings every function (and boto3 client) picks up."""
        values = {"AWS_ENDPOINT_URL": endpoint, "AWS_REGION": self.region, "AWS_DEFAULT_REGION": self.region}
        if fake_credentials:
            values |= {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}
            values["AWS_SESSION_TOKEN"] = "testing"
        for key, value in values.items():
            self._saved_environment.setdefault(key, os.environ.get(key))
            os.environ[key] = value

    def _restore_environment(self) -> None:
        for key, value in self._saved_environment.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        self._saved_environment = {}

    def _session(self) -> boto3.session.Session:
        import boto3

        if self._moto is not None:
            return boto3.session.Session(
                region_name=self.region, aws_access_key_id="testing", aws_secret_access_key="testing"
            )
        return boto3.session.Session(region_name=self.region)

    def _function_id(self, name: str) -> str | None:
        if name in self.functions:
            return name
        for logical_id, function in self.functions.items():
            if name in (function.spec.name, function.spec.arn):
                return logical_id
        return None

    def _sqs_mappings(self, template: Template, resolver: IntrinsicResolver) -> list[SqsMapping]:
        mappings: list[SqsMapping] = []
        for logical_id, resource in template.resources.items():
            if resource.get("Type") != "AWS::Lambda::EventSourceMapping" or not resolver.is_enabled(resource):
                continue
            raw = resource.get("Properties") or {}
            properties = resolver.resolve(raw)
            function_id = _function_ref(raw) if isinstance(raw.get("FunctionName"), dict) else None
            if function_id not in template.resources:
                function_id = resolver.logical_id_for_function_arn(f"function:{properties['FunctionName']}")
            if function_id is None:
                raise TemplateError(
                    f"event source mapping {logical_id}: unknown function {properties['FunctionName']!r}"
                )
            scaling = properties.get("ScalingConfig") or {}
            arn = str(properties["EventSourceArn"])
            mappings.append(
                SqsMapping(
                    logical_id=logical_id,
                    function_logical_id=function_id,
                    queue_url=resolver.queue_url(arn.rsplit(":", 1)[-1]),
                    queue_arn=arn,
                    batch_size=int(properties.get("BatchSize", 10)),
                    batching_window=float(properties.get("MaximumBatchingWindowInSeconds", 0)),
                    report_batch_item_failures="ReportBatchItemFailures"
                    in (properties.get("FunctionResponseTypes") or []),
                    maximum_concurrency=int(scaling.get("MaximumConcurrency", DEFAULT_SQS_CONCURRENCY)),
                    enabled=str(properties.get("Enabled", True)).lower() != "false",
                )
            )
        return mappings

    def _scheduled_rules(self, template: Template, resolver: IntrinsicResolver) -> list[ScheduledRule]:
        rules: list[ScheduledRule] = []
        for logical_id, resource in template.resources.items():
            properties = resource.get("Properties") or {}
            if (
                resource.get("Type") != "AWS::Events::Rule"
                or "ScheduleExpression" not in properties
                or not resolver.is_enabled(resource)
            ):
                continue
            properties = resolver.resolve(properties)
            targets: list[ScheduleTarget] = []
            for target in properties.get("Targets") or []:
                function_id = resolver.logical_id_for_function_arn(str(target["Arn"]))
                if function_id is not None and function_id in self.functions:
                    targets.append(ScheduleTarget(self.functions[function_id], target.get("Input")))
            if not targets:
                continue
            expression = str(properties["ScheduleExpression"])
            rules.append(
                ScheduledRule(
                    logical_id=logical_id,
                    name=resolver.physical_name(logical_id),
                    arn=resolver.arn(logical_id),
                    expression=expression,
                    schedule=validate_schedule(logical_id, expression),
                    targets=targets,
                    enabled=str(properties.get("State", "ENABLED")).upper() == "ENABLED",
                )
            )
        return rules

    def _start_pollers(
        self, session: boto3.session.Session, endpoint: str, mappings: list[SqsMapping]
    ) -> None:
        from botocore.config import Config

        assert self._inventory is not None
        threads = sum(m.maximum_concurrency for m in mappings if m.enabled)
        threads += S3_POLLER_THREADS * len(self._inventory.s3_routes)
        # One client for every poller (boto3 clients are thread-safe): each client is tens of
        # milliseconds of the start, and its pool is sized for every poller thread at once.
        config = Config(
            read_timeout=30,
            retries={"max_attempts": 2, "mode": "standard"},
            max_pool_connections=max(20, threads + 4),
        )
        sqs = session.client("sqs", endpoint_url=endpoint, config=config)
        self._sqs = sqs
        for mapping in mappings:
            if not mapping.enabled:
                continue
            queue_url = sqs.get_queue_url(QueueName=mapping.queue_arn.rsplit(":", 1)[-1])["QueueUrl"]
            resolved = replace(mapping, queue_url=queue_url)
            mapping_poller = SqsEventSourcePoller(
                resolved,
                sqs,
                self.functions[mapping.function_logical_id],
                self.region,
                batches_dir=self.data_dir / DELIVERIES_DIR / mapping.logical_id,
            )
            mapping_poller.redeliver_interrupted()
            self.pollers.append(mapping_poller)
        for route in self._inventory.s3_routes:
            function = self.functions[route.function_logical_id]
            self.pollers.append(
                S3NotificationPoller(f"s3-{route.bucket}", sqs, route.queue_url, function, S3_POLLER_THREADS)
            )
        for poller in self.pollers:
            poller.start()

    # -- public surface ----------------------------------------------------------------------------

    @property
    def endpoint_url(self) -> str | None:
        """The AWS endpoint the cloud runs against (the moto server's URL by default)."""
        return self._endpoint_url

    @property
    def api_url(self) -> str | None:
        """``http://127.0.0.1:<port>/<stage>`` of the (first) API, once started."""
        if self._server is None or not self.apis:
            return None
        return f"{self._server.base_url}/{self.apis[0].stage}"

    @property
    def control_url(self) -> str | None:
        return None if self._server is None else f"{self._server.base_url}{CONTROL_PREFIX.rstrip('/')}"

    @property
    def outputs(self) -> dict[str, Any]:
        """The template's Outputs, resolved to local names."""
        return dict(self._outputs)

    @property
    def inventory(self) -> Inventory:
        if self._inventory is None:
            raise MlambdaLocalError("the local cloud is not started")
        return self._inventory

    def _state(self, pid: int | None) -> dict[str, Any]:
        return {
            "stack_name": self.stack_name,
            "template": str(self.template_path.resolve()),
            "endpoint_url": self.endpoint_url,
            "api_url": self.api_url,
            "api_urls": {api.logical_id: f"{self._server.base_url}/{api.stage}" for api in self.apis}
            if self._server
            else {},
            "control_url": self.control_url,
            "control_token": self._token,
            "outputs": self._outputs,
            "pid": pid,
        }

    def status(self) -> dict[str, Any]:
        """Resources, functions (invocations/errors) and triggers, for ``mlambda local status``."""
        return {
            "running": self._running,
            "stack_name": self.stack_name,
            "endpoint_url": self.endpoint_url,
            "api_url": self.api_url,
            "resources": self._inventory.as_dict() if self._inventory else None,
            "functions": {logical_id: function.status() for logical_id, function in self.functions.items()},
            "log_subscriptions": self.subscriptions.status() if self.subscriptions else [],
            "startup": self.timeline.as_dict(),
            "triggers": {
                "api": [
                    {
                        "api": api.logical_id,
                        "method": route.method,
                        "path": f"/{api.stage}{route.resource}",
                        "function": route.function.spec.logical_id if route.function else None,
                        "authorizer": route.authorizer.name if route.authorizer else None,
                    }
                    for api in self.apis
                    for route in api.routes
                ],
                "queues": [poller.status() for poller in self.pollers],
                "schedules": self.scheduler.status() if self.scheduler else [],
            },
        }

    def invoke(self, function: str, event: Any = None) -> Any:
        """Invoke a function (logical id, name or ARN) synchronously with ``event``."""
        function_id = self._function_id(function)
        if function_id is None:
            raise UnknownTargetError(f"no function {function!r} in the template")
        return self.functions[function_id].invoke({} if event is None else event, throttle=True)

    def trigger(self, name: str) -> list[Any]:
        """Fire a schedule rule now (by rule logical id/name, or the function it targets); the results."""
        if self.scheduler is None:
            raise MlambdaLocalError("the local cloud is not started")
        rules = self.scheduler.find(name)
        if not rules:
            raise UnknownTargetError(f"no schedule rule {name!r} (nor a function with a schedule)")
        results: list[Any] = []
        for rule in rules:
            for fired in self.scheduler.fire(rule):
                function = self.functions[fired.function]
                try:
                    results.append(
                        fired.future.result(timeout=INIT_LIMIT_SECONDS + function.spec.timeout + 1.0)
                    )
                except FunctionInvocationError:
                    raise
                except Exception as exc:
                    raise FunctionInvocationError(fired.function, f"{type(exc).__name__}: {exc}") from exc
        return results

    # -- control API -------------------------------------------------------------------------------

    def _control(self, request: HttpRequest) -> HttpResponse:
        """``/_mlambda/{status,trigger/<name>,invoke/<function>}``: loopback and token only."""
        if request.source_ip not in _LOOPBACK:
            return HttpResponse.error(403, "forbidden", "the control API is loopback only")
        token = request.header(CONTROL_HEADER) or ""
        if not hmac.compare_digest(token.encode(), self._token.encode()):
            return HttpResponse.error(401, "unauthorized", f"missing or wrong {CONTROL_HEADER}")
        parts = [
            unquote(part) for part in urlsplit(request.target).path[len(CONTROL_PREFIX) :].split("/") if part
        ]
        try:
            if request.method == "GET" and parts == ["status"]:
                return HttpResponse.json(200, self.status())
            if request.method == "POST" and len(parts) == 2 and parts[0] == "trigger":
                return HttpResponse.json(200, {"results": self.trigger(parts[1])})
            if request.method == "POST" and len(parts) == 2 and parts[0] == "invoke":
                event = json.loads(request.body) if request.body.strip() else {}
                return HttpResponse.json(200, {"result": self.invoke(parts[1], event)})
        except UnknownTargetError as exc:
            return HttpResponse.error(404, "not_found", str(exc))
        except FunctionInvocationError as exc:
            if exc.error_type == "TooManyRequestsException":  # Invoke's own answer when throttled
                return HttpResponse.error(
                    429, "throttled", str(exc), details=exc.payload, headers=[("Retry-After", "1")]
                )
            return HttpResponse.error(502, "function_error", str(exc))
        except json.JSONDecodeError as exc:
            return HttpResponse.error(400, "invalid_input", f"the event is not JSON: {exc}")
        return HttpResponse.error(404, "not_found", f"no control route {request.method} {parts}")


class _LogEcho:
    """Prints every function's new log lines on stdout, prefixed with the function (``local up``)."""

    def __init__(self, groups: dict[str, LogGroup], interval: float = 0.2) -> None:
        self._tails = {logical_id: LogTail(group) for logical_id, group in groups.items()}
        self._interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="mlambda-log-echo", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _loop(self) -> None:
        while not self._stop.wait(self._interval):
            self._echo()

    def _echo(self) -> None:
        for logical_id, tail in self._tails.items():

            def show(_stream: str, line: str, name: str = logical_id) -> None:
                print(f"[{name}] {line}", flush=True)

            tail.read_new(show)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()
        self._echo()
