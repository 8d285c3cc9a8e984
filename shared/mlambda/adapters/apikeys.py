"""The API keys table (partition key ``key_id``), and API Gateway's usage plans the keys count against."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from datetime import datetime
from typing import Any

from botocore.exceptions import ClientError

from mlambda.adapters.aws import aws_errors, client, error_code
from mlambda.adapters.dynamodb import DynamoTable
from mlambda.config import FunctionSettings
from mlambda.errors import ConflictError, NotFoundError, UpstreamError
from mlambda.schemas.keys import ApiKeyRecord


class DynamoApiKeyStore:
    """ApiKeyStore on DynamoDB."""

    def __init__(self, table: DynamoTable) -> None:
        self._table = table

    def get(self, key_id: str) -> ApiKeyRecord | None:
        """The key with ``key_id``, or None."""
        item = self._table.get({"key_id": key_id})
        return ApiKeyRecord.model_validate(item) if item else None

    def add(self, record: ApiKeyRecord) -> None:
        """Store a new key; ConflictError when the id is taken."""
        try:
            self._table.put(record.model_dump(mode="json"), condition="attribute_not_exists(key_id)")
        except ConflictError as exc:
            raise ConflictError(f"key {record.key_id} already exists") from exc

    def all(self) -> Iterator[ApiKeyRecord]:
        """Every key, revoked ones included."""
        return (ApiKeyRecord.model_validate(item) for item in self._table.scan_all())

    def revoke(self, key_id: str, at: datetime) -> ApiKeyRecord:
        """Mark the key revoked, keeping the first revocation time; NotFoundError when absent."""
        try:
            item = self._table.update(
                {"key_id": key_id},
                "SET revoked_at = if_not_exists(revoked_at, :at)",
                condition="attribute_exists(key_id)",
                values={":at": at.isoformat()},
            )
        except ConflictError as exc:
            raise NotFoundError(f"key {key_id} not found", code="key_not_found") from exc
        return ApiKeyRecord.model_validate(item)

    def set_usage(self, key_id: str, plan: str, usage_key: str, usage_key_id: str | None) -> ApiKeyRecord:
        """Record the key's plan and usage key; NotFoundError when absent."""
        try:
            item = self._table.update(
                {"key_id": key_id},
                "SET #plan = :plan, usage_key = :key, usage_key_id = :id",
                condition="attribute_exists(key_id)",
                names={"#plan": "plan"},
                values={":plan": plan, ":key": usage_key, ":id": usage_key_id},
            )
        except ConflictError as exc:
            raise NotFoundError(f"key {key_id} not found", code="key_not_found") from exc
        return ApiKeyRecord.model_validate(item)


class ApiGatewayUsagePlans:
    """UsagePlans on API Gateway: each mlambda key has an API Gateway API key (its ``usage_key``) in
    the usage plan of its plan; the authorizer returns that value as ``usageIdentifierKey``
    (the API's ``ApiKeySourceType: AUTHORIZER``), so API Gateway throttles each mlambda key.

    A plan's usage plan is found by name (``<prefix><plan>``) on first use: the keys function cannot
    name the plans' ids in its environment (plan -> stage -> API -> function would be a cycle).
    """

    def __init__(
        self, names: Iterable[str], prefix: str, settings: FunctionSettings, api: Any = None
    ) -> None:
        self._names = frozenset(names)
        self._prefix = prefix
        self._settings = settings
        self._api = api
        self._ids: dict[str, str] | None = None

    def _plan_id(self, plan: str) -> str:
        if self._ids is None:
            found: dict[str, str] = {}
            with aws_errors("usage plans"):
                for page in self.api.get_paginator("get_usage_plans").paginate():
                    for usage_plan in page.get("items", []):
                        name = str(usage_plan.get("name", ""))
                        if name.startswith(self._prefix) and name.removeprefix(self._prefix) in self._names:
                            found[name.removeprefix(self._prefix)] = str(usage_plan["id"])
            self._ids = found
        if plan not in self._ids:
            raise UpstreamError(
                f"API Gateway has no usage plan {self._prefix}{plan}", code="usage_plan_missing"
            )
        return self._ids[plan]

    @property
    def api(self) -> Any:
        if self._api is None:
            self._api = client("apigateway", self._settings)
        return self._api

    def plans(self) -> frozenset[str]:
        """The plans keys can be given."""
        return self._names

    def attach(self, key_id: str, usage_key: str, plan: str) -> str | None:
        """A new API Gateway API key holding ``usage_key``, in ``plan``'s usage plan; its id."""
        with aws_errors(f"usage key of {key_id}"):
            created = self.api.create_api_key(name=f"mlambda-{key_id}", value=usage_key, enabled=True)
            self.api.create_usage_plan_key(
                usagePlanId=self._plan_id(plan), keyId=created["id"], keyType="API_KEY"
            )
        return str(created["id"])

    def move(self, key_id: str, usage_key: str, usage_key_id: str | None, old: str, new: str) -> str | None:
        """Out of ``old``'s usage plan, into ``new``'s; a missing API key is made again (same value)."""
        if usage_key_id is None:
            return self.attach(key_id, usage_key, new)
        try:
            self.api.delete_usage_plan_key(usagePlanId=self._plan_id(old), keyId=usage_key_id)
        except ClientError as exc:
            if error_code(exc) != "NotFoundException":
                raise
        try:
            self.api.create_usage_plan_key(
                usagePlanId=self._plan_id(new), keyId=usage_key_id, keyType="API_KEY"
            )
        except ClientError as exc:
            if error_code(exc) != "NotFoundException":
                raise
            return self.attach(key_id, usage_key, new)
        return usage_key_id

    def detach(self, usage_key_id: str | None) -> None:
        """Delete the key's API Gateway API key (it leaves every usage plan with it)."""
        if usage_key_id is None:
            return
        try:
            self.api.delete_api_key(apiKey=usage_key_id)
        except ClientError as exc:
            if error_code(exc) != "NotFoundException":
                raise
