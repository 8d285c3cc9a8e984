"""Validating a registered version: the heavy work the registry API hands to the validator function.

Registration answers 202 with a PENDING_VALIDATION version and queues ``(model, version)``; the
validator takes it from there, once per version whatever SQS redelivers:

1. the upload (size cap, sha256), its protobuf structure (no external data anywhere, bounded
   nesting) and one onnxruntime load, which gives the signature;
2. the reference sample, if any: columns split into features, the ``target`` and ``exclude``-d
   columns; the feature schema (declared names, or the sample's feature columns);
3. the model scored on the reference's complete rows: prediction columns, the quality baseline
   (``model_quality``'s metrics with intervals, against the target), warnings when the reference
   looks like training data, and the reference profile monitoring compares traffic with;
4. smoke cases (given inputs, or the first reference rows) whose outputs the gate re-checks;
5. the artifact, profile and a copy of the sample written under ``models/<name>/v<N>/``; then one
   conditional write turns the version READY (or FAILED with the reason and the report), the
   uploads are deleted, and EventBridge hears ``Model Version Ready`` / ``Model Version Failed``.

A problem with what the user sent (an ``InvalidInputError``: not ONNX, external data, wrong
columns...) makes the version FAILED; anything else (S3 or DynamoDB failing) is raised so the
message is retried, and after the last retry ``give_up`` records FAILED rather than leave the
version pending for ever.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import numpy as np

from mlambda.errors import ConflictError, InvalidInputError, MlambdaError, NotFoundError, UnprocessableError
from mlambda.observability import logger
from mlambda.ports import EventPublisher
from mlambda.schemas.registry import (
    FAILED,
    PENDING_VALIDATION,
    READY,
    FeatureSchema,
    FeatureSpec,
    FeatureType,
    HistoryAction,
    HistoryEntry,
    MetricInterval,
    ModelVersion,
    PendingVersion,
    ReferenceSummary,
    Signature,
    SmokeCase,
    TensorSpec,
    ValidationCheck,
    ValidationReport,
    VersionFailure,
    VersionWarning,
)
from mlambda.schemas.registry_api import UPLOAD_EXTENSIONS, RegisterVersionRequest, upload_key_model
from mlambda.services.inference.scoring import (
    columns_to_feed,
    predictions,
    probability_matrix,
    rows_to_feed,
    validate_rows,
)
from mlambda.services.registry.ports import (
    ModelRuntime,
    RegistryArtifacts,
    RegistryStore,
    RunnableModel,
)

if TYPE_CHECKING:
    import numpy.typing as npt

    from mlambda.config import ValidatorSettings
    from mlambda.schemas.monitoring import ModelBaseline

EVENT_SOURCE = "mlambda.registry"
VERSION_READY = "Model Version Ready"
VERSION_FAILED = "Model Version Failed"
SMOKE_BYTES_BUDGET = 100_000
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


def check_upload_key(name: str, key: str, kind: str) -> None:
    """``key`` must be an upload of model ``name`` (from POST /uploads) of the right kind."""
    if upload_key_model(key) != name:
        raise InvalidInputError(
            f"{kind} key must be an upload key of model '{name}' (from POST /models/{name}/uploads)",
            code="invalid_upload_key",
        )
    if not key.lower().endswith(UPLOAD_EXTENSIONS[kind]):
        raise InvalidInputError(
            f"a {kind} upload must be named *{' or *'.join(UPLOAD_EXTENSIONS[kind])}",
            code="invalid_upload_key",
        )


def _python(value: Any, dtype: FeatureType) -> Any:
    """A numpy scalar as the JSON value a client would send for a feature of ``dtype``."""
    if dtype == "float":
        return float(value)
    if dtype == "int":
        return int(value)
    if dtype == "bool":
        return bool(value)
    return str(value)


class Report:
    """The validation report, built step by step; a step that raises records a failed check."""

    def __init__(self, clock: Callable[[], datetime], attempts: int) -> None:
        self._clock = clock
        self.started_at = clock()
        self._started = time.perf_counter()
        self.attempts = attempts
        self.checks: list[ValidationCheck] = []

    def passed(self, name: str, message: str) -> None:
        self.checks.append(ValidationCheck(name=name, passed=True, message=message))

    @contextmanager
    def step(self, name: str) -> Iterator[None]:
        """Run a step; an InvalidInputError inside it is recorded as this check's failure."""
        try:
            yield
        except InvalidInputError as exc:
            self.checks.append(ValidationCheck(name=name, passed=False, message=exc.message))
            raise

    def done(self) -> ValidationReport:
        return ValidationReport(
            checks=list(self.checks),
            started_at=self.started_at,
            finished_at=self._clock(),
            duration_ms=round((time.perf_counter() - self._started) * 1000, 1),
            attempts=self.attempts,
        )


