"""SIGTERM under load: the sidecar stops cleanly and keeps every promise it made.

Writers post batches back to back on keep-alive connections while the sidecar gets
SIGTERM. A request it had started is answered (202, or 503 once the spool is closing);
one it never started fails at the connection and was never stored. Every 202 is in the
store after a restart, nothing is stored twice, and the process is gone within a bound.
"""

from __future__ import annotations

import collections
import http.client
import json
import signal
import sqlite3
import threading
import time
from pathlib import Path

import pytest

from tests.helpers import event, wait_until
from tests.integration.servers import SidecarProcess, get_json

pytestmark = pytest.mark.integration

WRITERS = 4
BATCH = 200
CLOSE_BOUND_S = 10.0  # measured: well under a second with healthy sinks


class Writer(threading.Thread):
    """Posts batches of unique request ids, each once, and files each batch under what
    came back: a status code, or "connection" when no answer came."""

    def __init__(self, port: int, name: str) -> None:
        super().__init__(daemon=True)
        self.port, self.tag = port, name
        self.outcomes: dict[str, list[list[str]]] = collections.defaultdict(list)
        self.stop = threading.Event()

    def run(self) -> None:
        conn: http.client.HTTPConnection | None = None
        for k in range(100_000):
            if self.stop.is_set():
                break
            ids = [f"{self.tag}-{k}-{i}" for i in range(BATCH)]
            body = json.dumps([event(i, request_id=r) for i, r in enumerate(ids)]).encode()
            try:
                if conn is None:
                    conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
                conn.request("POST", "/v1/events", body, {"content-type": "application/json"})
                r = conn.getresponse()
                detail = r.read()
                outcome = str(r.status)
                if r.status == 503 and b"shutting down" not in detail:
                    outcome += f" {detail[:200]!r}"  # a 503 for another reason: fails below
            except OSError:
                outcome = "connection"
                if conn is not None:
                    conn.close()
                conn = None
                self.stop.wait(0.01)
            self.outcomes[outcome].append(ids)
        if conn is not None:
            conn.close()


def stored_request_ids(data_dir: Path) -> collections.Counter[str]:
    conn = sqlite3.connect(data_dir / "store.db")
    try:
        return collections.Counter(r[0] for r in conn.execute("SELECT request_id FROM events"))
    finally:
        conn.close()


# http.client may leave a socket it lost to the server's shutdown for the collector; the
# test judges the sidecar's answers, not the writer's socket hygiene
@pytest.mark.filterwarnings("ignore::ResourceWarning")
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
@pytest.mark.parametrize("fsync", ["interval", "always"])
def test_sigterm_under_load_answers_or_refuses_and_loses_nothing(
    tmp_path: Path, fsync: str
) -> None:
    data = tmp_path / "data"
    sidecar = SidecarProcess(data, MLWATCH_SPOOL_FSYNC=fsync).start()
    writers = [Writer(sidecar.port, f"w{n}") for n in range(WRITERS)]
    for w in writers:
        w.start()
    try:
        wait_until(
            lambda: sum(len(w.outcomes["202"]) for w in writers) >= 40,
            timeout=60,
            what="the load under way",
        )
        assert sidecar.proc is not None
        sent_at = time.monotonic()
        sidecar.proc.send_signal(signal.SIGTERM)
        sidecar.proc.wait(CLOSE_BOUND_S + 20)
        took = time.monotonic() - sent_at
    finally:
        for w in writers:
            w.stop.set()
        for w in writers:
            w.join(30)
    log = sidecar.log()
    print(f"SIGTERM to exit: {took:.2f} s")  # shown with -s
    assert took < CLOSE_BOUND_S, f"SIGTERM to exit took {took:.1f} s"
    assert "Application shutdown complete" in log and "still busy" not in log, log[-2000:]
    outcomes: dict[str, list[list[str]]] = collections.defaultdict(list)
    for w in writers:
        for outcome, batches in w.outcomes.items():
            outcomes[outcome] += batches
    assert set(outcomes) <= {"202", "503", "connection"}, set(outcomes)

    sidecar.start()  # the restart replays what the store had not committed
    wait_until(
        lambda: (
            get_json(sidecar.url + "/v1/models/iris/status")["sinks"]["store"]["lag_bytes"] == 0
        ),
        timeout=60,
        what="the replay",
    )
    sidecar.stop()
    stored = stored_request_ids(data)
    assert max(stored.values()) == 1, "an event was stored twice"
    acked = {r for batch in outcomes["202"] for r in batch}
    assert acked <= set(stored), f"{len(acked - set(stored))} acknowledged events lost"
    unanswered = {r for o in ("503", "connection") for batch in outcomes[o] for r in batch}
    assert not unanswered & set(stored), "a request was stored but never answered 202"
    assert len(acked) >= 40 * BATCH
