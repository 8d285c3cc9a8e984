"""In-memory ports for batch prediction, a small real ONNX model, and a driver that plays SQS."""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import cache
from typing import Any

import numpy as np

from mlambda.adapters.onnx import OnnxModel, inspect_model
from mlambda.errors import ConflictError, NotFoundError, UpstreamError
from mlambda.schemas.batch import ChunkMessage, ChunkRecord, ChunkResult, ChunkStatus, Job
from mlambda.schemas.registry import FeatureSchema, FeatureSpec, ModelVersion
from mlambda.services.batch.jobs import ChunkWorker, JobPlanner, JobService
from mlambda.services.batch.planning import PlanningLimits
from mlambda.services.inference.explain import Explainers
from tests.unit.fakes_predict import InMemoryArtifacts

BUCKET = "batch-bucket"
MODEL = "churn"
FEATURES = [f"f{i}" for i in range(20)]


@dataclass
class StoredObject:
    body: bytes
    etag: str
    metadata: dict[str, str]
    key: str = ""

    @property
    def size(self) -> int:
        return len(self.body)


class InMemoryObjects:
    """BatchObjects over a dict; counts the bytes read so tests can prove planning reads only edges."""

    def __init__(self) -> None:
        self.objects: dict[str, StoredObject] = {}
        self.bytes_read = 0
        self.reads = 0
        self.puts: list[str] = []
        self.fail_put: Callable[[str], bool] = lambda _key: False
        self.signed_metadata: dict[str, dict[str, str]] = {}
        self._lock = threading.Lock()

    def upload(self, key: str, body: bytes, metadata: Mapping[str, str] | None = None) -> StoredObject:
        stored = StoredObject(body, hashlib.md5(body).hexdigest(), dict(metadata or {}), key)
        self.objects[key] = stored
        return stored

    def head(self, key: str) -> StoredObject:
        if key not in self.objects:
            raise NotFoundError(f"s3://{BUCKET}/{key} not found")
        return self.objects[key]

    def get_range(self, key: str, start: int, end: int, *, etag: str | None = None) -> bytes:
        stored = self.head(key)
        if etag and stored.etag != etag:
            raise ConflictError("changed", code="input_changed")
        data = stored.body[start : end + 1]
        with self._lock:
            self.bytes_read += len(data)
            self.reads += 1
        return data

    def put(self, key: str, body: bytes, *, content_type: str = "application/octet-stream") -> None:
        if self.fail_put(key):
            raise UpstreamError(f"injected failure writing {key}")
        with self._lock:
            self.puts.append(key)
        self.upload(key, body)

    def keys(self, prefix: str) -> list[str]:
        return sorted(k for k in self.objects if k.startswith(prefix))

    def get(self, key: str) -> bytes:
        return self.head(key).body

    def download_url(self, key: str, *, filename: str, expires_in: int) -> str:
        self.head(key)
        return f"https://{BUCKET}.example/{key}?download={filename}&expires={expires_in}"

    def upload_url(
        self, key: str, *, metadata: Mapping[str, str], expires_in: int
    ) -> tuple[str, dict[str, str]]:
        """A URL naming the key; the metadata as the headers a SigV4 PUT must carry."""
        self.signed_metadata[key] = dict(metadata)
        return f"https://{BUCKET}.example/{key}?put&expires={expires_in}", {
            f"x-amz-meta-{name}": value for name, value in metadata.items()
        }

    def put_presigned(self, url: str, body: bytes, headers: Mapping[str, str]) -> StoredObject:
        """What S3 does with a PUT to such a URL: the object, stored with the metadata of its headers."""
        key = url.split(".example/", 1)[1].split("?", 1)[0]
        metadata = {
            k.removeprefix("x-amz-meta-"): v for k, v in headers.items() if k.startswith("x-amz-meta-")
        }
        assert metadata == self.signed_metadata[key], "the PUT's headers must match what was signed"
        return self.upload(key, body, metadata)