class VersionValidator:
    """Validates PENDING_VALIDATION versions into READY or FAILED ones."""

    def __init__(
        self,
        store: RegistryStore,
        artifacts: RegistryArtifacts,
        runtime: ModelRuntime,
        events: EventPublisher,
        *,
        max_model_bytes: int = 100 * 1024 * 1024,
        max_reference_bytes: int = 64 * 1024 * 1024,
        smoke_rows: int = 20,
        clock: Callable[[], datetime] = _now,
    ) -> None:
        self._store = store
        self._artifacts = artifacts
        self._runtime = runtime
        self._events = events
        self.max_model_bytes = max_model_bytes
        self.max_reference_bytes = max_reference_bytes
        self.smoke_rows = smoke_rows
        self._clock = clock

    @classmethod
    def from_settings(cls, settings: ValidatorSettings) -> VersionValidator:
        """The validator on DynamoDB, S3, onnxruntime and EventBridge."""
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
            smoke_rows=settings.smoke_rows,
        )

    # ------------------------------------------------------------------ entry points

    def validate(self, model: str, number: int, *, attempt: int = 1) -> ModelVersion | PendingVersion | None:
        """Validate version ``number`` of ``model`` if it is still pending; its outcome either way."""
        record = self._store.version_record(model, number)
        if record is None:
            logger.warning("version to validate does not exist", extra={"model": model, "version": number})
            return None
        if not isinstance(record, PendingVersion) or record.status != PENDING_VALIDATION:
            if isinstance(record, PendingVersion):
                self._discard_uploads(record)  # a redelivery after FAILED was written
            return record
        report = Report(self._clock, attempt)
        try:
            ready = self._validated(record, report)
        except (InvalidInputError, NotFoundError) as exc:
            failure = VersionFailure(code=exc.code, message=exc.message, details=exc.details)
            return self._finish(
                record, record.model_copy(update={"status": FAILED, "failure": failure}), report
            )
        return self._finish(record, ready.model_copy(update={"validation": report.done()}), report)

    def give_up(self, model: str, number: int, *, attempts: int) -> ModelVersion | PendingVersion | None:
        """The validation crashed every time (timeout, out of memory): record FAILED, never pending for ever."""
        record = self._store.version_record(model, number)
        if not isinstance(record, PendingVersion) or record.status != PENDING_VALIDATION:
            return record
        failure = VersionFailure(
            code="validation_incomplete",
            message=(
                f"validation did not finish in {attempts - 1} attempts (the validator failed, timed out or ran out "
                "of memory: its logs say which); register a smaller model or sample, or raise its limits"
            ),
            details={"attempts": attempts - 1},
        )
        report = Report(self._clock, attempts)
        return self._finish(record, record.model_copy(update={"status": FAILED, "failure": failure}), report)

    # ------------------------------------------------------------------ outcome

    def _finish(
        self, pending: PendingVersion, outcome: ModelVersion | PendingVersion, report: Report
    ) -> ModelVersion | PendingVersion | None:
        """Write the outcome (only while the version is still pending), delete the uploads, tell EventBridge."""
        now = self._clock()
        if isinstance(outcome, PendingVersion):
            outcome = outcome.model_copy(update={"validation": report.done(), "updated_at": now})
            failure = outcome.failure
            action: HistoryAction = "version_failed"
            details: dict[str, Any] = {"code": failure.code if failure else None}
        else:
            failure = None
            action = "version_ready"
            details = {
                "artifact_sha256": outcome.artifact_sha256,
                "size_bytes": outcome.size_bytes,
                "warnings": [w.code for w in outcome.warnings],
            }
        entry = HistoryEntry(
            model=outcome.model,
            at=now,
            actor="validator",
            action=action,
            to_version=outcome.version,
            reason=failure.message[:1000] if failure else None,
            details=details,
        )
        try:
            self._store.finish_version(outcome, entry)
        except ConflictError:
            logger.info(
                "version was finished by another validation",
                extra={"model": outcome.model, "version": outcome.version},
            )
            return self._store.version_record(outcome.model, outcome.version)
        self._discard_uploads(pending)
        self._emit(outcome)
        return outcome

    def _discard_uploads(self, pending: PendingVersion) -> None:
        """Delete the uploads a finished version came from (the artifact was copied, or it FAILED)."""
        for key in (pending.request.get("upload_key"), pending.request.get("reference_key")):
            if not isinstance(key, str) or upload_key_model(key) != pending.model:
                continue
            try:
                self._artifacts.purge(key)
            except MlambdaError as exc:  # the uploads lifecycle rule expires it anyway
                logger.warning("upload not deleted", extra={"key": key, "error": exc.message})

    def _emit(self, outcome: ModelVersion | PendingVersion) -> None:
        if isinstance(outcome, ModelVersion):
            detail_type = VERSION_READY
            detail: dict[str, Any] = {
                "model": outcome.model,
                "version": outcome.version,
                "status": READY,
                "artifact_sha256": outcome.artifact_sha256,
                "task": outcome.signature.task,
                "warnings": [w.code for w in outcome.warnings],
                "reference_metrics": (
                    {k: v.value for k, v in outcome.reference.metrics.items()} if outcome.reference else {}
                ),
            }
        else:
            detail_type = VERSION_FAILED
            detail = {
                "model": outcome.model,
                "version": outcome.version,
                "status": FAILED,
                "code": outcome.failure.code if outcome.failure else None,
                "reason": outcome.failure.message if outcome.failure else None,
            }
        try:
            self._events.emit(detail_type, [detail])
        except MlambdaError as exc:
            logger.warning(
                "registry event not published", extra={"detail_type": detail_type, "error": exc.message}
            )

    # ------------------------------------------------------------------ the work

    def _upload(self, record: PendingVersion, key: str, kind: str, max_bytes: int) -> tuple[bytes, str]:
        """The upload's bytes and ETag, after the key, presence and size checks."""
        check_upload_key(record.model, key, kind)
        try:
            size = self._artifacts.size(key)
        except NotFoundError as exc:
            raise InvalidInputError(
                f"nothing is at the {kind} upload {key} any more (already registered, or expired)",
                code="upload_not_found",
            ) from exc
        if size > max_bytes:
            raise InvalidInputError(
                f"{kind} is {size} bytes, over the {max_bytes}-byte cap",
                code="payload_too_large",
                details={"size": size},
            )
        return self._artifacts.get_tagged(key)

    def _validated(self, record: PendingVersion, report: Report) -> ModelVersion:
        request = RegisterVersionRequest.model_validate(record.request)
        name, number = record.model, record.version
        with report.step("upload"):
            data, etag = self._upload(record, request.upload_key, "model", self.max_model_bytes)
            digest = hashlib.sha256(data).hexdigest()
        report.passed("upload", f"{len(data)} bytes, sha256 {digest[:12]}")
        with report.step("model"):
            model = self._runtime.load(data, max_bytes=self.max_model_bytes)
        signature = model.signature
        report.passed(
            "model",
            f"ONNX without external data, loads in onnxruntime: {signature.task}, "
            f"{len(signature.inputs)} input(s), {len(signature.outputs)} output(s)",
        )
        reference = None
        with report.step("reference"):
            if request.reference_key:
                self._upload(record, request.reference_key, "reference", self.max_reference_bytes)
                reference = Reference.read(self._artifacts, request)
        if reference is not None:
            report.passed("reference", reference.describe())
        with report.step("feature_schema"):
            schema = feature_schema(
                signature,
                request.feature_names,
                request.feature_types,
                reference.features if reference is not None else None,
                roles=reference.roles() if reference is not None else None,
            )
        report.passed("feature_schema", f"{schema.mode}: {len(schema.features)} features")
        warnings: list[VersionWarning] = []
        profile: bytes | None = None
        summary: ReferenceSummary | None = None
        sample_rows: list[dict[str, Any]] = []
        prefix = f"models/{name}/v{number}"
        if reference is None:
            warnings.append(
                VersionWarning(
                    code="no_reference",
                    message="no reference sample: monitoring has no baseline to compare traffic with",
                )
            )
        else:
            with report.step("reference_scored"):
                scored = reference.score(model, schema, request.metrics)
            sample_key = f"{prefix}/reference{_extension(request.reference_key or '')}"
            summary = scored.summary(sample_key)
            warnings.extend(scored.warnings)
            profile = scored.profile
            sample_rows = scored.rows(self.smoke_rows)
            report.passed("reference_scored", scored.describe())
        with report.step("smoke_cases"):
            smoke_rows = (
                list(request.smoke_inputs) if request.smoke_inputs else sample_rows[: self.smoke_rows]
            )
            smoke = smoke_cases(model, signature, schema, smoke_rows)
        report.passed("smoke_cases", f"{len(smoke)} smoke cases recorded")
        explainer = explainer_of(data, digest, model, schema, reference) if reference is not None else None
        if explainer is not None:
            report.passed("explainer", "built from the reference's complete rows")

        # Writes last: the number is this version's alone, so a retried validation rewrites the same
        # bytes. The artifact is copied inside S3, only if the upload still holds the bytes validated
        # (else the copy fails and the retried validation checks the new bytes).
        artifact_key = f"{prefix}/model.onnx"
        self._artifacts.copy(request.upload_key, artifact_key, etag=etag)
        profile_key = None
        if profile is not None:
            profile_key = f"{prefix}/reference_profile.json"
            self._artifacts.put(profile_key, profile, content_type="application/json")
        if summary is not None and request.reference_key:
            self._artifacts.copy(request.reference_key, summary.sample_key)
        explainer_key = None
        if explainer is not None:
            explainer_key = f"{prefix}/explainer.npz"
            self._artifacts.put(explainer_key, explainer)
        report.passed("artifacts", f"written under {prefix}/")
        return ModelVersion(
            model=name,
            version=number,
            artifact_key=artifact_key,
            artifact_sha256=digest,
            size_bytes=len(data),
            signature=signature,
            feature_schema=schema,
            metrics=request.metrics,
            params=request.params,
            training_data_uri=request.training_data_uri,
            training_data_version=request.training_data_version,
            source_code_version=request.source_code_version,
            owner=record.owner,
            tags=request.tags,
            description=request.description,
            reference_profile_key=profile_key,
            explainer_key=explainer_key,
            reference=summary,
            smoke_cases=smoke,
            warnings=warnings,
            created_at=record.created_at,
            created_by=record.created_by,
        )


