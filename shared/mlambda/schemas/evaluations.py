"""Human evaluations: a sample of rows scored by one version, judged by people, summarised and
published to the version in the registry.

An evaluation is created from the version's reference sample, an uploaded CSV/Parquet file,
rows sent in the request, or archived traffic of a time window; each row carries the input, the
version's prediction and (when the version has an explainer) its explanation. Evaluators record
one verdict per (row, evaluator): ``correct`` or ``incorrect``, optionally the right label
(classifiers) or value (regressors) and a comment. Sending the same verdict again changes
nothing; a different one replaces the evaluator's previous verdict and every revision is kept.

Stored in the evaluations table as:

================  ===================================  ===============================================
pk                sk                                   item
================  ===================================  ===============================================
``eval#<id>``     ``meta``                             Evaluation (gsi1pk ``model#<name>``, gsi1sk
                                                       ``<created_at>#<id>``: a model's evaluations)
``eval#<id>``     ``row#<%05d>``                       EvaluationRow
``eval#<id>``     ``verdict#<%05d>#<evaluator>``       VerdictRecord, the evaluator's current verdict
``eval#<id>``     ``history#<%05d>#<evaluator>#<%04d>``  VerdictRecord, every revision (append-only)
================  ===================================  ===============================================

Completing an evaluation publishes its results to the registry table, beside the version
(``model#<name>`` / ``evaluation#<%010d version>#<id>``: ``PublishedEvaluation``), in the same
transaction that closes it; the production gate reads them there.
"""

from __future__ import annotations

import math
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from mlambda.schemas.bounds import Name, Scalar, dynamo_size

EVALUATION_ID_PATTERN = r"^[0-9a-f]{20}$"
REQUEST_ID_PATTERN = r"^[A-Za-z0-9._:-]{8,128}$"
MAX_EVALUATION_ROWS = 500
"""Rows one evaluation holds at most: what a few people can judge, and what one request scores and explains."""
DEFAULT_EVALUATION_ROWS = 100
MAX_INLINE_ROWS = MAX_EVALUATION_ROWS
MAX_INLINE_ROW_FIELDS = 2000 + 20
"""An inline row's fields at most: the features a model takes, and a few context columns."""
MAX_INLINE_ROW_BYTES = 64 * 1024
"""An inline row's size at most: it is stored with its prediction and explanation in one DynamoDB item."""
MAX_COMMENT_CHARS = 2000
MAX_INSTRUCTIONS_CHARS = 4000
MAX_CONTEXT_COLUMNS = 20
"""Non-feature columns of an uploaded file shown to evaluators beside the inputs (ids, free text)."""
MAX_CONTEXT_CHARS = 1000
MAX_REVISIONS = 100
"""Changes of one evaluator's verdict on one row (each revision is kept)."""
MAX_TRAFFIC_WINDOW_HOURS = 24 * 7
MAX_PAGE = 100
MAX_COMMENTS_SHOWN = 50

EvaluationStatus = Literal["open", "completed", "cancelled"]
VerdictValue = Literal["correct", "incorrect"]
Label = int | str


# ---------------------------------------------------------------------- where the rows come from


class ReferenceSource(BaseModel):
    """The version's reference sample (the copy the registry keeps of the rows given on register)."""

    model_config = ConfigDict(extra="forbid")

    type: Literal["reference"]


class UploadSource(BaseModel):
    """A CSV or Parquet file PUT through ``POST /models/{name}/uploads`` with ``kind: "evaluation"``.

    Feature columns are the model's; other columns (ids, free text) are shown to evaluators as
    context. The upload is deleted once the evaluation holds its rows.
    """

    model_config = ConfigDict(extra="forbid")

    type: Literal["upload"]
    upload_key: str = Field(min_length=1, max_length=1024)


