"""Fixtures for the local cloud runner tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from .support import FIXTURE_TEMPLATE


@pytest.fixture
def fixture_template() -> Path:
    return FIXTURE_TEMPLATE
