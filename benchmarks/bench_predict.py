"""Online inference, measured: handler vs minimal path vs raw onnxruntime, HTTP, cold start, batch.

All figures come from one run on this machine with a 20-feature GradientBoostingClassifier
(100 trees) exported from scikit-learn, explanations of it included (TreeSHAP beside shap's own).
Prints a table; asserts nothing.

    make bench-predict            # or: .venv/bin/python benchmarks/bench_predict.py [--quick]
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import hashlib
import io
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from itertools import chain
from operator import itemgetter
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import onnxruntime as ort
import orjson
from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.openapi.params import Body
from pydantic import BaseModel
from skl2onnx import to_onnx
from sklearn.datasets import make_classification
from sklearn.ensemble import GradientBoostingClassifier

from mlambda.schemas.inference import PredictRequest, PredictResponse

REPO = Path(__file__).resolve().parent.parent
# What template.yaml gives the function (the benchmark imports it in-process).
for _name, _value in {
    "POWERTOOLS_SERVICE_NAME": "predict",
    "POWERTOOLS_METRICS_NAMESPACE": "mlambda",
    "POWERTOOLS_TRACE_DISABLED": "true",
    "AWS_REGION": "us-east-1",
}.items():
    os.environ.setdefault(_name, _value)
FEATURES = [f"f{i}" for i in range(20)]
ROWS: list[tuple[str, str, str]] = []


def record(name: str, value: str, note: str = "") -> None:
    ROWS.append((name, value, note))
    print(f"  {name:58} {value:>22}  {note}", flush=True)


def percentiles(samples: Sequence[float]) -> tuple[float, float]:
    """p50 and p99 of ``samples`` (seconds) in microseconds."""
    ordered = sorted(samples)
    return ordered[len(ordered) // 2] * 1e6, ordered[int(len(ordered) * 0.99) - 1] * 1e6


def timed(call: Callable[[], Any], n: int, warmup: int = 200) -> tuple[float, float]:
    for _ in range(warmup):
        call()
    samples = []
    clock = time.perf_counter
    for _ in range(n):
        start = clock()
        call()
        samples.append(clock() - start)
    return percentiles(samples)


def interleaved(calls: dict[str, Callable[[], Any]], n: int, warmup: int = 3) -> dict[str, float]:
    """The median seconds of each call, the calls taken in turn (one of each per round)."""
    return interleaved_clocks(calls, n, warmup)[0]


def interleaved_clocks(
    calls: dict[str, Callable[[], Any]], n: int, warmup: int = 3
) -> tuple[dict[str, float], dict[str, float]]:
    """Median wall seconds and median CPU seconds of this thread for each call, taken in turn.

    The CPU time leaves out what the other jobs on a shared machine take from this process (being
    descheduled costs wall time only); onnxruntime runs in the calling thread
    (``intra_op_num_threads=1``), so the model's work is counted on both sides.
    """
    for call in calls.values():
        for _ in range(warmup):
            call()
    wall: dict[str, list[float]] = {key: [] for key in calls}
    cpu: dict[str, list[float]] = {key: [] for key in calls}
    clock, thread_clock = time.perf_counter, time.thread_time
    for _ in range(n):
        for key, call in calls.items():
            start, start_cpu = clock(), thread_clock()
            call()
            cpu[key].append(thread_clock() - start_cpu)
            wall[key].append(clock() - start)
    return (
        {key: statistics.median(values) for key, values in wall.items()},
        {key: statistics.median(values) for key, values in cpu.items()},
    )


def us(p: tuple[float, float]) -> str:
    return f"p50 {p[0]:7.1f} µs  p99 {p[1]:7.1f} µs"


# ---------------------------------------------------------------- the model


def train() -> tuple[bytes, Any, np.ndarray]:
    X, y = make_classification(n_samples=5000, n_features=20, n_informative=10, random_state=0)
    model = GradientBoostingClassifier(n_estimators=100, max_depth=3, random_state=0).fit(X, y)
    onx = to_onnx(model, X[:1].astype(np.float32), options={id(model): {"zipmap": False}})
    return onx.SerializeToString(), model, X.astype(np.float32)


def row_of(x: np.ndarray) -> dict[str, float]:
    return dict(zip(FEATURES, map(float, x), strict=True))


# ---------------------------------------------------------------- in-memory I/O for the in-process runs


class MemoryCatalog:
    def __init__(self, version: Any) -> None:
        self.version = version

    def get_version(self, model: str, version: int) -> Any:
        return self.version

    def resolve(self, model: str, ref: str) -> Any:
        from mlambda.errors import NotFoundError

        if model != self.version.model:
            raise NotFoundError("no such model")
        return self.version

    def endpoint_config(self, model: str) -> None:
        return None

    def models_with_alias(self, alias: str) -> list[Any]:
        return [self.version]


class MemoryArtifacts:
    def __init__(self, objects: dict[str, bytes]) -> None:
        self.objects = objects

    def get(self, key: str) -> bytes:
        return self.objects[key]

    def put(self, key: str, body: bytes, *, content_type: str = "") -> None:
        self.objects[key] = body


def model_version(data: bytes) -> Any:
    from mlambda.adapters.onnx import inspect_model
    from mlambda.schemas.registry import FeatureSchema, FeatureSpec, ModelVersion

    signature = inspect_model(data, max_bytes=100 * 1024 * 1024)
    return ModelVersion(
        model="bench",
        version=1,
        artifact_key="models/bench/1/model.onnx",
        artifact_sha256=hashlib.sha256(data).hexdigest(),
        size_bytes=len(data),
        signature=signature,
        feature_schema=FeatureSchema(
            mode="tensor",
            features=[FeatureSpec(name=n, dtype="float") for n in FEATURES],
            tensor_input=signature.inputs[0].name,
            tensor_dtype="float32",
        ),
        created_at=datetime.now(UTC),
        created_by="bench",
    )


def in_memory_service(data: bytes, max_instances: int = 1000) -> Any:
    from mlambda.adapters.model_sessions import ModelSessions
    from mlambda.services.inference.prediction_log import PredictionLog
    from mlambda.services.inference.service import InferenceService

    version = model_version(data)
    return InferenceService(
        MemoryCatalog(version),
        ModelSessions(MemoryArtifacts({version.artifact_key: data})),
        PredictionLog(),
        max_instances=max_instances,
    )


def api_event(body: bytes) -> dict[str, Any]:
    event = json.loads((REPO / "tests" / "events" / "predict_request.json").read_text())
    event.update(path="/models/bench/predict", pathParameters={"name": "bench"}, body=body.decode())
    return event


def v2_event(body: bytes) -> dict[str, Any]:
    """The Open Inference Protocol's infer route, as API Gateway sends it."""
    event = api_event(body)
    event.update(resource="/v2/models/{name}/infer", path="/v2/models/bench/infer")
    return event


