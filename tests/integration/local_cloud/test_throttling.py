"""The local gateway's usage plans: a token bucket per key and a quota per period (issue 11, defect 11)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from mlambda_local.cloud.throttling import UsageLimiter, UsagePlan


class Clock:
    def __init__(self) -> None:
        self.seconds = 0.0
        self.now = datetime(2026, 3, 3, 23, 59, 0, tzinfo=UTC)

    def advance(self, seconds: float) -> None:
        self.seconds += seconds
        self.now += timedelta(seconds=seconds)


def limiter(plan: UsagePlan, clock: Clock) -> UsageLimiter:
    return UsageLimiter({plan.name: plan}, monotonic=lambda: clock.seconds, wall=lambda: clock.now)


def test_a_burst_passes_then_requests_are_throttled_until_tokens_come_back() -> None:
    # Given a plan of 2 requests a second with a burst of 5
    clock = Clock()
    limits = limiter(UsagePlan("trial", rate=2, burst=5, quota=None), clock)
    # When 8 requests arrive at once
    answers = [limits.take("k", "trial") for _ in range(8)]
    # Then 5 pass and 3 are throttled, told to come back in a second
    assert [a is None for a in answers] == [True] * 5 + [False] * 3
    refused = answers[-1]
    assert refused is not None and (refused.kind, refused.retry_after) == ("THROTTLED", 1)
    # and half a second later one more token is there
    clock.advance(0.5)
    assert limits.take("k", "trial") is None
    assert limits.take("k", "trial") is not None


def test_each_key_has_its_own_bucket() -> None:
    # Given one key that spent its burst
    clock = Clock()
    limits = limiter(UsagePlan("trial", rate=1, burst=1, quota=None), clock)
    assert limits.take("a", "trial") is None
    assert limits.take("a", "trial") is not None
    # When another key on the same plan calls
    # Then it is not throttled
    assert limits.take("b", "trial") is None


def test_the_daily_quota_refuses_until_midnight_utc_then_starts_again() -> None:
    # Given a plan of 3 requests a day, no rate limit, at 23:59 UTC
    clock = Clock()
    limits = limiter(UsagePlan("tiny", rate=None, burst=None, quota=3), clock)
    # When a fourth request comes
    assert [limits.take("k", "tiny") for _ in range(3)] == [None, None, None]
    refused = limits.take("k", "tiny")
    # Then it is refused until midnight (60 s away), and the next day counts from zero
    assert refused is not None and (refused.kind, refused.retry_after) == ("QUOTA_EXCEEDED", 60)
    clock.advance(61)
    assert limits.take("k", "tiny") is None


def test_throttled_requests_do_not_spend_the_quota() -> None:
    # Given a plan with a burst of 1 and a quota of 2
    clock = Clock()
    limits = limiter(UsagePlan("p", rate=1, burst=1, quota=2), clock)
    # When requests are throttled in between
    assert limits.take("k", "p") is None
    assert limits.take("k", "p") is not None
    assert limits.take("k", "p") is not None
    clock.advance(1)
    # Then the quota still has its second request
    assert limits.take("k", "p") is None
