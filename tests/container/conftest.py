"""The sidecar image, built once per session for the container tests."""

from __future__ import annotations

import pytest

from tests.container.podman import build_image, require_tools


@pytest.fixture(scope="session")
def image() -> str:
    require_tools()
    return build_image()
