"""Writes open_inference_binary_requests.json: the requests tritonclient[http] sends in binary mode, as sent.

tritonclient is not a project dependency: run this with the virtualenv ``make test-triton`` makes,

    .venv-test-triton/bin/python tests/events/open_inference_binary_requests.py > tests/events/open_inference_binary_requests.json

It starts a socket on 127.0.0.1, lets tritonclient's ``InferenceServerClient.infer`` send each
request to it unchanged (binary inputs through ``set_data_from_numpy(..., binary_data=True)``,
outputs through ``InferRequestedOutput(..., binary_data=...)``), and records the request line,
the headers and the body (base64) byte for byte; the answer it gives tritonclient is an empty
JSON response, which tritonclient accepts. The tests read the headers and body from the file.
"""

from __future__ import annotations

import base64
import json
import socket
import sys
import threading
from importlib.metadata import version
from typing import Any

import numpy as np
from tritonclient import http

ROWS = np.array([[0.5, -1.25, 2.0, 0.75], [1.5, 0.25, -2.0, 3.0]])
"""The same two rows as open_inference_requests.json (the unit tests' 4-feature model, ONNX input 'X')."""


def captured(send: Any) -> dict[str, Any]:
    """What tritonclient wrote on the wire for the request ``send(client)`` makes."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    seen: dict[str, Any] = {}

    def serve() -> None:
        connection, _ = server.accept()
        data = b""
        while b"\r\n\r\n" not in data:
            data += connection.recv(65536)
        head, body = data.split(b"\r\n\r\n", 1)
        lines = head.decode("latin-1").split("\r\n")
        headers = dict(line.split(": ", 1) for line in lines[1:])
        while len(body) < int(headers["Content-Length"]):
            body += connection.recv(65536)
        seen.update(request_line=lines[0], headers=headers, body=body)
        answer = b'{"model_name":"churn","outputs":[]}'
        connection.sendall(
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(answer)
            + answer
        )
        connection.close()

    thread = threading.Thread(target=serve)
    thread.start()
    send(http.InferenceServerClient(url=f"127.0.0.1:{server.getsockname()[1]}"))
    thread.join()
    server.close()
    headers = {k: v for k, v in seen["headers"].items() if k not in ("Host", "User-Agent", "Content-Length")}
    return {
        "request_line": seen["request_line"],
        "headers": headers,
        "body_base64": base64.b64encode(seen["body"]).decode(),
    }


def one_tensor(client: http.InferenceServerClient) -> None:
    tensor = http.InferInput("X", list(ROWS.shape), "FP32")
    tensor.set_data_from_numpy(ROWS.astype(np.float32), binary_data=True)
    client.infer("churn", [tensor], request_id="triton-bin-1")


def per_feature_mixed_outputs(client: http.InferenceServerClient) -> None:
    inputs = []
    for index in range(ROWS.shape[1]):
        tensor = http.InferInput(f"f{index}", [ROWS.shape[0]], "FP32")
        tensor.set_data_from_numpy(ROWS[:, index].astype(np.float32), binary_data=index < 2)
        inputs.append(tensor)
    outputs = [
        http.InferRequestedOutput("label", binary_data=True),
        http.InferRequestedOutput("probabilities", binary_data=False),
    ]
    client.infer("churn", inputs, outputs=outputs)


def fp64_probabilities(client: http.InferenceServerClient) -> None:
    tensor = http.InferInput("X", list(ROWS.shape), "FP64")
    tensor.set_data_from_numpy(ROWS.astype(np.float64), binary_data=True)
    client.infer(
        "churn",
        [tensor],
        model_version="1",
        outputs=[http.InferRequestedOutput("probabilities", binary_data=True)],
    )


def main() -> int:
    samples: dict[str, Any] = {
        "_comment": (
            f"Requests tritonclient[http] {version('tritonclient')} sent in binary mode, captured on the wire by "
            "tests/events/open_inference_binary_requests.py (see its docstring to regenerate): headers as sent "
            "(Host, User-Agent and Content-Length left out; note that tritonclient sends no Content-Type) and the "
            "body base64-encoded. The same two rows as open_inference_requests.json, for a 4-feature model whose "
            "ONNX input is 'X'."
        ),
        "one tensor, binary input, all outputs binary (tritonclient's defaults)": captured(one_tensor),
        "one tensor per feature, two binary and two JSON, label binary, probabilities JSON": captured(
            per_feature_mixed_outputs
        ),
        "one FP64 tensor, binary input, probabilities binary, version 1": captured(fp64_probabilities),
    }
    json.dump(samples, sys.stdout, indent=1)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
