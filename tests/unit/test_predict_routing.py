"""Variant choice: weighted split, stickiness, overrides and shadow sampling."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from mlambda.errors import InvalidInputError
from mlambda.schemas.registry import EndpointConfig, Shadow, Variant
from mlambda.services.inference.routing import BUCKETS, Router, bucket

N = 10_000


def router(*weights: int, sticky: str | None = None, shadow: float | None = None) -> Router:
    config = EndpointConfig(
        model="churn",
        variants=[Variant(name=f"v{i}", target=f"v{i + 1}", weight=w) for i, w in enumerate(weights)],
        sticky_key=sticky,
        shadow=Shadow(target="staging", sample_percent=shadow) if shadow else None,
    )
    return Router.of("churn", config)


@pytest.mark.parametrize("weights", [(90, 10), (50, 50), (70, 20, 10), (100, 0)])
def test_random_assignment_follows_the_weights_over_10k_requests(weights: tuple[int, ...]) -> None:
    # Given
    split = router(*weights)
    rng = random.Random(7)
    # When
    counts = Counter(split.choose(override=None, sticky=None, rng=rng).name for _ in range(N))
    # Then: within 1.5 points of each weight (> 4 standard deviations at N=10k)
    for i, weight in enumerate(weights):
        assert abs(counts[f"v{i}"] / N * 100 - weight) < 1.5, counts


def test_sticky_assignment_follows_the_weights_across_10k_callers() -> None:
    split = router(80, 20, sticky="entity_id")
    counts = Counter(
        split.choose(override=None, sticky=f"user-{i}", rng=random.Random(0)).name for i in range(N)
    )
    assert abs(counts["v0"] / N * 100 - 80) < 1.5
    assert abs(counts["v1"] / N * 100 - 20) < 1.5


def test_a_sticky_caller_always_gets_the_same_variant_whatever_the_randomness() -> None:
    split = router(50, 50, sticky="entity_id")
    for caller in (f"user-{i}" for i in range(200)):
        chosen = {
            split.choose(override=None, sticky=caller, rng=random.Random(seed)).name for seed in range(5)
        }
        assert len(chosen) == 1, caller


def test_raising_a_canary_weight_only_moves_callers_towards_the_canary() -> None:
    # Given a 90/10 split that becomes 70/30
    before, after = router(90, 10, sticky="entity_id"), router(70, 30, sticky="entity_id")
    rng = random.Random(0)
    moved_back = 0
    for i in range(N):
        key = f"user-{i}"
        was = before.choose(override=None, sticky=key, rng=rng).name
        now = after.choose(override=None, sticky=key, rng=rng).name
        moved_back += was == "v1" and now == "v0"
    # Then nobody on the canary is sent back
    assert moved_back == 0


def test_buckets_are_stable_and_spread() -> None:
    buckets = [bucket("churn", f"user-{i}") for i in range(N)]
    assert buckets == [bucket("churn", f"user-{i}") for i in range(N)]
    assert all(0 <= b < BUCKETS for b in buckets)
    assert len(set(buckets)) > 6000  # 10k keys over 10k buckets: ~6,321 distinct expected
    assert sum(bucket("fraud", f"user-{i}") == b for i, b in enumerate(buckets)) < 20


def test_sticky_value_comes_from_entity_id_or_the_named_field() -> None:
    assert router(100, sticky="entity_id").sticky_value("e1", [{"a": 1}]) == "e1"
    assert router(100, sticky="user_id").sticky_value(None, [{"user_id": 42}]) == "42"
    assert router(100, sticky="user_id").sticky_value(None, [{"a": 1}]) is None
    assert router(100).sticky_value("e1", [{"a": 1}]) is None


def test_override_picks_the_named_variant_even_at_zero_weight() -> None:
    split = router(100, 0)
    assert split.choose(override="v1", sticky="x", rng=random.Random(0)).name == "v1"


def test_unknown_variant_override_is_a_400_naming_the_variants() -> None:
    with pytest.raises(InvalidInputError) as error:
        router(50, 50).choose(override="nope", sticky=None, rng=random.Random(0))
    assert error.value.status == 400
    assert error.value.code == "unknown_variant"
    assert error.value.details["variants"] == ["v0", "v1"]


def test_shadow_sampling_rate_matches_its_share() -> None:
    split = router(100, shadow=20.0)
    rng = random.Random(3)
    sampled = sum(split.shadow_sampled(rng) for _ in range(N))
    assert abs(sampled / N * 100 - 20) < 1.5


def test_without_config_everything_goes_to_production() -> None:
    split = Router.of("churn", None)
    assert split.choose(override=None, sticky=None, rng=random.Random(0)).target == "production"
    assert not split.shadow_sampled(random.Random(0))
