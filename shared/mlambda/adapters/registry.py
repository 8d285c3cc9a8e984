"""The registry on DynamoDB (one table, layout in ``mlambda.schemas.registry``) and S3.

Reads are what every other function pays for, so they are single GetItems: an alias item
embeds a copy of the (immutable) version it points at, so ``resolve("m", "production")`` is one
strongly consistent read, and ``models_with_alias`` is one query on ``gsi1`` (alias items carry
``gsi1pk = alias#<alias>``). Versions are stored as one JSON attribute (``body``): one fast
parse instead of DynamoDB's per-attribute decoding of hundreds of nested smoke-case values. The model's meta item keeps an ``aliases`` map (alias -> version)
so that "delete only when no alias points at it" is a condition of the delete itself.

Every write is one transaction with its HistoryEntry; conditions make concurrent writers lose
with ConflictError instead of overwriting each other. A version item carries its ``status``:
PENDING_VALIDATION and FAILED ones hold a PendingVersion and are never handed to the catalog's
readers (predict, batch, monitor); the validator's one conditional write turns PENDING into
READY or FAILED. The endpoint item carries a ``revision``: a write names the revision it read.
"""

from __future__ import annotations

import json
import random
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from mlambda.adapters.aws import aws_errors
from mlambda.adapters.dynamodb import (
    DynamoTable,
    failed_operations,
    transact_check,
    transact_delete,
    transact_put,
    transact_update,
)
from mlambda.adapters.messaging import Queue
from mlambda.adapters.paging import PageTokens, listing
from mlambda.adapters.s3 import ObjectStore
from mlambda.errors import ConflictError, InvalidInputError, MlambdaError, NotFoundError
from mlambda.observability import logger
from mlambda.schemas.registry import (
    ALIAS_PATTERN,
    PENDING_VALIDATION,
    READY,
    Alias,
    EndpointConfig,
    HistoryEntry,
    ModelVersion,
    PendingVersion,
    RegisteredModel,
    parse_version_ref,
)
from mlambda.schemas.registry_api import ModelDetails

if TYPE_CHECKING:
    import numpy as np

    from mlambda.adapters.onnx import ValidatedModel

META = "meta"
ENDPOINT = "endpoint"
MODELS_INDEX = "gsi1"
MODELS_PARTITION = "models"
VERSION_PREFIX = "version#"
ALIAS_PREFIX = "alias#"
HISTORY_PREFIX = "history#"
ALIAS_ACTIONS = ("alias_moved", "rollback", "alias_deleted")
VERSION_BODY = "body"


def model_pk(name: str) -> str:
    """Partition key of everything about model ``name``."""
    return f"model#{name}"


def version_sk(version: int) -> str:
    """Sort key of version ``version`` (zero-padded so that versions sort numerically)."""
    return f"{VERSION_PREFIX}{version:010d}"


def alias_sk(alias: str) -> str:
    """Sort key of alias ``alias``."""
    return f"{ALIAS_PREFIX}{alias}"


def history_time(at: datetime) -> str:
    """Fixed-width UTC time, so that history sort keys order by time."""
    if at.tzinfo is None:
        at = at.replace(tzinfo=UTC)
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def history_sk(entry: HistoryEntry) -> str:
    """Sort key of a history entry: time, then a random suffix so simultaneous entries never collide."""
    return f"{HISTORY_PREFIX}{history_time(entry.at)}#{random.getrandbits(48):012x}"


class VersionNotReadyError(NotFoundError):
    """The version exists but is not READY (still validating, or FAILED): nothing may serve it."""

    default_code = "version_not_ready"


def version_from_item(item: Mapping[str, Any]) -> ModelVersion:
    """The READY ModelVersion stored in a version or alias item; VersionNotReadyError otherwise."""
    status = item.get("status", READY)  # items written before statuses existed were all validated
    if status != READY:
        model, number = str(item.get("model")), int(item.get("version", 0))
        raise VersionNotReadyError(
            f"model '{model}' version {number} is {status}, not servable",
            details={"model": model, "version": number, "status": status},
        )
    return ModelVersion.model_validate_json(item[VERSION_BODY])


def record_from_item(item: Mapping[str, Any]) -> ModelVersion | PendingVersion:
    """Whatever version the item holds, READY or not."""
    if item.get("status", READY) == READY:
        return ModelVersion.model_validate_json(item[VERSION_BODY])
    return PendingVersion.model_validate_json(item[VERSION_BODY])


