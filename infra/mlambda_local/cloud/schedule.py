"""EventBridge schedules: parse ``rate(...)``/``cron(...)`` and fire rules at their times, or on demand.

moto stores rules but never fires them. The scheduler thread checks every few seconds which
rules are due (times are UTC, as on EventBridge) and invokes their targets with the "Scheduled
Event" payload, or the target's ``Input``. ``tick(now)`` is public so tests (and the CLI) can
advance time instead of waiting for a minute. Invocations are asynchronous, as on AWS.
"""

from __future__ import annotations

import calendar
import json
import logging
import re
import threading
import uuid
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from mlambda_local.cloud.errors import TemplateError
from mlambda_local.cloud.functions import Function

logger = logging.getLogger("mlambda.local")

_RATE = re.compile(r"^rate\(\s*(\d+)\s+(minute|minutes|hour|hours|day|days)\s*\)$")
_CRON = re.compile(r"^cron\((.*)\)$")
_UNITS = {"minute": 60, "hour": 3600, "day": 86400}
_MONTHS = {name: number for number, name in enumerate(calendar.month_abbr) if name}
_DAYS = {"SUN": 1, "MON": 2, "TUE": 3, "WED": 4, "THU": 5, "FRI": 6, "SAT": 7}


def _field_values(
    text: str, low: int, high: int, names: dict[str, int] | None = None
) -> frozenset[int] | None:
    """Parse one cron field into the set of allowed values; ``None`` means any (``*`` or ``?``)."""
    if text in ("*", "?"):
        return None
    names = {key.upper(): value for key, value in (names or {}).items()}

    def number(token: str) -> int:
        token = token.upper()
        if token not in names and re.search(r"[LW#]", token):
            raise ValueError(f"{token!r}: L, W and # are not supported locally")
        value = (
            names[token] if token in names else int(token) if (token.isascii() and token.isdigit()) else None
        )
        if value is None or not low <= value <= high:
            raise ValueError(f"{token!r} is not in {low}-{high}")
        return value

    values: set[int] = set()
    for item in text.split(","):
        part, step = item, 1
        if "/" in item:
            part, step_text = item.split("/", 1)
            if not (step_text.isascii() and step_text.isdigit()) or int(step_text) == 0:
                raise ValueError(f"bad step {step_text!r}")
            step = int(step_text)
        if part == "*":
            start, end = low, high
        elif "-" in part:
            first, last = part.split("-", 1)
            start, end = number(first), number(last)
        else:
            start = number(part)
            end = high if step > 1 else start
        if start > end:
            raise ValueError(f"range {part!r} runs backwards")
        values.update(range(start, end + 1, step))
    return frozenset(values)


@dataclass(frozen=True)
class CronExpression:
    """EventBridge's six-field cron: minutes hours day-of-month month day-of-week year (UTC).

    Supports ``*``, ``?``, lists, ranges, steps and month/day names; day-of-week 1-7 is SUN-SAT.
    ``L``, ``W`` and ``#`` are rejected rather than silently misread.
    """

    minutes: frozenset[int] | None
    hours: frozenset[int] | None
    days_of_month: frozenset[int] | None
    months: frozenset[int] | None
    days_of_week: frozenset[int] | None
    years: frozenset[int] | None

    @classmethod
    def parse(cls, text: str) -> CronExpression:
        fields = text.split()
        if len(fields) != 6:
            raise ValueError(
                f"cron({text}) needs 6 fields: minutes hours day-of-month month day-of-week year"
            )
        if "?" not in (fields[2], fields[4]):
            raise ValueError(
                f"cron({text}): one of day-of-month and day-of-week must be '?', as EventBridge requires"
            )
        return cls(
            minutes=_field_values(fields[0], 0, 59),
            hours=_field_values(fields[1], 0, 23),
            days_of_month=_field_values(fields[2], 1, 31),
            months=_field_values(fields[3], 1, 12, _MONTHS),
            days_of_week=_field_values(fields[4], 1, 7, _DAYS),
            years=_field_values(fields[5], 1970, 2199),
        )

    def _day_matches(self, day: datetime) -> bool:
        if self.years is not None and day.year not in self.years:
            return False
        if self.months is not None and day.month not in self.months:
            return False
        if self.days_of_month is not None and day.day not in self.days_of_month:
            return False
        weekday = (day.weekday() + 1) % 7 + 1  # Monday=0 -> 2 ... Sunday=6 -> 1
        return self.days_of_week is None or weekday in self.days_of_week

    def matches(self, moment: datetime) -> bool:
        """True if the minute of ``moment`` is a firing time."""
        return (
            self._day_matches(moment)
            and (self.hours is None or moment.hour in self.hours)
            and (self.minutes is None or moment.minute in self.minutes)
        )

    def next_after(self, moment: datetime) -> datetime | None:
        """The first firing minute strictly after ``moment``, or ``None`` within the next 5 years."""
        candidate = moment.replace(second=0, microsecond=0) + timedelta(minutes=1)
        hours = sorted(self.hours) if self.hours is not None else list(range(24))
        minutes = sorted(self.minutes) if self.minutes is not None else list(range(60))
        horizon = candidate + timedelta(days=366 * 5)
        while candidate < horizon:
            if self._day_matches(candidate):
                for hour in hours:
                    if hour < candidate.hour:
                        continue
                    for minute in minutes:
                        if hour == candidate.hour and minute < candidate.minute:
                            continue
                        return candidate.replace(hour=hour, minute=minute)
            candidate = (candidate + timedelta(days=1)).replace(hour=0, minute=0)
        return None


