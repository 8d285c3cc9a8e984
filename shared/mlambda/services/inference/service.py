"""Online inference: resolve the variant, fill features, validate, score, apply rules, cache, log.

The hot path does no registry read per request: endpoint configs and alias resolutions are
cached in memory for ``config_ttl_seconds`` (10 s by default, so a promotion or a weight change
reaches every warm instance within that time). Unknown models are cached as such for the same
TTL, so a client hammering a wrong name does not hammer the registry.

Feature policy for ``entity_id`` requests: the entity's latest online values are read only when
a row lacks some of the model's features; only the model's features are taken from the store,
request values win, and a feature still missing after the merge is a 422 naming it (no silent
imputation: a default the model never saw in training is a wrong answer, not a degraded one).

Failure policy: model failures and timeouts answer the endpoint's fallback when it has one
(else 502/504); a failing prediction cache, exclusion lookup or shadow variant never fails a
request (each is counted); a failing opt-out lookup does (502), because serving an opted-out
entity is not a degradation we may choose silently.

Nothing on the path waits for a write the answer does not depend on: the prediction log (every
served and shadow row) and what the entity was served (the tracking store's record) leave as one
record on the function's output (``prediction_log``), which the archiver receives through the
log subscription and writes to the lake and the tracking table. Prediction cache entries are
handed to a writer thread, best-effort (``prediction_cache``: a lost entry costs a recompute).
"""

from __future__ import annotations

import math
import os
import random
import re
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache
from itertools import chain
from operator import itemgetter
from typing import TYPE_CHECKING, Annotated, Any, Protocol

import numpy as np
import orjson
from pydantic import Strict, TypeAdapter, ValidationError

from mlambda.errors import (
    ConflictError,
    MlambdaError,
    NotFoundError,
    PayloadTooLargeError,
    UnprocessableError,
    UpstreamError,
)
from mlambda.observability import MetricUnit, logger, metrics
from mlambda.ports import ModelCatalog
from mlambda.schemas.inference import (
    ExplainOptions,
    MlflowResponse,
    PredictRequest,
    PredictResponse,
    RequestTable,
)
from mlambda.schemas.open_inference import ACCEPTED_FOR_FEATURE, DATATYPE_OF_FEATURE
from mlambda.schemas.registry import (
    MODEL_NAME_PATTERN,
    PRODUCTION,
    CachePolicy,
    EndpointConfig,
    FeatureSchema,
    FeatureSpec,
    ModelVersion,
    ServingRules,
    Variant,
)
from mlambda.services.inference.explain import Explainers, explain_feed
from mlambda.services.inference.prediction_cache import PredictionCache, cache_key
from mlambda.services.inference.prediction_log import InputBlock, LoggedRequest, PredictionLog, Scored
from mlambda.services.inference.routing import Router
from mlambda.services.inference.scoring import (
    INPUT_LIMITS,
    INT64_LIMIT,
    MAX_REPORTED_PROBLEMS,
    NUMPY_TYPES,
    PredictionColumns,
    prediction_columns,
    predictions,
    rows_to_feed,
    validate_rows,
)
from mlambda.services.inference.serving_rules import (
    EXCLUDED_RECENTLY_SEEN,
    enriched,
    excluded_rows,
    fallback_prediction,
    item_ids,
    opted_out_answer,
    with_decisions,
)

if TYPE_CHECKING:
    from mlambda.config import PredictSettings


class ServingModel(Protocol):
    """A loaded model version, ready to score."""

    def run(
        self, feed: Mapping[str, np.ndarray], outputs: Sequence[str], *, timeout_ms: int | None = None
    ) -> dict[str, Any]:
        """The requested outputs; UpstreamError (model_failed / model_timeout) when the model fails."""
        ...


class ModelProvider(Protocol):
    """Loaded models by version (fetched, verified and cached by the adapter)."""

    def get(self, version: ModelVersion) -> ServingModel:
        """The loaded model; MlambdaError (e.g. 500 artifact_corrupt) when it cannot be served."""
        ...


class OnlineFeatureSource(Protocol):
    """The online feature store's latest values per entity."""

    def latest(self, entity_id: str, names: Sequence[str]) -> dict[str, Any]:
        """The entity's latest values among ``names`` ({} for an unknown entity)."""
        ...


class ItemMetadataSource(Protocol):
    """The metadata store's items (``POST /items``), read to enrich predictions."""

    def get_many(self, item_ids: Sequence[str]) -> dict[str, dict[str, Any]]:
        """Attributes of the known items among ``item_ids`` (unknown ones are absent)."""
        ...


class EntityTracking(Protocol):
    """What the tracking store knows about an entity (what it was served is written by the archiver)."""

    def is_opted_out(self, entity_id: str) -> bool:
        """Whether the entity opted out of personalised predictions."""
        ...

    def seen_items(self, entity_id: str, hours: float, kinds: Sequence[str]) -> set[str]:
        """Item ids the entity interacted with (``kinds``) in the last ``hours``."""
        ...


@dataclass(frozen=True, slots=True)
class Endpoint:
    """One model's serving setup, derived once per config refresh."""

    router: Router
    rules: ServingRules
    cache: CachePolicy
    routing_fields: frozenset[str]
    configured: bool


