"""Settings for each function, read once from the environment template.yaml gives it.

This is the only module that reads the process environment. Each function has its own
settings model; handlers build it once (``Settings.load()``) and pass it to services.

``function_environment`` lets a host that runs several functions in one process (the local
cloud) give each invocation its own variables, as Lambda does by giving each its own process.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Self

from pydantic import BaseModel, ConfigDict, Field

_function_environment: ContextVar[Mapping[str, str] | None] = ContextVar(
    "mlambda_function_environment", default=None
)


@contextmanager
def function_environment(variables: Mapping[str, str]) -> Iterator[None]:
    """Overlay ``variables`` on the process environment for the current context (thread/task)."""
    token = _function_environment.set(dict(variables))
    try:
        yield
    finally:
        _function_environment.reset(token)


def environment() -> dict[str, str]:
    """The environment a function sees: the process's, with the invocation's overlay on top."""
    merged = dict(os.environ)
    overlay = _function_environment.get()
    if overlay:
        merged.update(overlay)
    return merged


class FunctionSettings(BaseModel):
    """What every function needs to reach AWS (or the local cloud, or LocalStack)."""

    model_config = ConfigDict(frozen=True, populate_by_name=True, extra="ignore")

    region: str = Field("us-east-1", alias="AWS_REGION", description="AWS region of every client.")
    endpoint_url: str | None = Field(
        None,
        alias="AWS_ENDPOINT_URL",
        description="Endpoint for every AWS client: the local cloud's moto server, LocalStack, or unset for AWS.",
    )

    @classmethod
    def load(cls, variables: Mapping[str, str] | None = None) -> Self:
        """Validate the settings from ``variables`` (default: this function's environment)."""
        values = environment() if variables is None else dict(variables)
        if not values.get("AWS_REGION") and values.get("AWS_DEFAULT_REGION"):
            values["AWS_REGION"] = values["AWS_DEFAULT_REGION"]
        return cls.model_validate(values)


class AuthorizerSettings(FunctionSettings):
    """The API Gateway authorizer: looks keys up in the API keys table."""

    api_keys_table: str = Field(alias="API_KEYS_TABLE", description="DynamoDB table of hashed API keys.")


class KeysSettings(FunctionSettings):
    """The key-management API (`/me`, `/keys`)."""

    api_keys_table: str = Field(alias="API_KEYS_TABLE", description="DynamoDB table of hashed API keys.")


# >>> registry settings (issue 3)
class RegistrySettings(FunctionSettings):
    """The model registry API (`/models...`)."""

    registry_table: str = Field(
        alias="REGISTRY_TABLE", description="DynamoDB table of models, versions, aliases, endpoints, history."
    )
    artifacts_bucket: str = Field(
        alias="ARTIFACTS_BUCKET", description="S3 bucket of uploads, model artifacts and reference profiles."
    )
    event_bus_name: str = Field(
        "default",
        alias="EVENT_BUS_NAME",
        description="EventBridge bus that receives mlambda.registry events.",
    )
    max_model_bytes: int = Field(
        100 * 1024 * 1024,
        alias="MAX_MODEL_BYTES",
        ge=1,
        description="Largest ONNX artifact accepted on register (the function holds it in memory).",
    )
    max_reference_bytes: int = Field(
        64 * 1024 * 1024,
        alias="MAX_REFERENCE_BYTES",
        ge=1,
        description="Largest reference sample (Parquet/CSV) accepted on register.",
    )
    upload_url_ttl_seconds: int = Field(
        900,
        alias="UPLOAD_URL_TTL_SECONDS",
        ge=60,
        le=3600,
        description="Lifetime of the presigned PUT URLs handed out for uploads.",
    )
    smoke_rows: int = Field(
        20, alias="SMOKE_ROWS", ge=0, le=50, description="Reference rows kept as smoke cases per version."
    )
    smoke_tolerance: float = Field(
        1e-4,
        alias="SMOKE_TOLERANCE",
        gt=0,
        description="Absolute tolerance of smoke-case outputs at promotion.",
    )


# >>> predict settings (issue 4)
# >>> ingest and archiver settings (issue 5)

# >>> batch settings (issue 6)
# >>> monitor settings (issue 7)
