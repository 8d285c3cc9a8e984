"""CloudWatch Logs subscription filters to Lambda, emulated from the functions' log streams, durably.

For each ``AWS::Logs::SubscriptionFilter`` of the template whose destination is a function, a
thread reads the source log group's stream files (``logs``) from where it last stopped, keeps
the lines that match the filter pattern, and invokes the destination with the event CloudWatch
Logs sends: ``{"awslogs": {"data": base64(gzip(DATA_MESSAGE))}}``.

Nothing written to a stream is lost, and a batch is never delivered in two different shapes:

- ``<data_dir>/logs/.subscriptions/<filter>.json`` holds, per stream file, the offset delivered
  so far, and the batch in flight (file, start, end) written *before* the invocation;
- after a crash (of the worker, the destination or the runner) the batch in flight is delivered
  again, byte for byte the same events with the same ids, so a destination that writes
  deterministically (the archiver names its objects by the ids they hold) lands it once;
- a failing invocation is retried (``EventInvokeConfig.MaximumRetryAttempts``, 2 by default,
  as Lambda's asynchronous invocation does, after 0.5 s and 1 s here instead of minutes), then
  sent to the ``OnFailure`` destination (an SQS queue) in Lambda's destination record shape, or
  logged as dropped when there is none (what Lambda does).

Filter patterns: empty (every line), terms (``ERROR "exact phrase"``: all must appear) and JSON
patterns joined by ``&&`` (``{ $.kind = "prediction" && $.v = 1 }``, comparisons ``=``/``!=``
with a string, number, ``true``/``false``/``null``, and ``EXISTS``/``NOT EXISTS``). Anything
else is refused when the cloud starts, naming the filter.
"""

from __future__ import annotations

import base64
import gzip
import json
import logging
import re
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from mlambda_local.cloud.errors import FunctionInvocationError, TemplateError
from mlambda_local.cloud.functions import Function
from mlambda_local.cloud.logs import LogGroup, stream_name
from mlambda_local.private_files import private_directory, write_private_json

logger = logging.getLogger("mlambda.local")

BATCH_MESSAGE_BYTES = 192 * 1024  # message bytes per invocation (one larger event goes alone)
MAX_EVENT_BYTES = 256 * 1024 - 26  # CloudWatch Logs truncates longer events
READ_CHUNK = 4 * 1024 * 1024
RETRY_DELAYS = (0.5, 1.0, 2.0, 4.0)
POLL_SECONDS = 1.0
STATE_DIRECTORY = ".subscriptions"

_TERM = re.compile(r'"((?:[^"\\]|\\.)*)"|(\S+)')
_JSON_CLAUSE = re.compile(
    r"^\$(?P<path>(?:\.[A-Za-z_][A-Za-z0-9_\-]*)+)\s*"
    r"(?:(?P<op>=|!=)\s*(?P<value>\"(?:[^\"\\]|\\.)*\"|-?\d+(?:\.\d+)?|true|false|null|[A-Za-z0-9_\-.*]+)"
    r"|(?P<exists>NOT\s+EXISTS|EXISTS))$"
)
_MISSING = object()