def _extension(key: str) -> str:
    lowered = key.lower()
    return next((ext for ext in UPLOAD_EXTENSIONS["reference"] if lowered.endswith(ext)), "")


# ---------------------------------------------------------------------- the reference sample


Columns = Mapping[str, np.ndarray]


class Reference:
    """A reference sample (columns in file order) split into its features, its target column and
    the columns set aside."""

    def __init__(self, columns: Columns, target: str | None, excluded: list[str]) -> None:
        self.columns = columns
        self.target = target
        self.excluded = excluded
        self.rows = len(next(iter(columns.values()))) if columns else 0
        ignored = {target, *excluded}
        self.features = {name: values for name, values in columns.items() if name not in ignored}

    @classmethod
    def read(cls, artifacts: RegistryArtifacts, request: RegisterVersionRequest) -> Reference:
        """The sample at ``request.reference_key`` with the roles the request names; 4xx naming problems."""
        columns = artifacts.read_table(request.reference_key or "")
        if not columns or not len(next(iter(columns.values()))):
            raise UnprocessableError("the reference sample has no rows", code="empty_reference")
        names = [str(c) for c in columns]
        named = [c for c in [request.target, *(request.exclude or [])] if c is not None]
        missing = [c for c in named if c not in columns]
        if missing:
            raise UnprocessableError(
                f"the reference sample has no column {missing[0]!r} (it has {names[:20]})",
                code="reference_mismatch",
                details={"missing": missing, "columns": names[:200]},
            )
        return cls(columns, request.target, list(request.exclude or []))

    def roles(self) -> str:
        """How the sample's columns were split, for error messages."""
        parts = []
        if self.target is not None:
            parts.append(f"target {self.target!r}")
        if self.excluded:
            parts.append(f"excluded {self.excluded[:5]}")
        return ", ".join(parts) or "no target or excluded column named"

    def describe(self) -> str:
        return f"{self.rows} rows, {len(self.columns)} columns ({self.roles()})"

    def score(
        self, model: RunnableModel, schema: FeatureSchema, registered: Mapping[str, float]
    ) -> ScoredReference:
        """The model's outputs on the complete rows, the baseline against the target, the profile."""
        from mlambda.services.monitoring.profiling import ReferenceOutputs, present, reference_profile

        missing = [n for n in schema.names if n not in self.columns]
        if missing:
            raise UnprocessableError(
                f"the reference sample lacks feature columns {missing[:10]}",
                code="reference_mismatch",
                details={"missing": missing},
            )
        features = {n: self.columns[n] for n in schema.names}
        complete = np.logical_and.reduce([present(values) for values in features.values()])
        signature = model.signature
        outputs: ReferenceOutputs | None = None
        if complete.any():
            try:
                feed = columns_to_feed(schema, {n: values[complete] for n, values in features.items()})
            except (ValueError, TypeError) as exc:
                raise UnprocessableError(
                    f"the reference sample's columns do not fit the model's input: {exc}",
                    code="reference_mismatch",
                ) from exc
            scored = model.run(feed)
            rows = np.flatnonzero(complete)
            if signature.task == "classification":
                outputs = ReferenceOutputs(
                    labels=np.asarray(scored[signature.label_output or ""]).ravel(),
                    probabilities=probability_matrix(signature, scored),
                    class_labels=signature.class_labels,
                    rows=rows,
                )
            else:
                values = np.asarray(scored[signature.value_output or ""], dtype=np.float64)
                outputs = ReferenceOutputs(values=values.reshape(len(rows), -1)[:, 0], rows=rows)
        warnings: list[VersionWarning] = []
        target = np.asarray(self.columns[self.target]) if self.target is not None else None
        if target is None:
            warnings.append(
                VersionWarning(
                    code="no_target",
                    message="the reference names no target column: no quality baseline "
                    "(name the label column: target / --target)",
                )
            )
        elif outputs is not None:
            warnings.extend(target_warnings(signature, target[complete]))
        profile, notes = reference_profile(
            features,
            schema,
            task=signature.task,
            target=target,
            outputs=outputs,
            registered=registered,
        )
        warnings.extend(VersionWarning(code=note.code, message=note.message) for note in notes)
        return ScoredReference(
            reference=self,
            complete=complete,
            schema=schema,
            baseline=profile.baseline,
            warnings=warnings,
            profile=profile.to_json(),
        )


