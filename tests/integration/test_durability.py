"""Nothing acknowledged is lost: kill -9 the sidecar at random moments while posting."""

from __future__ import annotations

import http.client
import json
import random
import sqlite3
import threading
from pathlib import Path

import pytest

from tests.helpers import event, wait_until
from tests.integration.servers import SidecarProcess, get_json, get_text

pytestmark = pytest.mark.integration

BATCH = 50
KILLS = 5


class Poster(threading.Thread):
    """Posts batches with fixed event ids, retrying each until it gets a 202."""

    def __init__(self, port: int) -> None:
        super().__init__(daemon=True)
        self.port = port
        self.sent: set[str] = set()
        self.acked: set[str] = set()
        self.stop = threading.Event()
        self.batches = 0

    def post(self, body: bytes) -> int:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
        try:
            conn.request("POST", "/v1/events", body, {"content-type": "application/json"})
            return conn.getresponse().status
        finally:
            conn.close()

    def run(self) -> None:
        n = 0
        while not self.stop.is_set():
            ids = [f"ev-{n + i:08d}" for i in range(BATCH)]
            body = json.dumps([event(n + i, event_id=ids[i]) for i in range(BATCH)]).encode()
            self.sent.update(ids)
            while not self.stop.is_set():
                try:
                    status = self.post(body)
                except OSError:
                    self.stop.wait(0.02)  # sidecar down: retry the same batch
                    continue
                if status == 202:
                    self.acked.update(ids)
                    self.batches += 1
                    break
                self.stop.wait(0.02)
            n += BATCH


def stored_ids(data_dir: Path) -> list[str]:
    conn = sqlite3.connect(data_dir / "store.db")
    try:
        return [r[0] for r in conn.execute("SELECT event_id FROM events")]
    finally:
        conn.close()


def test_kill9_at_random_moments_loses_nothing_acknowledged(tmp_path: Path) -> None:
    rng = random.Random(20261121)
    data = tmp_path / "data"
    sidecar = SidecarProcess(data, MLWATCH_SPOOL_FSYNC="interval").start()
    poster = Poster(sidecar.port)
    poster.start()
    try:
        for _ in range(KILLS):
            before = poster.batches
            wait_until(
                lambda b=before: poster.batches >= b + 3,
                timeout=30,
                what="some batches acknowledged",
            )
            threading.Event().wait(rng.uniform(0.05, 0.6))  # a random moment mid-stream
            sidecar.kill9()
            sidecar.start()
        wait_until(lambda: poster.batches >= 3, timeout=30, what="posting after the last restart")
    finally:
        poster.stop.set()
        poster.join(10)
    acked = set(poster.acked)
    assert len(acked) >= BATCH * KILLS

    wait_until(
        lambda: (
            get_json(sidecar.url + "/v1/models/iris/status")["sinks"]["store"]["lag_bytes"] == 0
        ),
        timeout=60,
        what="store caught up with the spool",
    )
    sidecar.stop()
    ids = stored_ids(data)
    assert len(ids) == len(set(ids)), "an event was stored twice"
    missing = acked - set(ids)
    assert not missing, f"{len(missing)} acknowledged events lost, e.g. {sorted(missing)[:3]}"
    assert set(ids) <= poster.sent, "the store holds events nobody sent"


def test_corrupt_spool_tail_is_recovered_by_the_sidecar(tmp_path: Path) -> None:
    data = tmp_path / "data"
    sidecar = SidecarProcess(data).start()
    poster = Poster(sidecar.port)
    body = json.dumps([event(i, event_id=f"a-{i}") for i in range(20)]).encode()
    assert poster.post(body) == 202
    sidecar.kill9()
    segments = sorted((data / "spool").glob("*.seg"))
    assert segments
    with open(segments[-1], "ab") as f:  # a torn record: header promising more than follows
        f.write(b"\x00garbage-tail" * 3)
    sidecar.start()
    body = json.dumps([event(i, event_id=f"b-{i}") for i in range(20)]).encode()
    assert poster.post(body) == 202
    wait_until(lambda: len(stored_ids(data)) == 40, timeout=30, what="40 events stored")
    metrics = get_text(sidecar.url + "/metrics")
    assert "mlwatch_spool_corrupt_records_total 1.0" in metrics, metrics
    sidecar.stop()