@dataclass(frozen=True)
class FilterPattern:
    """A CloudWatch Logs filter pattern, compiled (the subset described in the module doc)."""

    text: str
    terms: tuple[str, ...] = ()
    clauses: tuple[tuple[tuple[str, ...], str, Any], ...] = ()
    json: bool = False
    required: tuple[str, ...] = ()  # text a JSON event must contain to match (checked before parsing)

    @classmethod
    def parse(cls, text: str) -> FilterPattern:
        """Compile ``text``; ValueError naming what is not supported."""
        stripped = text.strip()
        if stripped.startswith("{"):
            if not stripped.endswith("}"):
                raise ValueError("a JSON pattern must end with '}'")
            clauses: list[tuple[tuple[str, ...], str, Any]] = []
            for part in stripped[1:-1].split("&&"):
                found = _JSON_CLAUSE.match(part.strip())
                if found is None:
                    raise ValueError(
                        f"unsupported JSON clause {part.strip()!r} (supported: $.a.b = value, != , EXISTS)"
                    )
                path = tuple(found.group("path").lstrip(".").split("."))
                if found.group("exists"):
                    operator = "exists" if found.group("exists") == "EXISTS" else "missing"
                    clauses.append((path, operator, None))
                    continue
                raw = found.group("value")
                value: Any = (
                    json.loads(raw)
                    if raw[0] == '"' or raw in ("true", "false", "null") or _is_number(raw)
                    else raw
                )
                clauses.append((path, found.group("op"), value))
            required = tuple(
                str(value)
                for _, operator, value in clauses
                if operator == "=" and isinstance(value, str) and "*" not in value
            )
            return cls(text, clauses=tuple(clauses), json=True, required=required)
        if any(mark in stripped for mark in ("[", "?", "%")) or stripped.startswith("-"):
            raise ValueError("space-delimited, OR (?) and regex (%) patterns are not supported locally")
        terms = tuple(quoted if quoted else bare for quoted, bare in _TERM.findall(stripped))
        return cls(text, terms=terms)

    def matches(self, message: str) -> bool:
        """Whether CloudWatch would deliver ``message`` through this filter."""
        if self.json:
            # Most lines (platform lines, metrics) fail these cheap checks and are never parsed.
            if not message.startswith("{") or not all(value in message for value in self.required):
                return False
            try:
                document = json.loads(message)
            except ValueError:
                return False
            return isinstance(document, dict) and all(_clause(document, *clause) for clause in self.clauses)
        return all(term in message for term in self.terms)


def _is_number(text: str) -> bool:
    return re.fullmatch(r"-?\d+(?:\.\d+)?", text) is not None


def _clause(document: dict[str, Any], path: tuple[str, ...], operator: str, value: Any) -> bool:
    found: Any = document
    for key in path:
        found = found.get(key, _MISSING) if isinstance(found, dict) else _MISSING
    if operator == "exists":
        return found is not _MISSING
    if operator == "missing":
        return found is _MISSING
    if isinstance(value, str) and "*" in value and isinstance(found, str):
        equal = re.fullmatch(".*".join(map(re.escape, value.split("*"))), found) is not None
    else:
        equal = found is not _MISSING and found == value
    return equal if operator == "=" else not equal


def awslogs_event(
    *, owner: str, log_group: str, log_stream: str, filter_name: str, events: Sequence[dict[str, Any]]
) -> dict[str, Any]:
    """CloudWatch Logs' event for a subscribed function: ``{"awslogs": {"data": base64(gzip(DATA_MESSAGE))}}``."""
    message = {
        "messageType": "DATA_MESSAGE",
        "owner": owner,
        "logGroup": log_group,
        "logStream": log_stream,
        "subscriptionFilters": [filter_name],
        "logEvents": list(events),
    }
    data = gzip.compress(json.dumps(message, separators=(",", ":")).encode(), compresslevel=1, mtime=0)
    return {"awslogs": {"data": base64.b64encode(data).decode()}}


@dataclass(frozen=True)
class SubscriptionFilter:
    """One ``AWS::Logs::SubscriptionFilter`` to a function, resolved."""

    logical_id: str
    name: str
    group: LogGroup
    pattern: FilterPattern
    destination: Function
    max_retries: int = 2
    on_failure_queue_url: str | None = None


@dataclass(frozen=True)
class _Batch:
    """A range of complete lines of one stream file, and when it was first read (its events' timestamp)."""

    file: str
    start: int
    end: int
    read_at_ms: int


