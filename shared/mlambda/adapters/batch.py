"""Batch I/O: ranged reads of the batch bucket (and a seekable file over them for pyarrow), the
chunk queue's early retry, and verified, cached model loading for workers."""

from __future__ import annotations

import hashlib
import io
import threading
from collections import OrderedDict
from typing import Any, BinaryIO

from botocore.exceptions import BotoCoreError, ClientError

from mlambda.adapters.aws import aws_errors, error_code, translate
from mlambda.adapters.messaging import Queue
from mlambda.adapters.onnx import OnnxModel
from mlambda.adapters.s3 import ObjectStore
from mlambda.errors import ConflictError, UpstreamError
from mlambda.observability import logger
from mlambda.ports import ArtifactStore
from mlambda.schemas.registry import ModelVersion

FILE_BUFFER_BYTES = 64 * 1024
_PRECONDITION_CODES = frozenset({"PreconditionFailed", "412"})


class RangedFile(io.RawIOBase):
    """A read-only, seekable file whose reads are ranged GETs: pyarrow reads a footer or a row group
    through it without the rest of the object ever being downloaded."""

    def __init__(self, store: S3BatchObjects, key: str, size: int, etag: str | None) -> None:
        super().__init__()
        self._store = store
        self._key = key
        self._size = size
        self._etag = etag
        self._position = 0
        self.requests = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._position

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._position, io.SEEK_END: self._size}[whence]
        self._position = max(0, base + offset)
        return self._position

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        count = min(len(view), self._size - self._position)
        if count <= 0:
            return 0
        data = self._store.get_range(self._key, self._position, self._position + count - 1, etag=self._etag)
        self.requests += 1
        view[: len(data)] = data
        self._position += len(data)
        return len(data)


class S3BatchObjects(ObjectStore):
    """The batch bucket, with reads pinned to the etag a job was planned on."""

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

    def open(self, key: str, size: int, *, etag: str | None = None) -> BinaryIO:
        """A buffered, seekable file over ranged GETs (small reads are rounded up to 64 KiB)."""
        return io.BufferedReader(RangedFile(self, key, size, etag), buffer_size=FILE_BUFFER_BYTES)


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

    def load(self, version: ModelVersion) -> OnnxModel:
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
            model = OnnxModel(data, intra_op_threads=self._intra_op_threads)
            with self._lock:
                self._models[key] = model
                while len(self._models) > self._capacity:
                    self._models.popitem(last=False)
                self._loading.pop(key, None)
            return model