@dataclass(frozen=True)
class ScoredReference:
    """What scoring the reference gave: which rows were complete, baseline, warnings, the profile's JSON."""

    reference: Reference
    complete: npt.NDArray[np.bool_]
    schema: FeatureSchema
    baseline: ModelBaseline | None
    warnings: list[VersionWarning]
    profile: bytes

    def rows(self, limit: int) -> list[dict[str, Any]]:
        """The first complete rows as clients would send them (smoke cases)."""
        columns = self.reference.columns
        return [
            {spec.name: _python(columns[spec.name][index], spec.dtype) for spec in self.schema.features}
            for index in np.flatnonzero(self.complete)[:limit].tolist()
        ]

    def summary(self, sample_key: str) -> ReferenceSummary:
        metrics = {
            name: MetricInterval(value=estimate.value, low=estimate.low, high=estimate.high)
            for name, estimate in (self.baseline.metrics.items() if self.baseline else [])
        }
        return ReferenceSummary(
            sample_key=sample_key,
            rows=self.reference.rows,
            scored_rows=int(self.complete.sum()),
            target=self.reference.target,
            excluded=self.reference.excluded,
            labelled_rows=self.baseline.rows if self.baseline else 0,
            metrics=metrics,
        )

    def describe(self) -> str:
        text = f"{int(self.complete.sum())} of {self.reference.rows} rows scored"
        if self.baseline is not None and self.baseline.metrics:
            shown = ", ".join(f"{k} {v.value:.4g}" for k, v in list(self.baseline.metrics.items())[:4])
            text += f"; baseline on {self.baseline.rows} labelled rows: {shown}"
        return text


