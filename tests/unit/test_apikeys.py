from __future__ import annotations

from datetime import UTC, datetime

import pytest

from mlambda.errors import NotFoundError, UnauthorizedError
from mlambda.schemas.keys import Scope
from mlambda.services.apikeys import ApiKeyService
from tests.unit.fakes import InMemoryApiKeyStore

NOW = datetime(2026, 3, 3, 12, 0, tzinfo=UTC)


@pytest.fixture
def store() -> InMemoryApiKeyStore:
    return InMemoryApiKeyStore()


@pytest.fixture
def keys(store: InMemoryApiKeyStore) -> ApiKeyService:
    return ApiKeyService(store, clock=lambda: NOW)


def test_created_key_authenticates_with_its_scopes(keys: ApiKeyService) -> None:
    # Given
    created = keys.create("app", [Scope.PREDICT, Scope.INGEST], created_by="admin")
    # When
    principal = keys.authenticate(created.api_key)
    # Then
    assert principal.key_id == created.key_id
    assert principal.scopes == {Scope.PREDICT, Scope.INGEST}
    assert principal.allows(Scope.PREDICT)
    assert not principal.allows(Scope.REGISTRY_WRITE)


def test_store_keeps_only_the_hash_of_the_secret(keys: ApiKeyService, store: InMemoryApiKeyStore) -> None:
    # Given
    created = keys.create("app", [Scope.PREDICT], created_by="admin")
    secret = created.api_key.split(".", 2)[2]
    # When
    record = store.records[created.key_id]
    # Then
    assert secret not in record.model_dump_json()
    assert len(record.secret_hash) == 64


@pytest.mark.parametrize(
    "presented",
    [None, "", "garbage", "mlk.", "mlk.abc", "xyz.abc.def", "mlk." + "a" * 200],
)
def test_malformed_keys_are_unauthorized(keys: ApiKeyService, presented: str | None) -> None:
    with pytest.raises(UnauthorizedError):
        keys.authenticate(presented)


def test_wrong_secret_for_a_known_id_is_unauthorized(keys: ApiKeyService) -> None:
    # Given
    created = keys.create("app", [Scope.PREDICT], created_by="admin")
    # When / Then
    with pytest.raises(UnauthorizedError):
        keys.authenticate(f"mlk.{created.key_id}.not-the-secret")


def test_revoked_key_is_unauthorized_and_revocation_is_idempotent(keys: ApiKeyService) -> None:
    # Given
    created = keys.create("app", [Scope.PREDICT], created_by="admin")
    # When
    first = keys.revoke(created.key_id)
    second = keys.revoke(created.key_id)
    # Then
    assert first.revoked_at == second.revoked_at == NOW
    with pytest.raises(UnauthorizedError):
        keys.authenticate(created.api_key)


def test_revoking_an_unknown_key_is_not_found(keys: ApiKeyService) -> None:
    with pytest.raises(NotFoundError):
        keys.revoke("000000000000")


@pytest.mark.parametrize("key_id", ["k" * 3000, "../x", ""])
def test_a_key_id_that_cannot_be_one_is_not_found_without_asking_the_store(
    keys: ApiKeyService, store: InMemoryApiKeyStore, key_id: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a store that must not be asked (DynamoDB refuses keys over 2048 bytes: a 502)
    def refuse(*_: object) -> None:
        raise AssertionError("the store was asked")

    monkeypatch.setattr(store, "revoke", refuse)
    # When / Then
    with pytest.raises(NotFoundError) as missing:
        keys.revoke(key_id)
    assert missing.value.code == "key_not_found"


def test_listing_never_shows_secrets(keys: ApiKeyService) -> None:
    # Given
    created = keys.create("app", [Scope.PREDICT], created_by="admin")
    # When
    listed = keys.list_keys()
    # Then
    assert [k.key_id for k in listed] == [created.key_id]
    dumped = listed[0].model_dump()
    assert "secret_hash" not in dumped
    assert "api_key" not in dumped


def test_admin_scope_allows_everything(keys: ApiKeyService) -> None:
    created = keys.create("root", [Scope.ADMIN], created_by="bootstrap")
    principal = keys.authenticate(created.api_key)
    assert all(principal.allows(scope) for scope in Scope)
