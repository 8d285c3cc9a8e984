"""The model registry: models, immutable validated versions, aliases with a production gate,
endpoint configs, rollback and an append-only history.

Fixes what MLflow users miss: "which version was in production on 3 March?" is answered from
the history; one alias points at exactly one version (a conditional transaction, so of two
concurrent moves one wins and the other gets 409); moving ``production`` runs a gate (artifact
integrity, it loads, recorded smoke cases reproduce, signature compatible with the current
production version) unless forced with a reason.

Version numbers come from a conditional increment of the model's ``latest_version`` in the same
transaction that writes the version, retried on conflict: 1, 2, 3... without gaps or duplicates
however many registrations race. The artifact is written to ``models/<name>/v<N>/model.onnx``
only after the number is won, so a loser never overwrites a winner's file.
"""

from __future__ import annotations

import hashlib
import random
import re
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import numpy as np
from pydantic import ValidationError

from mlambda.errors import (
    ConflictError,
    InvalidInputError,
    MlambdaError,
    NotFoundError,
    PayloadTooLargeError,
    UnprocessableError,
)
from mlambda.observability import logger
from mlambda.ports import EventPublisher
from mlambda.schemas.registry import (
    ALIAS_PATTERN,
    MODEL_NAME_PATTERN,
    PRODUCTION,
    Alias,
    EndpointConfig,
    FeatureSchema,
    FeatureSpec,
    FeatureType,
    HistoryAction,
    HistoryEntry,
    ModelVersion,
    RegisteredModel,
    Signature,
    SmokeCase,
    TensorSpec,
    parse_version_ref,
)
from mlambda.schemas.registry_api import (
    MAX_PAGE,
    UPLOAD_EXTENSIONS,
    AliasAtTime,
    AliasMove,
    CreateModelRequest,
    EndpointConfigRequest,
    GateCheck,
    GateReport,
    HistoryPage,
    ModelDetails,
    ModelPage,
    MoveAliasRequest,
    RegisterVersionRequest,
    RollbackRequest,
    UpdateModelRequest,
    UploadRequest,
    UploadTicket,
    VersionPage,
)
from mlambda.services.inference.scoring import (
    columns_to_feed,
    matches,
    predictions,
    probability_matrix,
    rows_to_feed,
    validate_rows,
)
from mlambda.services.registry.ports import ModelRuntime, RegistryArtifacts, RegistryStore

if TYPE_CHECKING:
    from mlambda.config import RegistrySettings

EVENT_SOURCE = "mlambda.registry"
VERSION_REGISTERED = "Model Version Registered"
ALIAS_MOVED = "Model Alias Moved"
ENDPOINT_CHANGED = "Model Endpoint Changed"
MAX_REGISTER_ATTEMPTS = 40
SMOKE_BYTES_BUDGET = 100_000
UPLOAD_KEY = re.compile(
    r"^uploads/(?P<model>[a-z0-9][a-z0-9_-]{0,62})/[0-9a-f]{32}/[A-Za-z0-9][A-Za-z0-9._-]{0,127}$"
)
# Feature types each tensor element type can carry (rows_to_feed casts them to the tensor's type).
TENSOR_FEATURE_TYPES: dict[str, tuple[FeatureType, ...]] = {
    "float32": ("float", "int", "bool"),
    "float64": ("float", "int", "bool"),
    "int64": ("int", "bool"),
    "int32": ("int", "bool"),
    "string": ("string",),
    "bool": ("bool",),
}
DEFAULT_FEATURE_TYPE: dict[str, FeatureType] = {
    "float32": "float",
    "float64": "float",
    "int64": "int",
    "int32": "int",
    "string": "string",
    "bool": "bool",
}
# Per-feature inputs are fed as rows_to_feed builds them: float32, int64, string or bool.
PER_FEATURE_TYPES: dict[str, FeatureType] = {
    "float32": "float",
    "int64": "int",
    "string": "string",
    "bool": "bool",
}


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


def _python(value: Any, dtype: FeatureType) -> Any:
    """A numpy scalar as the JSON value a client would send for a feature of ``dtype``."""
    if dtype == "float":
        return float(value)
    if dtype == "int":
        return int(value)
    if dtype == "bool":
        return bool(value)
    return str(value)