BINARY_HEADERS = {"Content-Type": "application/octet-stream", "Accept": "application/octet-stream"}
"""What a binary-tensor client sends through API Gateway (template.yaml BinaryMediaTypes)."""


def v2_binary_body(name: str, rows: np.ndarray) -> tuple[bytes, int]:
    """tritonclient's default request for ``rows`` (float32 bytes, every output binary): body, header length."""
    header = orjson.dumps(
        {
            "inputs": [
                {
                    "name": name,
                    "shape": list(rows.shape),
                    "datatype": "FP32",
                    "parameters": {"binary_data_size": rows.astype(np.float32).nbytes},
                }
            ],
            "parameters": {"binary_data_output": True},
        }
    )
    return header + rows.astype(np.float32).tobytes(), len(header)


def v2_binary_event(body: bytes, header_length: int) -> dict[str, Any]:
    """The binary request as API Gateway hands it over: base64, its media type a binary one."""
    event = v2_event(b"")
    headers = {**event["headers"], **BINARY_HEADERS, "Inference-Header-Content-Length": str(header_length)}
    event.update(
        headers=headers,
        multiValueHeaders={key: [value] for key, value in headers.items()},
        body=base64.b64encode(body).decode(),
        isBase64Encoded=True,
    )
    return event


COLUMNAR: dict[str, float] = {}
"""rows/s of the 1,000-row columnar figures, for the summary beside MLflow."""


