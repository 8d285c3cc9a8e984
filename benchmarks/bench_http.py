"""Predict over local HTTP, mlambda's local cloud beside ``mlflow models serve``, on the same model, in one run.

The model: a 20-feature GradientBoostingClassifier (100 trees, depth 3) trained with the same
seed on both sides: ONNX in mlambda, the sklearn flavour in MLflow. Both servers run in their own
processes (``mlambda local up``, worker processes per function, as a user runs it; ``mlflow
models serve --env-manager local`` from ``.venv-bench-mlflow``, which ``make bench-http``
creates; MLflow is never a dependency of the project). The client is this process, plain
``http.client`` with kept-alive connections, the same for both.

Figures: one-row predict sequential (p50, p99, req/s), 8 clients (req/s), 1,000 rows in one
request (rows/s: mlambda's ``instances``, MLflow's ``dataframe_split``), and cold start: launch
of the server to its first answer (mlambda restarted on a data directory that holds the model,
as after ``local up`` was stopped). Goals (issue 13): p50 <= 1.5 ms, >= 5x MLflow's req/s
sequential and with 8 clients, cold start < 2 s. Prints a table; asserts nothing.

Wall-clock figures on a shared machine measure the other programs too. So mlambda's side also
prints what does not depend on them: the CPU each of its processes spent per sequential one-row
request (``local up``: the front door, the Runtime API, moto and the log subscription; the
predict worker; the archiver, which the prediction log reaches through the subscription), and
the last restart's start-up timeline (each phase's wall and CPU seconds from the process's
start, the pre-warmed workers' inits, the first API answer).

    make bench-http            # or: .venv/bin/python benchmarks/bench_http.py [--quick]
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import requests
from skl2onnx import to_onnx
from sklearn.datasets import make_classification
from sklearn.ensemble import GradientBoostingClassifier

from mlambda_local.client import ADMIN_KEY_FILE

REPO = Path(__file__).resolve().parent.parent
FEATURES = [f"f{i}" for i in range(20)]
TRAIN = textwrap.dedent(
    """
    import sys
    from sklearn.datasets import make_classification
    from sklearn.ensemble import GradientBoostingClassifier
    X, y = make_classification(n_samples=5000, n_features=20, n_informative=10, random_state=0)
    model = GradientBoostingClassifier(n_estimators=100, max_depth=3, random_state=0).fit(X, y)
    """
)
SAVE_MLFLOW = TRAIN + textwrap.dedent(
    """
    import mlflow.sklearn, pandas as pd
    # Our own model, so its tree type is trusted (MLflow 3.18 saves sklearn models with skops).
    mlflow.sklearn.save_model(
        model, sys.argv[1], input_example=pd.DataFrame(X[:2], columns=[f"f{i}" for i in range(20)]),
        skops_trusted_types=["sklearn.tree._tree.Tree"],
    )
    print(mlflow.__version__)
    """
)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def train() -> tuple[bytes, np.ndarray]:
    X, y = make_classification(n_samples=5000, n_features=20, n_informative=10, random_state=0)
    model = GradientBoostingClassifier(n_estimators=100, max_depth=3, random_state=0).fit(X, y)
    onx = to_onnx(model, X[:1].astype(np.float32), options={id(model): {"zipmap": False}})
    return onx.SerializeToString(), X


class Endpoint:
    """One server's predict route, called with kept-alive ``http.client`` connections."""

    def __init__(
        self, name: str, url: str, headers: dict[str, str], body: Callable[[np.ndarray], bytes]
    ) -> None:
        parts = url.removeprefix("http://").split("/", 1)
        self.name = name
        self.host, self.port = parts[0].split(":")[0], int(parts[0].split(":")[1])
        self.path = "/" + parts[1]
        self.headers = {"Content-Type": "application/json", **headers}
        self.body = body

    def connection(self) -> http.client.HTTPConnection:
        connection = http.client.HTTPConnection(self.host, self.port, timeout=60)
        connection.connect()
        connection.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return connection

    def call(self, connection: http.client.HTTPConnection, payload: bytes) -> bytes:
        connection.request("POST", self.path, payload, self.headers)
        response = connection.getresponse()
        data = response.read()
        if response.status != 200:
            raise RuntimeError(f"{self.name}: {response.status} {data[:300]!r}")
        return data


