"""Test-wide settings: every test session uses its own cache root, so tests never
read or write a developer's real cache and always exercise first-use generation."""

from __future__ import annotations

import os

import pytest
import torch

# Tests use small models: one thread is as fast and immune to oversubscribed cores.
torch.set_num_threads(1)


@pytest.fixture(scope="session", autouse=True)
def _isolated_cache(tmp_path_factory: pytest.TempPathFactory) -> None:
    if os.environ.get("SCIENCEGYM_TEST_CACHE"):
        os.environ["SCIENCEGYM_CACHE"] = os.environ["SCIENCEGYM_TEST_CACHE"]
    else:
        os.environ["SCIENCEGYM_CACHE"] = str(tmp_path_factory.mktemp("sciencegym-cache"))
