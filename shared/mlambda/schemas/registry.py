"""The registry's entities: registered models, immutable versions, aliases, endpoint configs, history.

Every other function asks the registry what to serve, so these models are the contract between
registry (writes), predict, batch and monitor (reads). Stored in the registry table as:

===================  ======================  ==================================
pk                   sk                      item
===================  ======================  ==================================
``model#<name>``     ``meta``                RegisteredModel (gsi1pk ``models``, gsi1sk name)
``model#<name>``     ``version#<%010d>``     ModelVersion (READY) or PendingVersion (PENDING_VALIDATION, FAILED)
``model#<name>``     ``alias#<alias>``       Alias
``model#<name>``     ``endpoint``            EndpointConfig
``model#<name>``     ``history#<iso>#<id>``  HistoryEntry (append-only)
``model#<name>``     ``monitoring#<iso>``    monitoring summary (monitor writes)
===================  ======================  ==================================
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import datetime
from typing import Annotated, Any, Final, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator, model_validator

from mlambda.schemas.bounds import FiniteFloat, Int64, JsonObject, Name

MODEL_NAME_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,62}$"
ALIAS_PATTERN = r"^[a-z][a-z0-9_-]{0,31}$"
PRODUCTION = "production"
STAGING = "staging"

ModelName = Annotated[str, Field(pattern=MODEL_NAME_PATTERN, description="lower-case, digits, '-' and '_'")]
AliasName = Annotated[str, Field(pattern=ALIAS_PATTERN)]
MAX_VERSION: Final = 9_999_999_999
"""Version numbers fit the zero-padded sort key (``version#%010d``)."""
VersionNumber = Annotated[int, Field(ge=1, le=MAX_VERSION)]
Decision = Annotated[str, StringConstraints(min_length=1, max_length=64)]
TensorType = Literal["float32", "float64", "int64", "int32", "string", "bool"]
FeatureType = Literal["float", "int", "string", "bool"]
Task = Literal["classification", "regression"]
VersionStatus = Literal["PENDING_VALIDATION", "READY", "FAILED"]
PENDING_VALIDATION: Final = "PENDING_VALIDATION"
READY: Final = "READY"
FAILED: Final = "FAILED"
Interaction = Literal["click", "view", "render"]
SEEN_INTERACTIONS: tuple[Interaction, ...] = ("view", "render")


class TensorSpec(BaseModel):
    """One ONNX input or output: name, element type, shape (None for a dynamic dimension)."""

    model_config = ConfigDict(frozen=True)

    name: str
    dtype: str = Field(description="numpy-style element type, or 'seq(map)' for ZipMap outputs")
    shape: list[int | None] = Field(default_factory=list)


class Signature(BaseModel):
    """What the ONNX graph takes and gives, read from the artifact on register."""

    model_config = ConfigDict(frozen=True)

    inputs: list[TensorSpec]
    outputs: list[TensorSpec]
    task: Task
    class_labels: list[int] | list[str] | None = Field(
        None, description="classifiers: labels in probability order"
    )
    label_output: str | None = Field(None, description="classifiers: the output holding predicted labels")
    probability_output: str | None = Field(None, description="classifiers: output of class probabilities")
    value_output: str | None = Field(None, description="regressors: the output holding predicted values")


class FeatureSpec(BaseModel):
    """One feature clients send by name."""

    model_config = ConfigDict(frozen=True)

    name: str = Field(min_length=1, max_length=128)
    dtype: FeatureType


class FeatureSchema(BaseModel):
    """Ordered features and how they map onto the graph's inputs.

    ``tensor``: one 2-D input whose columns are ``features`` in order (names declared at register
    time or taken from the reference sample's columns). ``per_feature``: one input per feature,
    named like the feature, shape [N, 1].
    """

    model_config = ConfigDict(frozen=True)

    mode: Literal["tensor", "per_feature"]
    features: list[FeatureSpec] = Field(min_length=1)
    tensor_input: str | None = Field(None, description="tensor mode: the input's name")
    tensor_dtype: TensorType | None = Field(None, description="tensor mode: the input's element type")

    @property
    def names(self) -> list[str]:
        """Feature names in order."""
        return [feature.name for feature in self.features]


class SmokeCase(BaseModel):
    """One recorded input row and the output the version gave on register."""

    inputs: dict[str, Any]
    expected: dict[str, Any] = Field(description="{'label': ..., 'probabilities': [...]} or {'value': ...}")


class RegisteredModel(BaseModel):
    """A named model: the group its versions belong to."""

    name: ModelName
    description: str = Field("", max_length=2000)
    owner: str = Field("", max_length=128)
    tags: dict[str, str] = Field(default_factory=dict)
    require_evaluation: bool = Field(
        False,
        description="production only takes a version with a completed human evaluation "
        "(POST /models/{name}/evaluations, then .../complete)",
    )
    latest_version: int = 0
    created_at: datetime
    updated_at: datetime


class VersionWarning(BaseModel):
    """Something a READY version's owner should know (the version still serves)."""

    code: str
    message: str


class MetricInterval(BaseModel):
    """A metric measured on the reference sample, with its 95% interval."""

    value: float
    low: float | None = None
    high: float | None = None


class ReferenceSummary(BaseModel):
    """The reference sample as validation understood it: where a copy is, each column's role, and
    the model's quality on its rows (the baseline monitoring compares live quality with)."""

    sample_key: str = Field(description="artifacts-bucket key of the sample's copy (rows for explanations)")
    rows: int = Field(description="rows in the sample")
    scored_rows: int = Field(description="rows with every feature present, scored by the model")
    target: str | None = Field(None, description="the column holding the true label or value")
    excluded: list[str] = Field(
        default_factory=list, description="columns that are neither feature nor target"
    )
    labelled_rows: int = Field(0, description="scored rows whose target the model's metrics could use")
    metrics: dict[str, MetricInterval] = Field(
        default_factory=dict, description="the model's quality on the reference rows (held-out data)"
    )


class ValidationCheck(BaseModel):
    """One step of validating a version (in order: upload, structure, loads, reference, ...)."""

    name: str
    passed: bool
    message: str


class ValidationReport(BaseModel):
    """What the validator did to a version, and how long it took."""

    checks: list[ValidationCheck] = Field(default_factory=list)
    started_at: datetime
    finished_at: datetime
    duration_ms: float = Field(description="wall time of the validation")
    attempts: int = Field(1, description="deliveries of the validation request (retries after crashes)")


class VersionFailure(BaseModel):
    """Why a version is FAILED: an error code, a message naming the problem, and its details."""

    code: str
    message: str
    details: Any = None


class ModelVersion(BaseModel):
    """One immutable, validated (READY) version of a model: the only kind anything serves."""

    model: ModelName
    version: int = Field(ge=1)
    status: Literal["READY"] = READY
    artifact_key: str = Field(description="key of the ONNX file in the artifacts bucket")
    artifact_sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    size_bytes: int = Field(ge=1)
    signature: Signature
    feature_schema: FeatureSchema
    metrics: dict[str, float] = Field(default_factory=dict)
    params: dict[str, Any] = Field(default_factory=dict)
    training_data_uri: str | None = None
    training_data_version: str | None = None
    source_code_version: str | None = None
    owner: str = ""
    tags: dict[str, str] = Field(default_factory=dict)
    description: str = ""
    reference_profile_key: str | None = Field(
        None, description="artifacts-bucket key of the reference profile JSON"
    )
    reference: ReferenceSummary | None = Field(None, description="the reference sample, when one was given")
    explainer_key: str | None = Field(
        None,
        description="artifacts-bucket key of the explainer (.npz) built from the reference sample; "
        "None: predictions of this version cannot be explained",
    )
    smoke_cases: list[SmokeCase] = Field(default_factory=list, max_length=50)
    warnings: list[VersionWarning] = Field(default_factory=list)
    validation: ValidationReport | None = None
    created_at: datetime
    created_by: str

    @property
    def ref(self) -> str:
        """How variants name this version: ``v<N>``."""
        return f"v{self.version}"


class PendingVersion(BaseModel):
    """A version number that is not READY: waiting for the validator, or FAILED (never servable)."""

    model: ModelName
    version: int = Field(ge=1)
    status: Literal["PENDING_VALIDATION", "FAILED"] = PENDING_VALIDATION
    request: dict[str, Any] = Field(description="the register request, as the validator reads it")
    owner: str = ""
    failure: VersionFailure | None = Field(None, description="FAILED: why")
    validation: ValidationReport | None = None
    created_at: datetime
    created_by: str
    updated_at: datetime


VersionRecord = Annotated[ModelVersion | PendingVersion, Field(discriminator="status")]
"""A stored version whatever its status: READY (ModelVersion) or not (PendingVersion)."""


class Alias(BaseModel):
    """A movable name (``production``, ``staging``...) pointing at exactly one version."""

    model: ModelName
    alias: AliasName
    version: int = Field(ge=1)
    previous_version: int | None = None
    updated_at: datetime
    updated_by: str


VERSION_REF = re.compile(r"^v?(\d{1,10})$")


def parse_version_ref(ref: str) -> int | None:
    """``"v3"`` or ``"3"`` -> 3; an alias name -> None."""
    match = VERSION_REF.match(ref)
    return int(match.group(1)) if match else None


class Variant(BaseModel):
    """One production variant of an endpoint: an alias or a version, with its traffic share."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=r"^[A-Za-z0-9_-]{1,32}$")
    target: str = Field(description="alias name or version ('v3')", min_length=1, max_length=40)
    weight: int = Field(ge=0, le=100)


class Shadow(BaseModel):
    """A variant scored on a sample of traffic; its output is logged, never returned."""

    model_config = ConfigDict(extra="forbid")

    target: str = Field(min_length=1, max_length=40)
    sample_percent: float = Field(gt=0, le=100)


class CachePolicy(BaseModel):
    """Optional prediction cache keyed by (version, normalised features)."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = False
    ttl_seconds: int = Field(300, ge=1, le=7 * 24 * 3600)


class ExcludeRecentlySeen(BaseModel):
    """Don't return an item the entity saw (rendered/viewed...) in the last ``hours``."""

    model_config = ConfigDict(extra="forbid")

    item_field: Name = Field(description="the instance field holding the item id")
    hours: float = Field(gt=0, le=24 * 30)
    interactions: list[Interaction] = Field(
        default_factory=lambda: list(SEEN_INTERACTIONS), min_length=1, max_length=3
    )


class Threshold(BaseModel):
    """Scores at or above ``min_score`` map to ``decision`` (the highest matching wins)."""

    model_config = ConfigDict(extra="forbid")

    min_score: FiniteFloat
    decision: Decision


class DecisionRule(BaseModel):
    """Map a score (a class probability, or the regression value) to a decision label."""

    model_config = ConfigDict(extra="forbid")

    score_of_class: Int64 | Name | None = Field(
        None, description="classifiers: whose probability is the score"
    )
    thresholds: list[Threshold] = Field(min_length=1, max_length=20)
    default: Decision = Field("none", description="decision below every threshold")

    @field_validator("thresholds")
    @classmethod
    def _distinct(cls, thresholds: list[Threshold]) -> list[Threshold]:
        scores = [t.min_score for t in thresholds]
        if len(set(scores)) != len(scores):
            raise ValueError("thresholds must have distinct min_score values")
        return sorted(thresholds, key=lambda t: t.min_score)


class Fallback(BaseModel):
    """What to answer when the model fails or exceeds ``timeout_ms``."""

    model_config = ConfigDict(extra="forbid")

    response: JsonObject = Field(
        description="returned as each instance's prediction: JSON, at most 10 levels deep and 64 KB"
    )
    timeout_ms: int = Field(1000, ge=1, le=30_000)


class EnrichItems(BaseModel):
    """Add the item's metadata (from ``POST /items``) to each prediction of an instance naming an item."""

    model_config = ConfigDict(extra="forbid")

    item_field: str = Field(
        min_length=1, max_length=128, description="the instance field holding the item id"
    )
    attributes: list[Name] = Field(
        default_factory=list, max_length=50, description="attributes to return; empty: all of them"
    )


class ServingRules(BaseModel):
    """Rules applied around the model at serving time: data, validated on write, never code."""

    model_config = ConfigDict(extra="forbid")

    exclude_recently_seen: ExcludeRecentlySeen | None = None
    enrich_items: EnrichItems | None = None
    decision: DecisionRule | None = None
    fallback: Fallback | None = None
    honour_opt_out: bool = Field(True, description="entities that opted out get the fallback (or 403)")


def check_variants(variants: Sequence[Variant]) -> None:
    """A traffic split is valid when its weights sum to 100 and its variant names are unique."""
    total = sum(v.weight for v in variants)
    if total != 100:
        raise ValueError(f"variant weights must sum to 100, got {total}")
    names = [v.name for v in variants]
    if len(set(names)) != len(names):
        raise ValueError("variant names must be unique")


class EndpointConfig(BaseModel):
    """How ``POST /models/{name}/predict`` serves a model."""

    model_config = ConfigDict(extra="forbid")

    model: ModelName
    revision: int = Field(
        0,
        ge=0,
        description="increases by one with every write; send it back in If-Match to change the config",
    )
    variants: list[Variant] = Field(min_length=1, max_length=10)
    shadow: Shadow | None = None
    sticky_key: str | None = Field(
        None,
        min_length=1,
        max_length=64,
        description="request field whose value pins a caller to a variant (e.g. 'entity_id', 'user_id')",
    )
    cache: CachePolicy = Field(default_factory=CachePolicy)
    rules: ServingRules = Field(default_factory=ServingRules)
    updated_at: datetime | None = None
    updated_by: str | None = None

    @model_validator(mode="after")
    def _weights(self) -> EndpointConfig:
        check_variants(self.variants)
        return self


HistoryAction = Literal[
    "model_created",
    "model_updated",
    "model_deleted",
    "version_registered",
    "version_ready",
    "version_failed",
    "alias_moved",
    "alias_deleted",
    "rollback",
    "endpoint_changed",
    "evaluation_completed",
]


class HistoryEntry(BaseModel):
    """One change, appended, never edited: who, when, what, from, to, why."""

    model: ModelName
    at: datetime
    actor: str
    action: HistoryAction
    alias: str | None = None
    from_version: int | None = None
    to_version: int | None = None
    reason: str | None = None
    details: dict[str, Any] = Field(default_factory=dict)