def sequential(endpoint: Endpoint, payload: bytes, n: int) -> tuple[float, float, float]:
    """p50 and p99 (ms), and requests per second, of ``n`` calls one after the other."""
    connection = endpoint.connection()
    for _ in range(min(200, n)):
        endpoint.call(connection, payload)
    samples = []
    clock = time.perf_counter
    started = clock()
    for _ in range(n):
        begun = clock()
        endpoint.call(connection, payload)
        samples.append(clock() - begun)
    elapsed = clock() - started
    connection.close()
    ordered = sorted(samples)
    return ordered[len(ordered) // 2] * 1000, ordered[int(len(ordered) * 0.99) - 1] * 1000, n / elapsed


def concurrent(endpoint: Endpoint, payload: bytes, clients: int, per_client: int) -> float:
    """Requests per second of ``clients`` threads, each with its own connection."""

    def client(count: int) -> None:
        connection = endpoint.connection()
        for _ in range(count):
            endpoint.call(connection, payload)
        connection.close()

    with ThreadPoolExecutor(clients) as pool:
        list(pool.map(client, [20] * clients))  # warm every connection and worker
        started = time.perf_counter()
        list(pool.map(client, [per_client] * clients))
        elapsed = time.perf_counter() - started
    return clients * per_client / elapsed


def wait_until(probe: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not probe():
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what} not ready within {timeout:.0f} s")
        time.sleep(0.01)


def answers(endpoint: Endpoint, payload: bytes) -> bool:
    try:
        connection = endpoint.connection()
        try:
            endpoint.call(connection, payload)
        finally:
            connection.close()
    except (OSError, RuntimeError, http.client.HTTPException):
        return False
    return True


# ---------------------------------------------------------------- mlambda


def mlambda_up(data_dir: Path, port: int) -> subprocess.Popen[bytes]:
    """``mlambda local up`` in its own process (worker processes per function, the default)."""
    log = (data_dir.parent / "local-up.log").open("ab")
    return subprocess.Popen(
        [
            str(REPO / ".venv" / "bin" / "mlambda"),
            "--data-dir",
            str(data_dir),
            "--template",
            str(REPO / "template.yaml"),
            "local",
            "up",
            "--api-port",
            str(port),
            "--quiet",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=REPO,
    )


def mlambda_down(process: subprocess.Popen[bytes]) -> None:
    process.send_signal(signal.SIGINT)
    try:
        process.wait(timeout=60)
    except subprocess.TimeoutExpired:
        process.kill()


def api_url_of(data_dir: Path) -> str | None:
    """The API URL once ``local up`` is serving and has written its admin key."""
    try:
        state = json.loads((data_dir / "state.json").read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None
    ready = state.get("pid") and state.get("api_url") and (data_dir / ADMIN_KEY_FILE).exists()
    return str(state["api_url"]) if ready else None


def mlambda_setup(data_dir: Path, onnx: bytes, X: np.ndarray) -> tuple[str, str]:
    """Register the model behind ``production`` and make a predict key, through the API; (api_url, key)."""
    from mlambda_local.client import ApiClient, Target

    api_url = api_url_of(data_dir)
    assert api_url is not None
    admin = ApiClient(Target(api_url=api_url, api_key=(data_dir / ADMIN_KEY_FILE).read_text().strip()))
    admin.post("/models", {"name": "bench"})
    ticket = admin.post("/models/bench/uploads", {"filename": "model.onnx"})
    requests.put(ticket["url"], data=onnx, timeout=60).raise_for_status()
    version = admin.post(
        "/models/bench/versions",
        {
            "upload_key": ticket["upload_key"],
            "feature_names": FEATURES,
            "smoke_inputs": [dict(zip(FEATURES, map(float, x), strict=True)) for x in X[:5]],
        },
    )
    admin.wait_until_ready("bench", int(version["version"]), timeout=180)
    admin.request("PUT", "/models/bench/aliases/production", body={"version": version["version"]})
    key = admin.post("/keys", {"name": "bench", "scopes": ["predict"]})["api_key"]
    return api_url, str(key)


def instances(rows: np.ndarray) -> bytes:
    return orjson.dumps({"instances": [dict(zip(FEATURES, map(float, x), strict=True)) for x in rows]})


def dataframe_split(rows: np.ndarray) -> bytes:
    return orjson.dumps({"dataframe_split": {"columns": FEATURES, "data": rows.tolist()}})


def measure(endpoint: Endpoint, X: np.ndarray, n: int, big_n: int) -> dict[str, float]:
    one = endpoint.body(X[:1])
    p50, p99, rate = sequential(endpoint, one, n)
    clients8 = concurrent(endpoint, one, 8, max(25, n // 8))
    big = endpoint.body(X[:1000])
    connection = endpoint.connection()
    endpoint.call(connection, big)
    started = time.perf_counter()
    for _ in range(big_n):
        endpoint.call(connection, big)
    rows_per_s = big_n * 1000 / (time.perf_counter() - started)
    connection.close()
    return {"p50": p50, "p99": p99, "rps": rate, "rps8": clients8, "rows": rows_per_s}


def cpu_per_request(process: subprocess.Popen[bytes], endpoint: Endpoint, X: np.ndarray, n: int) -> str:
    """CPU microseconds per sequential one-row request in each process of the cloud (deliveries included)."""
    from tests.local_cloud_process import cpu_seconds_by_process

    payload = instances(X[:1])
    connection = endpoint.connection()
    for _ in range(200):
        endpoint.call(connection, payload)
    time.sleep(2.0)  # the warm-up's log deliveries done
    before = cpu_seconds_by_process(process.pid)
    for _ in range(n):
        endpoint.call(connection, payload)
    connection.close()
    time.sleep(2.5)  # this run's prediction log delivered and archived (the subscription polls every second)
    after = cpu_seconds_by_process(process.pid)
    spent = {name: (after[name] - before.get(name, 0.0)) / n * 1e6 for name in after}
    shown = sorted(((us, name) for name, us in spent.items() if us >= 1), reverse=True)
    return ", ".join(f"{name} {us:.0f}" for us, name in shown) + f"; total {sum(spent.values()):.0f} us"


def startup_timeline(data_dir: Path) -> str:
    """The running cloud's start-up phases (wall/CPU seconds) and events, from its control API."""
    from mlambda_local.cloud import ControlClient

    startup = ControlClient.from_data_dir(data_dir).status()["startup"]
    phases = ", ".join(f"{p['phase']} {p['seconds']:.2f}/{p['cpu_s']:.2f}" for p in startup["phases"])
    events = ", ".join(f"{e['event']} at {e['at_s']:.2f}" for e in startup["events"])
    return f"{events}; phases (wall/cpu s from the process's start): {phases}"


def mlambda_side(scratch: Path, onnx: bytes, X: np.ndarray, n: int, big_n: int) -> dict[str, Any]:
    data_dir = scratch / "mlambda"
    port = free_port()
    process = mlambda_up(data_dir, port)
    try:
        wait_until(lambda: api_url_of(data_dir) is not None, 180, "mlambda local up")
        api_url, key = mlambda_setup(data_dir, onnx, X)
        endpoint = Endpoint("mlambda", f"{api_url}/models/bench/predict", {"x-api-key": key}, instances)
        figures: dict[str, Any] = dict(measure(endpoint, X, n, big_n))
        figures["cpu"] = cpu_per_request(process, endpoint, X, n)
    finally:
        mlambda_down(process)
    # Cold start: the same data directory, a new `local up`, until the first answer
    colds = []
    for _ in range(3):
        launched = time.perf_counter()
        process = mlambda_up(data_dir, port)
        try:
            wait_until(lambda: answers(endpoint, instances(X[:1])), 120, "mlambda restart")
            colds.append(time.perf_counter() - launched)
            figures["timeline"] = startup_timeline(data_dir)
        finally:
            mlambda_down(process)
    figures["cold"] = statistics.median(colds)
    return figures


# ---------------------------------------------------------------- MLflow


def save_mlflow_model(python: Path, model_dir: Path) -> str:
    """The benchmark's model saved in MLflow's sklearn flavour by MLflow's own virtualenv; its version."""
    saved = subprocess.run(
        [str(python), "-c", SAVE_MLFLOW, str(model_dir)], capture_output=True, text=True, check=True
    )
    return saved.stdout.strip().splitlines()[-1]


def mlflow_serve(python: Path, model_dir: Path, port: int) -> subprocess.Popen[bytes]:
    """``mlflow models serve`` on the saved model, in a session of its own (stopped with its group)."""
    return subprocess.Popen(
        [
            str(python.parent / "mlflow"),
            "models",
            "serve",
            "-m",
            str(model_dir),
            "-h",
            "127.0.0.1",
            "-p",
            str(port),
            "--env-manager",
            "local",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "PATH": f"{python.parent}:{os.environ['PATH']}"},
        start_new_session=True,
    )


def mlflow_side(
    scratch: Path, python: Path, X: np.ndarray, n: int, big_n: int
) -> tuple[dict[str, float], str]:
    model_dir = scratch / "mlflow-model"
    version = save_mlflow_model(python, model_dir)
    port = free_port()
    endpoint = Endpoint("mlflow", f"http://127.0.0.1:{port}/invocations", {}, dataframe_split)
    colds = []
    figures: dict[str, float] = {}
    for attempt in range(3):
        launched = time.perf_counter()
        process = mlflow_serve(python, model_dir, port)
        try:
            wait_until(lambda: answers(endpoint, dataframe_split(X[:1])), 180, "mlflow models serve")
            colds.append(time.perf_counter() - launched)
            if attempt == 0:
                figures = measure(endpoint, X, n, big_n)
        finally:
            os.killpg(process.pid, signal.SIGTERM)
            process.wait(timeout=30)
    figures["cold"] = statistics.median(colds)
    return figures, version


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="fewer requests, for a smoke run")
    parser.add_argument("--mlflow-python", default=str(REPO / ".venv-bench-mlflow" / "bin" / "python"))
    args = parser.parse_args()
    n, big_n = (300, 5) if args.quick else (3000, 30)
    print(
        f"bench-http: python {sys.version.split()[0]}, {os.cpu_count()} CPUs, {n} sequential requests",
        flush=True,
    )
    onnx, X = train()
    X = X.astype(np.float32)
    with tempfile.TemporaryDirectory() as tmp:
        scratch = Path(tmp)
        ours = mlambda_side(scratch, onnx, X, n, big_n)
        print("  mlambda measured", flush=True)
        theirs, version = mlflow_side(scratch, Path(args.mlflow_python), X, n, big_n)
        print("  mlflow measured", flush=True)
    rows = [
        (
            "one-row predict, sequential p50 / p99",
            f"{theirs['p50']:.2f} / {theirs['p99']:.2f} ms",
            f"{ours['p50']:.2f} / {ours['p99']:.2f} ms",
            "p50 <= 1.5 ms",
        ),
        (
            "one-row predict, sequential req/s",
            f"{theirs['rps']:,.0f}",
            f"{ours['rps']:,.0f}",
            f">= 5x: {ours['rps'] / theirs['rps']:.1f}x",
        ),
        (
            "one-row predict, 8 clients req/s",
            f"{theirs['rps8']:,.0f}",
            f"{ours['rps8']:,.0f}",
            f">= 5x: {ours['rps8'] / theirs['rps8']:.1f}x",
        ),
        (
            "1,000 rows in one request, rows/s",
            f"{theirs['rows']:,.0f}",
            f"{ours['rows']:,.0f}",
            f"{ours['rows'] / theirs['rows']:.2f}x",
        ),
        ("cold start to first answer", f"{theirs['cold']:.2f} s", f"{ours['cold']:.2f} s (restart)", "< 2 s"),
    ]
    header = ("", f"MLflow {version}", "mlambda local", "goal")
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(4)]
    print()
    for row in [header, *rows]:
        print("  ".join(str(cell).ljust(width) for cell, width in zip(row, widths, strict=True)))
    print(f"\nmlambda CPU per sequential one-row request, by process: {ours['cpu']}")
    print(f"mlambda's last restart: {ours['timeline']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
