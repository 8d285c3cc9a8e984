"""Open Inference Protocol bodies in the binary tensor data extension, built and read as tritonclient does.

``binary_request`` writes a request the way ``tritonclient.http``'s ``_get_inference_request``
does (compact JSON header in its key order, then each binary input's little-endian bytes); the
unit tests check it reproduces the bodies tritonclient itself sent (tests/events/
open_inference_binary_requests.json) byte for byte, so the larger bodies it builds (1,000 rows)
are tritonclient's too. ``binary_answer`` reads a response as ``InferResult`` does.
"""

from __future__ import annotations

import base64
import json
import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from tests.conftest import load_event

NUMPY_OF = {
    "BOOL": np.bool_,
    "INT64": np.int64,
    "INT32": np.int32,
    "FP16": np.float16,
    "FP32": np.float32,
    "FP64": np.float64,
    "UINT8": np.uint8,
}


@dataclass(frozen=True)
class Tensor:
    """One input as tritonclient's ``InferInput`` + ``set_data_from_numpy(array, binary_data=binary)``."""

    name: str
    array: np.ndarray
    datatype: str = "FP32"
    binary: bool = True

    def raw(self) -> bytes:
        if self.datatype == "BYTES":
            return b"".join(
                struct.pack("<I", len(item)) + item for item in (str(v).encode() for v in self.array.ravel())
            )
        return np.ascontiguousarray(self.array, dtype=NUMPY_OF[self.datatype]).tobytes()


def binary_request(
    inputs: Sequence[Tensor],
    *,
    request_id: str = "",
    outputs: Sequence[tuple[str, bool]] | None = None,
) -> tuple[bytes, int | None]:
    """The body and the ``Inference-Header-Content-Length`` value (None: all JSON) tritonclient would send."""
    request: dict[str, Any] = {}
    if request_id:
        request["id"] = request_id
    tensors = []
    for tensor in inputs:
        spec: dict[str, Any] = {
            "name": tensor.name,
            "shape": list(tensor.array.shape),
            "datatype": tensor.datatype,
        }
        if tensor.binary:
            spec["parameters"] = {"binary_data_size": len(tensor.raw())}
        else:
            spec["data"] = [value.item() for value in tensor.array.flatten()]
        tensors.append(spec)
    request["inputs"] = tensors
    if outputs:
        request["outputs"] = [
            {"name": name, "parameters": {"binary_data": binary}} for name, binary in outputs
        ]
    else:
        request["parameters"] = {"binary_data_output": True}
    header = json.dumps(request, separators=(",", ":")).encode()
    binary_parts = [tensor.raw() for tensor in inputs if tensor.binary]
    if not binary_parts:
        return header, None
    return b"".join([header, *binary_parts]), len(header)


def recorded_requests() -> dict[str, tuple[str, dict[str, str], bytes]]:
    """tests/events/open_inference_binary_requests.json: request line, headers and body of each capture."""
    return {
        name: (sample["request_line"], sample["headers"], base64.b64decode(sample["body_base64"]))
        for name, sample in load_event("open_inference_binary_requests").items()
        if not name.startswith("_")
    }


def infer_event(
    body: bytes,
    header_length: int | None,
    *,
    model: str = "churn",
    version: str | None = None,
    content_type: str | None = "application/octet-stream",
    accept: str | None = "application/octet-stream",
    scopes: str = "predict",
) -> dict[str, Any]:
    """``POST /v2/models/{name}[/versions/{v}]/infer`` as API Gateway delivers it (binary media type: base64)."""
    headers = {"Host": "abc123.execute-api.us-east-1.amazonaws.com", "x-api-key": "mlk.example.secret"}
    if content_type is not None:
        headers["Content-Type"] = content_type
    if accept is not None:
        headers["Accept"] = accept
    if header_length is not None:
        headers["Inference-Header-Content-Length"] = str(header_length)
    binary = content_type is not None and content_type.split(";")[0].strip() == "application/octet-stream"
    versioned = version is not None
    event = load_event(
        "predict_request",
        resource="/v2/models/{name}/versions/{version}/infer" if versioned else "/v2/models/{name}/infer",
        path=f"/v2/models/{model}/versions/{version}/infer" if versioned else f"/v2/models/{model}/infer",
        pathParameters={"name": model, "version": version} if versioned else {"name": model},
        headers=headers,
        multiValueHeaders={key: [value] for key, value in headers.items()},
        body=base64.b64encode(body).decode() if binary else body.decode("utf-8", errors="replace"),
        isBase64Encoded=binary,
    )
    event["requestContext"]["authorizer"]["scopes"] = scopes
    return event


def binary_answer(response: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """A handler response read as tritonclient's ``InferResult``: the JSON header and every output as an array."""
    headers = {key.lower(): values[-1] for key, values in (response.get("multiValueHeaders") or {}).items()}
    body = base64.b64decode(response["body"]) if response["isBase64Encoded"] else response["body"].encode()
    length = headers.get("inference-header-content-length")
    header = json.loads(body if length is None else body[: int(length)])
    offset = len(body) if length is None else int(length)
    arrays: dict[str, np.ndarray] = {}
    for output in header["outputs"]:
        size = (output.get("parameters") or {}).get("binary_data_size")
        if size is None:
            arrays[output["name"]] = np.array(output["data"]).reshape(output["shape"])
            continue
        chunk = body[offset : offset + size]
        offset += size
        if output["datatype"] == "BYTES":
            items, position = [], 0
            while position < len(chunk):
                (n,) = struct.unpack_from("<I", chunk, position)
                items.append(chunk[position + 4 : position + 4 + n].decode())
                position += 4 + n
            arrays[output["name"]] = np.array(items, dtype=object).reshape(output["shape"])
        else:
            arrays[output["name"]] = np.frombuffer(chunk, dtype=NUMPY_OF[output["datatype"]]).reshape(
                output["shape"]
            )
    assert offset == len(body), "the outputs' binary_data_size must account for the whole body"
    return header, arrays
