"""The model registry API: models, versions registered for validation, aliases and endpoints behind
the gate, rollback and an append-only history.

Fixes what MLflow users miss: "which version was in production on 3 March?" is answered from
the history; one alias points at exactly one version (a conditional transaction, so of two
concurrent moves one wins and the other gets 409); any version that receives traffic, through
``production``, another alias an endpoint serves, a split variant or the shadow, passes the gate
(``gate.py``: integrity, loads, smoke cases, signature compatible with the live version) unless a
production move is forced with a reason.

Registration does no heavy work: it checks the upload keys and sizes, takes the next version
number (a conditional increment of the model's ``latest_version`` in the same transaction that
writes the version, retried on conflict: 1, 2, 3... without gaps or duplicates however many
registrations race), stores the version PENDING_VALIDATION and queues its validation
(``validation.py``, in the validator function); the API answers 202 at once whatever the model's
size. Only READY versions can get an alias or traffic.

Endpoint configs carry a revision: every change is a read-modify-write that names the revision
it read (``If-Match``), a stale write is 409 ``conflict``, a PATCH keeps what it does not name,
and the history keeps the whole config before and after.
"""

from __future__ import annotations

import random
import re
import time
import uuid
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from mlambda.errors import (
    ConflictError,
    InvalidInputError,
    MlambdaError,
    NotFoundError,
    PayloadTooLargeError,
    PreconditionRequiredError,
    UnprocessableError,
    UpstreamError,
)
from mlambda.observability import logger
from mlambda.ports import EventPublisher
from mlambda.schemas.bounds import is_decimal_text
from mlambda.schemas.registry import (
    ALIAS_PATTERN,
    FAILED,
    MODEL_NAME_PATTERN,
    PENDING_VALIDATION,
    PRODUCTION,
    Alias,
    EndpointConfig,
    HistoryAction,
    HistoryEntry,
    ModelVersion,
    PendingVersion,
    RegisteredModel,
    VersionFailure,
    parse_version_ref,
)
from mlambda.schemas.registry_api import (
    MAX_PAGE,
    AliasAtTime,
    AliasMove,
    CreateModelRequest,
    EndpointConfigRequest,
    EndpointPatch,
    GateReport,
    HistoryPage,
    ModelDetails,
    ModelPage,
    MoveAliasRequest,
    RegisterVersionRequest,
    RollbackRequest,
    TargetGate,
    UpdateModelRequest,
    UploadRequest,
    UploadTicket,
    VersionPage,
)
from mlambda.services.evaluations.gate import evaluation_check
from mlambda.services.evaluations.ports import EvaluationPublications
from mlambda.services.registry.gate import Gate
from mlambda.services.registry.ports import (
    ModelRuntime,
    RegistryArtifacts,
    RegistryStore,
    ValidationQueue,
)
from mlambda.services.registry.validation import EVENT_SOURCE, check_upload_key

if TYPE_CHECKING:
    from mlambda.config import RegistrySettings

VERSION_REGISTERED = "Model Version Registered"
ALIAS_MOVED = "Model Alias Moved"
ENDPOINT_CHANGED = "Model Endpoint Changed"
MAX_REGISTER_ATTEMPTS = 40
MAX_PATCH_ATTEMPTS = 5
ANY_REVISION = "*"


def _now() -> datetime:
    return datetime.now(UTC)


def check_model_name(name: str) -> str:
    """``name`` if it is a valid model name (no path characters); InvalidInputError otherwise."""
    if not re.match(MODEL_NAME_PATTERN, name):
        raise InvalidInputError(
            f"invalid model name {name[:80]!r}: use 1-63 lower-case letters, digits, '-' or '_'",
            code="invalid_model_name",
        )
    return name


