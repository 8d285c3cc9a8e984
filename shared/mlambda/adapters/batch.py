"""Batch I/O: ranged reads of the batch bucket, the chunk queue's early retry, and verified,
cached model loading for workers."""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlsplit

from botocore.exceptions import BotoCoreError, ClientError

from mlambda.adapters.aws import aws_errors, error_code, translate
from mlambda.adapters.messaging import Queue
from mlambda.adapters.s3 import ObjectStore
from mlambda.errors import ConflictError, UpstreamError
from mlambda.observability import logger
from mlambda.ports import ArtifactStore
from mlambda.schemas.registry import ModelVersion

if TYPE_CHECKING:
    from mlambda.adapters.onnx import OnnxModel

_PRECONDITION_CODES = frozenset({"PreconditionFailed", "412"})


class S3BatchObjects(ObjectStore):
    """The batch bucket, with reads pinned to the etag a job was planned on (and the Job API's
    downloads: ``ports.JobOutputs``)."""

    def download_url(self, key: str, *, filename: str, expires_in: int) -> str:
        """A presigned GET that saves ``key`` as ``filename``."""
        return self.presigned_get(key, expires_in=expires_in, filename=filename)

    def upload_url(
        self, key: str, *, metadata: Mapping[str, str], expires_in: int
    ) -> tuple[str, dict[str, str]]:
        """A presigned PUT of ``key`` with ``metadata``, and the headers it needs.

        SigV4 signs ``x-amz-meta-*`` as headers (``X-Amz-SignedHeaders`` lists them: the PUT must
        send them, or S3 refuses it); SigV2 puts them in the query string (nothing to send).
        """
        url = self.presigned_put(key, expires_in=expires_in, metadata=metadata)
        signed = parse_qs(urlsplit(url).query).get("X-Amz-SignedHeaders", [""])[0].split(";")
        headers = {f"x-amz-meta-{name}": value for name, value in metadata.items()}
        return url, {name: value for name, value in headers.items() if name in signed}

    def get_range(self, key: str, start: int, end: int, *, etag: str | None = None) -> bytes:
        """Bytes ``start``..``end`` inclusive; ConflictError when the object no longer has ``etag``."""
        kwargs: dict[str, Any] = {"Bucket": self.bucket, "Key": key, "Range": f"bytes={start}-{end}"}
        if etag:
            kwargs["IfMatch"] = f'"{etag}"'
        try:
            response = self.client.get_object(**kwargs)
            return bytes(response["Body"].read())
        except ClientError as exc:
            if error_code(exc) in _PRECONDITION_CODES:
                raise ConflictError(
                    f"{self._what(key)} changed since the job was planned (etag {etag})", code="input_changed"
                ) from exc
            raise translate(exc, self._what(key)) from exc
        except BotoCoreError as exc:
            raise translate(exc, self._what(key)) from exc


class SqsChunkQueue(Queue):
    """The chunk queue, with an early retry for a failed message."""

    def retry_later(self, receipt_handle: str, seconds: int) -> None:
        """Make the message visible again in ``seconds`` rather than after the 30-minute visibility timeout."""
        with aws_errors(f"queue {self.url}"):
            self.client.change_message_visibility(
                QueueUrl=self.url, ReceiptHandle=receipt_handle, VisibilityTimeout=max(0, seconds)
            )


class ArtifactModelLoader:
    """Model artifacts fetched once per worker process, verified against their sha256, kept in a small LRU."""

    def __init__(self, artifacts: ArtifactStore, *, intra_op_threads: int = 1, capacity: int = 4) -> None:
        self._artifacts = artifacts
        self._intra_op_threads = intra_op_threads
        self._capacity = capacity
        self._models: OrderedDict[tuple[str, int, str], OnnxModel] = OrderedDict()
        self._lock = threading.Lock()
        self._loading: dict[tuple[str, int, str], threading.Lock] = {}

    def load(self, version: ModelVersion) -> OnnxModel:  # onnxruntime imported here: fan-out ships none
        """The session for ``version``; UpstreamError ``artifact_corrupt`` when the bytes do not match."""
        key = (version.model, version.version, version.artifact_sha256)
        with self._lock:
            if key in self._models:
                self._models.move_to_end(key)
                return self._models[key]
            loading = self._loading.setdefault(key, threading.Lock())
        with loading:
            with self._lock:
                if key in self._models:
                    return self._models[key]
            data = self._artifacts.get(version.artifact_key)
            digest = hashlib.sha256(data).hexdigest()
            if digest != version.artifact_sha256:
                logger.error(
                    "model artifact does not match its sha256",
                    extra={"model": version.model, "version": version.version, "sha256": digest},
                )
                raise UpstreamError(
                    f"artifact of {version.model} v{version.version} does not match its recorded sha256",
                    code="artifact_corrupt",
                )
            from mlambda.adapters.onnx import OnnxModel

            model = OnnxModel(data, intra_op_threads=self._intra_op_threads)
            with self._lock:
                self._models[key] = model
                while len(self._models) > self._capacity:
                    self._models.popitem(last=False)
                self._loading.pop(key, None)
            return model