class DynamoModelCatalog:
    """ModelCatalog on the registry table: what predict, batch and monitor read."""

    def __init__(self, table: DynamoTable) -> None:
        self._table = table

    def _item(self, name: str, sk: str, *, consistent: bool) -> dict[str, Any] | None:
        return self._table.get({"pk": model_pk(name), "sk": sk}, consistent=consistent)

    def get_version(self, model: str, version: int) -> ModelVersion:
        """One READY version; a READY version is immutable, so an eventually consistent read is
        retried consistently on a miss (or on a stale PENDING status)."""
        item = self._item(model, version_sk(version), consistent=False)
        if item is None or item.get("status", READY) != READY:
            item = self._item(model, version_sk(version), consistent=True)
        if item is None:
            raise NotFoundError(
                f"model '{model}' has no version {version}",
                code="version_not_found",
                details={"model": model, "version": version},
            )
        return version_from_item(item)

    def resolve(self, model: str, ref: str) -> ModelVersion:
        """``v3`` / ``3`` -> that version; an alias -> the version it points at (one consistent read)."""
        number = parse_version_ref(ref)
        if number is not None:
            return self.get_version(model, number)
        if not re.match(ALIAS_PATTERN, ref):
            raise NotFoundError(f"'{ref}' is neither a version nor an alias", code="alias_not_found")
        item = self._item(model, alias_sk(ref), consistent=True)
        if item is None or VERSION_BODY not in item:
            raise NotFoundError(
                f"model '{model}' has no alias '{ref}'",
                code="alias_not_found",
                details={"model": model, "alias": ref},
            )
        return version_from_item(item)

    def endpoint_config(self, model: str) -> EndpointConfig | None:
        """The model's endpoint config, or None."""
        item = self._item(model, ENDPOINT, consistent=True)
        if item is None:
            return None
        return EndpointConfig.model_validate({k: v for k, v in item.items() if k not in ("pk", "sk")})

    def models_with_alias(self, alias: str) -> list[ModelVersion]:
        """The version ``alias`` points at in every model that has it (one GSI query)."""
        items = self._table.query_all("gsi1pk = :p", {":p": alias_sk(alias)}, index=MODELS_INDEX)
        return [
            ModelVersion.model_validate_json(item[VERSION_BODY]) for item in items if VERSION_BODY in item
        ]