_MODEL_NAME = re.compile(MODEL_NAME_PATTERN)
MAX_CACHED = 10_000
"""Entries of each of the catalog cache's maps at most: names callers choose cannot grow it without end."""


def _bounded(entries: dict[Any, tuple[float, Any]], now: float) -> None:
    """Make room for one more entry: expired ones go first, and everything when none has expired."""
    if len(entries) < MAX_CACHED:
        return
    for key in [key for key, (until, _) in entries.items() if until <= now]:
        del entries[key]
    if len(entries) >= MAX_CACHED:
        entries.clear()


class CatalogCache:
    """The registry's answers kept for ``ttl`` seconds, misses (404s) included."""

    def __init__(
        self, catalog: ModelCatalog, ttl: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._catalog = catalog
        self._ttl = ttl
        self._clock = clock
        self._endpoints: dict[str, tuple[float, Endpoint]] = {}
        self._versions: dict[tuple[str, str], tuple[float, ModelVersion | NotFoundError]] = {}

    def endpoint(self, model: str) -> Endpoint:
        """The model's endpoint (the implicit ``production`` one when it has no config).

        A name no model can have is a 404 before any lookup (and is never cached): checked on a
        cache miss only, so a warm request pays nothing for it.
        """
        now = self._clock()
        cached = self._endpoints.get(model)
        if cached is not None and cached[0] > now:
            return cached[1]
        if _MODEL_NAME.fullmatch(model) is None:
            raise NotFoundError(f"no model {model[:64]!r}", code="model_not_found")
        config = self._catalog.endpoint_config(model)
        endpoint = _endpoint(model, config)
        _bounded(self._endpoints, now)
        self._endpoints[model] = (now + self._ttl, endpoint)
        return endpoint

    def resolve(self, model: str, ref: str) -> ModelVersion:
        """The version ``ref`` (alias or ``v3``) names; NotFoundError (cached too) otherwise."""
        now = self._clock()
        cached = self._versions.get((model, ref))
        if cached is None or cached[0] <= now:
            if _MODEL_NAME.fullmatch(model) is None:
                raise NotFoundError(f"no model {model[:64]!r}", code="model_not_found")
            try:
                answer: ModelVersion | NotFoundError = self._catalog.resolve(model, ref)
            except NotFoundError as exc:
                answer = exc
            cached = (now + self._ttl, answer)
            _bounded(self._versions, now)
            self._versions[(model, ref)] = cached
        if isinstance(cached[1], NotFoundError):
            raise cached[1]
        return cached[1]


METRIC_UNITS = {
    "Predictions": "Count",
    "LatencyMs": "Milliseconds",
    "ModelMs": "Milliseconds",
    "CacheHits": "Count",
    "CacheMisses": "Count",
    "ExplainMs": "Milliseconds",
}
"""The per-request figures ``emit_request_metrics`` writes, and their CloudWatch units."""


def emit_request_metrics(model: str, variant: str, values: Mapping[str, float]) -> None:
    """The request's figures (named in ``METRIC_UNITS``) as one CloudWatch EMF line, per (service, model, variant).

    powertools' ``add_metric``/``add_dimension`` cost 10-40 µs each on this path (measured in
    benchmarks/bench_predict.py), more than the model, so the per-request figures go out as a
    single orjson-encoded document whose metric directives are built once per namespace and
    metric set; rare events (fallbacks, errors, corrupt artifacts) still use powertools' ``metrics``.
    """
    document: dict[str, Any] = {
        "_aws": {
            "Timestamp": int(time.time() * 1000),
            "CloudWatchMetrics": _metric_directives(metrics.namespace, tuple(values)),
        },
        "service": metrics.service,
        "model": model,
        "variant": variant,
    }
    document.update(values)
    sys.stdout.write(orjson.dumps(document, option=orjson.OPT_APPEND_NEWLINE).decode())


@lru_cache(maxsize=64)
def _metric_directives(namespace: str | None, names: tuple[str, ...]) -> orjson.Fragment:
    """The EMF ``CloudWatchMetrics`` directives, serialised once."""
    return orjson.Fragment(
        orjson.dumps(
            [
                {
                    "Namespace": namespace,
                    "Dimensions": [["service", "model", "variant"]],
                    "Metrics": [{"Name": name, "Unit": METRIC_UNITS[name]} for name in names],
                }
            ]
        )
    )


def _endpoint(model: str, config: EndpointConfig | None) -> Endpoint:
    rules = config.rules if config else ServingRules()
    fields = set()
    if config and config.sticky_key and config.sticky_key != "entity_id":
        fields.add(config.sticky_key)
    if rules.exclude_recently_seen:
        fields.add(rules.exclude_recently_seen.item_field)
    if rules.enrich_items:
        fields.add(rules.enrich_items.item_field)
    return Endpoint(
        router=Router.of(model, config),
        rules=rules,
        cache=config.cache if config else CachePolicy(),
        routing_fields=frozenset(fields),
        configured=config is not None,
    )


class PreparedVersion:
    """What scoring one version needs, computed once: feature order, outputs, a vectorised feed."""

    def __init__(self, version: ModelVersion) -> None:
        schema = version.feature_schema
        signature = version.signature
        self.version = version
        self.schema = schema
        self.names = schema.names
        self.name_set = frozenset(self.names)
        self._getter = itemgetter(*self.names)
        self.vectorised = schema.mode == "tensor" and all(
            spec.dtype in ("float", "int") for spec in schema.features
        )
        self._int_columns = [i for i, spec in enumerate(schema.features) if spec.dtype == "int"]
        self._input = schema.tensor_input or "input"
        self.dtype = NUMPY_TYPES[schema.tensor_dtype or "float32"]
        # The fast paths take values below this in magnitude: what the input type holds, and for
        # Python ints what int64 arrays and the prediction log hold. Anything else goes the exact
        # way, ``validate_rows``, which names it.
        self._bound = min(INPUT_LIMITS.get(schema.tensor_dtype or "float32", math.inf), INT64_LIMIT)
        if signature.task == "classification":
            self.outputs = [signature.label_output or "", signature.probability_output or ""]
        else:
            self.outputs = [signature.value_output or ""]

    def feed(self, rows: Sequence[Mapping[str, Any]], field: str = "instances") -> dict[str, np.ndarray]:
        """The ONNX feed for ``rows``; UnprocessableError naming every bad row and field (under ``field``).

        Numeric tensor models take a vectorised path (key sets, value types and finiteness
        checked in bulk); anything it does not accept goes through ``validate_rows``, which
        names the problem, and the generic conversion.
        """
        if self.vectorised:
            matrix = self._matrix(rows)
            if matrix is not None:
                return {self._input: matrix}
        validate_rows(self.schema, rows, field=field)
        return rows_to_feed(self.schema, rows)

    def block_matrix(self, table: RequestTable) -> np.ndarray | None:
        """The model's input matrix straight from a block of values (no object per row), or None.

        For numeric tensor models whose block names exactly the model's features (in any order,
        or none: the model's order): every value an int or float (bools and strings refused),
        finite, integers where the schema says int. A block already decoded to a numeric array
        (binary tensors, JSON tensors) is used as it is. None sends the rows down the per-row
        path, which names each problem under the request's field.
        """
        values = table.values
        if not self.vectorised or values is None or not len(values):
            return None
        names = table.names
        width = len(self.names)
        if names is not None and (len(names) != width or frozenset(names) != self.name_set):
            return None
        matrix: np.ndarray | None
        if isinstance(values, np.ndarray):
            if values.ndim != 2 or values.shape[1] != width or values.dtype.kind not in "fiu":
                return None
            matrix = values
        else:
            matrix = _numeric_matrix(values, width, checked=table.numbers_checked)
        if matrix is None:
            return None
        if matrix.ndim != 2 or matrix.shape[1] != width:
            return None
            return None
        if names is not None and list(names) != self.names:
            position = {name: i for i, name in enumerate(names)}
            matrix = matrix[:, [position[name] for name in self.names]]
        if self._int_columns and matrix.dtype.kind == "f":
            ints = matrix[:, self._int_columns]
            if not np.array_equal(ints, np.floor(ints)):
                return None
        if self.dtype is np.float64 or self.dtype is np.float32:
            # One finiteness check, after the cast: NaN and infinity stay so, and a value beyond
            # float32's range becomes infinity there.
            narrowed = matrix.astype(self.dtype, copy=False)
            return narrowed if np.isfinite(narrowed).all() else None
        if matrix.dtype.kind == "f" and not np.isfinite(matrix).all():
            return None
        if float(np.abs(matrix.astype(np.float64)).max(initial=0.0)) >= self._bound:
            return None
        return matrix.astype(self.dtype, copy=False)

    def matrix_feed(self, matrix: np.ndarray) -> dict[str, np.ndarray]:
        """The ONNX feed of a matrix ``block_matrix`` made."""
        return {self._input: matrix}

    def _matrix(self, rows: Sequence[Mapping[str, Any]]) -> np.ndarray | None:
        names = self.name_set
        if not all(row.keys() == names for row in rows):
            return None
        if len(self.names) == 1:
            values = [row[self.names[0]] for row in rows]
        else:
            values = list(chain.from_iterable(map(self._getter, rows)))
        if not _NUMBER_TYPES.issuperset(map(type, values)):
            return None
        bound = self._bound
        try:
            matrix = np.array(values, dtype=np.float64).reshape(len(rows), len(self.names))
            # One sum of magnitudes in Python beats numpy calls for the one-row requests that
            # dominate (~0.5 µs more than the plain sum it replaces): below the bound, every value
            # is; NaN and infinity fail the comparison. A large but valid row only goes the exact way.
            if len(values) <= 1024:
                usable = sum(map(abs, values)) < bound
            else:
                usable = bool(np.isfinite(matrix).all()) and float(np.abs(matrix).max()) < bound
        except OverflowError:
            return None
        if not usable:
            return None
        if self._int_columns:
            ints = matrix[:, self._int_columns]
            if not np.array_equal(ints, np.floor(ints)):
                return None
        return matrix if self.dtype is np.float64 else matrix.astype(self.dtype)


_NUMBER_TYPES = frozenset((float, int))
_NUMBERS: TypeAdapter[list[float]] = TypeAdapter(list[Annotated[float, Strict()]])
"""JSON numbers: Python ints and floats, never bools or numeric strings."""


def _numeric_matrix(rows: Sequence[Sequence[Any]], width: int, *, checked: bool) -> np.ndarray | None:
    """Rows of ``width`` JSON numbers as a float64 matrix, or None (ragged rows, a value not a number).

    Flattened first: pydantic's strict check (in Rust) and numpy's conversion both take a flat
    list in half the time they take rows (1,000 x 20: 1.5 ms of CPU against 3.0); ``np.fromiter``
    converts it a tenth faster than ``np.array``. What is left is CPython's unboxing of each float
    (~40 ns a value), the floor of JSON numbers.
    """
    if set(map(len, rows)) != {width}:
        return None
    flat = list(chain.from_iterable(rows))
    try:
        if not checked:
            _NUMBERS.validate_python(flat)
        return np.fromiter(flat, dtype=np.float64, count=len(flat)).reshape(len(rows), width)
    except (ValidationError, ValueError, OverflowError, TypeError):  # not numbers
        return None


def _now() -> str:
    """The current UTC time in ISO 8601, at half the cost of ``isoformat()``."""
    return orjson.dumps(datetime.now(UTC))[1:-1].decode()


def _sticky_rows(router: Router, table: RequestTable) -> list[dict[str, Any]]:
    """The rows the router reads a sticky field from (only the first is read)."""
    key = router.sticky_key
    if key is None or key == "entity_id" or not len(table):
        return []
    if table.records is not None:
        return table.records[:1]
    if table.names is None:
        raise UnprocessableError(
            f"this endpoint routes callers on '{key}', which rows in the model's feature order cannot carry; "
            "send rows by name (instances of objects, dataframe_split or dataframe_records)",
            code="sticky_key_unavailable",
            details={"field": table.field, "sticky_key": key},
        )
    first: Any = table.values[0] if table.values is not None and len(table.values) else ()
    if isinstance(first, np.ndarray):
        first = first.tolist()
    return [dict(zip(table.names, first, strict=False))]


def check_table(table: RequestTable, schema: FeatureSchema) -> None:
    """422 naming the field when a block's columns or tensors do not fit the model's features.

    Unknown and missing names (``dataframe_split.columns``, ``inputs`` tensors), a positional
    tensor under another name than the model's input or of the wrong width, and declared
    datatypes that cannot carry a feature's values. Values themselves are checked when scored.
    """
    if table.values is None:
        return
    if table.names is None:
        expected = schema.tensor_input or "input"
        if table.tensor_name is not None and table.tensor_name != expected:
            raise UnprocessableError(
                f"{table.field}[0].name: unknown input '{table.tensor_name}'; this model takes '{expected}' "
                f"of shape [rows, {len(schema.names)}], or one input per feature",
                code="unknown_input",
                details=[
                    {"field": f"{table.field}[0].name", "message": f"unknown input '{table.tensor_name}'"}
                ],
            )
        if table.tensor_name is not None and len(table.values) and len(table.values[0]) != len(schema.names):
            raise UnprocessableError(
                f"{table.field}[0].shape: [rows, {len(table.values[0])}], and the model takes "
                f"{len(schema.names)} features: {', '.join(schema.names[:20])}",
                code="shape_mismatch",
                details=[{"field": f"{table.field}[0].shape", "message": "wrong number of features"}],
            )
        if table.datatypes:
            _check_datatype(table.datatypes[0], schema.features, f"{table.field}[0].datatype")
        return
    fields = table.name_fields or [f"{table.field}.{name}" for name in table.names]
    known = set(schema.names)
    problems = [
        {"field": field, "message": f"'{name}' is not a feature of this model"}
        for name, field in zip(table.names, fields, strict=True)
        if name not in known
    ]
    given = set(table.names)
    problems += [
        {"field": table.field.split(".")[0], "message": f"'{name}' is missing"}
        for name in schema.names
        if name not in given
    ]
    if problems:
        first = problems[0]
        code = "unknown_input" if "not a feature" in first["message"] else "missing_input"
        raise UnprocessableError(
            f"{first['field']}: {first['message']} (features: {', '.join(schema.names[:20])})",
            code=code,
            details=problems[:MAX_REPORTED_PROBLEMS],
        )
    if table.datatypes:
        specs = {spec.name: spec for spec in schema.features}
        for name, datatype, field in zip(table.names, table.datatypes, fields, strict=True):
            _check_datatype(datatype, [specs[name]], field.removesuffix(".name") + ".datatype")


def _check_datatype(datatype: str, features: Sequence[FeatureSpec], field: str) -> None:
    for spec in features:
        if datatype not in ACCEPTED_FOR_FEATURE[spec.dtype]:
            raise UnprocessableError(
                f"{field}: {datatype} cannot carry feature '{spec.name}' ({spec.dtype}); "
                f"use {DATATYPE_OF_FEATURE[spec.dtype]}",
                code="wrong_datatype",
                details=[{"field": field, "message": f"{datatype} for a {spec.dtype} feature"}],
            )


@dataclass(slots=True)
class Served:
    """What one request was answered with, before a protocol shapes it.

    ``columns`` on the columnar path, else ``rows`` (one answer per request row, the serving
    rules' ``excluded``/``fallback``/``decision``/``item``/``explanation`` keys included).
    """

    model: str
    version: ModelVersion
    variant: str
    request_id: str
    cached: bool = False
    rows: list[dict[str, Any]] | None = None
    columns: PredictionColumns | None = None

    def row_answers(self) -> list[dict[str, Any]]:
        """One answer object per row (built from the columns on the columnar path)."""
        if self.rows is not None:
            return self.rows
        return self.columns.as_rows() if self.columns is not None else []


def rows_response(served: Served) -> PredictResponse:
    """mlambda's own answer: one object per row."""
    return PredictResponse(
        model=served.model,
        version=served.version.version,
        variant=served.variant,
        request_id=served.request_id,
        cached=served.cached,
        predictions=served.row_answers(),
    )


_MODEL_KEYS = frozenset(("label", "value", "probabilities"))


def mlflow_response(served: Served) -> MlflowResponse:
    """MLflow's answer (``predictions``: a label or value per row) with our columns beside it."""
    answer = MlflowResponse(
        model=served.model,
        version=served.version.version,
        variant=served.variant,
        request_id=served.request_id,
        cached=served.cached,
    )
    signature = served.version.signature
    classes = [str(label) for label in signature.class_labels] if signature.class_labels else None
    columns = served.columns
    if columns is not None:
        answer["predictions"] = columns.label_list()
        if columns.probabilities is not None:
            answer["classes"] = columns.classes or []
            answer["probabilities"] = columns.probabilities
        return answer
    rows = served.rows or []
    key = "value" if signature.task == "regression" else "label"
    answer["predictions"] = [row.get(key) for row in rows]
    if signature.task == "classification":
        probabilities = [row.get("probabilities") for row in rows]
        names = classes or next((list(p) for p in probabilities if p), [])
        answer["classes"] = names
        answer["probabilities"] = [None if p is None else [p.get(c) for c in names] for p in probabilities]
    annotations = [{k: v for k, v in row.items() if k not in _MODEL_KEYS} for row in rows]
    if any(annotations):
        answer["annotations"] = annotations
    return answer


@dataclass(slots=True)
class _Scored:
    """Model answers for the rows that were scored, and how they were obtained."""

    predictions: list[dict[str, Any]]
    cache_hits: int
    model_ms: float


class InferenceService:
    """``predict(model, request)``: the whole online path behind ``POST /models/{name}/predict``."""

    def __init__(
        self,
        catalog: ModelCatalog,
        models: ModelProvider,
        log: PredictionLog,
        *,
        features: OnlineFeatureSource | None = None,
        tracking: EntityTracking | None = None,
        items: ItemMetadataSource | None = None,
        cache: PredictionCache | None = None,
        explainers: Explainers | None = None,
        max_instances: int = 1000,
        max_body_bytes: int = 6 * 1024 * 1024,
        config_ttl_seconds: float = 10.0,
        rng: random.Random | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._catalog = CatalogCache(catalog, config_ttl_seconds, clock)
        self._models = models
        self._log = log
        self._features = features
        self._tracking = tracking
        self._items = items
        self._cache = cache
        self._explainers = explainers
        self.max_instances = max_instances
        self.max_body_bytes = max_body_bytes
        self._rng = rng or random.Random()
        self._prepared: dict[tuple[str, int], PreparedVersion] = {}
        self._lock = threading.Lock()

    @classmethod
    def from_settings(cls, settings: PredictSettings) -> InferenceService:
        """The service on the stores template.yaml gives the predict function."""
        from mlambda.adapters.dynamodb import DynamoTable
        from mlambda.adapters.features import DynamoFeatureStore, DynamoItemStore
        from mlambda.adapters.model_sessions import ModelSessions
        from mlambda.adapters.prediction_cache import PredictionCacheTable
        from mlambda.adapters.registry import DynamoModelCatalog
        from mlambda.adapters.s3 import ObjectStore
        from mlambda.adapters.tracking import DynamoTrackingStore

        artifacts = ObjectStore(settings.artifacts_bucket, settings)
        return cls(
            DynamoModelCatalog(DynamoTable(settings.registry_table, settings)),
            ModelSessions(
                artifacts,
                max_models=settings.model_cache_max_models,
                max_bytes=settings.model_cache_max_bytes,
                intra_op_threads=settings.intra_op_threads,
            ),
            PredictionLog(overflow=ObjectStore(settings.data_bucket, settings)),
            features=DynamoFeatureStore(DynamoTable(settings.features_table, settings)),
            tracking=DynamoTrackingStore(DynamoTable(settings.tracking_table, settings)),
            items=DynamoItemStore(DynamoTable(settings.features_table, settings)),
            cache=PredictionCache(
                PredictionCacheTable(DynamoTable(settings.prediction_cache_table, settings))
            ),
            explainers=Explainers(artifacts),
            max_instances=settings.max_instances,
            max_body_bytes=settings.max_body_bytes,
            config_ttl_seconds=settings.config_ttl_seconds,
        )

    def predict(self, model: str, request: PredictRequest) -> PredictResponse | MlflowResponse:
        """Score the request with the variant it is routed to, answered in the shape of its format."""
        served = self.serve(
            model,
            request.table,
            entity_id=request.entity_id,
            variant=request.variant,
            request_id=request.request_id,
            explain=request.explain_options,
        )
        return mlflow_response(served) if request.mlflow_shaped else rows_response(served)

    def serve(
        self,
        model: str,
        table: RequestTable,
        *,
        entity_id: str | None = None,
        variant: str | None = None,
        version_ref: str | None = None,
        request_id: str | None = None,
        explain: ExplainOptions | None = None,
    ) -> Served:
        """Score ``table`` with the variant it is routed to (or the version ``version_ref`` names).

        Every protocol comes here; see the module doc for the policies. A block of values
        (``dataframe_split``, tensors) that needs nothing per row (no entity, routing fields,
        cache, decision or enrichment rule, explanation) is scored and logged as columns.
        """
        started = time.perf_counter()
        if len(table) > self.max_instances:
            raise PayloadTooLargeError(
                f"{len(table)} instances, over the limit of {self.max_instances} per request",
                code="too_many_instances",
                details={"instances": len(table), "limit": self.max_instances},
            )
        endpoint = self._catalog.endpoint(model)
        router = endpoint.router
        if version_ref is not None:
            chosen = Variant(name=version_ref, target=version_ref, weight=100)
            version = self._catalog.resolve(model, version_ref)
        else:
            chosen = router.choose(
                override=variant,
                sticky=router.sticky_value(entity_id, _sticky_rows(router, table)),
                rng=self._rng,
            )
            version = self._resolve(model, chosen, configured=endpoint.configured)
        # From the OS, not a PRNG seeded at import: instances restored from one snapshot
        # (SnapStart) would repeat a PRNG's ids, and ids key the archive's dedupe.
        request_id = request_id or os.urandom(16).hex()
        rules = endpoint.rules
        answer = Served(model, version, chosen.name, request_id)

        if entity_id is not None and rules.honour_opt_out and self._opted_out(entity_id):
            metrics.add_metric(name="OptedOut", unit=MetricUnit.Count, value=1)
            answer.rows = opted_out_answer(rules, len(table))
            return answer

        prepared = self._prepare(version)
        check_table(table, prepared.schema)
        if (
            table.values is not None
            and entity_id is None
            and explain is None
            and not endpoint.routing_fields
            and not (endpoint.cache.enabled and self._cache is not None)
            and rules.decision is None
            and rules.enrich_items is None
        ):
            matrix = prepared.block_matrix(table)
            if matrix is not None:
                self._serve_block(
                    answer, prepared=prepared, matrix=matrix, router=router, rules=rules, started=started
                )
                return answer

        rows = table.as_records(prepared.names)
        if endpoint.routing_fields:
            excluded = self._excluded(rules, entity_id, rows)
            rows = [
                {k: v for k, v in row.items() if k not in endpoint.routing_fields or k in prepared.name_set}
                for row in rows
            ]
        else:
            excluded = set()
        if entity_id is not None:
            rows = self._with_online_features(prepared, entity_id, rows)
        scored_index = [i for i in range(len(rows)) if i not in excluded] if excluded else None
        scored_rows = rows if scored_index is None else [rows[i] for i in scored_index]

        served: list[dict[str, Any]]
        model_ms = 0.0
        cache_hits: int | None = None
        if scored_rows:
            scored = self._score(prepared, scored_rows, endpoint, fallback_rules=rules, field=table.field)
            model_ms = scored.model_ms
            answer.cached = scored.cache_hits == len(scored_rows)
            if endpoint.cache.enabled and self._cache is not None:
                cache_hits = scored.cache_hits
            answers = scored.predictions
        else:
            answers = []
        if scored_index is None:
            served = answers
        else:
            served = [{"excluded": EXCLUDED_RECENTLY_SEEN} for _ in rows]
            for position, prediction in zip(scored_index, answers, strict=True):
                served[position] = prediction
            metrics.add_metric(name="Excluded", unit=MetricUnit.Count, value=len(excluded))
        served = with_decisions(rules, served)
        if rules.enrich_items is not None:
            served = self._enrich(rules, table.as_records(prepared.names), served)

        latency_ms = (time.perf_counter() - started) * 1000
        logged = range(len(rows)) if scored_index is None else scored_index
        shadow = None
        if router.shadow is not None and scored_rows and router.shadow_sampled(self._rng):
            shadow = self._shadow(model, router.shadow.target, scored_rows)
        self._log.publish(
            LoggedRequest(
                request_id=request_id,
                model=model,
                timestamp=_now(),
                entity_id=entity_id,
                positions=logged,
                inputs=scored_rows,
                served=Scored(
                    version.version,
                    chosen.name,
                    latency_ms,
                    served if scored_index is None else [served[i] for i in scored_index],
                ),
                shadow=shadow,
            )
        )

        figures: dict[str, float] = {"Predictions": len(rows), "LatencyMs": latency_ms, "ModelMs": model_ms}
        if cache_hits is not None:
            figures["CacheHits"] = cache_hits
            figures["CacheMisses"] = len(scored_rows) - cache_hits
        if explain is not None:
            explain_started = time.perf_counter()
            served = self._explained(prepared, rows, served, explain)
            figures["ExplainMs"] = (time.perf_counter() - explain_started) * 1000
        emit_request_metrics(model, chosen.name, figures)
        answer.rows = served
        return answer

    def _serve_block(
        self,
        answer: Served,
        *,
        prepared: PreparedVersion,
        matrix: np.ndarray,
        router: Router,
        rules: ServingRules,
        started: float,
    ) -> None:
        """The columnar path: one model run on the block, answered and logged as columns."""
        version = prepared.version
        timeout = rules.fallback.timeout_ms if rules.fallback else None
        model_started = time.perf_counter()
        try:
            outputs = self._models.get(version).run(
                prepared.matrix_feed(matrix), prepared.outputs, timeout_ms=timeout
            )
        except UpstreamError as exc:
            fallback = self._fallback(rules, exc, len(matrix))
            answer.rows = fallback
            served: PredictionColumns | list[dict[str, Any]] = fallback
        else:
            answer.columns = served = prediction_columns(version.signature, outputs)
        model_ms = (time.perf_counter() - model_started) * 1000
        latency_ms = (time.perf_counter() - started) * 1000
        inputs = InputBlock(prepared.names, matrix)
        shadow = None
        if router.shadow is not None and router.shadow_sampled(self._rng):
            shadow = self._shadow(answer.model, router.shadow.target, inputs)
        self._log.publish(
            LoggedRequest(
                request_id=answer.request_id,
                model=answer.model,
                timestamp=_now(),
                entity_id=None,
                positions=range(len(matrix)),
                inputs=inputs,
                served=Scored(version.version, answer.variant, latency_ms, served),
                shadow=shadow,
            )
        )
        emit_request_metrics(
            answer.model,
            answer.variant,
            {"Predictions": len(matrix), "LatencyMs": latency_ms, "ModelMs": model_ms},
        )

    def settle(self, timeout: float = 10.0) -> bool:
        """Wait for the writes the requests left off their path (prediction cache entries); False on timeout."""
        return True if self._cache is None else self._cache.flush(timeout)

    def version_for(self, model: str, ref: str | None) -> ModelVersion:
        """The version ``ref`` names, or without one the version the endpoint's first variant serves."""
        if ref is not None:
            return self._catalog.resolve(model, ref)
        endpoint = self._catalog.endpoint(model)
        return self._resolve(model, endpoint.router.variants[0], configured=endpoint.configured)

    def load(self, version: ModelVersion) -> None:
        """Load (or find loaded) the version's model; its MlambdaError when it cannot be served."""
        self._models.get(version)

    # ------------------------------------------------------------------ steps

    def _resolve(self, model: str, variant: Variant, *, configured: bool) -> ModelVersion:
        try:
            return self._catalog.resolve(model, variant.target)
        except NotFoundError as exc:
            if variant.target == PRODUCTION and not configured:
                raise NotFoundError(
                    f"model '{model}' does not exist or has no production alias",
                    code="no_production_alias",
                    details={"model": model},
                ) from exc
            raise

    def _prepare(self, version: ModelVersion) -> PreparedVersion:
        key = (version.model, version.version)
        prepared = self._prepared.get(key)
        if prepared is None or prepared.version is not version:
            prepared = PreparedVersion(version)
            with self._lock:
                self._prepared[key] = prepared
        return prepared

    def _opted_out(self, entity_id: str) -> bool:
        if self._tracking is None:
            return False
        try:
            return self._tracking.is_opted_out(entity_id)
        except MlambdaError as exc:
            raise UpstreamError(
                "cannot tell whether the entity opted out; refusing to guess",
                code="tracking_unavailable",
            ) from exc

    def _excluded(
        self, rules: ServingRules, entity_id: str | None, rows: Sequence[Mapping[str, Any]]
    ) -> set[int]:
        rule = rules.exclude_recently_seen
        if rule is None or entity_id is None or self._tracking is None:
            return set()
        try:
            seen = self._tracking.seen_items(entity_id, rule.hours, rule.interactions)
        except MlambdaError as exc:
            metrics.add_metric(name="RuleLookupErrors", unit=MetricUnit.Count, value=1)
            logger.warning("recently-seen lookup failed; serving unfiltered", extra={"error": exc.message})
            return set()
        return excluded_rows(rule, rows, seen)

    def _with_online_features(
        self, prepared: PreparedVersion, entity_id: str, rows: list[dict[str, Any]]
    ) -> list[dict[str, Any]]:
        if self._features is None:
            return rows
        names = prepared.name_set
        missing = sorted({name for row in rows for name in names if name not in row})
        if not missing:
            return rows
        try:
            stored = self._features.latest(entity_id, missing)
        except MlambdaError as exc:
            raise UpstreamError(
                "online feature store unavailable and the request lacks features",
                code="features_unavailable",
                details={"missing": missing},
            ) from exc
        if not stored:
            return rows
        return [{**{k: v for k, v in stored.items() if k in names}, **row} for row in rows]

    def _score(
        self,
        prepared: PreparedVersion,
        rows: list[dict[str, Any]],
        endpoint: Endpoint,
        *,
        fallback_rules: ServingRules,
        field: str = "instances",
    ) -> _Scored:
        feed = prepared.feed(rows, field)
        version = prepared.version
        keys: list[str] = []
        hits: dict[str, dict[str, Any]] = {}
        if endpoint.cache.enabled and self._cache is not None:
            keys = [cache_key(version.model, version.version, prepared.schema, row) for row in rows]
            hits = self._cache.lookup(keys)
            if all(k in hits for k in keys):
                return _Scored([dict(hits[k]) for k in keys], len(keys), 0.0)
        misses = [i for i, k in enumerate(keys) if k not in hits] if hits else None
        if misses is not None:
            feed = {name: array[misses] for name, array in feed.items()}
        timeout = fallback_rules.fallback.timeout_ms if fallback_rules.fallback else None
        started = time.perf_counter()
        try:
            outputs = self._models.get(version).run(feed, prepared.outputs, timeout_ms=timeout)
        except UpstreamError as exc:
            return _Scored(
                self._fallback(fallback_rules, exc, len(rows)), 0, (time.perf_counter() - started) * 1000
            )
        model_ms = (time.perf_counter() - started) * 1000
        fresh = predictions(version.signature, outputs)
        if not keys:
            return _Scored(fresh, 0, model_ms)
        if misses is None:
            misses = list(range(len(rows)))
        new_entries = {keys[i]: answer for i, answer in zip(misses, fresh, strict=True)}
        if self._cache is not None:
            self._cache.store(new_entries, endpoint.cache.ttl_seconds)
        merged = [dict(hits[k]) if k in hits else new_entries[k] for k in keys]
        return _Scored(merged, len(keys) - len(misses), model_ms)

    def _fallback(self, rules: ServingRules, exc: UpstreamError, rows: int) -> list[dict[str, Any]]:
        """The endpoint's fallback for every row when the model failed or timed out; ``exc`` otherwise."""
        if exc.code not in ("model_failed", "model_timeout"):
            raise exc
        answer = fallback_prediction(rules, exc.code)
        if answer is None:
            raise exc
        metrics.add_metric(name="Fallbacks", unit=MetricUnit.Count, value=rows)
        logger.warning("model failed; serving the fallback", extra={"code": exc.code, "error": exc.message})
        return [dict(answer) for _ in range(rows)]

    def _explained(
        self,
        prepared: PreparedVersion,
        rows: list[dict[str, Any]],
        served: list[dict[str, Any]],
        options: ExplainOptions,
    ) -> list[dict[str, Any]]:
        """``served`` with an ``explanation`` on every prediction the model made (not on excluded or fallback rows).

        After the prediction log: explanations go to the caller only. Attributions are computed on
        the same feature matrix the model scored (``mlambda.services.inference.explain``).
        """
        version = prepared.version
        if self._explainers is None:
            raise ConflictError("this deployment does not serve explanations", code="explainer_unavailable")
        explainer = self._explainers.get(version)
        signature = version.signature
        wanted = [
            i for i, answer in enumerate(served) if "excluded" not in answer and "fallback" not in answer
        ]
        if not wanted:
            return served
        explainer.check_budget(len(wanted), options.output)
        labels = signature.class_labels
        model = self._models.get(version)
        explanations = explain_feed(
            explainer,
            version,
            prepared.feed([rows[i] for i in wanted]),
            [served[i]["label"] for i in wanted] if signature.task == "classification" else None,
            lambda feed: model.run(feed, prepared.outputs),
            class_index=explainer.class_index(options.class_label, labels),
            output=options.output,
        )
        answers = explanations.as_json(prepared.names, labels)
        explained = list(served)
        for position, answer in zip(wanted, answers, strict=True):
            explained[position] = {**served[position], "explanation": answer}
        return explained

    def _shadow(self, model: str, target: str, rows: list[dict[str, Any]] | InputBlock) -> Scored | None:
        """Score the shadow variant on the scored rows; its failures never reach the caller.

        A block is fed as it is when the shadow takes the same features, else by name.
        """
        started = time.perf_counter()
        try:
            version = self._catalog.resolve(model, target)
            prepared = self._prepare(version)
            if isinstance(rows, InputBlock):
                block = rows
                feed = (
                    prepared.matrix_feed(block.matrix.astype(prepared.dtype))
                    if block.names == prepared.names and prepared.vectorised
                    else prepared.feed(block.records())
                )
            else:
                feed = prepared.feed(rows)
            outputs = self._models.get(version).run(feed, prepared.outputs)
            answers = prediction_columns(version.signature, outputs)
        except MlambdaError as exc:
            metrics.add_metric(name="ShadowErrors", unit=MetricUnit.Count, value=1)
            logger.warning("shadow variant failed", extra={"target": target, "error": exc.message})
            return None
        metrics.add_metric(name="ShadowPredictions", unit=MetricUnit.Count, value=len(answers))
        scored: PredictionColumns | list[dict[str, Any]] = (
            answers if isinstance(rows, InputBlock) else answers.as_rows()
        )
        return Scored(version.version, f"shadow:{target}", (time.perf_counter() - started) * 1000, scored)

    def _enrich(
        self, rules: ServingRules, rows: Sequence[Mapping[str, Any]], served: list[dict[str, Any]]
    ) -> list[dict[str, Any]]:
        """Item metadata on each prediction; a failing metadata store serves them unenriched (counted)."""
        rule = rules.enrich_items
        if rule is None or self._items is None:
            return served
        wanted = item_ids(rule, rows)
        if not wanted:
            return served
        try:
            metadata = self._items.get_many(wanted)
        except MlambdaError as exc:
            metrics.add_metric(name="RuleLookupErrors", unit=MetricUnit.Count, value=1)
            logger.warning("item metadata lookup failed; serving unenriched", extra={"error": exc.message})
            return served
        return enriched(rule, rows, served, metadata)
