"""``log_feedback`` finds its model: the argument, the ``model`` setting, or the one model
spec of the configuration; without any, it says which setting is missing."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

import mlwatch
from mlwatch.client import runtime
from mlwatch.client.memory import MemoryExporter
from mlwatch.errors import ValidationError
from mlwatch.settings import Config
from mlwatch.settings.specs import ModelSpec


@pytest.fixture
def start() -> Iterator[MemoryExporter]:
    exporter = MemoryExporter()
    yield exporter
    runtime.shutdown(5.0)
    runtime._current = None


def _labels(exporter: MemoryExporter) -> list[tuple[str, str]]:
    assert mlwatch.flush(5.0)
    return [(r["model"], r["request_id"]) for r in exporter.records["feedback"]]


def test_the_model_setting_is_the_default(start: MemoryExporter) -> None:
    runtime.start(Config(model="churn"), exporter=start)
    mlwatch.log_feedback("r1", 1)
    mlwatch.log_feedback("r2", 0, model="other")
    assert _labels(start) == [("churn", "r1"), ("other", "r2")]


def test_the_one_model_spec_is_the_default(start: MemoryExporter) -> None:
    runtime.start(Config(models=(ModelSpec(name="iris"),)), exporter=start)
    mlwatch.log_feedback("r1", 2)
    assert _labels(start) == [("iris", "r1")]


def test_without_a_model_it_says_which_setting_is_missing(start: MemoryExporter) -> None:
    runtime.start(Config(), exporter=start)
    with pytest.raises(ValidationError, match=r"pass log_feedback\(\.\.\., model=\.\.\.\) or set"):
        mlwatch.log_feedback("r1", 1)
