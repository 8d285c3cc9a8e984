"""API keys: issue (secret shown once), authenticate (constant-time hash check), list, revoke.

A key reads ``mlk.<key_id>.<secret>``: the id finds the record with one read, the secret
(32 random bytes) is stored only as its SHA-256. A fast hash is enough for a secret with
256 bits of entropy; a slow password hash would only add latency to every request.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from collections.abc import Callable, Iterable
from datetime import UTC, datetime

from mlambda.errors import ConflictError, InvalidInputError, NotFoundError, UnauthorizedError
from mlambda.ports import ApiKeyStore, UsagePlans
from mlambda.schemas.keys import DEFAULT_PLAN, ApiKeyRecord, ApiKeyView, CreatedKey, Principal, Scope

KEY_PREFIX = "mlk"
MAX_PRESENTED_KEY_LENGTH = 128
KEY_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")
"""What a key id can be (``create`` makes 12 hex digits)."""


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def _now() -> datetime:
    return datetime.now(UTC)


def _known_id(key_id: str) -> str:
    """``key_id`` when a key can have it; 404 ``key_not_found`` without a lookup otherwise (DynamoDB
    refuses partition keys over 2,048 bytes: that would be a 502)."""
    if KEY_ID.fullmatch(key_id) is None:
        raise NotFoundError(f"no key {key_id[:64]!r}", code="key_not_found")
    return key_id


class ApiKeyService:
    """Everything about API keys, over any ApiKeyStore."""

    def __init__(
        self, store: ApiKeyStore, plans: UsagePlans | None = None, clock: Callable[[], datetime] = _now
    ) -> None:
        """``plans``: where keys' usage plans are enforced (API Gateway); None: nowhere but the record
        (the local gateway reads the plan from the authorizer's answer)."""
        self._store = store
        self._plans = plans
        self._clock = clock

    def _check_plan(self, plan: str) -> None:
        if self._plans is not None and plan not in self._plans.plans():
            known = ", ".join(sorted(self._plans.plans()))
            raise InvalidInputError(
                f"no usage plan {plan!r}; plans: {known}",
                code="unknown_plan",
                details={"plans": sorted(self._plans.plans())},
            )

    def create(
        self, name: str, scopes: Iterable[Scope], created_by: str, plan: str = DEFAULT_PLAN
    ) -> CreatedKey:
        """Issue a key in ``plan``; the returned ``api_key`` is the only copy of the secret."""
        self._check_plan(plan)
        key_id = secrets.token_hex(6)
        secret = secrets.token_urlsafe(32)
        usage_key = secrets.token_urlsafe(30)
        usage_key_id = self._plans.attach(key_id, usage_key, plan) if self._plans is not None else None
        record = ApiKeyRecord(
            key_id=key_id,
            name=name,
            scopes=sorted(set(scopes)),
            secret_hash=_hash(secret),
            created_at=self._clock(),
            created_by=created_by,
            plan=plan,
            usage_key=usage_key,
            usage_key_id=usage_key_id,
        )
        self._store.add(record)
        return CreatedKey(**ApiKeyView.of(record).model_dump(), api_key=f"{KEY_PREFIX}.{key_id}.{secret}")

    def authenticate(self, presented: str | None) -> Principal:
        """The principal for a presented key; UnauthorizedError for missing, unknown or revoked keys."""
        if not presented or len(presented) > MAX_PRESENTED_KEY_LENGTH:
            raise UnauthorizedError("Unauthorized")
        prefix, _, rest = presented.partition(".")
        key_id, _, secret = rest.partition(".")
        if prefix != KEY_PREFIX or not key_id or not secret:
            raise UnauthorizedError("Unauthorized")
        record = self._store.get(key_id)
        if record is None or record.revoked_at is not None:
            raise UnauthorizedError("Unauthorized")
        if not hmac.compare_digest(record.secret_hash, _hash(secret)):
            raise UnauthorizedError("Unauthorized")
        return Principal(
            key_id=record.key_id,
            name=record.name,
            scopes=frozenset(record.scopes),
            plan=record.plan,
            usage_key=record.usage_key,
        )

    def list_keys(self) -> list[ApiKeyView]:
        """Every key, newest first, without secrets."""
        views = [ApiKeyView.of(record) for record in self._store.all()]
        return sorted(views, key=lambda view: view.created_at, reverse=True)

    def set_plan(self, key_id: str, plan: str) -> ApiKeyView:
        """Give a key another usage plan (takes effect within the authorizer cache's TTL)."""
        self._check_plan(plan)
        record = self._store.get(_known_id(key_id))
        if record is None:
            raise NotFoundError(f"key {key_id} not found", code="key_not_found")
        if record.revoked_at is not None:
            raise ConflictError(f"key {key_id} is revoked", code="key_revoked")
        usage_key = record.usage_key or secrets.token_urlsafe(30)
        usage_key_id = record.usage_key_id
        if self._plans is not None:
            usage_key_id = self._plans.move(key_id, usage_key, usage_key_id, record.plan, plan)
        return ApiKeyView.of(self._store.set_usage(key_id, plan, usage_key, usage_key_id))

    def revoke(self, key_id: str) -> ApiKeyView:
        """Revoke a key for good (idempotent); it leaves its usage plan."""
        record = self._store.revoke(_known_id(key_id), self._clock())
        if self._plans is not None:
            self._plans.detach(record.usage_key_id)
        return ApiKeyView.of(record)