@dataclass(frozen=True)
class RateExpression:
    """``rate(N minute|minutes|hour|hours|day|days)``."""

    seconds: int

    @classmethod
    def parse(cls, text: str) -> RateExpression:
        match = _RATE.match(text.strip())
        if match is None:
            raise ValueError(f"{text!r} is not rate(N minute|minutes|hour|hours|day|days)")
        amount, unit = int(match.group(1)), match.group(2).rstrip("s")
        if amount <= 0:
            raise ValueError(f"{text!r}: the rate must be positive")
        if (amount == 1) != (match.group(2) == unit):
            raise ValueError(f"{text!r}: use the singular unit for 1 and the plural otherwise")
        return cls(seconds=amount * _UNITS[unit])


def parse_schedule(expression: str) -> CronExpression | RateExpression:
    """Parse an EventBridge ScheduleExpression."""
    expression = expression.strip()
    cron = _CRON.match(expression)
    if cron is not None:
        return CronExpression.parse(cron.group(1))
    return RateExpression.parse(expression)


@dataclass(frozen=True)
class ScheduleTarget:
    function: Function
    input: str | None = None


@dataclass
class ScheduledRule:
    """An AWS::Events::Rule with a ScheduleExpression whose targets are functions of the template."""

    logical_id: str
    name: str
    arn: str
    expression: str
    schedule: CronExpression | RateExpression
    targets: list[ScheduleTarget]
    enabled: bool = True
    next_fire: datetime | None = None
    fired: int = 0

    def advance(self, now: datetime) -> None:
        """Set the next firing time after ``now``."""
        if isinstance(self.schedule, RateExpression):
            step = timedelta(seconds=self.schedule.seconds)
            if self.next_fire is None:
                self.next_fire = now + step
            while self.next_fire <= now:
                self.next_fire += step
        else:
            self.next_fire = self.schedule.next_after(now)


@dataclass
class Fired:
    """One target invocation started by a rule."""

    rule: str
    function: str
    future: Future[Any] = field(repr=False)


def utc_now() -> datetime:
    return datetime.now(UTC)


class Scheduler:
    """Fires scheduled rules on time (a background thread) and on demand."""

    def __init__(
        self,
        rules: list[ScheduledRule],
        region: str,
        account_id: str,
        clock: Callable[[], datetime] = utc_now,
        check_interval: float = 5.0,
    ) -> None:
        self.rules = rules
        self.region = region
        self.account_id = account_id
        self.clock = clock
        self.check_interval = check_interval
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        now = clock()
        for rule in rules:
            rule.advance(now)

    def event(self, rule: ScheduledRule, when: datetime) -> dict[str, Any]:
        """The payload EventBridge sends for a scheduled rule."""
        return {
            "version": "0",
            "id": str(uuid.uuid4()),
            "detail-type": "Scheduled Event",
            "source": "aws.events",
            "account": self.account_id,
            "time": when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "region": self.region,
            "resources": [rule.arn],
            "detail": {},
        }

    def fire(self, rule: ScheduledRule, when: datetime | None = None) -> list[Fired]:
        """Start every target of ``rule`` now, whatever its state (the on-demand path)."""
        when = when or self.clock()
        started: list[Fired] = []
        for target in rule.targets:
            payload = json.loads(target.input) if target.input is not None else self.event(rule, when)
            started.append(
                Fired(rule.logical_id, target.function.spec.logical_id, target.function.submit(payload))
            )
        with self._lock:
            rule.fired += 1
        logger.info("fired schedule %s (%d targets)", rule.logical_id, len(started))
        return started

    def tick(self, now: datetime | None = None) -> list[Fired]:
        """Fire every enabled rule due at ``now`` (default: the clock) and schedule its next time."""
        now = now or self.clock()
        started: list[Fired] = []
        for rule in self.rules:
            if not rule.enabled or rule.next_fire is None or rule.next_fire > now:
                continue
            started.extend(self.fire(rule, rule.next_fire))
            rule.advance(now)
        return started

    def find(self, name: str) -> list[ScheduledRule]:
        """Rules named by logical id or physical name, or the (enabled) rules targeting function ``name``."""
        exact = [rule for rule in self.rules if name in (rule.logical_id, rule.name)]
        if exact:
            return exact
        targeting = [
            rule
            for rule in self.rules
            if any(
                name in (target.function.spec.logical_id, target.function.spec.name)
                for target in rule.targets
            )
        ]
        # A function's disabled rules fire on demand only when it has no enabled one.
        return [rule for rule in targeting if rule.enabled] or targeting

    def start(self) -> None:
        if self._thread is None and self.rules:
            self._thread = threading.Thread(target=self._loop, name="mlambda-scheduler", daemon=True)
            self._thread.start()

    def _loop(self) -> None:
        while not self._stop.wait(self.check_interval):
            for fired in self.tick():
                fired.future.add_done_callback(_log_failure(fired))

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def status(self) -> list[dict[str, Any]]:
        with self._lock:
            return [
                {
                    "rule": rule.logical_id,
                    "name": rule.name,
                    "schedule": rule.expression,
                    "enabled": rule.enabled,
                    "next_fire": rule.next_fire.isoformat() if rule.next_fire else None,
                    "fired": rule.fired,
                    "targets": [target.function.spec.logical_id for target in rule.targets],
                }
                for rule in self.rules
            ]


def _log_failure(fired: Fired) -> Callable[[Future[Any]], None]:
    def done(future: Future[Any]) -> None:
        if future.exception() is not None:
            logger.warning("scheduled invocation of %s by %s failed", fired.function, fired.rule)

    return done


def validate_schedule(logical_id: str, expression: str) -> CronExpression | RateExpression:
    """Parse a rule's schedule, naming the rule when it cannot be run."""
    try:
        return parse_schedule(expression)
    except ValueError as exc:
        raise TemplateError(
            f"rule {logical_id}: unsupported ScheduleExpression {expression!r}: {exc}"
        ) from exc
