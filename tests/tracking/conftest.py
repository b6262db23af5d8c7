"""One real MLflow tracking server for the tracking tests (see
tests/integration/mlflow_server.py); tests that stop it start their own."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.mlflow_server import MlflowServer


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MlflowServer]:
    server = MlflowServer(Path(tmp_path_factory.mktemp("mlflow"))).start()
    try:
        yield server
    finally:
        server.stop()
