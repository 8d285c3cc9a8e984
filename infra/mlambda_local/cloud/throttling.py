"""API Gateway usage plans, enforced by the local gateway: a token bucket per key and a quota per period.

The plans are the template's ``AWS::ApiGateway::UsagePlan`` resources on the API's stage, named by
their ``mlambda:plan`` tag: ``Throttle`` (``RateLimit`` tokens a second into a bucket of
``BurstLimit``) and ``Quota`` (``Limit`` requests per ``DAY``/``WEEK``/``MONTH``, UTC). A request
takes one token and one unit of quota; without either it is refused with how long to wait.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

PLAN_TAG = "mlambda:plan"


@dataclass(frozen=True)
class UsagePlan:
    """One plan's limits (None: that limit is not set)."""

    name: str
    rate: float | None
    burst: int | None
    quota: int | None
    period: str = "DAY"


@dataclass(frozen=True)
class Refusal:
    """Why a request was refused: ``THROTTLED`` or ``QUOTA_EXCEEDED``, and the seconds to wait."""

    kind: str
    retry_after: int
    details: dict[str, Any]


def plans_from_template(
    resources: dict[str, Any], resolve: Callable[[Any], Any], api_logical_id: str
) -> dict[str, UsagePlan]:
    """The usage plans declared for ``api_logical_id``'s stage, by their ``mlambda:plan`` tag."""
    plans: dict[str, UsagePlan] = {}
    for resource in resources.values():
        if resource.get("Type") != "AWS::ApiGateway::UsagePlan":
            continue
        properties = resource.get("Properties") or {}
        stages = properties.get("ApiStages") or []
        if not any((stage.get("ApiId") or {}).get("Ref") == api_logical_id for stage in stages):
            continue
        tags = {tag.get("Key"): tag.get("Value") for tag in properties.get("Tags") or []}
        name = tags.get(PLAN_TAG)
        if not name:
            continue
        throttle = resolve(properties.get("Throttle") or {})
        quota = resolve(properties.get("Quota") or {})
        plans[str(name)] = UsagePlan(
            name=str(name),
            rate=float(throttle["RateLimit"]) if "RateLimit" in throttle else None,
            burst=int(throttle["BurstLimit"]) if "BurstLimit" in throttle else None,
            quota=int(quota["Limit"]) if "Limit" in quota else None,
            period=str(quota.get("Period", "DAY")).upper(),
        )
    return plans


def _period_start(now: datetime, period: str) -> datetime:
    day = now.replace(hour=0, minute=0, second=0, microsecond=0)
    if period == "WEEK":
        return day - timedelta(days=day.weekday())
    if period == "MONTH":
        return day.replace(day=1)
    return day


def _next_period(start: datetime, period: str) -> datetime:
    if period == "WEEK":
        return start + timedelta(days=7)
    if period == "MONTH":
        return (start + timedelta(days=32)).replace(day=1)
    return start + timedelta(days=1)


class UsageLimiter:
    """Every key's bucket and quota count; thread-safe (the front door serves a thread per connection)."""

    def __init__(
        self,
        plans: dict[str, UsagePlan],
        monotonic: Callable[[], float] = time.monotonic,
        wall: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.plans = plans
        self._monotonic = monotonic
        self._wall = wall
        self._lock = threading.Lock()
        self._buckets: dict[str, tuple[float, float]] = {}  # key -> (tokens, at)
        self._quotas: dict[str, tuple[datetime, int]] = {}  # key -> (period start, used)

    def take(self, key: str, plan_name: str) -> Refusal | None:
        """Count one request of ``key`` against ``plan_name``; the refusal when over a limit."""
        plan = self.plans[plan_name]
        with self._lock:
            tokens = self._refill(key, plan)
            if plan.rate is not None and tokens < 1:
                wait = (1 - tokens) / plan.rate if plan.rate > 0 else 86_400
                details = {
                    "plan": plan.name,
                    "limit": "rate",
                    "rate_per_second": plan.rate,
                    "burst": plan.burst,
                }
                return Refusal("THROTTLED", max(1, math.ceil(wait)), details)
            if plan.quota is not None:
                now = self._wall()
                start = _period_start(now, plan.period)
                counted_from, used = self._quotas.get(key, (start, 0))
                if counted_from != start:
                    used = 0
                if used >= plan.quota:
                    wait = (_next_period(start, plan.period) - now).total_seconds()
                    details = {
                        "plan": plan.name,
                        "limit": "quota",
                        "quota": plan.quota,
                        "period": plan.period,
                    }
                    return Refusal("QUOTA_EXCEEDED", max(1, math.ceil(wait)), details)
                self._quotas[key] = (start, used + 1)
            if plan.rate is not None:
                self._buckets[key] = (tokens - 1, self._monotonic())
        return None

    def _refill(self, key: str, plan: UsagePlan) -> float:
        if plan.rate is None:
            return math.inf
        capacity = float(plan.burst if plan.burst is not None else max(1, math.ceil(plan.rate)))
        now = self._monotonic()
        tokens, at = self._buckets.get(key, (capacity, now))
        return min(capacity, tokens + (now - at) * plan.rate)