class _State:
    """Offsets delivered per stream file and the batch in flight, saved atomically after each change."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.offsets: dict[str, int] = {}
        self.pending: _Batch | None = None
        if path.exists():
            document = json.loads(path.read_text(encoding="utf-8"))
            self.offsets = {str(k): int(v) for k, v in document.get("offsets", {}).items()}
            pending = document.get("pending")
            self.pending = _Batch(**pending) if pending else None

    def save(self) -> None:
        document = {
            "offsets": self.offsets,
            "pending": None if self.pending is None else self.pending.__dict__,
        }
        write_private_json(self.path, document)


class SubscriptionDelivery:
    """Delivers one filter's matching events, in order, at least once and always in the same batches."""

    def __init__(
        self,
        subscription: SubscriptionFilter,
        state_dir: Path,
        *,
        account_id: str,
        send_to_queue: Callable[[str, str], None] | None = None,
        sleep: Callable[[float], None] | None = None,
        stopping: threading.Event | None = None,
    ) -> None:
        """``stopping``: once set, a failing batch is left in flight (delivered at the next start)
        instead of being retried or given up; ``sleep`` waits between retries (``stopping.wait``)."""
        self.subscription = subscription
        private_directory(state_dir)
        self._state = _State(state_dir / f"{subscription.logical_id}.json")
        self._account_id = account_id
        self._send_to_queue = send_to_queue
        self.stopping = stopping or threading.Event()
        self._sleep = sleep
        self.delivered_events = 0
        self.invocations = 0
        self.failed_batches = 0
        self._lock = threading.Lock()

    def run_once(self) -> int:
        """Deliver what is complete in the streams now (the batch left in flight first); events sent.

        Only what the streams held when the call began: lines written while it delivers wait for
        the next poll, as CloudWatch Logs buffers events into batches. Reading on until the
        streams stop growing delivered whatever arrived during the previous invocation: under a
        steady load, batches of a dozen records and an archive object for each (one a request).
        """
        sent = 0
        with self._lock:
            pending = self._state.pending
            if pending is not None:
                sent += self._deliver(pending)
            for path in self.subscription.group.stream_files():
                try:
                    limit = path.stat().st_size
                except FileNotFoundError:
                    continue
                while True:
                    batch = self._next_batch(path, limit)
                    if batch is None:
                        break
                    sent += self._deliver(batch)
        return sent

    def _next_batch(self, path: Path, limit: int) -> _Batch | None:
        """The next range of complete lines of ``path`` after the delivered offset, up to ``limit`` bytes."""
        offset = self._state.offsets.get(path.name, 0)
        if limit <= offset:
            return None
        with path.open("rb") as stream:
            stream.seek(offset)
            chunk = stream.read(min(limit - offset, READ_CHUNK))
        cut = chunk.rfind(b"\n") + 1
        if not cut:
            if len(chunk) < READ_CHUNK:
                return None  # a line still being written
            cut = len(chunk)  # a line longer than the read: CloudWatch truncates it anyway
        return _Batch(path.name, offset, offset + cut, int(time.time() * 1000))

    def _events(self, batch: _Batch) -> list[list[dict[str, Any]]]:
        """The batch's matching events, grouped into invocations by message size (deterministically)."""
        path = self.subscription.group.directory / batch.file
        with path.open("rb") as stream:
            stream.seek(batch.start)
            data = stream.read(batch.end - batch.start)
        groups: list[list[dict[str, Any]]] = []
        current: list[dict[str, Any]] = []
        size = 0
        position = batch.start
        for raw in data.splitlines(keepends=True):
            line_start, position = position, position + len(raw)
            message = raw.rstrip(b"\r\n").decode("utf-8", "replace")
            if not message or not self.subscription.pattern.matches(message):
                continue
            encoded = len(message.encode("utf-8"))
            if encoded > MAX_EVENT_BYTES:
                message = message.encode("utf-8")[:MAX_EVENT_BYTES].decode("utf-8", "ignore")
                encoded = MAX_EVENT_BYTES
            if current and size + encoded > BATCH_MESSAGE_BYTES:
                groups.append(current)
                current, size = [], 0
            current.append(
                {"id": _event_id(batch.file, line_start), "timestamp": batch.read_at_ms, "message": message}
            )
            size += encoded
        if current:
            groups.append(current)
        return groups

    def _deliver(self, batch: _Batch) -> int:
        self._state.pending = batch
        self._state.save()
        groups = self._events(batch)
        for events in groups:
            self._invoke(batch, events)
        self._state.offsets[batch.file] = batch.end
        self._state.pending = None
        self._state.save()
        return sum(len(events) for events in groups)

    def event(self, batch_file: str, events: Sequence[dict[str, Any]]) -> dict[str, Any]:
        """The ``awslogs`` event CloudWatch Logs sends a subscribed function."""
        subscription = self.subscription
        return awslogs_event(
            owner=self._account_id,
            log_group=subscription.group.name,
            log_stream=stream_name(subscription.group.directory / batch_file),
            filter_name=subscription.name,
            events=events,
        )

    def _invoke(self, batch: _Batch, events: list[dict[str, Any]]) -> None:
        event = self.event(batch.file, events)
        attempts = 1 + self.subscription.max_retries
        error: FunctionInvocationError | None = None
        for attempt in range(attempts):
            self.invocations += 1
            try:
                self.subscription.destination.invoke(event)
            except FunctionInvocationError as exc:
                if self.stopping.is_set():
                    raise _AbandonedError from exc
                error = exc
                logger.warning(
                    "subscription %s: delivery to %s failed (attempt %d of %d): %s",
                    self.subscription.logical_id,
                    self.subscription.destination.spec.logical_id,
                    attempt + 1,
                    attempts,
                    exc,
                )
                if attempt + 1 < attempts:
                    (self._sleep or self.stopping.wait)(RETRY_DELAYS[min(attempt, len(RETRY_DELAYS) - 1)])
                continue
            self.delivered_events += len(events)
            return
        assert error is not None
        self.failed_batches += 1
        self._give_up(event, len(events), error, attempts)

    def _give_up(
        self, event: dict[str, Any], count: int, error: FunctionInvocationError, attempts: int
    ) -> None:
        """Retries exhausted: the OnFailure destination gets Lambda's record, or the batch is dropped (logged)."""
        destination = self.subscription.destination.spec
        queue = self.subscription.on_failure_queue_url
        if queue is None or self._send_to_queue is None:
            logger.error(
                "subscription %s: %d events dropped after %d attempts (no OnFailure destination): %s",
                self.subscription.logical_id,
                count,
                attempts,
                error,
            )
            return
        record = {
            "version": "1.0",
            "timestamp": datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "requestContext": {
                "requestId": str(uuid.uuid4()),
                "functionArn": f"{destination.arn}:$LATEST",
                "condition": "RetriesExhausted",
                "approximateInvokeCount": attempts,
            },
            "requestPayload": event,
            "responseContext": {
                "statusCode": 200,
                "executedVersion": "$LATEST",
                "functionError": "Unhandled",
            },
            "responsePayload": error.payload,
        }
        self._send_to_queue(queue, json.dumps(record))
        logger.error(
            "subscription %s: a batch failed %d times; sent to %s",
            self.subscription.logical_id,
            attempts,
            queue,
        )

    def status(self) -> dict[str, Any]:
        return {
            "filter": self.subscription.logical_id,
            "log_group": self.subscription.group.name,
            "destination": self.subscription.destination.spec.logical_id,
            "pattern": self.subscription.pattern.text,
            "delivered_events": self.delivered_events,
            "invocations": self.invocations,
            "failed_batches": self.failed_batches,
            "in_flight": self._state.pending is not None,
        }