class DynamoRegistryStore(DynamoModelCatalog):
    """RegistryStore on the registry table."""

    def __init__(self, table: DynamoTable) -> None:
        super().__init__(table)
        self._pages = PageTokens(table)

    def _history(self, entry: HistoryEntry) -> dict[str, Any]:
        item = {"pk": model_pk(entry.model), "sk": history_sk(entry), **entry.model_dump(mode="json")}
        return transact_put(self._table.name, item, condition="attribute_not_exists(pk)")

    def _meta_key(self, name: str) -> dict[str, str]:
        return {"pk": model_pk(name), "sk": META}

    # ------------------------------------------------------------------ models

    def create_model(self, model: RegisteredModel, entry: HistoryEntry) -> None:
        """Store a new model; ConflictError when the name is taken."""
        item = {
            **self._meta_key(model.name),
            "gsi1pk": MODELS_PARTITION,
            "gsi1sk": model.name,
            **model.model_dump(mode="json"),
            "aliases": {},
        }
        try:
            self._table.transact_write(
                [
                    transact_put(self._table.name, item, condition="attribute_not_exists(pk)"),
                    self._history(entry),
                ]
            )
        except ConflictError as exc:
            raise ConflictError(f"model '{model.name}' already exists", code="model_exists") from exc

    def get_model(self, name: str) -> ModelDetails | None:
        """The model with its alias map, or None."""
        item = self._table.get(self._meta_key(name), consistent=True)
        return ModelDetails.model_validate(item) if item else None

    def list_models(
        self,
        *,
        limit: int,
        token: str | None,
        owner: str | None,
        tag: tuple[str, str] | None,
        name: str | None = None,
        stage: str | None = None,
    ) -> tuple[list[ModelDetails], str | None]:
        """One page of models by name; filters apply server-side, pages are filled up to ``limit``."""
        pages = listing("models", owner, tag, name, stage)
        start = self._pages.read(
            token,
            pages,
            equal={"gsi1pk": MODELS_PARTITION, "sk": META},
            prefixed={"pk": model_pk(""), "gsi1sk": ""},
        )
        filters: list[str] = []
        names: dict[str, str] = {}
        values: dict[str, Any] = {":p": MODELS_PARTITION}
        if owner is not None:
            filters.append("#owner = :owner")
            names["#owner"] = "owner"
            values[":owner"] = owner
        if tag is not None:
            filters.append("#tags.#tk = :tv")
            names.update({"#tags": "tags", "#tk": tag[0]})
            values[":tv"] = tag[1]
        if name is not None:
            filters.append("contains(#name, :name)")
            names["#name"] = "name"
            values[":name"] = name
        if stage is not None:
            filters.append("attribute_exists(#aliases.#stage)")
            names.update({"#aliases": "aliases", "#stage": stage})
        models: list[ModelDetails] = []
        while True:
            items, start = self._table.query(
                "gsi1pk = :p",
                values,
                names=names or None,
                index=MODELS_INDEX,
                filter_expression=" AND ".join(filters) or None,
                limit=limit - len(models),
                start_key=start,
            )
            models.extend(ModelDetails.model_validate(item) for item in items)
            if start is None or len(models) >= limit:
                return models, self._pages.issue(pages, start)

    def update_model(self, model: RegisteredModel, entry: HistoryEntry) -> None:
        """Replace description, owner and tags; NotFoundError when the model is gone."""
        update = transact_update(
            self._table.name,
            self._meta_key(model.name),
            "SET #description = :d, #owner = :o, #tags = :t, require_evaluation = :r, updated_at = :u",
            condition="attribute_exists(pk)",
            names={"#description": "description", "#owner": "owner", "#tags": "tags"},
            values={
                ":d": model.description,
                ":o": model.owner,
                ":t": model.tags,
                ":r": model.require_evaluation,
                ":u": model.updated_at.isoformat(),
            },
        )
        try:
            self._table.transact_write([update, self._history(entry)])
        except ConflictError as exc:
            raise NotFoundError(f"model '{model.name}' not found", code="model_not_found") from exc

    def delete_model(self, name: str, entry: HistoryEntry) -> None:
        """Delete meta (only while no alias exists), then its versions and endpoint; history stays."""
        delete = transact_delete(
            self._table.name,
            self._meta_key(name),
            condition="attribute_exists(pk) AND size(aliases) = :zero",
            values={":zero": 0},
        )
        try:
            self._table.transact_write([delete, self._history(entry)])
        except ConflictError as exc:
            current = self.get_model(name)
            if current is None:
                raise NotFoundError(f"model '{name}' not found", code="model_not_found") from exc
            raise ConflictError(
                f"model '{name}' still has aliases; delete them first",
                code="model_has_aliases",
                details={"aliases": current.aliases},
            ) from exc
        doomed = self._table.query_all(
            "pk = :pk AND begins_with(sk, :v)", {":pk": model_pk(name), ":v": VERSION_PREFIX}
        )
        keys = [{"pk": item["pk"], "sk": item["sk"]} for item in doomed]
        for key in [*keys, {"pk": model_pk(name), "sk": ENDPOINT}]:
            self._table.delete(key)

    # ------------------------------------------------------------------ versions

    def latest_version(self, name: str) -> int:
        """The highest version number, read consistently; NotFoundError when there is no model."""
        item = self._table.get(self._meta_key(name), consistent=True)
        if item is None:
            raise NotFoundError(f"model '{name}' not found", code="model_not_found")
        return int(item.get("latest_version", 0))

    def add_version(self, version: ModelVersion | PendingVersion, entry: HistoryEntry) -> None:
        """Version N goes in only if the model's latest is still N-1: the loser of a race gets ConflictError."""
        bump = transact_update(
            self._table.name,
            self._meta_key(version.model),
            "SET latest_version = :n, updated_at = :u",
            condition="latest_version = :prev",
            values={
                ":n": version.version,
                ":prev": version.version - 1,
                ":u": version.created_at.isoformat(),
            },
        )
        put = transact_put(
            self._table.name, self._version_item(version), condition="attribute_not_exists(pk)"
        )
        self._table.transact_write([bump, put, self._history(entry)])

    @staticmethod
    def _version_item(version: ModelVersion | PendingVersion) -> dict[str, Any]:
        return {
            "pk": model_pk(version.model),
            "sk": version_sk(version.version),
            "model": version.model,
            "version": version.version,
            "status": version.status,
            "created_at": version.created_at.isoformat(),
            VERSION_BODY: version.model_dump_json(),
        }

    def version_record(self, name: str, version: int) -> ModelVersion | PendingVersion | None:
        """The version whatever its status (consistent read), or None."""
        item = self._item(name, version_sk(version), consistent=True)
        return record_from_item(item) if item else None

    def finish_version(self, version: ModelVersion | PendingVersion, entry: HistoryEntry) -> None:
        """Replace a PENDING_VALIDATION version by its outcome; ConflictError if it is no longer pending."""
        put = transact_put(
            self._table.name,
            self._version_item(version),
            condition="#status = :pending",
            names={"#status": "status"},
            values={":pending": PENDING_VALIDATION},
        )
        try:
            self._table.transact_write([put, self._history(entry)])
        except ConflictError as exc:
            raise ConflictError(
                f"model '{version.model}' version {version.version} is no longer pending validation",
                code="version_not_pending",
            ) from exc

    def list_versions(
        self, name: str, *, limit: int, token: str | None
    ) -> tuple[list[ModelVersion | PendingVersion], str | None]:
        """One page of versions, newest first."""
        pages = listing("versions", name)
        start = self._pages.read(token, pages, equal={"pk": model_pk(name)}, prefixed={"sk": VERSION_PREFIX})
        items, last = self._table.query(
            "pk = :pk AND begins_with(sk, :v)",
            {":pk": model_pk(name), ":v": VERSION_PREFIX},
            forward=False,
            limit=limit,
            start_key=start,
        )
        return [record_from_item(item) for item in items], self._pages.issue(pages, last)

    # ------------------------------------------------------------------ aliases

    def get_alias(self, name: str, alias: str) -> Alias | None:
        """The alias (consistent read), or None."""
        item = self._table.get({"pk": model_pk(name), "sk": alias_sk(alias)}, consistent=True)
        return Alias.model_validate(item) if item else None

    def move_alias(
        self, alias: Alias, target: ModelVersion, expected: int | None, entry: HistoryEntry
    ) -> None:
        """Alias item, the meta's alias map and the history entry in one transaction, conditioned on ``expected``."""
        key = {"pk": model_pk(alias.model), "sk": alias_sk(alias.alias)}
        item = {
            **key,
            "gsi1pk": alias_sk(alias.alias),
            "gsi1sk": alias.model,
            **alias.model_dump(mode="json"),
            VERSION_BODY: target.model_dump_json(),
        }
        if expected is None:
            put = transact_put(self._table.name, item, condition="attribute_not_exists(pk)")
        else:
            put = transact_put(
                self._table.name,
                item,
                condition="#version = :expected",
                names={"#version": "version"},
                values={":expected": expected},
            )
        operations = [
            put,
            transact_update(
                self._table.name,
                self._meta_key(alias.model),
                "SET aliases.#alias = :v",
                condition="attribute_exists(pk)",
                names={"#alias": alias.alias},
                values={":v": alias.version},
            ),
            transact_check(
                self._table.name,
                {"pk": model_pk(alias.model), "sk": version_sk(target.version)},
                "attribute_exists(pk)",
            ),
            self._history(entry),
        ]
        try:
            self._table.transact_write(operations)
        except ConflictError as exc:
            failed = failed_operations(exc) or []
            if 1 in failed or 2 in failed:
                raise NotFoundError(
                    f"model '{alias.model}' or its version {target.version} no longer exists",
                    code="model_not_found",
                ) from exc
            raise ConflictError(
                f"alias '{alias.alias}' of '{alias.model}' moved concurrently; read it again and retry",
                code="alias_conflict",
                details={"expected_version": expected},
            ) from exc

    def delete_alias(self, name: str, alias: str, expected: int, entry: HistoryEntry) -> None:
        """Remove the alias only if it still points at ``expected``."""
        operations = [
            transact_delete(
                self._table.name,
                {"pk": model_pk(name), "sk": alias_sk(alias)},
                condition="#version = :expected",
                names={"#version": "version"},
                values={":expected": expected},
            ),
            transact_update(
                self._table.name,
                self._meta_key(name),
                "REMOVE aliases.#alias",
                condition="attribute_exists(pk)",
                names={"#alias": alias},
            ),
            self._history(entry),
        ]
        try:
            self._table.transact_write(operations)
        except ConflictError as exc:
            raise ConflictError(
                f"alias '{alias}' of '{name}' changed concurrently; read it again and retry",
                code="alias_conflict",
            ) from exc

    # ------------------------------------------------------------------ endpoint

    def put_endpoint(
        self,
        config: EndpointConfig,
        targets: list[str],
        entry: HistoryEntry,
        *,
        expected_revision: int | None = None,
    ) -> None:
        """Store the config only if it is still at ``expected_revision`` (None: none is stored yet, a
        create) and while the model and every target (alias or ``v<N>``) exist; ConflictError otherwise."""
        pk = model_pk(config.model)
        if expected_revision is None:
            put = transact_put(
                self._table.name, self._endpoint_item(config), condition="attribute_not_exists(pk)"
            )
        elif expected_revision == 0:  # written before revisions existed
            put = transact_put(
                self._table.name,
                self._endpoint_item(config),
                condition="attribute_exists(pk) AND (attribute_not_exists(revision) OR revision = :r)",
                values={":r": 0},
            )
        else:
            put = transact_put(
                self._table.name,
                self._endpoint_item(config),
                condition="revision = :r",
                values={":r": expected_revision},
            )
        checks = [transact_check(self._table.name, self._meta_key(config.model), "attribute_exists(pk)")]
        for sk in sorted(
            {version_sk(n) if (n := parse_version_ref(t)) is not None else alias_sk(t) for t in targets}
        ):
            checks.append(transact_check(self._table.name, {"pk": pk, "sk": sk}, "attribute_exists(pk)"))
        try:
            self._table.transact_write([put, *checks, self._history(entry)])
        except ConflictError as exc:
            failed = failed_operations(exc) or []
            if 0 in failed:
                current = self.endpoint_config(config.model)
                raise ConflictError(
                    f"the endpoint of '{config.model}' changed since revision {expected_revision}: "
                    "read it again and retry",
                    code="conflict",
                    details={
                        "expected_revision": expected_revision,
                        "current_revision": current.revision if current else None,
                    },
                ) from exc
            raise ConflictError(
                f"model '{config.model}' or a variant target changed while the endpoint was written",
                code="endpoint_conflict",
            ) from exc

    @staticmethod
    def _endpoint_item(config: EndpointConfig) -> dict[str, Any]:
        return {"pk": model_pk(config.model), "sk": ENDPOINT, **config.model_dump(mode="json")}

    # ------------------------------------------------------------------ history

    def history(
        self, name: str, *, limit: int, token: str | None, alias: str | None
    ) -> tuple[list[HistoryEntry], str | None]:
        """One page of history, newest first; with ``alias``, only that alias's moves."""
        pk = model_pk(name)
        pages = listing("history", name, alias)
        start = self._pages.read(token, pages, equal={"pk": pk}, prefixed={"sk": HISTORY_PREFIX})
        names: dict[str, str] | None = None
        values: dict[str, Any] = {":pk": pk, ":h": HISTORY_PREFIX}
        filter_expression = None
        if alias is not None:
            filter_expression = "#alias = :alias"
            names = {"#alias": "alias"}
            values[":alias"] = alias
        entries: list[HistoryEntry] = []
        while True:
            items, start = self._table.query(
                "pk = :pk AND begins_with(sk, :h)",
                values,
                names=names,
                filter_expression=filter_expression,
                forward=False,
                limit=limit - len(entries),
                start_key=start,
            )
            entries.extend(HistoryEntry.model_validate(item) for item in items)
            if start is None or len(entries) >= limit:
                return entries, self._pages.issue(pages, start)

    def alias_entry_at(self, name: str, alias: str, at: datetime) -> HistoryEntry | None:
        """The last move/rollback/removal of ``alias`` at or before ``at``: walks history backwards from ``at``."""
        items = self._table.query_all(
            "pk = :pk AND sk BETWEEN :low AND :high",
            {
                ":pk": model_pk(name),
                ":low": HISTORY_PREFIX,
                ":high": f"{HISTORY_PREFIX}{history_time(at)}#~",
                ":alias": alias,
                ":a0": ALIAS_ACTIONS[0],
                ":a1": ALIAS_ACTIONS[1],
                ":a2": ALIAS_ACTIONS[2],
            },
            names={"#alias": "alias", "#action": "action"},
            filter_expression="#alias = :alias AND #action IN (:a0, :a1, :a2)",
            forward=False,
            limit=100,
        )
        first = next(iter(items), None)
        return HistoryEntry.model_validate(first) if first else None


