"""A sidecar whose data directory is on a real, full filesystem (a 4 MiB tmpfs; skipped
where mounting is not permitted).

While the disk is full, ingest answers 503 with the reason, never 500, and /readyz says
why. Once space returns, ingest resumes by itself, every 202 is stored, and a restart
finds the spool intact (no corrupt record) and stores nothing twice.
"""

from __future__ import annotations

import collections
import http.client
import json
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.disks import fill, small_tmpfs
from tests.helpers import event, wait_until
from tests.integration.servers import SidecarProcess, get_json, get_json_any, get_text

pytestmark = pytest.mark.integration


@pytest.fixture
def disk(tmp_path: Path) -> Iterator[Path]:
    with small_tmpfs(tmp_path / "disk", "4m") as where:
        yield where


class Poster:
    """Posts batches of unique request ids on one connection."""

    def __init__(self, port: int) -> None:
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        self.n = 0
        self.acked: list[str] = []

    def post(self, size: int = 200) -> tuple[int, dict[str, str], bytes]:
        ids = [f"r{self.n}-{i}" for i in range(size)]
        self.n += 1
        body = json.dumps([event(i, request_id=r) for i, r in enumerate(ids)])
        self.conn.request("POST", "/v1/events", body, {"content-type": "application/json"})
        r = self.conn.getresponse()
        detail = r.read()
        if r.status == 202:
            self.acked += ids
        return r.status, dict(r.getheaders()), detail


def request_ids(data_dir: Path) -> collections.Counter[str]:
    conn = sqlite3.connect(data_dir / "store.db")
    try:
        return collections.Counter(r[0] for r in conn.execute("SELECT request_id FROM events"))
    finally:
        conn.close()


def test_a_full_disk_is_503_then_ingest_resumes_when_space_returns(
    disk: Path, tmp_path: Path
) -> None:
    data = disk / "data"
    env = {"MLWATCH_SPOOL_SEGMENT_BYTES": str(64 << 10)}
    sidecar = SidecarProcess(data, **env)
    sidecar.log_path = tmp_path / "sidecar.log"  # not on the full disk
    sidecar.start()
    poster = Poster(sidecar.port)
    try:
        assert poster.post()[0] == 202
        fill(disk / "filler")
        answers = [poster.post() for _ in range(3)]
        assert [status for status, _, _ in answers] == [503] * 3, answers
        for _, headers, detail in answers:
            assert b"the disk is full" in detail and headers["retry-after"], detail
        status, ready = get_json_any(sidecar.url + "/readyz")
        assert status == 503 and "disk is full" in json.dumps(ready), ready
        (disk / "filler").unlink()  # space returns
        wait_until(lambda: poster.post()[0] == 202, timeout=30, what="ingest resumed")
        wait_until(
            lambda: get_json_any(sidecar.url + "/readyz")[0] == 200, timeout=30, what="ready"
        )
        assert poster.post()[0] == 202
    finally:
        poster.conn.close()
        sidecar.stop()
    sidecar.start()
    try:
        wait_until(
            lambda: (
                get_json(sidecar.url + "/v1/models/iris/status")["sinks"]["store"]["lag_bytes"] == 0
            ),
            timeout=30,
            what="the store caught up",
        )
        assert "mlwatch_spool_corrupt_records_total 0.0" in get_text(sidecar.url + "/metrics")
    finally:
        sidecar.stop()
    stored = request_ids(data)
    assert max(stored.values()) == 1, "an event was stored twice"
    assert set(poster.acked) == set(stored), "stored differs from acknowledged"
