"""Fixtures for the demo tests: one trained demo model per test session."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# No test may reach a model hub; child processes inherit this too.
os.environ["HF_HUB_OFFLINE"] = "1"


@pytest.fixture(scope="session")
def demo_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The demo's cache: $PHASEGATE_CACHE when set (then a trained model is reused), else a temp folder."""
    configured = os.environ.get("PHASEGATE_CACHE")
    return Path(configured) if configured else tmp_path_factory.mktemp("phasegate-cache")


@pytest.fixture(scope="session")
def demo_model(demo_cache: Path) -> Path:
    """The trained demo model (trained once, a few dozen seconds, when the cache is cold)."""
    from phasegate.demo.model import build_demo_model

    return build_demo_model(demo_cache)