class InMemoryJobStore:
    """JobStore in dicts, with the same conditional semantics as the DynamoDB one."""

    def __init__(self) -> None:
        self.jobs: dict[str, dict[str, Any]] = {}
        self.chunk_items: dict[tuple[str, int], dict[str, Any]] = {}
        self._lock = threading.RLock()

    def create(self, job: Job) -> bool:
        with self._lock:
            if job.job_id in self.jobs:
                return False
            self.jobs[job.job_id] = job.model_dump()
            return True

    def get(self, job_id: str) -> Job | None:
        with self._lock:
            item = self.jobs.get(job_id)
            return None if item is None else Job.model_validate(item)

    def list_by_model(self, model: str, *, limit: int, after: str | None) -> tuple[list[Job], str | None]:
        with self._lock:
            jobs = sorted(
                (Job.model_validate(i) for i in self.jobs.values() if i["model"] == model),
                key=lambda j: (j.created_at, j.job_id),
                reverse=True,
            )
        start = int(after) if after else 0
        page = jobs[start : start + limit]
        return page, (str(start + limit) if start + limit < len(jobs) else None)

    def update(
        self, job_id: str, fields: Mapping[str, Any], *, when_status: Iterable[str] | None = None
    ) -> bool:
        with self._lock:
            item = self.jobs.get(job_id)
            if item is None:
                return False
            if when_status is not None and item["status"] not in set(when_status):
                return False
            updated = Job.model_validate({**item, **fields}).model_dump()
            self.jobs[job_id] = updated
            return True

    def add_chunks(self, chunks: Sequence[ChunkRecord], *, fresh: bool) -> None:
        with self._lock:
            for chunk in chunks:
                self.chunk_items.setdefault((chunk.job_id, chunk.index), chunk.model_dump())

    def get_chunk(self, job_id: str, index: int) -> ChunkRecord | None:
        with self._lock:
            item = self.chunk_items.get((job_id, index))
            return None if item is None else ChunkRecord.model_validate(item)

    def chunks(self, job_id: str) -> list[ChunkRecord]:
        with self._lock:
            return [
                ChunkRecord.model_validate(item)
                for (jid, _), item in sorted(self.chunk_items.items())
                if jid == job_id
            ]

    def record_attempt(self, job_id: str, index: int, attempt: int, at: datetime) -> None:
        with self._lock:
            self.chunk_items[(job_id, index)].update(attempts=attempt, last_attempt_at=at)

    def complete_chunk(self, job_id: str, index: int, result: ChunkResult, *, was: ChunkStatus) -> bool:
        with self._lock:
            chunk = self.chunk_items[(job_id, index)]
            if chunk["status"] != was:
                return False
            chunk.update(status="done", **result.model_dump())
            job = self.jobs[job_id]
            job["done_chunks"] += 1
            job["rows_in"] += result.rows_in
            job["rows_scored"] += result.rows_scored
            job["rows_rejected"] += result.rows_rejected
            if was == "failed":
                job["failed_chunks"] -= 1
            return True

    def fail_chunk(self, job_id: str, index: int, error: str, *, final: bool) -> bool:
        with self._lock:
            chunk = self.chunk_items[(job_id, index)]
            chunk["last_error"] = error
            if not final or chunk["status"] != "pending":
                return False
            chunk["status"] = "failed"
            self.jobs[job_id]["failed_chunks"] += 1
            return True

    def reset_chunk(self, job_id: str, index: int) -> bool:
        with self._lock:
            chunk = self.chunk_items[(job_id, index)]
            if chunk["status"] != "failed":
                return False
            chunk.update(status="pending", attempts=0)
            self.jobs[job_id]["failed_chunks"] -= 1
            return True


class FakeQueue:
    """ChunkQueue + ChunkRetries: messages kept in order; refuses a send when told to."""

    def __init__(self) -> None:
        self.bodies: list[str] = []
        self.fail_next_send = False
        self.retried: list[tuple[str, int]] = []

    def send_batch(self, bodies: Sequence[str]) -> None:
        if self.fail_next_send:
            self.fail_next_send = False
            raise UpstreamError("injected: SQS refused the batch")
        self.bodies.extend(bodies)

    def retry_later(self, receipt_handle: str, seconds: int) -> None:
        self.retried.append((receipt_handle, seconds))

    def take(self) -> list[ChunkMessage]:
        taken, self.bodies = self.bodies, []
        return [ChunkMessage.model_validate_json(body) for body in taken]


class FakeCatalog:
    """ModelCatalog over a dict of versions and aliases."""

    def __init__(self) -> None:
        self.versions: dict[tuple[str, int], ModelVersion] = {}
        self.aliases: dict[tuple[str, str], int] = {}

    def add(self, version: ModelVersion, *aliases: str) -> None:
        self.versions[(version.model, version.version)] = version
        for alias in aliases:
            self.aliases[(version.model, alias)] = version.version

    def get_version(self, model: str, version: int) -> ModelVersion:
        if (model, version) not in self.versions:
            raise NotFoundError(f"model '{model}' has no version {version}", code="version_not_found")
        return self.versions[(model, version)]

    def resolve(self, model: str, ref: str) -> ModelVersion:
        number = int(ref.lstrip("v")) if ref.lstrip("v").isdigit() else self.aliases.get((model, ref))
        if number is None:
            raise NotFoundError(f"model '{model}' has no alias '{ref}'", code="alias_not_found")
        return self.get_version(model, number)

    def endpoint_config(self, model: str) -> None:
        return None

    def models_with_alias(self, alias: str) -> list[ModelVersion]:
        return [self.versions[(m, v)] for (m, a), v in self.aliases.items() if a == alias]


class FakeLoader:
    """ModelLoader over artifact bytes; can be told to fail."""

    def __init__(self, artifacts: dict[str, bytes]) -> None:
        self.artifacts = artifacts
        self.loads = 0

    def load(self, version: ModelVersion) -> OnnxModel:
        self.loads += 1
        return OnnxModel(self.artifacts[version.artifact_key])


class FakeEvents:
    """EventPublisher that keeps what was emitted."""

    def __init__(self) -> None:
        self.emitted: list[tuple[str, dict[str, Any]]] = []

    def emit(self, detail_type: str, details: Sequence[Mapping[str, Any]]) -> None:
        self.emitted.extend((detail_type, dict(d)) for d in details)


