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
import shutil
import subprocess
import sys
from importlib import metadata
from pathlib import Path

from mlambda_local.cloud.errors import TemplateError
from mlambda_local.cloud.execution import WorkerLaunch
from mlambda_local.cloud.functions import FunctionSpec

BUILD_DIRECTORY = Path(".aws-sam") / "build"


def source_launch(spec: FunctionSpec, python: str | None = None) -> WorkerLaunch:
    """Workers of ``spec`` started from the source tree with this virtualenv's interpreter."""
    return WorkerLaunch(python=python or sys.executable, code_dir=spec.code_dir, runtime_name=spec.runtime)


def runtime_python(runtime: str) -> str:
    """The interpreter for a template ``Runtime``: the one ``make package-check`` builds with (``python3.12``)."""
    from mlambda_local.packaging import PYTHON_VERSION, PackagingError, find_python312

    if runtime != f"python{PYTHON_VERSION}":
        raise TemplateError(
            f"runtime {runtime!r} cannot run from build locally (only python{PYTHON_VERSION})"
        )
    try:
        return str(find_python312())
    except PackagingError as exc:
        raise TemplateError(f"{exc}; or run from the source tree without --from-build") from exc


def runtime_cache() -> Path:
    """Where the Lambda runtimes' packages are kept for every project and data directory."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "mlambda" / "lambda-runtime"


def runtime_support(python: str, runtime: str, cache: Path | None = None) -> Path:
    """``awslambdaric`` and the runtime's boto3 for ``python``, installed once under ``<cache>/<runtime>``.

    The runtime client is this virtualenv's version (the source tree's workers run the same);
    boto3 is the version Lambda's runtime ships (``packaging.RUNTIME_SDK``, what the package check
    gives the artifacts). The folder is rebuilt when they change.
    """
    from mlambda_local.packaging import RUNTIME_SDK

    versions = {"awslambdaric": metadata.version("awslambdaric")}
    versions |= dict(requirement.split("==", 1) for requirement in RUNTIME_SDK)
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
            f"could not install the Lambda runtime's packages ({', '.join(versions)}) for {python}: "
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
