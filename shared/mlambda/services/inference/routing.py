"""Which variant serves a request: weighted split, sticky callers, override, shadow sampling.

Traffic is split in 10,000 buckets (0.01 % granularity). A sticky caller's bucket is a stable
hash of (model, key): blake2b, not Python's ``hash`` (salted per process), so every Lambda
instance sends the same caller to the same variant, and changing one variant's weight moves
only the callers whose bucket changes range. Callers without a key get a random bucket.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from mlambda.errors import InvalidInputError
from mlambda.schemas.registry import PRODUCTION, EndpointConfig, Shadow, Variant

BUCKETS = 10_000
DEFAULT_VARIANT = Variant(name=PRODUCTION, target=PRODUCTION, weight=100)


def bucket(model: str, key: str) -> int:
    """The caller's stable bucket in 0..9999 for ``model``."""
    digest = hashlib.blake2b(f"{model}\x00{key}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") % BUCKETS


@dataclass(frozen=True, slots=True)
class Router:
    """The split of one endpoint config, precomputed: cumulative bucket bounds per variant."""

    model: str
    variants: tuple[Variant, ...]
    bounds: tuple[int, ...]
    shadow: Shadow | None
    sticky_key: str | None

    @classmethod
    def of(cls, model: str, config: EndpointConfig | None) -> Router:
        """The router for ``config``; with no config, everything goes to ``production``."""
        if config is None:
            return cls(model, (DEFAULT_VARIANT,), (BUCKETS,), None, None)
        bounds: list[int] = []
        total = 0
        for variant in config.variants:
            total += variant.weight * (BUCKETS // 100)
            bounds.append(total)
        return cls(model, tuple(config.variants), tuple(bounds), config.shadow, config.sticky_key)

    def sticky_value(self, entity_id: str | None, rows: Sequence[Mapping[str, Any]]) -> str | None:
        """The value of the endpoint's sticky key in this request, if it has one."""
        if self.sticky_key is None:
            return None
        if self.sticky_key == "entity_id":
            return entity_id
        value = rows[0].get(self.sticky_key) if rows else None
        return None if value is None else str(value)

    def choose(self, *, override: str | None, sticky: str | None, rng: random.Random) -> Variant:
        """The variant for a request: the override, else the caller's bucket's variant."""
        if override is not None:
            for variant in self.variants:
                if variant.name == override:
                    return variant
            raise InvalidInputError(
                f"model '{self.model}' has no variant '{override}'",
                code="unknown_variant",
                details={"variant": override, "variants": [v.name for v in self.variants]},
            )
        if len(self.variants) == 1:
            return self.variants[0]
        point = bucket(self.model, sticky) if sticky is not None else rng.randrange(BUCKETS)
        for variant, bound in zip(self.variants, self.bounds, strict=True):
            if point < bound:
                return variant
        return self.variants[-1]

    def shadow_sampled(self, rng: random.Random) -> bool:
        """Whether this request is also scored by the shadow variant."""
        return self.shadow is not None and rng.random() * 100.0 < self.shadow.sample_percent
