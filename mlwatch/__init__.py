"""mlwatch: monitoring and observability for ML services.

``import mlwatch`` starts no thread and touches no network; the first monitored
call or :func:`configure` does. See :func:`monitor` for the decorator and the
docs for the settings (``MLWATCH_*``, docs/configuration.md).

>>> import mlwatch
>>> sorted(mlwatch.__all__)[:3]
['Config', 'ConfigError', 'MlwatchError']
"""

from __future__ import annotations

from typing import Any

from mlwatch.client.decorator import monitor
from mlwatch.client.feedback import log_feedback, register_model
from mlwatch.client.runtime import configure, flush, shutdown
from mlwatch.errors import ConfigError, MlwatchError, ValidationError
from mlwatch.settings import Config

__all__ = [
    "Config",
    "ConfigError",
    "MlwatchError",
    "ValidationError",
    "__version__",
    "configure",
    "flush",
    "log_feedback",
    "monitor",
    "register_model",
    "shutdown",
]


def __dir__() -> list[str]:
    """The public surface only (submodules and helpers imported here are not part of it)."""
    return sorted(__all__)


def __getattr__(name: str) -> Any:
    # importlib.metadata costs ~15 ms to import: read the version only when asked.
    if name == "__version__":
        from mlwatch.client.identity import package_version

        return package_version()
    raise AttributeError(f"module 'mlwatch' has no attribute {name!r}")
