"""What a scheduler checks and restores when it starts: a file reference that is missing,
unreadable or lacks a listed feature is a configuration error; the newest stored results
are on the gauges before the first run; a second scheduler on one store is warned about."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from mlwatch.errors import ConfigError
from mlwatch.scheduler import Jobs, Scheduler, window_bounds
from mlwatch.scheduler.runner import claim_store
from mlwatch.store import EmbeddedStore
from tests.scheduler.test_jobs import NOW, config, fill, gauge


def test_a_missing_reference_file_is_a_configuration_error(tmp_path: Path) -> None:
    cfg = config(tmp_path, reference=str(tmp_path / "nope.csv"))
    store = EmbeddedStore(tmp_path / "store.db")
    with pytest.raises(ConfigError, match=r"models\[0\]\.reference: m: reference .*nope\.csv"):
        Scheduler(cfg, store, CollectorRegistry())


def test_an_unreadable_reference_is_a_configuration_error(tmp_path: Path) -> None:
    (tmp_path / "ref.png").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(200))
    cfg = config(tmp_path, reference=str(tmp_path / "ref.png"))
    store = EmbeddedStore(tmp_path / "store.db")
    with pytest.raises(
        ConfigError, match=r"models\[0\]\.reference: .*ref\.png: not a CSV or Parquet"
    ):
        Scheduler(cfg, store, CollectorRegistry())


def test_a_feature_the_reference_lacks_is_a_configuration_error(tmp_path: Path) -> None:
    cfg = config(tmp_path)
    (tmp_path / "ref.csv").write_text("x,other\n1.0,a\n2.0,b\n")  # no column c
    store = EmbeddedStore(tmp_path / "store.db")
    with pytest.raises(
        ConfigError, match=r"models\[0\]\.reference: m: the reference has no column c"
    ):
        Scheduler(cfg, store, CollectorRegistry())


def test_a_stored_reference_serves_when_its_file_is_gone(tmp_path: Path) -> None:
    cfg = config(tmp_path)
    store = EmbeddedStore(tmp_path / "store.db")
    Jobs(cfg, store, CollectorRegistry()).prepare()  # computes and stores the profile
    (tmp_path / "ref.csv").unlink()
    Jobs(cfg, store, CollectorRegistry()).prepare()  # a warning, not an error


def test_the_newest_stored_results_are_on_the_gauges_at_start(tmp_path: Path) -> None:
    cfg = config(tmp_path)
    store = EmbeddedStore(tmp_path / "store.db")
    start, _ = window_bounds(cfg.models[0].monitoring, NOW)
    fill(store, start / 1e6, 400, 3.0, 1, "e")  # shifted: x drifts
    before = Jobs(cfg, store, CollectorRegistry(), clock=lambda: NOW)
    report = before.drift("m")["1"]
    registry = CollectorRegistry()
    Jobs(cfg, store, registry).prepare()  # a restarted process, before any run
    labels = {"model": "m", "environment": "default", "version": "1"}
    assert gauge(registry, "mlwatch_dataset_drift_share", **labels) == report["drift_share"]
    assert gauge(registry, "mlwatch_feature_drift_detected", feature="x", **labels) == 1.0


def test_a_second_scheduler_on_one_store_is_warned_about(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    first = claim_store(tmp_path, "mlwatch sidecar")
    assert first is not None
    with caplog.at_level(logging.WARNING, logger="mlwatch.scheduler"):
        assert claim_store(tmp_path, "mlwatch scheduler") is None
    assert "another scheduler (mlwatch sidecar, pid " in caplog.text
    assert "set scheduler: false in the sidecar" in caplog.text
    os.close(first)
    again = claim_store(tmp_path, "mlwatch scheduler")  # released: free again
    assert again is not None
    os.close(again)