class _AbandonedError(Exception):
    """The cloud is stopping while a batch fails: it stays in flight, for the next start to deliver."""


def _event_id(file: str, offset: int) -> str:
    """A stable 56-digit id per line (CloudWatch's ids are 56 digits): the same line, the same id."""
    digest = int.from_bytes(uuid.uuid5(uuid.NAMESPACE_URL, file).bytes[:8], "big")
    return f"{digest:020d}{offset:036d}"[:56]


class SubscriptionRunner:
    """A thread per subscription, each delivering its filter's events as they are written."""

    def __init__(self, deliveries: Sequence[SubscriptionDelivery], interval: float = POLL_SECONDS) -> None:
        self.deliveries = list(deliveries)
        self._interval = interval
        self._stop = threading.Event()
        for delivery in self.deliveries:
            delivery.stopping = self._stop
        self._threads = [
            threading.Thread(
                target=self._loop,
                args=(delivery,),
                name=f"logs-{delivery.subscription.logical_id}",
                daemon=True,
            )
            for delivery in self.deliveries
        ]

    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    def _loop(self, delivery: SubscriptionDelivery) -> None:
        while not self._stop.is_set():
            try:
                delivery.run_once()
            except _AbandonedError:
                return
            except Exception:
                logger.exception("subscription %s failed; retrying", delivery.subscription.logical_id)
                self._stop.wait(1.0)
            self._stop.wait(self._interval)

    def flush(self) -> None:
        """Deliver what is in the streams now, in the caller's thread (tests, a clean stop)."""
        for delivery in self.deliveries:
            delivery.run_once()

    def signal_stop(self) -> None:
        """From now on a failing delivery is left in flight rather than retried."""
        self._stop.set()

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            if thread.is_alive():
                thread.join()

    def status(self) -> list[dict[str, Any]]:
        return [delivery.status() for delivery in self.deliveries]


def subscription_error(logical_id: str, message: str) -> TemplateError:
    """A subscription filter the local cloud cannot run, named."""
    return TemplateError(f"subscription filter {logical_id}: {message}")