def explainer_of(
    data: bytes, digest: str, model: RunnableModel, schema: FeatureSchema, reference: Reference
) -> bytes | None:
    """The version's explainer artifact from the reference's complete rows (None when its features
    are not numeric or the model is not one the explainer supports).

    Built here, once, so that predict only loads it (``mlambda.services.inference.explain``).
    """
    from mlambda.services.inference.explain_build import UnsupportedModelError, build_explainer
    from mlambda.services.monitoring.profiling import present

    if any(spec.dtype == "string" for spec in schema.features):
        return None
    columns = reference.columns
    complete = np.logical_and.reduce([present(columns[name]) for name in schema.names])
    if not complete.any():
        return None
    try:
        matrix = np.column_stack(
            [np.asarray(columns[name][complete], dtype=np.float64) for name in schema.names]
        )
    except (ValueError, TypeError):
        return None  # scoring the reference already refused columns that do not fit the model
    try:
        return build_explainer(data, model.signature, schema, matrix, model.run, model_sha256=digest)
    except UnsupportedModelError as exc:
        logger.info("no explainer for this version", extra={"reason": str(exc)})
        return None


def target_warnings(signature: Signature, truth: np.ndarray) -> list[VersionWarning]:
    """What in the reference's target (on its scored rows) the baseline has to leave out, and why:
    values that are not numbers (regression) or not among the model's classes (classification)."""
    from mlambda.services.monitoring.profiling import canonical_labels, cell_number, present

    truth = truth[present(truth)]
    if signature.task == "regression":
        values = (
            np.array([cell_number(value)[0] for value in truth.tolist()], dtype=np.float64)
            if truth.dtype == object
            else truth.astype(np.float64)
        )
        bad = int((~np.isfinite(values)).sum())
        if not bad:
            return []
        return [
            VersionWarning(
                code="target_not_numeric",
                message=f"{bad} target values are not numbers; they are left out of the baseline",
            )
        ]
    if not signature.class_labels:
        return []
    classes = set(canonical_labels(np.asarray(list(signature.class_labels), dtype=object)).tolist())
    labels = canonical_labels(truth)
    unknown = sorted({label for label in labels.tolist() if label not in classes})
    if not unknown:
        return []
    outside = int(sum(1 for label in labels.tolist() if label not in classes))
    return [
        VersionWarning(
            code="target_not_model_classes",
            message=f"target values {unknown[:5]} are not among the model's classes {sorted(classes)[:10]}; "
            f"{outside} rows are left out of the baseline",
        )
    ]