def check_alias_name(alias: str) -> str:
    """``alias`` if it is a valid alias name; InvalidInputError otherwise."""
    if not re.match(ALIAS_PATTERN, alias) or parse_version_ref(alias) is not None:
        raise InvalidInputError(
            f"invalid alias {alias[:40]!r}: start with a letter; lower-case letters, digits, '-' or '_'",
            code="invalid_alias",
        )
    return alias


def parse_tag_filter(tag: str | None) -> tuple[str, str] | None:
    """``key:value`` -> (key, value)."""
    if tag is None:
        return None
    key, sep, value = tag.partition(":")
    if not sep or not key:
        raise InvalidInputError("tag filter must read key:value", code="invalid_filter")
    return key, value


def parse_if_match(value: str | None) -> int | str | None:
    """An ``If-Match`` header (``"3"``, ``W/"3"``, ``3`` or ``*``) as a revision, ``*`` or None."""
    if value is None:
        return None
    text = value.strip()
    if text == ANY_REVISION:
        return ANY_REVISION
    text = text.removeprefix("W/").strip('"')
    if not is_decimal_text(text) or len(text) > 12:
        raise InvalidInputError(
            f'If-Match must be the endpoint\'s revision as its ETag gives it (e.g. "3"), got {value[:40]!r}',
            code="invalid_if_match",
        )
    return int(text)


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7396: objects merge key by key, ``None`` removes a key, anything else replaces."""
    if not isinstance(patch, dict):
        return patch
    merged = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            merged.pop(key, None)
        else:
            merged[key] = merge_patch(merged.get(key), value)
    return merged


def version_not_ready(record: PendingVersion) -> ConflictError:
    """409 for an alias or traffic aimed at a version that is not READY."""
    reason = f": {record.failure.message}" if record.failure else " (still validating)"
    return ConflictError(
        f"{record.model} v{record.version} is {record.status}{reason}; only READY versions get aliases or traffic",
        code="version_not_ready",
        details={
            "version": record.version,
            "status": record.status,
            "failure": record.failure.model_dump() if record.failure else None,
        },
    )


class RegistryService:
    """Everything the registry API does, over its ports."""

    def __init__(
        self,
        store: RegistryStore,
        artifacts: RegistryArtifacts,
        runtime: ModelRuntime,
        events: EventPublisher,
        validations: ValidationQueue,
        *,
        publications: EvaluationPublications | None = None,
        max_model_bytes: int = 100 * 1024 * 1024,
        max_reference_bytes: int = 64 * 1024 * 1024,
        upload_ttl_seconds: int = 900,
        smoke_tolerance: float = 1e-4,
        clock: Callable[[], datetime] = _now,
    ) -> None:
        self._store = store
        self._artifacts = artifacts
        self._events = events
        self._validations = validations
        self._publications = publications
        self.max_model_bytes = max_model_bytes
        self.max_reference_bytes = max_reference_bytes
        self.upload_ttl_seconds = upload_ttl_seconds
        self.gate = Gate(artifacts, runtime, max_model_bytes=max_model_bytes, tolerance=smoke_tolerance)
        self._clock = clock

    @classmethod
    def from_settings(cls, settings: RegistrySettings) -> RegistryService:
        """The service on DynamoDB, S3, onnxruntime, SQS and EventBridge."""
        from mlambda.adapters.dynamodb import DynamoTable
        from mlambda.adapters.evaluations import DynamoEvaluationPublications
        from mlambda.adapters.messaging import EventBus
        from mlambda.adapters.registry import (
            DynamoRegistryStore,
            OnnxRuntime,
            S3RegistryArtifacts,
            SqsValidationQueue,
        )

        table = DynamoTable(settings.registry_table, settings)
        return cls(
            DynamoRegistryStore(table),
            S3RegistryArtifacts(settings.artifacts_bucket, settings),
            OnnxRuntime(),
            EventBus(settings, bus_name=settings.event_bus_name, source=EVENT_SOURCE),
            SqsValidationQueue(settings.validation_queue_url, settings),
            publications=DynamoEvaluationPublications(table),
            max_model_bytes=settings.max_model_bytes,
            max_reference_bytes=settings.max_reference_bytes,
            upload_ttl_seconds=settings.upload_url_ttl_seconds,
            smoke_tolerance=settings.smoke_tolerance,
        )

    # ------------------------------------------------------------------ helpers

    def _model(self, name: str) -> ModelDetails:
        model = self._store.get_model(check_model_name(name))
        if model is None:
            raise NotFoundError(f"model '{name}' not found", code="model_not_found")
        return model

    def _entry(
        self, model: str, actor: str, action: HistoryAction, at: datetime | None = None, **fields: Any
    ) -> HistoryEntry:
        return HistoryEntry(model=model, at=at or self._clock(), actor=actor, action=action, **fields)

    def _emit(self, detail_type: str, detail: Mapping[str, Any]) -> None:
        """Publish after the change committed; the history is the record, so a failed publish is logged, not raised."""
        try:
            self._events.emit(detail_type, [detail])
        except MlambdaError as exc:
            logger.warning(
                "registry event not published", extra={"detail_type": detail_type, "error": exc.message}
            )

    @staticmethod
    def _page_limit(limit: int) -> int:
        if not 1 <= limit <= MAX_PAGE:
            raise InvalidInputError(f"limit must be 1-{MAX_PAGE}", code="invalid_limit")
        return limit

    # ------------------------------------------------------------------ models

    def create_model(self, request: CreateModelRequest, actor: str) -> ModelDetails:
        """Register a new model name (409 when taken)."""
        now = self._clock()
        model = RegisteredModel(
            name=check_model_name(request.name),
            description=request.description,
            owner=request.owner or actor,
            tags=request.tags,
            require_evaluation=request.require_evaluation,
            created_at=now,
            updated_at=now,
        )
        self._store.create_model(model, self._entry(model.name, actor, "model_created", now))
        return ModelDetails(**model.model_dump())

    def get_model(self, name: str) -> ModelDetails:
        """One model with its aliases."""
        return self._model(name)

    def list_models(
        self,
        *,
        limit: int = 50,
        token: str | None = None,
        owner: str | None = None,
        tag: str | None = None,
        name: str | None = None,
        stage: str | None = None,
    ) -> ModelPage:
        """A page of models by name; only one owner's, those with tag ``key:value``, those whose name
        contains ``name`` (case-insensitive: names are lower-case), or those with alias ``stage``."""
        models, next_token = self._store.list_models(
            limit=self._page_limit(limit),
            token=token,
            owner=owner,
            tag=parse_tag_filter(tag),
            name=name.lower() if name else None,
            stage=check_alias_name(stage) if stage else None,
        )
        return ModelPage(models=models, next_token=next_token)

    def update_model(self, name: str, request: UpdateModelRequest, actor: str) -> ModelDetails:
        """Change description, owner or tags."""
        current = self._model(name)
        changes = request.model_dump(exclude_none=True)
        now = self._clock()
        updated = RegisteredModel.model_validate({**current.model_dump(), **changes, "updated_at": now})
        entry = self._entry(name, actor, "model_updated", now, details={"changed": sorted(changes)})
        self._store.update_model(updated, entry)
        return ModelDetails(**updated.model_dump(), aliases=current.aliases)

    def delete_model(self, name: str, actor: str) -> None:
        """Delete a model no alias points at (409 otherwise); its history stays readable."""
        model = self._model(name)
        if model.aliases:
            raise ConflictError(
                f"model '{name}' still has aliases; delete them first",
                code="model_has_aliases",
                details={"aliases": model.aliases},
            )
        self._store.delete_model(name, self._entry(name, actor, "model_deleted"))
        self._artifacts.delete_prefix(f"models/{name}/")

    # ------------------------------------------------------------------ uploads and versions

    def request_upload(self, name: str, request: UploadRequest) -> UploadTicket:
        """A short-lived presigned PUT URL under ``uploads/<name>/<uuid>/<filename>``."""
        self._model(name)
        key = f"uploads/{name}/{uuid.uuid4().hex}/{request.filename}"
        url = self._artifacts.upload_url(key, expires_in=self.upload_ttl_seconds)
        return UploadTicket(
            upload_key=key,
            url=url,
            kind=request.kind,
            expires_in=self.upload_ttl_seconds,
            expires_at=self._clock() + timedelta(seconds=self.upload_ttl_seconds),
        )

    def _check_upload(self, name: str, key: str, kind: str, max_bytes: int) -> None:
        """This model's upload of the right kind exists and fits the cap; an oversized one is deleted."""
        check_upload_key(name, key, kind)
        try:
            size = self._artifacts.size(key)
        except NotFoundError as exc:
            raise NotFoundError(
                f"nothing was uploaded at {key}: PUT the file to the upload URL first",
                code="upload_not_found",
            ) from exc
        if size > max_bytes:
            self._artifacts.purge(key)
            raise PayloadTooLargeError(
                f"{kind} is {size} bytes, over the {max_bytes}-byte cap; the upload was deleted",
                details={"size": size, "max_bytes": max_bytes},
            )

    def register_version(self, name: str, request: RegisterVersionRequest, actor: str) -> PendingVersion:
        """Take the next version number for an uploaded artifact and queue its validation (202).

        Cheap whatever the size: key checks and HEADs here; loading, scoring the reference and the
        smoke cases happen in the validator, which makes the version READY or FAILED.
        """
        model = self._model(name)
        self._check_upload(name, request.upload_key, "model", self.max_model_bytes)
        if request.reference_key:
            self._check_upload(name, request.reference_key, "reference", self.max_reference_bytes)
        for attempt in range(MAX_REGISTER_ATTEMPTS):
            number = self._store.latest_version(name) + 1
            now = self._clock()
            pending = PendingVersion(
                model=name,
                version=number,
                request=request.model_dump(mode="json", exclude_none=True),
                owner=request.owner or model.owner or actor,
                created_at=now,
                created_by=actor,
                updated_at=now,
            )
            entry = self._entry(name, actor, "version_registered", now, to_version=number)
            try:
                self._store.add_version(pending, entry)
            except ConflictError:
                # Another registration took this number: back off a little and take the next one.
                time.sleep(random.uniform(0.0, 0.01 * min(attempt + 1, 10)))
                continue
            break
        else:
            raise ConflictError(
                f"model '{name}' is being registered too often concurrently; retry", code="version_conflict"
            )
        try:
            self._validations.request_validation(name, number)
        except MlambdaError as exc:
            self._not_queued(pending, actor, exc)
            raise UpstreamError(
                f"{name} v{number} could not be queued for validation and is FAILED; register again",
                code="validation_not_queued",
            ) from exc
        self._emit(
            VERSION_REGISTERED,
            {"model": name, "version": number, "status": PENDING_VALIDATION, "actor": actor},
        )
        return pending

    def _not_queued(self, pending: PendingVersion, actor: str, error: MlambdaError) -> None:
        """A version nobody will validate must not stay pending: FAILED, uploads kept for a retry."""
        failure = VersionFailure(
            code="validation_not_queued", message=f"the validation could not be queued: {error.message}"
        )
        failed = pending.model_copy(
            update={"status": FAILED, "failure": failure, "updated_at": self._clock()}
        )
        entry = self._entry(
            pending.model, actor, "version_failed", to_version=pending.version, reason=failure.message
        )
        try:
            self._store.finish_version(failed, entry)
        except MlambdaError as exc:
            logger.error(
                "version left pending: neither queued nor marked failed",
                extra={"model": pending.model, "version": pending.version, "error": exc.message},
            )

    def list_versions(self, name: str, *, limit: int = 50, token: str | None = None) -> VersionPage:
        """A page of versions (every status), newest first."""
        self._model(name)
        versions, next_token = self._store.list_versions(name, limit=self._page_limit(limit), token=token)
        return VersionPage(versions=versions, next_token=next_token)

    def get_version(self, name: str, ref: str) -> ModelVersion | PendingVersion:
        """Version ``3`` / ``v3`` whatever its status."""
        check_model_name(name)
        number = parse_version_ref(ref)
        if number is None or number < 1:
            raise InvalidInputError(f"version must read 3 or v3, got {ref[:20]!r}", code="invalid_version")
        record = self._store.version_record(name, number)
        if record is None:
            raise NotFoundError(
                f"model '{name}' has no version {number}",
                code="version_not_found",
                details={"model": name, "version": number},
            )
        return record

    def _ready(self, name: str, number: int) -> ModelVersion:
        """Version ``number`` if it is READY: 404 when absent, 409 ``version_not_ready`` otherwise."""
        record = self.get_version(name, str(number))
        if isinstance(record, PendingVersion):
            raise version_not_ready(record)
        return record

    # ------------------------------------------------------------------ aliases

    def get_alias(self, name: str, alias: str) -> Alias:
        """Where ``alias`` points."""
        found = self._store.get_alias(check_model_name(name), check_alias_name(alias))
        if found is None:
            raise NotFoundError(f"model '{name}' has no alias '{alias}'", code="alias_not_found")
        return found

    def move_alias(self, name: str, alias: str, request: MoveAliasRequest, actor: str) -> AliasMove:
        """Point ``alias`` at a READY version; an alias that serves traffic (``production``, or one an
        endpoint variant or shadow names) must pass the gate, which only ``production`` may force."""
        check_alias_name(alias)
        model = self._model(name)
        target = self._ready(name, request.version)
        current = self._store.get_alias(name, alias)
        if request.expected_version is not None and (
            current is None or current.version != request.expected_version
        ):
            raise ConflictError(
                f"alias '{alias}' points at {current.version if current else 'nothing'}, "
                f"not {request.expected_version}",
                code="alias_conflict",
                details={"current_version": current.version if current else None},
            )
        if current is not None and current.version == target.version:
            return AliasMove(**current.model_dump())
        gate = None
        forced = False
        if alias == PRODUCTION or self._serves(name, alias):
            where = "production" if alias == PRODUCTION else f"alias '{alias}' (the endpoint serves it)"
            gate = self._gate(model, target, self._live(name, alias, current), where)
            if not gate.passed:
                if not (request.force and alias == PRODUCTION):
                    failed = [check.message for check in gate.checks if not check.passed]
                    raise UnprocessableError(
                        f"gate failed for {name} v{target.version} -> "
                        f"{'promotion' if alias == PRODUCTION else where}: {'; '.join(failed)}",
                        code="gate_failed",
                        details=gate.model_dump(),
                    )
                forced = True
        return self._move(
            name,
            alias,
            target,
            current,
            actor,
            action="alias_moved",
            reason=request.reason,
            forced=forced,
            gate=gate,
        )

    def _serves(self, name: str, alias: str) -> bool:
        """Whether the endpoint sends traffic to ``alias`` (a variant or the shadow names it)."""
        config = self._store.endpoint_config(name)
        if config is None:
            return False
        return any(v.target == alias for v in config.variants) or (
            config.shadow is not None and config.shadow.target == alias
        )

    def _gate(
        self, model: ModelDetails, target: ModelVersion, live: ModelVersion | None, where: str
    ) -> GateReport:
        """The gate for ``target`` about to take traffic as ``where``: first the model's own policy (a
        required human evaluation: 409 ``evaluation_required``, which no ``force`` overrides), then
        the technical checks, the evaluation's check added to the report when it passed."""
        evaluated = evaluation_check(model, target, self._publications, where=where)
        report = self.gate.check(target, live)
        if evaluated is None:
            return report
        return report.model_copy(update={"checks": [*report.checks, evaluated]})

    def _live(self, name: str, alias: str, current: Alias | None) -> ModelVersion | None:
        """The version callers are served now, that a new target must be compatible with."""
        production = current if alias == PRODUCTION else self._store.get_alias(name, PRODUCTION)
        live = production or current
        return self._store.get_version(name, live.version) if live else None

    def rollback(self, name: str, request: RollbackRequest, actor: str) -> AliasMove:
        """Move the alias back to the version it pointed at before, recorded like any move.

        No gate: the previous version already served this alias, and a rollback must work in the
        emergency that calls for it (predict still verifies the artifact's sha256 on load).
        """
        self._model(name)
        current = self._store.get_alias(name, check_alias_name(request.alias))
        if current is None:
            raise NotFoundError(f"model '{name}' has no alias '{request.alias}'", code="alias_not_found")
        if current.previous_version is None:
            raise ConflictError(
                f"alias '{request.alias}' of '{name}' has no previous version to roll back to",
                code="nothing_to_roll_back",
            )
        target = self._store.get_version(name, current.previous_version)
        return self._move(
            name, request.alias, target, current, actor, action="rollback", reason=request.reason
        )

    def _move(
        self,
        name: str,
        alias: str,
        target: ModelVersion,
        current: Alias | None,
        actor: str,
        *,
        action: HistoryAction,
        reason: str | None,
        forced: bool = False,
        gate: GateReport | None = None,
    ) -> AliasMove:
        now = self._clock()
        moved = Alias(
            model=name,
            alias=alias,
            version=target.version,
            previous_version=current.version if current else None,
            updated_at=now,
            updated_by=actor,
        )
        details: dict[str, Any] = {"forced": forced}
        if gate is not None:
            details["gate"] = gate.model_dump()
        entry = self._entry(
            name,
            actor,
            action,
            now,
            alias=alias,
            from_version=moved.previous_version,
            to_version=target.version,
            reason=reason,
            details=details,
        )
        self._store.move_alias(moved, target, current.version if current else None, entry)
        self._emit(
            ALIAS_MOVED,
            {
                "model": name,
                "alias": alias,
                "version": target.version,
                "previous_version": moved.previous_version,
                "action": action,
                "forced": forced,
                "reason": reason,
                "actor": actor,
            },
        )
        return AliasMove(**moved.model_dump(), forced=forced, gate=gate)

    def delete_alias(self, name: str, alias: str, actor: str) -> Alias:
        """Remove an alias no endpoint variant uses (409 otherwise)."""
        current = self.get_alias(name, alias)
        config = self._store.endpoint_config(name)
        if config is not None:
            used = [v.name for v in config.variants if v.target == alias]
            if config.shadow is not None and config.shadow.target == alias:
                used.append("shadow")
            if used:
                raise ConflictError(
                    f"alias '{alias}' is used by the endpoint ({', '.join(used)}); change the endpoint first",
                    code="alias_in_use",
                    details={"variants": used},
                )
        entry = self._entry(name, actor, "alias_deleted", alias=alias, from_version=current.version)
        self._store.delete_alias(name, alias, current.version, entry)
        self._emit(
            ALIAS_MOVED,
            {
                "model": name,
                "alias": alias,
                "version": None,
                "previous_version": current.version,
                "action": "alias_deleted",
                "actor": actor,
            },
        )
        return current

    # ------------------------------------------------------------------ endpoint

    def get_endpoint(self, name: str) -> EndpointConfig:
        """The endpoint config with its revision (404 when there is none: predict then serves ``production``)."""
        self._model(name)
        config = self._store.endpoint_config(name)
        if config is None:
            raise NotFoundError(
                f"model '{name}' has no endpoint config; predict serves its production alias",
                code="no_endpoint_config",
            )
        return config

    def put_endpoint(
        self, name: str, request: EndpointConfigRequest, actor: str, *, if_match: int | str | None = None
    ) -> EndpointConfig:
        """Replace the whole config. Creating one needs no If-Match; replacing one needs the revision
        read (``If-Match``), so that a write never silently undoes a change it did not see."""
        model = self._model(name)
        current = self._store.endpoint_config(name)
        if current is not None and if_match is None:
            raise PreconditionRequiredError(
                f"the endpoint of '{name}' exists: send If-Match with the revision you read "
                f'(ETag "{current.revision}"), or PATCH only what changes',
                code="precondition_required",
                details={"current_revision": current.revision},
            )
        self._check_revision(name, current, if_match)
        return self._write_endpoint(model, request, current, actor)

    def patch_endpoint(
        self, name: str, patch: EndpointPatch, actor: str, *, if_match: int | str | None = None
    ) -> EndpointConfig:
        """Merge ``patch`` into the stored config (RFC 7396) and write it if nobody changed it meanwhile.

        With If-Match, a config at another revision is 409 ``conflict``; without, the read-merge-write
        is retried on a fresh read when another write slips in between.
        """
        model = self._model(name)
        changes = patch.merge_patch()
        attempt = 0
        while True:
            current = self._store.endpoint_config(name)
            self._check_revision(name, current, if_match)
            base = (
                current.model_dump(mode="json", include=set(EndpointConfigRequest.model_fields))
                if current
                else {}
            )
            merged = merge_patch(base, changes)
            try:
                request = EndpointConfigRequest.model_validate(merged)
            except ValidationError as exc:
                error = exc.errors()[0]
                where = ".".join(str(part) for part in error["loc"]) or "body"
                raise UnprocessableError(
                    f"the patched endpoint config is invalid: {where}: {error['msg']}",
                    code="invalid_endpoint",
                    details={"field": where},
                ) from exc
            try:
                return self._write_endpoint(model, request, current, actor)
            except ConflictError as exc:
                attempt += 1
                if exc.code != "conflict" or if_match is not None or attempt >= MAX_PATCH_ATTEMPTS:
                    raise
                time.sleep(random.uniform(0.0, 0.02 * attempt))

    @staticmethod
    def _check_revision(name: str, current: EndpointConfig | None, if_match: int | str | None) -> None:
        if if_match is None or (if_match == ANY_REVISION and current is not None):
            return
        if current is None or if_match != current.revision:
            raise ConflictError(
                f"the endpoint of '{name}' is at revision {current.revision if current else 'none'}, "
                f"not {if_match}: read it again and retry",
                code="conflict",
                details={
                    "expected_revision": if_match,
                    "current_revision": current.revision if current else None,
                },
            )

    def _write_endpoint(
        self, model: ModelDetails, request: EndpointConfigRequest, current: EndpointConfig | None, actor: str
    ) -> EndpointConfig:
        """Gate every version the config sends traffic to, then store it as the next revision."""
        name = model.name
        targets = [variant.target for variant in request.variants]
        if request.shadow is not None:
            targets.append(request.shadow.target)
        resolved = {target: self._target_version(name, target) for target in dict.fromkeys(targets)}
        gates = self._gate_targets(model, resolved, request)
        now = self._clock()
        revision = (current.revision if current else 0) + 1
        try:
            config = EndpointConfig(
                model=name, revision=revision, **request.model_dump(), updated_at=now, updated_by=actor
            )
        except ValidationError as exc:
            raise UnprocessableError(f"invalid endpoint config: {exc.errors()[0]['msg']}") from exc
        entry = self._entry(
            name,
            actor,
            "endpoint_changed",
            now,
            details={
                "revision": revision,
                "before": current.model_dump(mode="json") if current else None,
                "after": config.model_dump(mode="json"),
                "gates": [gate.model_dump() for gate in gates],
            },
        )
        self._store.put_endpoint(
            config, targets, entry, expected_revision=current.revision if current else None
        )
        self._emit(
            ENDPOINT_CHANGED,
            {
                "model": name,
                "revision": revision,
                "variants": [v.model_dump() for v in config.variants],
                "shadow": config.shadow.model_dump() if config.shadow else None,
                "actor": actor,
            },
        )
        return config

    def _target_version(self, name: str, target: str) -> ModelVersion:
        """The READY version a variant or shadow target names; 422 ``unknown_target`` / 409 ``version_not_ready``."""
        number = parse_version_ref(target)
        if number is None:
            if not re.match(ALIAS_PATTERN, target):
                raise UnprocessableError(
                    f"endpoint target '{target}': model '{name}' has no such alias or version",
                    code="unknown_target",
                )
            alias = self._store.get_alias(name, target)
            if alias is None:
                raise UnprocessableError(
                    f"endpoint target '{target}': model '{name}' has no such alias or version",
                    code="unknown_target",
                )
            number = alias.version
        record = self._store.version_record(name, number)
        if record is None:
            raise UnprocessableError(
                f"endpoint target '{target}': model '{name}' has no version {number}", code="unknown_target"
            )
        if isinstance(record, PendingVersion):
            raise version_not_ready(record)
        return record

    def _gate_targets(
        self, model: ModelDetails, resolved: dict[str, ModelVersion], request: EndpointConfigRequest
    ) -> list[TargetGate]:
        """The gate for every version the config sends traffic to, except production's own (it passed,
        or was forced with a reason, when it was promoted); 422 ``gate_failed`` with every report."""
        name = model.name
        production = self._store.get_alias(name, PRODUCTION)
        heaviest = max(request.variants, key=lambda v: v.weight).target
        live = (
            self._store.get_version(name, production.version)
            if production is not None
            else resolved[heaviest]
        )
        gates: list[TargetGate] = []
        checked: dict[int, GateReport] = {}
        for target, version in resolved.items():
            if production is not None and version.version == production.version:
                continue
            report = checked.get(version.version) or self._gate(
                model, version, live, f"endpoint target '{target}'"
            )
            checked[version.version] = report
            gates.append(
                TargetGate(target=target, version=version.version, passed=report.passed, checks=report.checks)
            )
        failed = [gate for gate in gates if not gate.passed]
        if failed:
            reasons = "; ".join(
                f"{gate.target} (v{gate.version}): "
                + ", ".join(c.message for c in gate.checks if not c.passed)
                for gate in failed
            )
            raise UnprocessableError(
                f"gate failed for endpoint targets of '{name}': {reasons}",
                code="gate_failed",
                details={"gates": [gate.model_dump() for gate in gates]},
            )
        return gates

    # ------------------------------------------------------------------ history

    def history(
        self,
        name: str,
        *,
        alias: str | None = None,
        at: datetime | None = None,
        limit: int = 50,
        token: str | None = None,
    ) -> HistoryPage | AliasAtTime:
        """The log, newest first; with ``alias`` and ``at``: where the alias pointed at that time."""
        check_model_name(name)
        if alias is not None:
            check_alias_name(alias)
        if at is not None:
            if alias is None:
                raise InvalidInputError("'at' needs 'alias': which alias at that time?", code="invalid_query")
            at = at if at.tzinfo else at.replace(tzinfo=UTC)
            entry = self._store.alias_entry_at(name, alias, at)
            pointed = entry is not None and entry.action != "alias_deleted"
            return AliasAtTime(
                model=name,
                alias=alias,
                at=at,
                version=entry.to_version if entry is not None and pointed else None,
                since=entry.at if entry else None,
                entry=entry,
            )
        entries, next_token = self._store.history(
            name, limit=self._page_limit(limit), token=token, alias=alias
        )
        return HistoryPage(entries=entries, next_token=next_token)
