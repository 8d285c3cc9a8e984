# mlambda: `make demo` and `make test` are all a newcomer needs (see README.md).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
PYTEST_ARGS ?=
# Benchmarks reuse test helpers (tests/), hence the repo root on the path.
BENCH := PYTHONPATH=. $(BIN)/python

.PHONY: install demo up test test-triton unit integration e2e fuzz openapi browser screenshots lint format clean build package-check bench bench-registry bench-predict bench-ingest bench-batch bench-monitor bench-http bench-monitor-calibration bench-queues bench-restart bench-cold-start

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

demo: install  ## start the local cloud and run the platform end to end
	$(BIN)/mlambda demo

up: install  ## run the local cloud in the foreground (Ctrl-C stops it)
	$(BIN)/mlambda local up

test: install lint package-check  ## lint, type-check, prove the built artifacts, run the whole suite
	$(BIN)/pytest -n 2 --dist loadfile $(PYTEST_ARGS)

unit: install
	$(BIN)/pytest tests/unit $(PYTEST_ARGS)

integration: install
	$(BIN)/pytest tests/integration $(PYTEST_ARGS)

e2e: install
	$(BIN)/pytest tests/e2e $(PYTEST_ARGS)

browser: install  ## the console in Chromium (apt-get install -y chromium) against a seeded local cloud
	$(BIN)/pytest tests/browser $(PYTEST_ARGS)

screenshots: install  ## every console page photographed into .github/screenshots/ (the README shows them)
	PYTHONPATH=. $(BIN)/python -m tests.browser.screenshots

# tritonclient (the Open Inference Protocol's reference client) in its own virtualenv, never a dependency.
TRITON_VENV := .venv-test-triton
$(TRITON_VENV)/.installed-stamp:
	test -x $(TRITON_VENV)/bin/python || $(PYTHON) -m venv $(TRITON_VENV)
	$(TRITON_VENV)/bin/python -m pip install --quiet 'tritonclient[http]>=2.40'
	touch $@

test-triton: install $(TRITON_VENV)/.installed-stamp  ## tritonclient against the local cloud's /v2 routes
	MLAMBDA_TRITON_PYTHON=$(TRITON_VENV)/bin/python $(BIN)/pytest tests/e2e/test_triton_client_e2e.py $(PYTEST_ARGS)

# make test fuzzes for 60 s from a fixed seed (tests/e2e/test_fuzz_api.py); this runs it longer from a
# new seed each time (MLAMBDA_FUZZ_SEED=<the number it printed> replays one) and prints what it tried.
MLAMBDA_FUZZ_SECONDS ?= 600
MLAMBDA_FUZZ_SEED ?= random
fuzz: install  ## property-based fuzz of every API operation for MLAMBDA_FUZZ_SECONDS (600) from a new seed: operations, test cases, failures
	MLAMBDA_FUZZ_SECONDS=$(MLAMBDA_FUZZ_SECONDS) MLAMBDA_FUZZ_SEED=$(MLAMBDA_FUZZ_SEED) $(BIN)/pytest tests/e2e/test_fuzz_api.py -s -p no:randomly $(PYTEST_ARGS)

openapi: install  ## regenerate functions/console/openapi.json from the API functions (a test fails when it drifts)
	$(BIN)/python -m mlambda_local.openapi

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

format: install
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

bench: bench-registry bench-predict bench-ingest bench-batch bench-monitor bench-http bench-queues bench-restart bench-cold-start  ## every benchmark, figures printed

bench-registry: install
	$(BENCH) benchmarks/bench_registry.py

# MLflow, the peer of bench-predict and bench-http, lives in its own virtualenv: never a dependency of the project.
MLFLOW_VENV := .venv-bench-mlflow
$(MLFLOW_VENV)/.installed-stamp:
	test -x $(MLFLOW_VENV)/bin/python || $(PYTHON) -m venv $(MLFLOW_VENV)
	$(MLFLOW_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(MLFLOW_VENV)/bin/python -m pip install --quiet 'mlflow>=3,<4' scikit-learn pandas
	touch $@

# The 1,000-row columnar figures are printed beside MLflow's (its virtualenv: see bench-http).
bench-predict: install $(MLFLOW_VENV)/.installed-stamp  ## in process and over HTTP, 1,000-row columnar requests beside raw onnxruntime and MLflow
	$(BENCH) benchmarks/bench_predict.py

bench-ingest: install
	$(BENCH) benchmarks/bench_ingest.py

bench-batch: install
	$(BENCH) benchmarks/bench_batch.py

bench-monitor: install
	$(BENCH) benchmarks/bench_monitor.py

bench-cold-start: install  ## predict, batch_worker, monitor: fresh process to first answer from the built artifact, before (f454d5d) and now
	$(BENCH) benchmarks/bench_cold_start.py --before f454d5d

bench-queues: install  ## one SQS call on the local moto with 20 and 10,000 messages queued
	$(BENCH) benchmarks/bench_local_queues.py

bench-restart: install  ## kill -9 of local up, then local up: time to serving with 0, 1,000 and 10,000 objects/items/messages stored
	$(BENCH) benchmarks/bench_restart.py

bench-http: install $(MLFLOW_VENV)/.installed-stamp  ## one-row and 1,000-row predict over HTTP, cold start: mlambda beside mlflow models serve
	$(BENCH) benchmarks/bench_http.py

# Evidently (the peer) lives in its own virtualenv, never in the project's dependencies;
# pandas<3: Evidently 0.7.23 imports a pandas internal that pandas 3 removed.
EVIDENTLY_VENV := .venv-bench-evidently
$(EVIDENTLY_VENV)/.installed-stamp:
	test -x $(EVIDENTLY_VENV)/bin/python || $(PYTHON) -m venv $(EVIDENTLY_VENV)
	$(EVIDENTLY_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(EVIDENTLY_VENV)/bin/python -m pip install --quiet 'evidently==0.7.23' 'pandas<3' scikit-learn
	touch $@

TRIALS ?= 200
COVERAGE_SAMPLES ?= 1000
bench-monitor-calibration: install $(EVIDENTLY_VENV)/.installed-stamp  ## alarm rates, detection, coverage vs Evidently
	$(BENCH) benchmarks/bench_monitor_calibration.py --trials $(TRIALS) --coverage-samples $(COVERAGE_SAMPLES)

build: install  ## build every function as sam build lays it out (.aws-sam/build), sizes printed
	$(BIN)/python -m mlambda_local.packaging --build-only

package-check: install  ## build, fail on any function over 90% of Lambda's limit, answer an event from each artifact alone
	$(BIN)/python -m mlambda_local.packaging

clean:
	rm -rf $(VENV) $(MLFLOW_VENV) $(EVIDENTLY_VENV) $(TRITON_VENV) .mlambda .pytest_cache .mypy_cache .ruff_cache .aws-sam