class RegistryService:
    """Everything the registry API does, over its ports."""

    def __init__(
        self,
        store: RegistryStore,
        artifacts: RegistryArtifacts,
        runtime: ModelRuntime,
        events: EventPublisher,
        *,
        max_model_bytes: int = 100 * 1024 * 1024,
        max_reference_bytes: int = 64 * 1024 * 1024,
        upload_ttl_seconds: int = 900,
        smoke_rows: int = 20,
        smoke_tolerance: float = 1e-4,
        clock: Callable[[], datetime] = _now,
    ) -> None:
        self._store = store
        self._artifacts = artifacts
        self._runtime = runtime
        self._events = events
        self.max_model_bytes = max_model_bytes
        self.max_reference_bytes = max_reference_bytes
        self.upload_ttl_seconds = upload_ttl_seconds
        self.smoke_rows = smoke_rows
        self.smoke_tolerance = smoke_tolerance
        self._clock = clock

    @classmethod
    def from_settings(cls, settings: RegistrySettings) -> RegistryService:
        """The service on DynamoDB, S3, onnxruntime and EventBridge."""
        from mlambda.adapters.dynamodb import DynamoTable
        from mlambda.adapters.messaging import EventBus
        from mlambda.adapters.registry import DynamoRegistryStore, OnnxRuntime, S3RegistryArtifacts

        return cls(
            DynamoRegistryStore(DynamoTable(settings.registry_table, settings)),
            S3RegistryArtifacts(settings.artifacts_bucket, settings),
            OnnxRuntime(),
            EventBus(settings, bus_name=settings.event_bus_name, source=EVENT_SOURCE),
            max_model_bytes=settings.max_model_bytes,
            max_reference_bytes=settings.max_reference_bytes,
            upload_ttl_seconds=settings.upload_url_ttl_seconds,
            smoke_rows=settings.smoke_rows,
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

    def _upload(self, name: str, key: str, kind: str, max_bytes: int) -> bytes:
        """The uploaded object at ``key``, after checking it is this model's upload of the right kind and size."""
        match = UPLOAD_KEY.match(key)
        if match is None or match.group("model") != name or ".." in key:
            raise InvalidInputError(
                f"{kind} key must be an upload key of model '{name}' (from POST /models/{name}/uploads)",
                code="invalid_upload_key",
            )
        if not key.lower().endswith(UPLOAD_EXTENSIONS[kind]):
            raise InvalidInputError(
                f"a {kind} upload must be named *{' or *'.join(UPLOAD_EXTENSIONS[kind])}",
                code="invalid_upload_key",
            )
        try:
            size = self._artifacts.size(key)
        except NotFoundError as exc:
            raise NotFoundError(
                f"nothing was uploaded at {key}: PUT the file to the upload URL first",
                code="upload_not_found",
            ) from exc
        if size > max_bytes:
            raise PayloadTooLargeError(
                f"{kind} is {size} bytes, over the {max_bytes}-byte cap", details={"size": size}
            )
        return self._artifacts.get(key)

    def register_version(self, name: str, request: RegisterVersionRequest, actor: str) -> ModelVersion:
        """Validate an uploaded ONNX artifact and register it as the model's next version."""
        model = self._model(name)
        data = self._upload(name, request.upload_key, "model", self.max_model_bytes)
        signature = self._runtime.inspect(data, max_bytes=self.max_model_bytes)
        frame = None
        if request.reference_key:
            self._upload(name, request.reference_key, "reference", self.max_reference_bytes)
            frame = self._artifacts.read_table(request.reference_key)
            if not frame or not len(next(iter(frame.values()))):
                raise UnprocessableError("the reference sample has no rows", code="empty_reference")
        schema = feature_schema(signature, request.feature_names, request.feature_types, frame)
        sample_rows: list[dict[str, Any]] = []
        profile: bytes | None = None
        digest = hashlib.sha256(data).hexdigest()
        explainer: bytes | None = None
        if frame is not None:
            sample_rows, profile = self._reference(data, signature, schema, frame)
            explainer = self._explainer(data, digest, signature, schema, frame)
        smoke_rows = list(request.smoke_inputs) if request.smoke_inputs else sample_rows[: self.smoke_rows]
        smoke = self._smoke_cases(data, signature, schema, smoke_rows)

        for attempt in range(MAX_REGISTER_ATTEMPTS):
            number = self._store.latest_version(name) + 1
            now = self._clock()
            version = ModelVersion(
                model=name,
                version=number,
                artifact_key=f"models/{name}/v{number}/model.onnx",
                artifact_sha256=digest,
                size_bytes=len(data),
                signature=signature,
                feature_schema=schema,
                metrics=request.metrics,
                params=request.params,
                training_data_uri=request.training_data_uri,
                training_data_version=request.training_data_version,
                source_code_version=request.source_code_version,
                owner=request.owner or model.owner or actor,
                tags=request.tags,
                description=request.description,
                reference_profile_key=(
                    f"models/{name}/v{number}/reference_profile.json" if profile is not None else None
                ),
                explainer_key=f"models/{name}/v{number}/explainer.npz" if explainer is not None else None,
                smoke_cases=smoke,
                created_at=now,
                created_by=actor,
            )
            entry = self._entry(
                name,
                actor,
                "version_registered",
                now,
                to_version=number,
                details={"artifact_sha256": digest, "size_bytes": len(data)},
            )
            try:
                self._store.add_version(version, entry)
            except ConflictError:
                # Another registration took this number: back off a little and take the next one.
                time.sleep(random.uniform(0.0, 0.01 * min(attempt + 1, 10)))
                continue
            break
        else:
            raise ConflictError(
                f"model '{name}' is being registered too often concurrently; retry", code="version_conflict"
            )

        # The number is ours alone now: nobody else writes under models/<name>/v<N>/.
        self._artifacts.put(version.artifact_key, data)
        if profile is not None and version.reference_profile_key:
            self._artifacts.put(version.reference_profile_key, profile, content_type="application/json")
        if explainer is not None and version.explainer_key:
            self._artifacts.put(version.explainer_key, explainer)
        self._emit(
            VERSION_REGISTERED,
            {
                "model": name,
                "version": version.version,
                "artifact_key": version.artifact_key,
                "artifact_sha256": digest,
                "task": signature.task,
                "metrics": version.metrics,
                "actor": actor,
            },
        )
        return version

    def _reference(
        self, data: bytes, signature: Signature, schema: FeatureSchema, frame: Mapping[str, np.ndarray]
    ) -> tuple[list[dict[str, Any]], bytes]:
        """(complete sample rows as clients would send them, the reference profile JSON)."""
        from mlambda.services.monitoring.profiling import compute_profile, prediction_columns, present

        missing = [n for n in schema.names if n not in frame]
        if missing:
            raise UnprocessableError(
                f"the reference sample lacks feature columns {missing[:10]}",
                code="reference_mismatch",
                details={"missing": missing},
            )
        features = {n: frame[n] for n in schema.names}
        complete = np.logical_and.reduce([present(values) for values in features.values()])
        outputs_frame = None
        if complete.any():
            try:
                feed = columns_to_feed(schema, {n: values[complete] for n, values in features.items()})
            except (ValueError, TypeError) as exc:
                raise UnprocessableError(
                    f"the reference sample's columns do not fit the model's input: {exc}",
                    code="reference_mismatch",
                ) from exc
            outputs = self._runtime.run(data, feed)
            if signature.task == "classification":
                outputs_frame = prediction_columns(
                    labels=np.asarray(outputs[signature.label_output or ""]),
                    probabilities=probability_matrix(signature, outputs),
                    class_labels=signature.class_labels,
                )
            else:
                outputs_frame = prediction_columns(values=np.asarray(outputs[signature.value_output or ""]))
        profile = compute_profile(features, schema, outputs_frame)
        head = np.flatnonzero(complete)[: self.smoke_rows].tolist()
        rows = [
            {spec.name: _python(features[spec.name][index], spec.dtype) for spec in schema.features}
            for index in head
        ]
        return rows, profile.to_json()

    def _explainer(
        self,
        data: bytes,
        digest: str,
        signature: Signature,
        schema: FeatureSchema,
        frame: Mapping[str, np.ndarray],
    ) -> bytes | None:
        """The version's explainer artifact from its reference sample (None when its features are not numeric).

        Built here, once, so that predict only loads it (``mlambda.services.inference.explain``).
        """
        from mlambda.services.inference.explain_build import UnsupportedModelError, build_explainer
        from mlambda.services.monitoring.profiling import present

        if any(spec.dtype == "string" for spec in schema.features):
            return None
        complete = np.logical_and.reduce([present(frame[name]) for name in schema.names])
        if not complete.any():
            return None
        try:
            matrix = np.column_stack(
                [np.asarray(frame[name][complete], dtype=np.float64) for name in schema.names]
            )
        except (ValueError, TypeError):
            return None  # _reference already refused columns that do not fit the model
        try:
            return build_explainer(
                data,
                signature,
                schema,
                matrix,
                lambda feed: self._runtime.run(data, feed),
                model_sha256=digest,
            )
        except UnsupportedModelError as exc:
            logger.info("no explainer for this version", extra={"reason": str(exc)})
            return None

    def _smoke_cases(
        self, data: bytes, signature: Signature, schema: FeatureSchema, rows: Sequence[Mapping[str, Any]]
    ) -> list[SmokeCase]:
        """Score ``rows`` now and record the outputs, within an item-size budget."""
        if not rows:
            return []
        validate_rows(schema, rows)
        outputs = self._runtime.run(data, rows_to_feed(schema, rows))
        cases: list[SmokeCase] = []
        used = 0
        for row, expected in zip(rows, predictions(signature, outputs), strict=True):
            case = SmokeCase(inputs=dict(row), expected=expected)
            used += len(case.model_dump_json())
            if used > SMOKE_BYTES_BUDGET:
                break
            cases.append(case)
        return cases

    def list_versions(self, name: str, *, limit: int = 50, token: str | None = None) -> VersionPage:
        """A page of versions, newest first."""
        self._model(name)
        versions, next_token = self._store.list_versions(name, limit=self._page_limit(limit), token=token)
        return VersionPage(versions=versions, next_token=next_token)

    def get_version(self, name: str, ref: str) -> ModelVersion:
        """Version ``3`` / ``v3``."""
        check_model_name(name)
        number = parse_version_ref(ref)
        if number is None or number < 1:
            raise InvalidInputError(f"version must read 3 or v3, got {ref[:20]!r}", code="invalid_version")
        return self._store.get_version(name, number)

    # ------------------------------------------------------------------ aliases

    def get_alias(self, name: str, alias: str) -> Alias:
        """Where ``alias`` points."""
        found = self._store.get_alias(check_model_name(name), check_alias_name(alias))
        if found is None:
            raise NotFoundError(f"model '{name}' has no alias '{alias}'", code="alias_not_found")
        return found

    def move_alias(self, name: str, alias: str, request: MoveAliasRequest, actor: str) -> AliasMove:
        """Point ``alias`` at a version; ``production`` must pass the gate unless forced with a reason."""
        check_alias_name(alias)
        self._model(name)
        target = self._store.get_version(name, request.version)
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
        if alias == PRODUCTION:
            live = self._store.get_version(name, current.version) if current else None
            gate = self.gate(target, live)
            if not gate.passed:
                if not request.force:
                    failed = [check.message for check in gate.checks if not check.passed]
                    raise UnprocessableError(
                        f"promotion gate failed for {name} v{target.version}: {'; '.join(failed)}",
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

    # ------------------------------------------------------------------ the production gate

    def gate(self, target: ModelVersion, live: ModelVersion | None) -> GateReport:
        """Integrity, loading, smoke reproduction and compatibility with the live production version."""
        checks: list[GateCheck] = []
        try:
            data = self._artifacts.get(target.artifact_key)
        except NotFoundError:
            data = None
        digest = hashlib.sha256(data).hexdigest() if data is not None else None
        if data is None or digest != target.artifact_sha256:
            message = (
                f"artifact {target.artifact_key} is missing"
                if data is None
                else f"artifact sha256 {digest} does not match the registered {target.artifact_sha256}"
            )
            checks.append(GateCheck(name="artifact_integrity", passed=False, message=message))
        else:
            checks.append(GateCheck(name="artifact_integrity", passed=True, message="sha256 matches"))
            checks.extend(self._loads_and_reproduces(data, target))
        checks.append(compatibility(target, live))
        return GateReport(passed=all(check.passed for check in checks), checks=checks)

    def _loads_and_reproduces(self, data: bytes, target: ModelVersion) -> list[GateCheck]:
        try:
            self._runtime.inspect(data, max_bytes=max(self.max_model_bytes, len(data)))
        except MlambdaError as exc:
            return [GateCheck(name="loads", passed=False, message=exc.message)]
        checks = [GateCheck(name="loads", passed=True, message="loads in onnxruntime")]
        if not target.smoke_cases:
            checks.append(GateCheck(name="smoke_cases", passed=True, message="no smoke cases recorded"))
            return checks
        rows = [case.inputs for case in target.smoke_cases]
        try:
            outputs = self._runtime.run(data, rows_to_feed(target.feature_schema, rows))
            actual = predictions(target.signature, outputs)
        except (MlambdaError, ValueError, KeyError) as exc:
            message = exc.message if isinstance(exc, MlambdaError) else str(exc)
            checks.append(GateCheck(name="smoke_cases", passed=False, message=f"smoke run failed: {message}"))
            return checks
        wrong = [
            index
            for index, (case, got) in enumerate(zip(target.smoke_cases, actual, strict=True))
            if not matches(case.expected, got, tolerance=self.smoke_tolerance)
        ]
        total = len(target.smoke_cases)
        checks.append(
            GateCheck(
                name="smoke_cases",
                passed=not wrong,
                message=(
                    f"{total} smoke cases reproduce"
                    if not wrong
                    else f"{len(wrong)} of {total} smoke cases differ from the recorded outputs (rows {wrong[:10]})"
                ),
            )
        )
        return checks

    # ------------------------------------------------------------------ endpoint

    def put_endpoint(self, name: str, request: EndpointConfigRequest, actor: str) -> EndpointConfig:
        """Validate and store the endpoint config: every target must name an existing alias or version."""
        self._model(name)
        targets = [variant.target for variant in request.variants]
        if request.shadow is not None:
            targets.append(request.shadow.target)
        for target in dict.fromkeys(targets):
            self._check_target(name, target)
        now = self._clock()
        try:
            config = EndpointConfig(model=name, **request.model_dump(), updated_at=now, updated_by=actor)
        except ValidationError as exc:
            raise UnprocessableError(f"invalid endpoint config: {exc.errors()[0]['msg']}") from exc
        entry = self._entry(
            name,
            actor,
            "endpoint_changed",
            now,
            details={
                "variants": [v.model_dump() for v in config.variants],
                "shadow": config.shadow.model_dump() if config.shadow else None,
                "sticky_key": config.sticky_key,
            },
        )
        self._store.put_endpoint(config, targets, entry)
        self._emit(
            ENDPOINT_CHANGED,
            {
                "model": name,
                "variants": [v.model_dump() for v in config.variants],
                "shadow": config.shadow.model_dump() if config.shadow else None,
                "actor": actor,
            },
        )
        return config

    def _check_target(self, name: str, target: str) -> None:
        number = parse_version_ref(target)
        if number is not None:
            try:
                self._store.get_version(name, number)
            except NotFoundError as exc:
                raise UnprocessableError(
                    f"endpoint target '{target}': model '{name}' has no version {number}",
                    code="unknown_target",
                ) from exc
            return
        if not re.match(ALIAS_PATTERN, target) or self._store.get_alias(name, target) is None:
            raise UnprocessableError(
                f"endpoint target '{target}': model '{name}' has no such alias or version",
                code="unknown_target",
            )

    def get_endpoint(self, name: str) -> EndpointConfig:
        """The endpoint config (404 when there is none: predict then serves ``production``)."""
        self._model(name)
        config = self._store.endpoint_config(name)
        if config is None:
            raise NotFoundError(
                f"model '{name}' has no endpoint config; predict serves its production alias",
                code="no_endpoint_config",
            )
        return config

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


def _features(names: Sequence[str], types: Sequence[FeatureType]) -> list[FeatureSpec]:
    return [FeatureSpec(name=n, dtype=t) for n, t in zip(names, types, strict=True)]


def feature_schema(
    signature: Signature,
    names: Sequence[str] | None,
    types: Sequence[FeatureType] | None,
    frame: Mapping[str, np.ndarray] | None,
) -> FeatureSchema:
    """The features clients send by name, from the graph's inputs, declared names, or the sample's columns."""
    inputs = signature.inputs
    if len(inputs) > 1:
        return _per_feature_schema(inputs, names, types)
    tensor = inputs[0]
    if len(tensor.shape) != 2:
        raise UnprocessableError(
            f"input '{tensor.name}' has shape {tensor.shape}; a single-input model needs [rows, features]",
            code="unsupported_inputs",
        )
    if tensor.dtype not in TENSOR_FEATURE_TYPES:
        raise UnprocessableError(
            f"input '{tensor.name}' has unsupported element type {tensor.dtype}", code="unsupported_inputs"
        )
    if names is None:
        if frame is None:
            raise UnprocessableError(
                f"the model takes one tensor '{tensor.name}': declare feature_names or give a reference sample",
                code="feature_names_required",
            )
        names = [str(column) for column in frame]
    width = tensor.shape[1]
    if width is not None and len(names) != width:
        raise UnprocessableError(
            f"the model's input '{tensor.name}' has {width} columns but {len(names)} feature names were "
            f"{'declared' if frame is None or types is not None else 'given or found in the sample'}",
            code="feature_count_mismatch",
            details={"input_columns": width, "feature_names": len(names)},
        )
    allowed = TENSOR_FEATURE_TYPES[tensor.dtype]
    chosen = list(types) if types is not None else [DEFAULT_FEATURE_TYPE[tensor.dtype]] * len(names)
    wrong = [n for n, t in zip(names, chosen, strict=True) if t not in allowed]
    if wrong:
        raise UnprocessableError(
            f"features {wrong[:10]} cannot be fed to a {tensor.dtype} tensor (allowed: {', '.join(allowed)})",
            code="feature_type_mismatch",
        )
    return FeatureSchema(
        mode="tensor",
        features=_features(names, chosen),
        tensor_input=tensor.name,
        tensor_dtype=tensor.dtype,
    )


def _per_feature_schema(
    inputs: Sequence[TensorSpec], names: Sequence[str] | None, types: Sequence[FeatureType] | None
) -> FeatureSchema:
    """One input per feature, named like it, shape [rows, 1]."""
    problems = [
        f"{spec.name} ({spec.dtype} {spec.shape})"
        for spec in inputs
        if spec.dtype not in PER_FEATURE_TYPES or len(spec.shape) != 2 or spec.shape[1] not in (1, None)
    ]
    if problems:
        raise UnprocessableError(
            "per-feature inputs must be float32, int64, string or bool with shape [rows, 1]: "
            + ", ".join(problems[:10]),
            code="unsupported_inputs",
        )
    input_names = [spec.name for spec in inputs]
    derived = [PER_FEATURE_TYPES[spec.dtype] for spec in inputs]
    if names is not None and sorted(names) != sorted(input_names):
        raise UnprocessableError(
            f"declared feature_names {list(names)[:10]} do not match the model's inputs {input_names[:10]}",
            code="feature_count_mismatch" if len(names) != len(input_names) else "feature_mismatch",
        )
    if types is not None and names is not None:
        declared = dict(zip(names, types, strict=True))
        wrong = [n for n, t in zip(input_names, derived, strict=True) if declared[n] != t]
        if wrong:
            raise UnprocessableError(
                f"declared types of {wrong[:10]} differ from the model's input types",
                code="feature_type_mismatch",
            )
    return FeatureSchema(mode="per_feature", features=_features(input_names, derived))


def compatibility(target: ModelVersion, live: ModelVersion | None) -> GateCheck:
    """Whether ``target`` can replace ``live`` without breaking callers: same task, features and labels."""
    if live is None or live.version == target.version:
        return GateCheck(name="signature_compatible", passed=True, message="no current production version")
    problems: list[str] = []
    if target.signature.task != live.signature.task:
        problems.append(f"task {target.signature.task} != {live.signature.task}")
    want = [(f.name, f.dtype) for f in live.feature_schema.features]
    got = [(f.name, f.dtype) for f in target.feature_schema.features]
    if want != got:
        missing = [n for n, _ in want if n not in dict(got)]
        extra = [n for n, _ in got if n not in dict(want)]
        detail = []
        if missing:
            detail.append(f"missing {missing[:5]}")
        if extra:
            detail.append(f"new {extra[:5]}")
        if not detail:
            detail.append("order or types differ")
        problems.append(f"features differ from v{live.version} ({', '.join(detail)})")
    if target.signature.class_labels != live.signature.class_labels:
        problems.append(
            f"class labels {target.signature.class_labels} != {live.signature.class_labels} of v{live.version}"
        )
    if problems:
        return GateCheck(name="signature_compatible", passed=False, message="; ".join(problems))
    return GateCheck(
        name="signature_compatible", passed=True, message=f"compatible with production v{live.version}"
    )