class Clock:
    """A clock that moves one second per reading (deterministic timings)."""

    def __init__(self) -> None:
        self.now = datetime(2025, 3, 1, tzinfo=UTC)

    def __call__(self) -> datetime:
        self.now += timedelta(seconds=1)
        return self.now


@cache
def classifier_model() -> tuple[bytes, Any]:
    """A logistic regression on 20 features, exported to ONNX (no ZipMap), and the sklearn model."""
    from skl2onnx import to_onnx
    from sklearn.datasets import make_classification
    from sklearn.linear_model import LogisticRegression

    X, y = make_classification(n_samples=400, n_features=20, random_state=0)
    model = LogisticRegression(max_iter=1000).fit(X, y)
    onx = to_onnx(model, X[:1].astype(np.float32), options={id(model): {"zipmap": False}})
    return onx.SerializeToString(), model


def model_version(model: str = MODEL, version: int = 1, data: bytes | None = None) -> ModelVersion:
    """A registered version of ``data`` (default: the classifier), tensor ``X`` with features f0..f19."""
    data = data if data is not None else classifier_model()[0]
    return ModelVersion(
        model=model,
        version=version,
        artifact_key=f"models/{model}/v{version}.onnx",
        artifact_sha256=hashlib.sha256(data).hexdigest(),
        size_bytes=len(data),
        signature=inspect_model(data, max_bytes=10_000_000),
        feature_schema=FeatureSchema(
            mode="tensor",
            features=[FeatureSpec(name=name, dtype="float") for name in FEATURES],
            tensor_input="X",
            tensor_dtype="float32",
        ),
        created_at=datetime(2025, 1, 1, tzinfo=UTC),
        created_by="test",
    )


def make_frame(rows: int, seed: int = 0) -> Any:
    """An ``id`` column then f0..f19, as pandas."""
    import pandas as pd

    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(rng.normal(size=(rows, 20)).round(5), columns=FEATURES)
    frame.insert(0, "id", [f"row-{i}" for i in range(rows)])
    return frame


def csv_bytes(rows: int, seed: int = 0) -> bytes:
    """A CSV of ``make_frame(rows)``."""
    return bytes(make_frame(rows, seed).to_csv(index=False).encode())


@dataclass
class Harness:
    """Planner, worker and Job API on the fakes, and an SQS-like driver."""

    objects: InMemoryObjects = field(default_factory=InMemoryObjects)
    jobs: InMemoryJobStore = field(default_factory=InMemoryJobStore)
    queue: FakeQueue = field(default_factory=FakeQueue)
    catalog: FakeCatalog = field(default_factory=FakeCatalog)
    events: FakeEvents = field(default_factory=FakeEvents)
    clock: Clock = field(default_factory=Clock)
    chunk_rows: int = 100
    max_attempts: int = 3

    def __post_init__(self) -> None:
        version = model_version()
        self.catalog.add(version, "production")
        self.loader = FakeLoader({version.artifact_key: classifier_model()[0]})
        self.artifacts = InMemoryArtifacts()
        self.planner = JobPlanner(
            jobs=self.jobs,
            objects=self.objects,
            catalog=self.catalog,
            queue=self.queue,
            bucket=BUCKET,
            limits=PlanningLimits(chunk_rows=self.chunk_rows, sample_bytes=4096),
            explainers=Explainers(self.artifacts),
            clock=self.clock,
        )
        self.worker = ChunkWorker(
            jobs=self.jobs,
            objects=self.objects,
            catalog=self.catalog,
            models=self.loader,
            events=self.events,
            explainers=Explainers(self.artifacts),
            retries=self.queue,
            max_attempts=self.max_attempts,
            batch_rows=64,
            clock=self.clock,
        )
        self.api = JobService(
            jobs=self.jobs,
            planner=self.planner,
            queue=self.queue,
            outputs=self.objects,
            max_attempts=self.max_attempts,
            clock=self.clock,
        )

    def upload(self, key: str, body: bytes, metadata: Mapping[str, str] | None = None) -> Job | None:
        stored = self.objects.upload(key, body, metadata)
        return self.planner.from_upload(BUCKET, key, stored.etag)

    def drain(self, *, max_rounds: int = 20) -> list[str]:
        """Deliver queued messages until none is left, re-queueing failures as SQS would (up to the DLQ)."""
        outcomes: list[str] = []
        receives: dict[str, int] = {}
        dead: list[str] = []
        for _ in range(max_rounds):
            pending = self.queue.bodies
            if not pending:
                break
            self.queue.bodies = []
            for body in pending:
                receives[body] = receives.get(body, 0) + 1
                message = ChunkMessage.model_validate_json(body)
                try:
                    outcomes.append(self.worker.process(message, attempt=receives[body], receipt_handle=body))
                except Exception:
                    outcomes.append("failed")
                    if receives[body] < self.max_attempts:
                        self.queue.bodies.append(body)
                    else:
                        dead.append(body)
                        receives.pop(body)
        self.dead_letters = dead
        return outcomes
