"""S3 objects: bytes in and out, ranged reads, presigned URLs, listings."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from mlambda.adapters.aws import AwsResource, aws_errors
from mlambda.config import FunctionSettings


@dataclass(frozen=True, slots=True)
class ObjectInfo:
    """What HEAD says about an object."""

    key: str
    size: int
    etag: str
    metadata: dict[str, str]
    content_type: str | None = None


class ObjectStore(AwsResource):
    """One bucket."""

    service = "s3"

    def __init__(self, bucket: str, settings: FunctionSettings, s3_client: Any = None) -> None:
        super().__init__(settings, s3_client)
        self.bucket = bucket

    def _what(self, key: str) -> str:
        return f"s3://{self.bucket}/{key}"

    def put(
        self,
        key: str,
        body: bytes,
        *,
        content_type: str = "application/octet-stream",
        metadata: Mapping[str, str] | None = None,
    ) -> None:
        """Write ``body`` at ``key`` (replacing what was there)."""
        with aws_errors(self._what(key)):
            self.client.put_object(
                Bucket=self.bucket,
                Key=key,
                Body=body,
                ContentType=content_type,
                Metadata=dict(metadata or {}),
            )

    def get(self, key: str) -> bytes:
        """The whole object (small objects only: reports, manifests, models)."""
        with aws_errors(self._what(key)):
            return bytes(self.client.get_object(Bucket=self.bucket, Key=key)["Body"].read())

    def get_range(self, key: str, start: int, end: int) -> bytes:
        """Bytes ``start``..``end`` inclusive, as an HTTP Range read."""
        with aws_errors(self._what(key)):
            response = self.client.get_object(Bucket=self.bucket, Key=key, Range=f"bytes={start}-{end}")
            return bytes(response["Body"].read())

    def head(self, key: str) -> ObjectInfo:
        """Size, etag and metadata of ``key`` (NotFoundError when absent)."""
        with aws_errors(self._what(key)):
            response = self.client.head_object(Bucket=self.bucket, Key=key)
        return ObjectInfo(
            key=key,
            size=int(response["ContentLength"]),
            etag=str(response.get("ETag", "")).strip('"'),
            metadata=dict(response.get("Metadata", {})),
            content_type=response.get("ContentType"),
        )

    def exists(self, key: str) -> bool:
        """Whether ``key`` exists."""
        from mlambda.errors import NotFoundError

        try:
            self.head(key)
        except NotFoundError:
            return False
        return True

    def delete(self, key: str) -> None:
        """Remove ``key`` (no error when absent)."""
        with aws_errors(self._what(key)):
            self.client.delete_object(Bucket=self.bucket, Key=key)

    def list_keys(self, prefix: str) -> Iterator[str]:
        """Every key under ``prefix``, in key order."""
        paginator = self.client.get_paginator("list_objects_v2")
        with aws_errors(self._what(prefix)):
            for page in paginator.paginate(Bucket=self.bucket, Prefix=prefix):
                for entry in page.get("Contents", []):
                    yield str(entry["Key"])

    def presigned_put(
        self,
        key: str,
        *,
        expires_in: int = 900,
        content_type: str | None = None,
        metadata: Mapping[str, str] | None = None,
    ) -> str:
        """A URL that lets its holder PUT ``key`` for ``expires_in`` seconds (with ``metadata``: see
        ``signed_headers`` for the headers the PUT must then carry)."""
        params: dict[str, Any] = {"Bucket": self.bucket, "Key": key}
        if content_type:
            params["ContentType"] = content_type
        if metadata:
            params["Metadata"] = dict(metadata)
        with aws_errors(self._what(key)):
            return str(self.client.generate_presigned_url("put_object", Params=params, ExpiresIn=expires_in))

    def presigned_get(self, key: str, *, expires_in: int = 900, filename: str | None = None) -> str:
        """A URL that lets its holder GET ``key`` for ``expires_in`` seconds (saved as ``filename``)."""
        params: dict[str, Any] = {"Bucket": self.bucket, "Key": key}
        if filename:
            params["ResponseContentDisposition"] = f'attachment; filename="{filename}"'
        with aws_errors(self._what(key)):
            return str(self.client.generate_presigned_url("get_object", Params=params, ExpiresIn=expires_in))
