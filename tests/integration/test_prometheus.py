"""A real Prometheus scrapes a real sidecar fed by the decorator; PromQL tells the truth."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import mlwatch
from tests.helpers import wait_until
from tests.integration.servers import PrometheusProcess, SidecarProcess

pytestmark = pytest.mark.integration

OK, ERRORS = 240, 17
TOKEN = "scrape-token-123"


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[tuple[SidecarProcess, PrometheusProcess]]:
    sidecar = SidecarProcess(tmp_path / "data", MLWATCH_TOKEN=TOKEN).start()
    prom = PrometheusProcess(
        tmp_path,
        [
            {
                "job_name": "mlwatch",
                "authorization": {"type": "Bearer", "credentials": TOKEN},
                "static_configs": [{"targets": [f"127.0.0.1:{sidecar.port}"]}],
            }
        ],
    )
    try:
        prom.start()
        yield sidecar, prom
    finally:
        mlwatch.shutdown()
        prom.stop()
        sidecar.stop()
        # pytest shows captured output only when the test failed: the servers' own words
        print("--- prometheus log (tail) ---\n" + prom.log()[-3000:])
        print("--- sidecar log (tail) ---\n" + sidecar.log()[-3000:])


def test_promql_counts_every_prediction_by_status(
    stack: tuple[SidecarProcess, PrometheusProcess],
) -> None:
    sidecar, prom = stack
    mlwatch.configure(
        sidecar_url=sidecar.url, token=TOKEN, model="fraud", version="7", flush_interval_ms=50
    )

    @mlwatch.monitor()
    def predict(features: dict[str, float]) -> int:
        time.sleep(0.004)  # the model's own work: 4-5 ms
        if features["amount"] < 0:
            raise ValueError("negative amount")
        return int(features["amount"] > 100)

    for i in range(OK + ERRORS):
        amount = -1.0 if i % 15 == 0 and i // 15 < ERRORS else float(i)
        with contextlib.suppress(ValueError):
            predict({"amount": amount, "age": 30.0})
    assert mlwatch.flush(timeout=10)

    wait_until(prom.targets_up, timeout=30, what="prometheus target up")

    def by_status() -> dict[str, float]:
        rows = prom.query('sum by (status) (mlwatch_predictions_total{model="fraud",version="7"})')
        return {r["metric"]["status"]: float(r["value"][1]) for r in rows}

    wait_until(
        lambda: by_status() == {"ok": OK, "error": ERRORS},
        timeout=30,
        what=f"PromQL counts ok={OK} error={ERRORS}",
    )
    assert by_status() == {"ok": float(OK), "error": float(ERRORS)}

    p50 = float(
        prom.query(
            "histogram_quantile(0.5, sum by (le) "
            '(mlwatch_prediction_latency_seconds_bucket{model="fraud"}))'
        )[0]["value"][1]
    )
    assert 0.0025 <= p50 <= 0.01, p50  # the 4-5 ms of work lands in the 2.5-10 ms buckets
    classes = prom.query('sum by (class) (mlwatch_predicted_class_total{model="fraud"})')
    assert sum(float(r["value"][1]) for r in classes) == OK
    info = prom.query('mlwatch_model_info{model="fraud"}')
    assert info and info[0]["metric"]["version"] == "7" and info[0]["metric"]["code_version"]
    log = sidecar.log()
    assert "mlwatch sidecar on" in log and TOKEN not in log  # the startup line masks secrets