class Context:
    function_name = "predict"
    function_version = "$LATEST"
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:predict"
    memory_limit_in_mb = 1024
    aws_request_id = "bench"
    log_group_name = "/aws/lambda/predict"
    log_stream_name = "bench"

    @staticmethod
    def get_remaining_time_in_millis() -> int:
        return 10_000


# ---------------------------------------------------------------- sections


def session_options_section(data: bytes, x: np.ndarray, n: int) -> None:
    print("\n== onnxruntime session options (one row, raw session.run)")
    levels = {
        "ALL": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
        "BASIC": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
        "DISABLED": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
    }
    for threads in (1, 2):
        for level_name, level in levels.items():
            options = ort.SessionOptions()
            options.intra_op_num_threads = threads
            options.inter_op_num_threads = 1
            options.graph_optimization_level = level
            session = ort.InferenceSession(data, options, providers=["CPUExecutionProvider"])
            name = session.get_inputs()[0].name
            record(
                f"intra_op_threads={threads} optimisation={level_name}",
                us(timed(lambda s=session, i=name: s.run(None, {i: x}), n)),
            )
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(data, options, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    X = np.repeat(x, 1000, axis=0)
    for threads in (1, 2):
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        session = ort.InferenceSession(data, options, providers=["CPUExecutionProvider"])
        p = timed(lambda s=session: s.run(None, {name: X}), max(50, n // 100), warmup=10)
        record(f"intra_op_threads={threads}, 1,000 rows", f"{1000 / (p[0] / 1e6):,.0f} rows/s")


def in_process_section(data: bytes, X: np.ndarray, n: int) -> dict[str, float]:
    from aws_lambda_powertools.event_handler import APIGatewayRestResolver

    from functions.predict import app as predict_app
    from mlambda.adapters.onnx import OnnxModel

    print(f"\n== in-process, warm, I/O faked: one row, {n} calls each")
    model = OnnxModel(data)
    name = model.input_names[0]
    x = X[:1]
    model.session.run(None, {name: x})
    raw = timed(lambda: model.session.run(None, {name: x}), n)
    record("raw InferenceSession.run (same row)", us(raw))

    class Minimal(BaseModel):
        instances: list[dict[str, float]]

    body = orjson.dumps({"instances": [row_of(X[0])]})

    def minimal() -> bytes:
        request = Minimal.model_validate_json(body)
        matrix = np.array([[r[f] for f in FEATURES] for r in request.instances], dtype=np.float32)
        label, proba = model.session.run(None, {name: matrix})
        return orjson.dumps({"predictions": [{"label": int(label[0]), "probabilities": proba[0].tolist()}]})

    minimal_p = timed(minimal, n)
    record("minimal pydantic -> numpy -> ORT -> orjson", us(minimal_p))

    service = in_memory_service(data)
    event = api_event(body)
    context = Context()
    with contextlib.redirect_stdout(io.StringIO()) as sink:
        response = predict_app.handler(event, context, service)
        assert response["statusCode"] == 200, response

        def handler() -> Any:
            sink.seek(0)
            sink.truncate()
            return predict_app.handler(event, context, service)

        handler_p = timed(handler, n)
        service_p = timed(lambda: service.predict("bench", PredictRequest.model_validate_json(body)), n)

        routed = APIGatewayRestResolver()

        @routed.post("/models/<name>/predict")
        def predict(name: str) -> Response[str]:
            request = PredictRequest.model_validate_json(routed.current_event.body or "{}")
            return Response(200, "application/json", orjson.dumps(service.predict(name, request)).decode())

        validating = APIGatewayRestResolver(enable_validation=True)

        @validating.post("/models/<name>/predict")
        def predict_validated(name: str, body: Annotated[PredictRequest, Body()]) -> PredictResponse:
            return service.predict(name, body)

        for resolver in (routed, validating):
            checked = resolver.resolve(event, context)
            assert checked["statusCode"] == 200, checked
        routed_p = timed(lambda: routed.resolve(event, context), n)
        validating_p = timed(lambda: validating.resolve(event, context), n)
    record(
        "handler (dispatch + auth + parse + service + EMF)",
        us(handler_p),
        f"{handler_p[0] / minimal_p[0]:.2f}x minimal",
    )
    record("  service.predict alone (parse included)", us(service_p))
    record("  powertools resolver route, same parse + service", us(routed_p), "not used: see app.py")
    record("  powertools enable_validation route, same service", us(validating_p), "not used: see app.py")
    return {"handler_p50": handler_p[0], "handler_p99": handler_p[1], "minimal_p50": minimal_p[0]}


def batch_section(data: bytes, X: np.ndarray, n: int) -> None:
    from functions.predict import app as predict_app
    from mlambda.adapters.onnx import OnnxModel

    print("\n== batch in one request: 1,000 instances")
    model = OnnxModel(data)
    name = model.input_names[0]
    A = X[:1000]
    raw = timed(lambda: model.session.run(None, {name: A}), n, warmup=5)
    raw_rate = 1000 / (raw[0] / 1e6)
    record("raw ORT on the same [1000, 20] array", f"{raw_rate:,.0f} rows/s", f"p50 {raw[0] / 1000:.2f} ms")
    service = in_memory_service(data)
    context = Context()
    for label, rows in (
        ("full-precision floats (17 digits)", [row_of(x) for x in A]),
        ("floats rounded to 6 digits", [{k: round(v, 6) for k, v in row_of(x).items()} for x in A]),
    ):
        body = orjson.dumps({"instances": rows})
        event = api_event(body)
        with contextlib.redirect_stdout(io.StringIO()):
            assert predict_app.handler(event, context, service)["statusCode"] == 200
            p = timed(lambda e=event: predict_app.handler(e, context, service), n, warmup=5)
        rate = 1000 / (p[0] / 1e6)
        record(
            f"handler, {label}, {len(body) // 1024} KB body",
            f"{rate:,.0f} rows/s",
            f"{rate / raw_rate:.0%} of raw ORT",
        )
    from mlambda.schemas.inference import PredictRequest

    split_body = orjson.dumps(
        {"dataframe_split": {"columns": FEATURES, "data": A.astype(np.float64).tolist()}}
    )
    v2_body = orjson.dumps(
        {"inputs": [{"name": name, "shape": [1000, 20], "datatype": "FP32", "data": A.ravel().tolist()}]}
    )
    binary_body, binary_length = v2_binary_body(name, A)

    # Interleaved with raw ORT, call by call: on a shared machine the load changes by the second,
    # and the ratio is only meaningful when both sides see the same moments.
    # The function's output (prediction log, metrics) goes to a file, as Lambda's stdout goes to a
    # file descriptor: an io.StringIO costs three times as much per 130 KB record (it stores text
    # as 4-byte characters) and made the log look dearer than it is.
    def handled(event: dict[str, Any]) -> Callable[[], Any]:
        def call() -> Any:
            return predict_app.handler(event, context, service)

        return call

    events = {
        "split": api_event(split_body),
        "v2": v2_event(v2_body),
        "v2_binary": v2_binary_event(binary_body, binary_length),
    }
    with tempfile.TemporaryFile("w+") as sink, contextlib.redirect_stdout(sink):
        for event in events.values():
            checked = predict_app.handler(event, context, service)
            assert checked["statusCode"] == 200, checked
        assert checked["isBase64Encoded"], "binary outputs expected"
        medians, cpu = interleaved_clocks(
            {"raw": lambda: model.session.run(None, {name: A})}
            | {key: handled(event) for key, event in events.items()},
            n,
        )
    raw_interleaved = 1000 / medians["raw"]
    record(
        "raw ORT, interleaved with the three below",
        f"{raw_interleaved:,.0f} rows/s",
        f"CPU {1000 / cpu['raw']:,.0f} rows/s",
    )
    for key, label in (
        ("split", f"handler, dataframe_split (columnar), {len(split_body) // 1024} KB body"),
        ("v2", f"handler, Open Inference Protocol tensor, {len(v2_body) // 1024} KB body"),
        ("v2_binary", f"handler, V2 binary tensor (in and out), {len(binary_body) // 1024} KB body"),
    ):
        rate = 1000 / medians[key]
        record(
            label,
            f"{rate:,.0f} rows/s",
            f"{rate / raw_interleaved:.0%} of raw ORT (goal >= 50%); CPU time: {cpu['raw'] / cpu[key]:.0%}",
        )
        COLUMNAR[key] = rate
    COLUMNAR["raw"] = raw_interleaved

    body = orjson.dumps({"instances": [row_of(x) for x in A]})
    parse = timed(lambda: PredictRequest.model_validate_json(body), n, warmup=5)
    request = PredictRequest.model_validate_json(body)
    prepared = service._prepare(service._catalog.resolve("bench", "production"))
    feed = timed(lambda: prepared.feed(request.instances or []), n, warmup=5)
    record("  of which: parse 1,000 rows (pydantic, JSON)", f"{parse[0] / 1000:.2f} ms")
    record("  of which: validate + feed (vectorised)", f"{feed[0] / 1000:.2f} ms")

    # The floor of this request format in CPython, whatever the handler does: the fastest JSON
    # parser here (orjson), the cheapest matrix from the parsed rows, the model, and the
    # logged inputs written back to JSON once (the prediction log must carry them).
    getter = itemgetter(*FEATURES)
    rows = orjson.loads(body)["instances"]
    floor_parts = {
        "orjson.loads": timed(lambda: orjson.loads(body), n, warmup=5)[0],
        "matrix": timed(
            lambda: np.array(list(chain.from_iterable(map(getter, rows))), dtype=np.float32),
            n,
            warmup=5,
        )[0],
        "ORT": raw[0],
        "inputs to JSON": timed(lambda: orjson.dumps(rows), n, warmup=5)[0],
    }
    floor = sum(floor_parts.values())
    record(
        "  floor of {instances: [...]}: " + " + ".join(floor_parts),
        f"{1000 / (floor / 1e6):,.0f} rows/s",
        f"{raw[0] / floor:.0%} of raw ORT at best ("
        + ", ".join(f"{v / 1000:.2f}" for v in floor_parts.values())
        + " ms)",
    )


def explain_section(data: bytes, model: Any, X: np.ndarray, n: int) -> None:
    """One-row explanations of the same model: TreeSHAP in numpy, through the handler, kernel_shap, shap."""
    import shap

    from functions.predict import app as predict_app
    from mlambda.adapters.model_sessions import ModelSessions
    from mlambda.services.inference.explain import Explainers
    from mlambda.services.inference.prediction_log import PredictionLog
    from mlambda.services.inference.service import InferenceService
    from tests.explain_support import explained, with_explainer

    print(f"\n== explanations: one row of the same model, {n} calls each")
    started = time.perf_counter()
    e = explained(model, X[:5000])
    build_ms = (time.perf_counter() - started) * 1000
    record(
        "build the explainer (registration, 5,000 reference rows)",
        f"{build_ms:,.0f} ms",
        f"{len(e.artifact) // 1024} KB .npz",
    )
    x = X[:1]
    tree = timed(lambda: e.explainer.explain(x, [1], score=e.score), n)
    record("TreeSHAP path-dependent, 1 row (explainer.explain)", us(tree), "numpy, 100 trees x 8 leaves")
    peer = shap.TreeExplainer(model)
    shap_p = timed(lambda: peer.shap_values(x), max(100, n // 5))
    record("  shap.TreeExplainer(sklearn model).shap_values, 1 row", us(shap_p), "shap's C++ TreeSHAP")
    rows = X[:1000]
    many = timed(lambda: e.explainer.explain(rows, [1] * 1000, score=e.score), 20, warmup=2)
    record("TreeSHAP, 1,000 rows", f"{1000 / (many[0] / 1e6):,.0f} rows/s", f"p50 {many[0] / 1000:.1f} ms")
    kernel = timed(lambda: e.explainer.explain(x, [1], score=e.score, output="probability"), 20, warmup=2)
    record(
        "kernel_shap, 1 row (output: probability)",
        f"p50 {kernel[0] / 1000:6.1f} ms",
        "16,384 model rows in one ORT call",
    )

    artifacts = MemoryArtifacts({})
    version = with_explainer(model_version(data), data, X[:5000], artifacts)
    artifacts.objects[version.artifact_key] = data
    service = InferenceService(
        MemoryCatalog(version),
        ModelSessions(artifacts),
        PredictionLog(),
        explainers=Explainers(artifacts),
    )
    context = Context()
    plain = api_event(orjson.dumps({"instances": [row_of(X[0])]}))
    asked = api_event(orjson.dumps({"instances": [row_of(X[0])], "explain": True}))
    with contextlib.redirect_stdout(io.StringIO()) as sink:
        assert predict_app.handler(asked, context, service)["statusCode"] == 200

        def handler(event: dict[str, Any]) -> Any:
            sink.seek(0)
            sink.truncate()
            return predict_app.handler(event, context, service)

        without = timed(lambda: handler(plain), n)
        with_explain = timed(lambda: handler(asked), n)
    record("handler, 1 row, no explain (same service)", us(without))
    record("handler, 1 row, explain: true", us(with_explain), f"+{with_explain[0] - without[0]:.0f} µs")


def http_section(data: bytes, X: np.ndarray, n: int) -> None:
    import requests

    from mlambda_local.bootstrap import ensure_admin_key
    from mlambda_local.client import ApiClient, Target
    from mlambda_local.cloud import LocalCloud

    print("\n== end to end over HTTP through the local cloud (authorizer, no feature lookup)")
    with (
        tempfile.TemporaryDirectory() as tmp,
        LocalCloud(REPO / "template.yaml", Path(tmp)) as cloud,
    ):
        admin = ApiClient(
            Target(
                api_url=cloud.api_url,
                api_key=ensure_admin_key(Path(tmp), cloud.outputs["ApiKeysTableName"], cloud.endpoint_url),
            )
        )
        admin.post("/models", {"name": "bench"})
        ticket = admin.post("/models/bench/uploads", {"filename": "model.onnx"})
        requests.put(ticket["url"], data=data, timeout=30).raise_for_status()
        version = admin.post(
            "/models/bench/versions",
            {
                "upload_key": ticket["upload_key"],
                "feature_names": FEATURES,
                "smoke_inputs": [row_of(x) for x in X[:5]],
            },
        )
        admin.wait_until_ready("bench", int(version["version"]), timeout=120)
        admin.request("PUT", "/models/bench/aliases/production", body={"version": version["version"]})
        key = admin.post("/keys", {"name": "bench", "scopes": ["predict"]})["api_key"]
        url = f"{cloud.api_url}/models/bench/predict"
        body = orjson.dumps({"instances": [row_of(X[0])]})
        headers = {"x-api-key": key, "Content-Type": "application/json"}

        def worker(count: int) -> list[float]:
            session = requests.Session()
            samples = []
            for _ in range(count):
                start = time.perf_counter()
                response = session.post(url, data=body, headers=headers, timeout=30)
                samples.append(time.perf_counter() - start)
                response.raise_for_status()
            return samples

        with contextlib.redirect_stdout(io.StringIO()):
            worker(50)
        for clients in (1, 8):
            per_client = max(25, n // clients)
            with contextlib.redirect_stdout(io.StringIO()), ThreadPoolExecutor(clients) as pool:
                start = time.perf_counter()
                results = list(pool.map(worker, [per_client] * clients))
                elapsed = time.perf_counter() - start
            samples = [s for r in results for s in r]
            p50, p99 = percentiles(samples)
            record(
                f"{clients} client(s), {len(samples)} requests",
                f"p50 {p50 / 1000:5.2f} ms  p99 {p99 / 1000:5.2f} ms",
                f"{len(samples) / elapsed:,.0f} req/s",
            )
        cold_start_section(cloud)


COLD = textwrap.dedent(
    """
    import json, os, sys, time
    t0 = time.perf_counter()
    from functions.predict import app
    t1 = time.perf_counter()
    event = json.loads(open(sys.argv[1]).read())
    class Context:
        function_name = "predict"; function_version = "$LATEST"; memory_limit_in_mb = 1024
        invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:predict"
        aws_request_id = "cold"; log_group_name = "g"; log_stream_name = "s"
        @staticmethod
        def get_remaining_time_in_millis(): return 10000
    response = app.handler(event, Context())
    t2 = time.perf_counter()
    sys.stderr.write(json.dumps({"status": response["statusCode"], "import_s": t1 - t0, "first_s": t2 - t1,
                                 "answered_at": time.time(), "pandas": "pandas" in sys.modules}) + "\\n")
    """
)


def cold_start_section(cloud: Any) -> None:
    print("\n== cold start: fresh process -> first prediction (imports, config, model fetch, session)")
    outputs = cloud.outputs
    env = {
        **os.environ,
        "AWS_ENDPOINT_URL": cloud.endpoint_url,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_REGION": "us-east-1",
        "REGISTRY_TABLE": outputs["RegistryTableName"],
        "ARTIFACTS_BUCKET": outputs["ArtifactsBucketName"],
        "FEATURES_TABLE": outputs["FeaturesTableName"],
        "TRACKING_TABLE": outputs["TrackingTableName"],
        "PREDICTION_CACHE_TABLE": outputs["PredictionCacheTableName"],
        "DATA_BUCKET": outputs["DataBucketName"],
        "POWERTOOLS_SERVICE_NAME": "predict",
        "POWERTOOLS_METRICS_NAMESPACE": "mlambda",
        "POWERTOOLS_TRACE_DISABLED": "true",
        "PYTHONPATH": f"{REPO}:{REPO / 'shared'}",
    }
    X = train_cache["X"]
    event_path = Path(tempfile.mkstemp(suffix=".json")[1])
    event_path.write_text(json.dumps(api_event(orjson.dumps({"instances": [row_of(X[0])]}))))
    totals, exits, imports, firsts = [], [], [], []
    pandas_loaded = False
    for _ in range(5):
        launched, start = time.time(), time.perf_counter()
        done = subprocess.run(
            [sys.executable, "-c", COLD, str(event_path)],
            env=env,
            capture_output=True,
            text=True,
            check=True,
            cwd=REPO,
        )
        exits.append(time.perf_counter() - start)
        figures = json.loads(done.stderr.strip().splitlines()[-1])
        # Until the answer, not until the process has exited: Lambda keeps the process warm.
        totals.append(figures["answered_at"] - launched)
        assert figures["status"] == 200, done.stdout[-6000:] + done.stderr
        imports.append(figures["import_s"])
        firsts.append(figures["first_s"])
        pandas_loaded |= figures["pandas"]
    record(
        "process start -> first prediction (median of 5)",
        f"{statistics.median(totals) * 1000:,.0f} ms",
        "includes interpreter start",
    )
    record(
        "  (launch -> process exit, interpreter teardown included)",
        f"{statistics.median(exits) * 1000:,.0f} ms",
    )
    record("  import functions.predict.app", f"{statistics.median(imports) * 1000:,.0f} ms")
    record(
        "  first request (settings, registry, S3 fetch, session, warm-up)",
        f"{statistics.median(firsts) * 1000:,.0f} ms",
    )
    record("  pandas imported on the predict path", str(pandas_loaded))
    event_path.unlink()


def columnar_http_section(onnx: bytes, X: np.ndarray, calls: int, mlflow_python: Path) -> None:
    """1,000 rows per request over local HTTP: ``mlambda local up`` beside ``mlflow models serve``, one run.

    Both servers up at once in their own processes, called in turn request by request with the
    same kept-alive ``http.client`` client (benchmarks/bench_http.py), medians compared: on a
    shared machine the load changes by the second. The same model trained with the same seed
    (ONNX here, the sklearn flavour in MLflow, whose own format is ``dataframe_split``).
    """
    import requests

    from benchmarks import bench_http

    print(f"\n== 1,000 rows per request over local HTTP, {calls} requests each, interleaved (beside MLflow)")
    A = X[:1000].astype(np.float32)
    with tempfile.TemporaryDirectory() as tmp:
        scratch = Path(tmp)
        data_dir = scratch / "mlambda"
        process = bench_http.mlambda_up(data_dir, bench_http.free_port())
        model_dir = scratch / "mlflow-model"
        version = bench_http.save_mlflow_model(mlflow_python, model_dir)
        port = bench_http.free_port()
        server = bench_http.mlflow_serve(mlflow_python, model_dir, port)
        try:
            bench_http.wait_until(
                lambda: bench_http.api_url_of(data_dir) is not None, 180, "mlambda local up"
            )
            api_url, key = bench_http.mlambda_setup(data_dir, onnx, X)
            headers = {"x-api-key": key}
            predict = bench_http.Endpoint(
                "mlambda", f"{api_url}/models/bench/predict", headers, bench_http.instances
            )
            infer = bench_http.Endpoint(
                "mlambda", f"{api_url}/v2/models/bench/infer", headers, bench_http.instances
            )
            name = json.loads(_get(f"{api_url}/v2/models/bench", headers))["inputs"][0]["name"]
            v2 = orjson.dumps(
                {
                    "inputs": [
                        {"name": name, "shape": [1000, 20], "datatype": "FP32", "data": A.ravel().tolist()}
                    ]
                }
            )
            binary_body, binary_length = v2_binary_body(name, A)
            infer_binary = bench_http.Endpoint(
                "mlambda",
                f"{api_url}/v2/models/bench/infer",
                {**headers, **BINARY_HEADERS, "Inference-Header-Content-Length": str(binary_length)},
                bench_http.instances,
            )
            mlflow = bench_http.Endpoint(
                "mlflow", f"http://127.0.0.1:{port}/invocations", {}, bench_http.dataframe_split
            )
            bench_http.wait_until(
                lambda: bench_http.answers(mlflow, bench_http.dataframe_split(A[:1])),
                180,
                "mlflow models serve",
            )
            targets = {
                "mlambda dataframe_split": (predict, bench_http.dataframe_split(A)),
                "mlambda Open Inference Protocol tensor": (infer, v2),
                "mlambda V2 binary tensor (in and out)": (infer_binary, binary_body),
                "mlambda instances (rows by name)": (predict, bench_http.instances(A)),
                f"MLflow {version} dataframe_split": (mlflow, bench_http.dataframe_split(A)),
            }
            checked = requests.post(
                f"{api_url}/v2/models/bench/infer", data=binary_body, headers=infer_binary.headers, timeout=60
            )
            header_length = int(checked.headers["Inference-Header-Content-Length"])
            assert len(checked.content) == header_length + 1000 * 8 + 1000 * 2 * 4, "binary outputs expected"
            connections = {label: endpoint.connection() for label, (endpoint, _) in targets.items()}
            medians = interleaved(
                {
                    label: (lambda e=endpoint, c=connections[label], b=body: e.call(c, b))
                    for label, (endpoint, body) in targets.items()
                },
                calls,
            )
        finally:
            bench_http.mlambda_down(process)
            os.killpg(server.pid, signal.SIGTERM)
            server.wait(timeout=30)
    theirs = next(1000 / v for k, v in medians.items() if k.startswith("MLflow"))
    for label, seconds in medians.items():
        rate = 1000 / seconds
        note = "" if label.startswith("MLflow") else f"{rate / theirs:.2f}x MLflow (goal >= 2x)"
        record(f"HTTP 1,000 rows: {label}", f"{rate:,.0f} rows/s", note)


def _get(url: str, headers: dict[str, str]) -> str:
    import requests

    response = requests.get(url, headers=headers, timeout=30)
    response.raise_for_status()
    return response.text


train_cache: dict[str, Any] = {}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="fewer iterations, for a smoke run")
    parser.add_argument("--skip-http", action="store_true", help="in-process figures only")
    parser.add_argument("--columnar-only", action="store_true", help="the 1,000-row columnar figures only")
    parser.add_argument("--mlflow-python", default=str(REPO / ".venv-bench-mlflow" / "bin" / "python"))
    args = parser.parse_args()
    n = 500 if args.quick else 5000
    print(
        f"mlambda predict benchmark: python {sys.version.split()[0]}, onnxruntime {ort.__version__}, {os.cpu_count()} CPUs"
    )
    data, model, X = train()
    train_cache["X"] = X
    figures: dict[str, float] = {}
    if not args.columnar_only:
        session_options_section(data, X[:1], n)
        figures = in_process_section(data, X, n)
        explain_section(data, model, X, n)
    batch_section(data, X, 20 if args.quick else 100)
    if not args.skip_http:
        if not args.columnar_only:
            http_section(data, X, 200 if args.quick else 1000)
        columnar_http_section(data, X, 10 if args.quick else 50, Path(args.mlflow_python))
    print("\n== summary")
    for name, value, note in ROWS:
        print(f"{name:60} {value:>24}  {note}")
    if figures:
        print(
            f"\ngoals: handler p50 <= 3x minimal -> {figures['handler_p50'] / figures['minimal_p50']:.2f}x; "
            f"handler p99 < 1 ms -> {figures['handler_p99']:.0f} µs"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
