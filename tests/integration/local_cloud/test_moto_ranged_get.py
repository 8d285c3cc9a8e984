"""The local moto server serves S3 ranged GETs by seeking, with S3's headers and errors intact."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError

from mlambda_local.cloud.moto_server import MotoServer

# Over moto's 16 MB in-memory buffer, so the object lives in a temporary file as large ones do.
BODY = os.urandom(17 * 1024 * 1024)


@pytest.fixture(scope="module")
def s3() -> Iterator[Any]:
    server = MotoServer()
    url = server.start()
    try:
        client = boto3.client(
            "s3",
            endpoint_url=url,
            region_name="us-east-1",
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )
        client.create_bucket(Bucket="data")
        client.put_object(
            Bucket="data",
            Key="in/file one.csv",
            Body=BODY,
            Metadata={"chunk-rows": "5000"},
            ContentType="text/csv",
        )
        yield client
    finally:
        server.stop()


@pytest.mark.parametrize(("begin", "end"), [(0, 0), (10, 1_000_009), (len(BODY) - 5, len(BODY) + 100)])
def test_a_byte_range_returns_exactly_those_bytes_with_s3_headers(s3: Any, begin: int, end: int) -> None:
    response = s3.get_object(Bucket="data", Key="in/file one.csv", Range=f"bytes={begin}-{end}")
    last = min(end, len(BODY) - 1)
    assert response["Body"].read() == BODY[begin : last + 1]
    assert response["ContentRange"] == f"bytes {begin}-{last}/{len(BODY)}"
    assert response["ContentLength"] == last - begin + 1
    assert response["Metadata"] == {"chunk-rows": "5000"}
    assert response["ContentType"] == "text/csv"
    assert response["ETag"] == s3.head_object(Bucket="data", Key="in/file one.csv")["ETag"]


def test_open_ended_and_suffix_ranges_still_work(s3: Any) -> None:
    tail = s3.get_object(Bucket="data", Key="in/file one.csv", Range=f"bytes={len(BODY) - 3}-")
    assert tail["Body"].read() == BODY[-3:]
    suffix = s3.get_object(Bucket="data", Key="in/file one.csv", Range="bytes=-7")
    assert suffix["Body"].read() == BODY[-7:]


def test_errors_are_moto_s(s3: Any) -> None:
    with pytest.raises(ClientError) as past_end:
        s3.get_object(Bucket="data", Key="in/file one.csv", Range=f"bytes={len(BODY)}-")
    assert past_end.value.response["Error"]["Code"] == "InvalidRange"
    with pytest.raises(ClientError) as missing:
        s3.get_object(Bucket="data", Key="in/nothing.csv", Range="bytes=0-10")
    assert missing.value.response["Error"]["Code"] == "NoSuchKey"