class RowsSource(BaseModel):
    """Rows sent in the request, each ``{feature: value}`` plus optional context fields."""

    model_config = ConfigDict(extra="forbid")

    type: Literal["rows"]
    rows: list[Annotated[dict[Name, Scalar], Field(max_length=MAX_INLINE_ROW_FIELDS)]] = Field(
        min_length=1,
        max_length=MAX_INLINE_ROWS,
        description=f"each row {{field: value}}, at most {MAX_INLINE_ROW_FIELDS} fields "
        f"and {MAX_INLINE_ROW_BYTES // 1024} KB",
    )

    @field_validator("rows")
    @classmethod
    def _row_sizes(cls, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        for index, row in enumerate(rows):
            size = dynamo_size(row)
            if size > MAX_INLINE_ROW_BYTES:
                raise ValueError(
                    f"row {index} takes {size:,} bytes, over the limit of {MAX_INLINE_ROW_BYTES:,}"
                )
        return rows


class TrafficSource(BaseModel):
    """Archived traffic: the inputs the model served in ``[start, end)`` (UTC, at most 7 days)."""

    model_config = ConfigDict(extra="forbid")

    type: Literal["traffic"]
    start: datetime
    end: datetime

    @model_validator(mode="after")
    def _window(self) -> TrafficSource:
        if self.start.tzinfo is None or self.end.tzinfo is None:
            raise ValueError("start and end need a time zone (e.g. 2025-03-01T00:00:00Z)")
        if self.end <= self.start:
            raise ValueError("end must be after start")
        if (self.end - self.start).total_seconds() > MAX_TRAFFIC_WINDOW_HOURS * 3600:
            raise ValueError(f"the window is at most {MAX_TRAFFIC_WINDOW_HOURS // 24} days")
        return self


EvaluationSource = Annotated[
    ReferenceSource | UploadSource | RowsSource | TrafficSource, Field(discriminator="type")
]


class CreateEvaluationRequest(BaseModel):
    """``POST /models/{name}/evaluations``."""

    model_config = ConfigDict(extra="forbid")

    version: int = Field(
        ge=1,
        le=9_999_999_999,
        description="the version that scores the rows (any READY one, promoted or not)",
    )
    source: EvaluationSource
    rows: int = Field(
        DEFAULT_EVALUATION_ROWS,
        ge=1,
        le=MAX_EVALUATION_ROWS,
        description="rows to draw from the source (all of them when it has fewer)",
    )
    sampling: Literal["random", "first"] = Field(
        "random",
        description="'random': a uniform sample (seeded by the evaluation); 'first': in source order",
    )
    name: str = Field("", max_length=200, description="a title for people")
    instructions: str = Field(
        "",
        max_length=MAX_INSTRUCTIONS_CHARS,
        description="what evaluators should judge, shown with every row",
    )
    explain: bool = Field(
        True, description="attach each prediction's explanation (when the version has an explainer)"
    )
    request_id: str | None = Field(
        None,
        pattern=REQUEST_ID_PATTERN,
        description="caller's id: sending the same request again returns the evaluation it created",
    )


# ---------------------------------------------------------------------- stored entities


class RowSource(BaseModel):
    """Where a row came from: its position in the file or sample, or the archived record."""

    row: int | None = Field(None, description="0-based data row of the reference, upload or request")
    record_id: str | None = Field(None, description="traffic: the archived prediction's id")
    served_at: datetime | None = Field(None, description="traffic: when it was served")
    served_version: int | None = Field(None, description="traffic: the version that answered then")


class EvaluationRow(BaseModel):
    """One row to judge: input, prediction and explanation, as the evaluated version gives them."""

    evaluation_id: str
    index: int = Field(ge=0)
    source: RowSource
    inputs: dict[str, Any] = Field(description="the features, as a client would send them")
    context: dict[str, Any] = Field(
        default_factory=dict, description="other columns of the row, shown as text"
    )
    prediction: dict[str, Any] = Field(description="{'label', 'probabilities'} or {'value'}")
    explanation: dict[str, Any] | None = Field(
        None, description="as predict's 'explanation'; None: not explained"
    )
    evaluators: list[str] = Field(default_factory=list, description="who has judged this row")
    revision: int = Field(0, ge=0, description="verdict changes on this row (optimistic concurrency)")


class VerdictRequest(BaseModel):
    """``PUT /evaluations/{id}/rows/{index}/verdict``: the caller's verdict on one row."""

    model_config = ConfigDict(extra="forbid")

    verdict: VerdictValue
    label: Label | None = Field(
        None,
        description="classifiers: the right label (with 'incorrect'; with 'correct' it must be the prediction's)",
    )
    value: float | None = Field(None, description="regressors: the right value (with 'incorrect')")
    comment: str | None = Field(
        None, max_length=MAX_COMMENT_CHARS, description="free text, stored and returned as text (never HTML)"
    )

    @field_validator("label")
    @classmethod
    def _label(cls, label: Label | None) -> Label | None:
        if isinstance(label, str) and not 1 <= len(label) <= 128:
            raise ValueError("label must be 1-128 characters")
        if isinstance(label, int) and not -(2**53) <= label <= 2**53:
            raise ValueError("label is out of range")
        return label

    @field_validator("value")
    @classmethod
    def _finite(cls, value: float | None) -> float | None:
        if value is not None and not (math.isfinite(value) and abs(value) < 1e100):
            raise ValueError("value must be a finite number below 1e100 in magnitude")
        return value

    @field_validator("comment")
    @classmethod
    def _comment(cls, comment: str | None) -> str | None:
        if comment is None:
            return None
        if "\x00" in comment:
            raise ValueError("comment must not contain NUL characters")
        stripped = comment.strip()
        return stripped or None


class VerdictRecord(BaseModel):
    """One evaluator's verdict on one row, at one revision."""

    evaluation_id: str
    row: int = Field(ge=0)
    evaluator: str
    verdict: VerdictValue
    label: Label | None = None
    value: float | None = None
    comment: str | None = None
    revision: int = Field(ge=1)
    at: datetime

    def same_as(self, request: VerdictRequest) -> bool:
        """Whether ``request`` says what this verdict already says (a resend)."""
        return (
            self.verdict == request.verdict
            and _same_label(self.label, request.label)
            and self.value == request.value
            and self.comment == request.comment
        )


def _same_label(a: Label | None, b: Label | None) -> bool:
    return (a is None and b is None) or (a is not None and b is not None and str(a) == str(b))


class VerdictAnswer(BaseModel):
    """What recording a verdict did: the verdict as stored and whether it changed anything."""

    verdict: VerdictRecord
    changed: bool = Field(description="false when the same verdict was sent again (nothing written)")


class ClassFigures(BaseModel):
    """The model against the evaluators for one class."""

    label: str
    predicted: int = Field(description="verdicts on rows the model predicted this class for")
    confirmed: int = Field(description="... of which evaluators said correct")
    precision: float | None = Field(description="confirmed / predicted")
    actual: int = Field(description="verdicts whose right label (the prediction when correct) is this class")
    recall: float | None = Field(
        description="share of those the model predicted: its accuracy on this class, by evaluators' labels"
    )
    f1: float | None = None


class RegressionFigures(BaseModel):
    """The model against the values evaluators gave (verdicts with 'incorrect' and a value, or 'correct')."""

    judged: int = Field(description="verdicts with a known right value ('correct': the prediction)")
    mae: float | None = None
    rmse: float | None = None
    bias: float | None = Field(None, description="mean of prediction - right value")


class InterEvaluator(BaseModel):
    """How much evaluators agree with each other on rows several of them judged."""

    rows: int = Field(description="rows with two or more verdicts")
    pairs: int = Field(description="pairs of verdicts on the same row")
    pairwise_agreement: float | None = Field(description="share of those pairs with the same verdict")
    krippendorff_alpha: float | None = Field(
        description="Krippendorff's alpha (nominal) on correct/incorrect: 1 perfect, 0 chance; "
        "None when it is undefined (fewer than two verdicts per row, or one category only)"
    )
    label_alpha: float | None = Field(
        None, description="classifiers: the same on the right labels, where every verdict names one"
    )


class EvaluatorFigures(BaseModel):
    """One evaluator's share of the work."""

    name: str
    verdicts: int
    correct: int
    agreement: float | None = Field(description="share of this evaluator's verdicts that say correct")


class Comment(BaseModel):
    """A comment as evaluators wrote it (plain text: render it escaped)."""

    row: int
    evaluator: str
    verdict: VerdictValue
    comment: str
    at: datetime


class EvaluationResults(BaseModel):
    """What the verdicts say: coverage, agreement with the model, per-class figures, evaluators' agreement."""

    rows: int
    rows_judged: int = Field(description="rows with at least one verdict")
    coverage: float = Field(description="rows_judged / rows")
    verdicts: int
    correct: int = Field(description="verdicts that say the prediction is correct")
    agreement: float | None = Field(
        description="correct / verdicts: how often evaluators agree with the model"
    )
    rows_correct: int = Field(description="rows most of whose verdicts say correct")
    rows_incorrect: int = Field(description="rows most of whose verdicts say incorrect")
    rows_split: int = Field(description="rows whose verdicts are evenly split")
    accuracy: float | None = Field(
        None,
        description="classifiers: predictions equal to the evaluators' labels, over verdicts that name one",
    )
    labelled_verdicts: int = Field(0, description="classifiers: verdicts whose right label is known")
    per_class: list[ClassFigures] = Field(default_factory=list)
    confusion: dict[str, dict[str, int]] = Field(
        default_factory=dict, description="classifiers: right label -> predicted label -> verdicts"
    )
    regression: RegressionFigures | None = None
    inter_evaluator: InterEvaluator
    evaluators: list[EvaluatorFigures]
    comments: list[Comment] = Field(
        default_factory=list,
        description=f"the latest {MAX_COMMENTS_SHOWN} comments (all of them by GET .../verdicts)",
    )
    comments_total: int = 0


class EvaluationSourceInfo(BaseModel):
    """Where an evaluation's rows came from, and how many the source offered."""

    type: Literal["reference", "upload", "rows", "traffic"]
    key: str | None = Field(None, description="reference/upload: the object read")
    start: datetime | None = None
    end: datetime | None = None
    available: int = Field(description="usable rows in the source (every feature present and valid)")
    skipped: int = Field(
        0, description="rows of the source left out because a feature was missing or invalid"
    )
    skipped_reasons: list[str] = Field(default_factory=list, description="the first few reasons")
    sampling: Literal["random", "first"]
    seed: int | None = None


class Evaluation(BaseModel):
    """One evaluation: what is judged, how far the judging got, and the results once completed."""

    evaluation_id: str = Field(pattern=EVALUATION_ID_PATTERN)
    model: str
    version: int
    artifact_sha256: str
    name: str = ""
    instructions: str = ""
    status: EvaluationStatus
    source: EvaluationSourceInfo
    task: Literal["classification", "regression"]
    class_labels: list[int] | list[str] | None = None
    features: list[str]
    rows: int
    explained: bool = Field(description="rows carry explanations")
    explanation_method: str | None = None
    request_id: str | None = None
    created_by: str
    created_at: datetime
    updated_at: datetime
    revision: int = Field(0, description="verdict changes so far")
    verdicts: int = Field(0, description="distinct (row, evaluator) verdicts")
    rows_judged: int = 0
    evaluators: list[str] = Field(default_factory=list)
    completed_at: datetime | None = None
    completed_by: str | None = None
    min_coverage: float | None = Field(None, description="the coverage the completion accepted")
    cancelled_at: datetime | None = None
    cancelled_by: str | None = None
    note: str | None = Field(None, description="why it was completed or cancelled, as its closer said")
    results: EvaluationResults | None = Field(None, description="set when completed")

    @property
    def coverage(self) -> float:
        """Rows judged so far / rows."""
        return self.rows_judged / self.rows if self.rows else 0.0


class CompleteRequest(BaseModel):
    """``POST /evaluations/{id}/complete``: close the evaluation and publish its results."""

    model_config = ConfigDict(extra="forbid")

    min_coverage: float = Field(
        1.0,
        gt=0,
        le=1,
        description="complete only if at least this share of rows has a verdict (1: every row); "
        "a lower value states that the results stand on partial coverage",
    )
    note: str | None = Field(None, max_length=MAX_COMMENT_CHARS, description="why, for the record")


class CancelRequest(BaseModel):
    """``POST /evaluations/{id}/cancel``: abandon an open evaluation (nothing is published)."""

    model_config = ConfigDict(extra="forbid")

    reason: str | None = Field(None, max_length=MAX_COMMENT_CHARS)


class PublishedEvaluation(BaseModel):
    """A completed evaluation as the registry keeps it beside the version (what the gate reads)."""

    model: str
    version: int
    artifact_sha256: str = Field(description="the artifact that was evaluated (guards against a reused name)")
    evaluation_id: str
    name: str = ""
    completed_at: datetime
    completed_by: str
    evaluators: list[str]
    rows: int
    rows_judged: int
    coverage: float
    verdicts: int
    agreement: float | None
    accuracy: float | None = None
    krippendorff_alpha: float | None = None
    per_class: list[ClassFigures] = Field(default_factory=list)
    regression: RegressionFigures | None = None

    @property
    def metrics(self) -> dict[str, float]:
        """The headline figures as metric name -> value (``evaluation.agreement``...)."""
        figures = {
            "evaluation.coverage": self.coverage,
            "evaluation.agreement": self.agreement,
            "evaluation.accuracy": self.accuracy,
            "evaluation.krippendorff_alpha": self.krippendorff_alpha,
        }
        return {name: value for name, value in figures.items() if value is not None}


# ---------------------------------------------------------------------- API pages and views


class RowView(EvaluationRow):
    """A row as an evaluator sees it: the row, how many verdicts it has, and the caller's own."""

    verdict_count: int
    mine: VerdictRecord | None = Field(None, description="the caller's current verdict on this row")


class EvaluationPage(BaseModel):
    """``GET /models/{name}/evaluations``: newest first."""

    evaluations: list[Evaluation]
    next_token: str | None = None


class RowPage(BaseModel):
    """``GET /evaluations/{id}/rows``: in row order."""

    rows: list[RowView]
    next_token: str | None = None


class VerdictPage(BaseModel):
    """``GET /evaluations/{id}/verdicts``: current verdicts in row order (only the caller's own while the
    evaluation is open, unless the caller manages evaluations)."""

    verdicts: list[VerdictRecord]
    next_token: str | None = None


class VerdictHistory(BaseModel):
    """``GET /evaluations/{id}/rows/{index}/history``: every revision, oldest first."""

    revisions: list[VerdictRecord]


class PublishedPage(BaseModel):
    """``GET /models/{name}/versions/{version}/evaluations``: the version's completed evaluations, newest first."""

    evaluations: list[PublishedEvaluation]
