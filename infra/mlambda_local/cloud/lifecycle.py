"""S3 lifecycle expiration for the local cloud: moto stores lifecycle rules but never applies them.

The template's bucket rules (``LifecycleConfiguration.Rules``: ``Prefix`` or ``Filter.Prefix``,
``ExpirationInDays``, ``NoncurrentVersionExpiration.NoncurrentDays``, enabled ones only) are
applied by a sweep a minute after start (not during it: listing a bucket of thousands of objects
was part of a restart) and then every ``interval`` seconds, as S3 applies them about daily:

- a current object older than ``ExpirationInDays`` is deleted (a delete marker in a versioned
  bucket, as on S3);
- a noncurrent version is deleted once it has been noncurrent for ``NoncurrentDays`` (since the
  newer version or delete marker that replaced it was written);
- a delete marker with no version left behind it is removed.

Times come from the cloud's clock, so a test can sweep "two days later".
"""

from __future__ import annotations

import logging
import threading
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from itertools import pairwise
from typing import Any

from mlambda_local.cloud.template import IntrinsicResolver, Template

logger = logging.getLogger("mlambda.local")

DEFAULT_INTERVAL_SECONDS = 600.0
FIRST_SWEEP_SECONDS = 60.0


@dataclass(frozen=True)
class ExpirationRule:
    """One enabled lifecycle rule of one bucket."""

    bucket: str
    rule_id: str
    prefix: str
    expiration_days: int | None
    noncurrent_days: int | None


def rules_from_template(template: Template, resolver: IntrinsicResolver) -> list[ExpirationRule]:
    """Every enabled expiration rule of every bucket the template declares."""
    rules: list[ExpirationRule] = []
    for logical_id, resource in template.resources.items():
        if resource.get("Type") != "AWS::S3::Bucket" or not resolver.is_enabled(resource):
            continue
        configuration = resolver.resolve(
            (resource.get("Properties") or {}).get("LifecycleConfiguration") or {}
        )
        for index, rule in enumerate(configuration.get("Rules") or []):
            if str(rule.get("Status", "Enabled")) != "Enabled":
                continue
            expiration = rule.get("ExpirationInDays")
            noncurrent = (rule.get("NoncurrentVersionExpiration") or {}).get("NoncurrentDays")
            if expiration is None and noncurrent is None:
                continue
            rules.append(
                ExpirationRule(
                    bucket=resolver.physical_name(logical_id),
                    rule_id=str(rule.get("Id", f"rule-{index}")),
                    prefix=str(rule.get("Prefix") or (rule.get("Filter") or {}).get("Prefix") or ""),
                    expiration_days=int(expiration) if expiration is not None else None,
                    noncurrent_days=int(noncurrent) if noncurrent is not None else None,
                )
            )
    return rules


def _versions(s3: Any, bucket: str, prefix: str) -> Iterator[dict[str, Any]]:
    """Every version and delete marker under ``prefix`` (``marker`` set on delete markers)."""
    for page in s3.get_paginator("list_object_versions").paginate(Bucket=bucket, Prefix=prefix):
        for entry in page.get("Versions", []):
            yield {**entry, "marker": False}
        for entry in page.get("DeleteMarkers", []):
            yield {**entry, "marker": True}


def _is_factory(value: Any) -> bool:
    """A plain function rather than a client (boto3 clients have ``meta``; test doubles are not callable)."""
    return callable(value) and not hasattr(value, "meta")


class LifecycleSweeper:
    """Applies ``rules`` on the S3 endpoint, ``first_sweep`` seconds after start and every ``interval`` then.

    ``s3``: a client, or a function that makes one (called at the first sweep).
    """

    def __init__(
        self,
        s3: Any,
        rules: list[ExpirationRule],
        clock: Callable[[], datetime],
        *,
        interval: float = DEFAULT_INTERVAL_SECONDS,
        first_sweep: float = FIRST_SWEEP_SECONDS,
    ) -> None:
        self._s3 = s3
        self._client: Any = None
        self.rules = rules
        self.clock = clock
        self.interval = interval
        self.first_sweep = first_sweep
        self.deleted = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Sweep on a daemon thread after ``first_sweep`` seconds, then every ``interval`` (no rules: no thread)."""
        if not self.rules:
            return
        self._thread = threading.Thread(target=self._loop, name="s3-lifecycle", daemon=True)
        self._thread.start()

    @property
    def s3(self) -> Any:
        """The S3 client; ``s3`` may be a function making it, called at the first sweep (a minute away)."""
        if self._client is None:
            self._client = self._s3() if _is_factory(self._s3) else self._s3
        return self._client

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def _loop(self) -> None:
        wait = self.first_sweep
        while not self._stop.wait(wait):
            wait = self.interval
            try:
                self.sweep()
            except Exception:  # a failed sweep must not end the thread; the next one retries
                logger.exception("lifecycle sweep failed")

    def sweep(self, now: datetime | None = None) -> int:
        """Delete what every rule says has expired by ``now``; how many versions were deleted."""
        now = now or self.clock()
        deleted = sum(self._apply(rule, now) for rule in self.rules)
        self.deleted += deleted
        if deleted:
            logger.info("lifecycle: %d expired object versions deleted", deleted)
        return deleted

    def _listing(self, rule: ExpirationRule) -> dict[str, list[dict[str, Any]]]:
        """Versions per key, newest first."""
        by_key: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for entry in _versions(self.s3, rule.bucket, rule.prefix):
            by_key[entry["Key"]].append(entry)
        for entries in by_key.values():
            # Newest first; the current one (IsLatest) first of all, whatever the clock resolution.
            entries.sort(key=lambda e: (bool(e["IsLatest"]), e["LastModified"]), reverse=True)
        return by_key

    def _apply(self, rule: ExpirationRule, now: datetime) -> int:
        expired = 0
        if rule.expiration_days is not None:
            for key, entries in self._listing(rule).items():
                latest = entries[0]
                if (
                    not latest["marker"]
                    and latest["LastModified"] + timedelta(days=rule.expiration_days) <= now
                ):
                    self.s3.delete_object(Bucket=rule.bucket, Key=key)
                    expired += 1
        doomed: list[dict[str, str]] = []
        for key, entries in self._listing(rule).items():
            gone: set[str] = set()
            if rule.noncurrent_days is not None:
                for newer, older in pairwise(entries):
                    if newer["LastModified"] + timedelta(days=rule.noncurrent_days) <= now:
                        gone.add(older["VersionId"])
            left = [e for e in entries if e["VersionId"] not in gone]
            if len(left) == 1 and left[0]["marker"]:  # an expired object delete marker
                gone.add(left[0]["VersionId"])
            doomed.extend({"Key": key, "VersionId": version} for version in gone)
        for start in range(0, len(doomed), 1000):
            self.s3.delete_objects(
                Bucket=rule.bucket, Delete={"Objects": doomed[start : start + 1000], "Quiet": True}
            )
        return expired + len(doomed)
