"""How a function's workers are launched: from the source tree, or from SAM's built artifacts.

- **Source** (the default): the runner's own interpreter (the project's virtualenv, where
  ``mlambda`` and ``awslambdaric`` are installed), ``cwd`` = the function's ``CodeUri``.
- **Built** (``local up --from-build``): ``sam build``'s layout, ``.aws-sam/build/template.yaml``
  with each function in ``.aws-sam/build/<LogicalId>/`` and each layer's packages in
  ``.aws-sam/build/<LayerLogicalId>/python/``, run by the template's ``Runtime`` (Python 3.12
  under pyenv here) with ``-S``: the worker sees its artifact, its layers, and what Lambda's
  runtime provides (``awslambdaric`` and boto3, installed once for that Python), and nothing else. A missing module then
  fails the way it would on Lambda (``Runtime.ImportModuleError``).

The runtime's packages are installed once per machine, in the user's cache
(``$XDG_CACHE_HOME/mlambda/lambda-runtime/<runtime>``, ``~/.cache`` by default), not per data
directory: a demo wipes its data directory on every run.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from importlib import metadata
from pathlib import Path

from mlambda_local.cloud.errors import TemplateError
from mlambda_local.cloud.execution import WorkerLaunch
from mlambda_local.cloud.functions import FunctionSpec

BUILD_DIRECTORY = Path(".aws-sam") / "build"
RUNTIME_PACKAGES = ("awslambdaric", "boto3")
"""What Lambda's Python runtime brings besides the standard library."""


def source_launch(spec: FunctionSpec, python: str | None = None) -> WorkerLaunch:
    """Workers of ``spec`` started from the source tree with this virtualenv's interpreter."""
    return WorkerLaunch(python=python or sys.executable, code_dir=spec.code_dir, runtime_name=spec.runtime)


def runtime_python(runtime: str) -> str:
    """The interpreter for a template ``Runtime`` (``python3.12``): pyenv's, or one on PATH that runs."""
    found = re.fullmatch(r"python(\d+)\.(\d+)", runtime)
    if found is None:
        raise TemplateError(f"runtime {runtime!r} cannot run locally (only pythonX.Y runtimes)")
    version = f"{found.group(1)}.{found.group(2)}"
    candidates: list[str] = []
    if shutil.which("pyenv"):
        listed = subprocess.run(
            ["pyenv", "versions", "--bare"], capture_output=True, text=True, check=False
        ).stdout.split()
        matching = sorted(
            (v for v in listed if re.fullmatch(rf"{re.escape(version)}\.\d+", v)),
            key=lambda v: int(v.rsplit(".", 1)[1]),
        )
        for name in reversed(matching):
            prefix = subprocess.run(
                ["pyenv", "prefix", name], capture_output=True, text=True, check=False
            ).stdout.strip()
            if prefix:
                candidates.append(str(Path(prefix) / "bin" / f"python{version}"))
    if on_path := shutil.which(f"python{version}"):
        candidates.append(on_path)
    for candidate in candidates:
        probe = subprocess.run(
            [candidate, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
            capture_output=True,
            text=True,
            check=False,
        )
        if probe.returncode == 0 and probe.stdout.strip() == version:
            return candidate
    raise TemplateError(
        f"the built functions need Python {version} (their Runtime is {runtime}) and none was found: "
        f"install it (e.g. `pyenv install {version}`) or run from the source tree without --from-build"
    )


def runtime_cache() -> Path:
    """Where the Lambda runtimes' packages are kept for every project and data directory."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "mlambda" / "lambda-runtime"


def runtime_support(python: str, runtime: str, cache: Path | None = None) -> Path:
    """``awslambdaric`` and boto3 for ``python``, installed once under ``<cache>/<runtime>``.

    The versions are this virtualenv's, so the built functions meet the same runtime client and
    SDK as the source tree; the folder is rebuilt when they change.
    """
    versions = {name: metadata.version(name) for name in RUNTIME_PACKAGES}
    target = (cache or runtime_cache()) / runtime
    stamp = target / ".installed.json"
    if stamp.exists() and json.loads(stamp.read_text(encoding="utf-8")) == versions:
        return target
    shutil.rmtree(target, ignore_errors=True)
    target.mkdir(parents=True)
    done = subprocess.run(
        [
            python,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            "--no-input",
            "--only-binary=:all:",
            "--target",
            str(target),
            *(f"{name}=={version}" for name, version in versions.items()),
        ],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "PIP_REQUIRE_VIRTUALENV": "0"},
    )
    if done.returncode != 0:
        shutil.rmtree(target, ignore_errors=True)
        raise TemplateError(
            f"could not install the Lambda runtime's packages ({', '.join(RUNTIME_PACKAGES)}) for {python}: "
            f"{done.stderr.strip()[-800:]}"
        )
    stamp.write_text(json.dumps(versions), encoding="utf-8")
    return target


def built_launch(spec: FunctionSpec, python: str, support: Path) -> WorkerLaunch:
    """Workers of ``spec`` started from its built artifact and layers, isolated from this virtualenv."""
    if not spec.code_dir.is_dir():
        raise TemplateError(
            f"function {spec.logical_id}: no built artifact at {spec.code_dir} (run `sam build` first)"
        )
    layers = tuple(directory / "python" for directory in spec.layer_dirs)
    for layer, directory in zip(spec.layer_dirs, layers, strict=True):
        if not directory.is_dir():
            raise TemplateError(
                f"function {spec.logical_id}: layer {layer.name} has no python/ folder at {directory} "
                "(run `sam build` first)"
            )
    return WorkerLaunch(
        python=python,
        code_dir=spec.code_dir,
        python_path=(*layers, support),
        isolated=True,
        runtime_name=spec.runtime,
    )
