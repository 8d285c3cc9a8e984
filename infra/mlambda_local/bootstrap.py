"""The first admin key of a local cloud, written straight to the API keys table.

Every API call needs a key, so the first one cannot come from the API; on AWS the same
function runs with the operator's IAM credentials (``mlambda keys bootstrap``).
"""

from __future__ import annotations

from pathlib import Path

from mlambda.adapters.apikeys import ApiGatewayUsagePlans, DynamoApiKeyStore
from mlambda.adapters.dynamodb import DynamoTable
from mlambda.config import KeysSettings
from mlambda.errors import UnauthorizedError
from mlambda.schemas.keys import Scope
from mlambda.services.apikeys import ApiKeyService
from mlambda_local.client import ADMIN_KEY_FILE
from mlambda_local.cloud.template import DEFAULT_REGION
from mlambda_local.private_files import private_directory, write_private

PLANS = ("standard", "bulk", "trial")
"""template.yaml's usage plans (its KeysFunction's USAGE_PLANS)."""


def key_service(
    table_name: str,
    endpoint_url: str | None,
    region: str = DEFAULT_REGION,
    stack: str | None = None,
) -> ApiKeyService:
    """An ApiKeyService on ``table_name`` in ``region`` at ``endpoint_url`` (None: AWS); with ``stack``
    (its name) keys join that stack's API Gateway usage plans (``<stack>-<plan>``)."""
    settings = KeysSettings.model_validate(
        {"API_KEYS_TABLE": table_name, "AWS_ENDPOINT_URL": endpoint_url, "AWS_REGION": region}
    )
    plans = ApiGatewayUsagePlans(PLANS, f"{stack}-", settings) if stack else None
    return ApiKeyService(DynamoApiKeyStore(DynamoTable(table_name, settings)), plans)


def ensure_admin_key(data_dir: Path, table_name: str, endpoint_url: str | None) -> str:
    """The admin key saved in ``data_dir`` if it still works, else a new one (saved, mode 0600)."""
    keys = key_service(table_name, endpoint_url)
    path = data_dir / ADMIN_KEY_FILE
    if path.exists():
        saved = path.read_text().strip()
        try:
            keys.authenticate(saved)
        except UnauthorizedError:
            pass
        else:
            return saved
    created = keys.create("local-admin", list(Scope), created_by="mlambda local up", plan="bulk")
    private_directory(data_dir)
    write_private(path, created.api_key + "\n")
    return created.api_key
