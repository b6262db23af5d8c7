"""The scheduler's Grafana job against the fake Grafana: the config's dashboards synced on
schedule, hand edits kept, and each new retraining trigger annotated once on its model's
overview dashboard."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

pytest.importorskip("grafana_client")

from mlwatch.scheduler.runner import GRAFANA_JOB, Scheduler
from mlwatch.settings import load_config
from mlwatch.store import EmbeddedStore
from tests.grafana.fake_grafana import FakeGrafana
from tests.helpers import wait_until

TOKEN = "glsa_job_test_token_77aa"


@pytest.fixture
def fake() -> Iterator[FakeGrafana]:
    with FakeGrafana(token=TOKEN) as grafana:
        yield grafana


def trigger(store: EmbeddedStore, key: str, created_us: int) -> None:
    body = {
        "model": "churn",
        "cause": "drift",
        "target": "ci",
        "version": "3",
        "reason": "dataset drift share 0.4 >= 0.3",
    }
    store.request_trigger(
        "churn",
        f"drift-{key}",
        key,
        created_us,
        lambda state, recent: None,
        lambda: (key, body, "delivered"),
    )


def test_syncs_on_schedule_and_annotates_each_new_trigger_once(
    fake: FakeGrafana, tmp_path: Path
) -> None:
    path = tmp_path / "mlwatch.yaml"
    path.write_text("models:\n  - name: churn\n    features: [tenure]\n")
    config = load_config(
        path,
        env={},
        data_dir=str(tmp_path / "data"),
        grafana_url=fake.url,
        grafana_token=TOKEN,
        grafana_sync_s=1.0,
    )
    store = EmbeddedStore(tmp_path / "data" / "store.db")
    trigger(store, "before-start", time.time_ns() // 1000 - 60_000_000)
    scheduler = Scheduler(config, store, CollectorRegistry())
    assert GRAFANA_JOB in scheduler.job_ids
    try:
        scheduler.start(first_run_after_s=0.0)
        assert wait_until(lambda: "mlwatch-overview-churn" in fake.dashboards, 10)
        assert fake.dashboards["mlwatch-overview-churn"].folder_uid == "mlwatch-churn"
        trigger(store, "k1", time.time_ns() // 1000)
        assert wait_until(lambda: len(fake.annotations) == 1, 10)
        note: dict[str, Any] = fake.annotations[0]
        assert note["dashboardUID"] == "mlwatch-overview-churn"
        assert set(note["tags"]) == {"mlwatch", "retrain", "churn", "delivered"}
        assert "dataset drift share 0.4" in note["text"]
        fake.hand_edit("mlwatch-overview-churn")
        edited = fake.dashboards["mlwatch-overview-churn"].version
        runs = scheduler.runs.labels(GRAFANA_JOB, "default", "ok")._value.get()
        assert wait_until(
            lambda: scheduler.runs.labels(GRAFANA_JOB, "default", "ok")._value.get() >= runs + 2, 10
        )
        assert fake.dashboards["mlwatch-overview-churn"].version == edited  # never forced
        assert len(fake.annotations) == 1  # each trigger once; none from before the start
    finally:
        scheduler.shutdown()
        store.close()