class S3RegistryArtifacts(ObjectStore):
    """RegistryArtifacts on the artifacts bucket."""

    def size(self, key: str) -> int:
        """Size of ``key`` in bytes (HEAD, no download)."""
        return self.head(key).size

    def upload_url(self, key: str, *, expires_in: int) -> str:
        """A presigned PUT URL for ``key``."""
        return self.presigned_put(key, expires_in=expires_in)

    def read_table(self, key: str) -> dict[str, np.ndarray]:
        """A CSV or Parquet object as columns; InvalidInputError naming the problem otherwise."""
        from mlambda.adapters import tabular

        lowered = key.lower()
        if not lowered.endswith((".parquet", ".csv")):
            raise InvalidInputError("a reference sample must be .parquet or .csv", code="invalid_reference")
        data = self.get(key)
        try:
            if lowered.endswith(".parquet"):
                return tabular.read_parquet_table(data).to_columns()
            return tabular.read_csv_table(data).to_columns()
        except tabular.TableError as exc:
            raise InvalidInputError(
                f"reference sample {key.rsplit('/', 1)[-1]} is not readable: {exc}", code="invalid_reference"
            ) from exc

    def delete_prefix(self, prefix: str) -> None:
        """Remove every object under ``prefix`` (one call per key: registry prefixes hold a few objects)."""
        for key in list(self.list_keys(prefix)):
            self.delete(key)

    def get_tagged(self, key: str) -> tuple[bytes, str]:
        """The object and its ETag (to copy exactly these bytes later)."""
        with aws_errors(self._what(key)):
            response = self.client.get_object(Bucket=self.bucket, Key=key)
            return bytes(response["Body"].read()), str(response.get("ETag", ""))

    def copy(self, source: str, target: str, *, etag: str | None = None) -> None:
        """Server-side copy of ``source`` to ``target`` (no bytes through the function); with
        ``etag``, only if ``source`` still holds those bytes (ConflictError otherwise)."""
        extra = {"CopySourceIfMatch": etag} if etag else {}
        with aws_errors(self._what(source)):
            self.client.copy_object(
                Bucket=self.bucket, Key=target, CopySource={"Bucket": self.bucket, "Key": source}, **extra
            )

    def purge(self, key: str) -> None:
        """Remove ``key`` and every stored version of it, so that the bytes are gone from a versioned
        bucket; where deleting versions is not allowed, the current one is deleted and the uploads
        lifecycle rule expires the rest."""
        try:
            with aws_errors(self._what(key)):
                listed = self.client.list_object_versions(Bucket=self.bucket, Prefix=key)
                doomed = [
                    {"Key": key, "VersionId": entry["VersionId"]}
                    for entry in [*listed.get("Versions", []), *listed.get("DeleteMarkers", [])]
                    if entry["Key"] == key and entry.get("VersionId") not in (None, "null")
                ]
                for start in range(0, len(doomed), 1000):
                    self.client.delete_objects(
                        Bucket=self.bucket, Delete={"Objects": doomed[start : start + 1000], "Quiet": True}
                    )
        except MlambdaError as exc:
            logger.warning(
                "could not delete old versions of an upload", extra={"key": key, "error": exc.message}
            )
        self.delete(key)


class SqsValidationQueue(Queue):
    """ValidationQueue on the validator function's SQS queue: one message per version."""

    def request_validation(self, model: str, version: int) -> None:
        """Queue ``{"model", "version"}`` for the validator."""
        self.send(json.dumps({"model": model, "version": version}))


class OnnxRuntime:
    """ModelRuntime with onnxruntime (``mlambda.adapters.onnx``, imported on use: the functions that
    only read the catalog from this module, batch fan-out and monitor, ship no onnxruntime)."""

    def load(self, data: bytes, *, max_bytes: int) -> ValidatedModel:
        """Check the artifact, load it once, read its signature (4xx when unusable)."""
        from mlambda.adapters.onnx import validated_model  # onnxruntime: only where models are loaded

        return validated_model(data, max_bytes=max_bytes)