# ---------------------------------------------------------------------- feature schema and smoke cases


def _features(names: Sequence[str], types: Sequence[FeatureType]) -> list[FeatureSpec]:
    return [FeatureSpec(name=n, dtype=t) for n, t in zip(names, types, strict=True)]


def feature_schema(
    signature: Signature,
    names: Sequence[str] | None,
    types: Sequence[FeatureType] | None,
    frame: Mapping[str, np.ndarray] | None,
    *,
    roles: str | None = None,
) -> FeatureSchema:
    """The features clients send by name, from the graph's inputs, declared names, or the sample's
    feature columns (its columns but the target and excluded ones, described by ``roles``)."""
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
    from_sample = names is None
    if names is None:
        if frame is None:
            raise UnprocessableError(
                f"the model takes one tensor '{tensor.name}': declare feature_names or give a reference sample",
                code="feature_names_required",
            )
        names = [str(column) for column in frame]
    width = tensor.shape[1]
    if width is not None and len(names) != width:
        if from_sample:
            message = (
                f"the model's input '{tensor.name}' has {width} columns but the reference sample has "
                f"{len(names)} feature columns ({roles}): name its label column as the target "
                "(target / --target) and id columns as excluded (exclude / --exclude), or declare feature_names"
            )
        else:
            message = f"the model's input '{tensor.name}' has {width} columns but {len(names)} feature names were declared"
        raise UnprocessableError(
            message,
            code="feature_count_mismatch",
            details={"input_columns": width, "feature_names": len(names), "columns": list(names)[:200]},
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


def smoke_cases(
    model: RunnableModel, signature: Signature, schema: FeatureSchema, rows: Sequence[Mapping[str, Any]]
) -> list[SmokeCase]:
    """Score ``rows`` now and record the outputs, within an item-size budget."""
    if not rows:
        return []
    validate_rows(schema, rows)
    outputs = model.run(rows_to_feed(schema, rows))
    cases: list[SmokeCase] = []
    used = 0
    for row, expected in zip(rows, predictions(signature, outputs), strict=True):
        case = SmokeCase(inputs=dict(row), expected=expected)
        used += len(case.model_dump_json())
        if used > SMOKE_BYTES_BUDGET:
            break
        cases.append(case)
    return cases
