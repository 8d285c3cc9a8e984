from __future__ import annotations

import threading

import pytest

from mlambda.config import AuthorizerSettings, FunctionSettings, environment, function_environment


def test_settings_read_the_variables_template_sets() -> None:
    settings = AuthorizerSettings.load({"API_KEYS_TABLE": "keys", "AWS_REGION": "eu-west-1"})
    assert settings.api_keys_table == "keys"
    assert settings.region == "eu-west-1"
    assert settings.endpoint_url is None


def test_missing_required_variable_fails_with_its_name() -> None:
    with pytest.raises(ValueError, match="API_KEYS_TABLE"):
        AuthorizerSettings.load({"AWS_REGION": "us-east-1"})


def test_default_region_falls_back_to_aws_default_region() -> None:
    assert FunctionSettings.load({"AWS_DEFAULT_REGION": "ap-south-1"}).region == "ap-south-1"


def test_function_environment_overlays_only_the_current_context() -> None:
    # Given
    seen_elsewhere: list[str | None] = []
    # When
    with function_environment({"API_KEYS_TABLE": "fn-a"}):
        inside = environment().get("API_KEYS_TABLE")
        other = threading.Thread(target=lambda: seen_elsewhere.append(environment().get("API_KEYS_TABLE")))
        other.start()
        other.join()
    after = environment().get("API_KEYS_TABLE")
    # Then
    assert inside == "fn-a"
    assert seen_elsewhere == [None]
    assert after is None
