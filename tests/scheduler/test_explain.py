"""An empty result says why: the window looked at and what the store holds instead;
a window is logged once however often a shorter schedule recomputes it."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from mlwatch.scheduler import Jobs, window_bounds
from mlwatch.store import EmbeddedStore
from mlwatch.wire import validate_feedback
from tests.scheduler.test_jobs import HOUR, NOW, config, fill


def jobs_on(tmp_path: Path) -> tuple[Jobs, EmbeddedStore, tuple[int, int]]:
    cfg = config(tmp_path)
    store = EmbeddedStore(tmp_path / "store.db")
    window = window_bounds(cfg.models[0].monitoring, NOW)
    return Jobs(cfg, store, CollectorRegistry(), clock=lambda: NOW), store, window


def test_no_events_in_the_window_names_what_the_store_holds(tmp_path: Path) -> None:
    jobs, store, (start, _) = jobs_on(tmp_path)
    fill(store, start / 1e6 - 5 * HOUR, 20, 0.0, 1, "old")  # five hours before the window
    assert jobs.drift("m") == {}
    why = jobs.empty[("drift", "m")]
    assert why is not None
    assert "drift m: no events in [" in why
    assert f"the store {store.path} holds 20 events of m from " in why


def test_an_empty_store_says_so_and_names_other_models(tmp_path: Path) -> None:
    jobs, store, _ = jobs_on(tmp_path)
    assert jobs.drift("m") == {}
    assert "holds no event at all (is --data-dir the sidecar's?)" in str(jobs.empty[("drift", "m")])
    store.insert_feedback([validate_feedback({"model": "other", "request_id": "r", "label": 1})])
    jobs.drift("m")
    assert "holds no event of m (models there: other)" in str(jobs.empty[("drift", "m")])


def test_kpis_without_labels_say_how_many_are_needed(tmp_path: Path) -> None:
    jobs, store, (start, _) = jobs_on(tmp_path)
    fill(store, start / 1e6, 30, 0.0, 1, "e")
    assert jobs.kpis("m") == {}
    why = str(jobs.empty[("kpi", "m")])
    assert "kpi m: 30 events in [" in why and "0 with ground truth" in why
    assert "kpi.min_samples (50)" in why


def test_a_result_clears_the_explanation(tmp_path: Path) -> None:
    jobs, store, (start, _) = jobs_on(tmp_path)
    jobs.drift("m")
    fill(store, start / 1e6, 200, 0.0, 1, "e")
    assert jobs.drift("m") != {}
    assert jobs.empty[("drift", "m")] is None


def test_a_window_is_logged_once(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    jobs, store, (start, _) = jobs_on(tmp_path)
    fill(store, start / 1e6, 200, 0.0, 1, "e")
    with caplog.at_level(logging.DEBUG, logger="mlwatch.jobs"):
        for _ in range(4):  # a 15-minute schedule over a one-hour window
            jobs.drift("m")
    told = [r for r in caplog.records if r.getMessage().startswith("drift m 1 [")]
    assert [r.levelno for r in told] == [logging.INFO] + [logging.DEBUG] * 3
