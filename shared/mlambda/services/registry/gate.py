"""The gate every version passes before it receives traffic: production, a split variant or the shadow.

Checks, in order: the artifact still hashes to the sha256 recorded at validation (integrity), it
loads in onnxruntime (with the same structure checks as validation), the recorded smoke cases
reproduce within a tolerance, and its signature is compatible with the live version (same task,
features in the same order with the same types, same class labels), so callers of the endpoint
keep getting answers whichever version serves them.
"""

from __future__ import annotations

import hashlib

from mlambda.errors import MlambdaError, NotFoundError
from mlambda.schemas.registry import ModelVersion
from mlambda.schemas.registry_api import GateCheck, GateReport
from mlambda.services.inference.scoring import matches, predictions, rows_to_feed
from mlambda.services.registry.ports import ModelRuntime, RegistryArtifacts


class Gate:
    """Runs the gate's checks against the artifacts bucket with onnxruntime."""

    def __init__(
        self, artifacts: RegistryArtifacts, runtime: ModelRuntime, *, max_model_bytes: int, tolerance: float
    ) -> None:
        self._artifacts = artifacts
        self._runtime = runtime
        self._max_model_bytes = max_model_bytes
        self._tolerance = tolerance

    def check(self, target: ModelVersion, live: ModelVersion | None) -> GateReport:
        """Integrity, loading, smoke reproduction and compatibility with ``live``."""
        checks: list[GateCheck] = []
        try:
            data = self._artifacts.get(target.artifact_key)
        except NotFoundError:
            data = None
        digest = hashlib.sha256(data).hexdigest() if data is not None else None
        if data is None or digest != target.artifact_sha256:
            message = (
                f"artifact {target.artifact_key} is missing"
                if data is None
                else f"artifact sha256 {digest} does not match the registered {target.artifact_sha256}"
            )
            checks.append(GateCheck(name="artifact_integrity", passed=False, message=message))
        else:
            checks.append(GateCheck(name="artifact_integrity", passed=True, message="sha256 matches"))
            checks.extend(self._loads_and_reproduces(data, target))
        checks.append(compatibility(target, live))
        return GateReport(passed=all(check.passed for check in checks), checks=checks)

    def _loads_and_reproduces(self, data: bytes, target: ModelVersion) -> list[GateCheck]:
        try:
            model = self._runtime.load(data, max_bytes=max(self._max_model_bytes, len(data)))
        except MlambdaError as exc:
            return [GateCheck(name="loads", passed=False, message=exc.message)]
        checks = [GateCheck(name="loads", passed=True, message="loads in onnxruntime")]
        if not target.smoke_cases:
            checks.append(GateCheck(name="smoke_cases", passed=True, message="no smoke cases recorded"))
            return checks
        rows = [case.inputs for case in target.smoke_cases]
        try:
            actual = predictions(target.signature, model.run(rows_to_feed(target.feature_schema, rows)))
        except (MlambdaError, ValueError, KeyError) as exc:
            message = exc.message if isinstance(exc, MlambdaError) else str(exc)
            checks.append(GateCheck(name="smoke_cases", passed=False, message=f"smoke run failed: {message}"))
            return checks
        wrong = [
            index
            for index, (case, got) in enumerate(zip(target.smoke_cases, actual, strict=True))
            if not matches(case.expected, got, tolerance=self._tolerance)
        ]
        total = len(target.smoke_cases)
        checks.append(
            GateCheck(
                name="smoke_cases",
                passed=not wrong,
                message=(
                    f"{total} smoke cases reproduce"
                    if not wrong
                    else f"{len(wrong)} of {total} smoke cases differ from the recorded outputs (rows {wrong[:10]})"
                ),
            )
        )
        return checks


def compatibility(target: ModelVersion, live: ModelVersion | None) -> GateCheck:
    """Whether ``target`` can serve ``live``'s callers: same task, features and labels."""
    if live is None or live.version == target.version:
        return GateCheck(name="signature_compatible", passed=True, message="no other live version")
    problems: list[str] = []
    if target.signature.task != live.signature.task:
        problems.append(f"task {target.signature.task} != {live.signature.task}")
    want = [(f.name, f.dtype) for f in live.feature_schema.features]
    got = [(f.name, f.dtype) for f in target.feature_schema.features]
    if want != got:
        missing = [n for n, _ in want if n not in dict(got)]
        extra = [n for n, _ in got if n not in dict(want)]
        detail = []
        if missing:
            detail.append(f"missing {missing[:5]}")
        if extra:
            detail.append(f"new {extra[:5]}")
        if not detail:
            detail.append("order or types differ")
        problems.append(f"features differ from v{live.version} ({', '.join(detail)})")
    if target.signature.class_labels != live.signature.class_labels:
        problems.append(
            f"class labels {target.signature.class_labels} != {live.signature.class_labels} of v{live.version}"
        )
    if problems:
        return GateCheck(name="signature_compatible", passed=False, message="; ".join(problems))
    return GateCheck(
        name="signature_compatible", passed=True, message=f"compatible with live v{live.version}"
    )
