"""/readyz tells the truth about sinks that cannot make progress.

A sink blocked inside a write (the store locked by another process, a destination that
neither answers nor refuses) is unready once it has made no progress for the stall
bound, with the reason in its state, and ready again as soon as it catches up.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from prometheus_client import CollectorRegistry

from mlwatch.sidecar.app import create_app
from tests.helpers import event, wait_until

STALL_S = 0.5


@pytest.fixture
def stalling_client(sidecar_config: Callable[..., Any]) -> Iterator[TestClient]:
    app = create_app(sidecar_config(sink_stall_s=STALL_S), registry=CollectorRegistry())
    with TestClient(app) as c:
        yield c


def post(client: TestClient, records: list[dict[str, Any]]) -> int:
    r = client.post(
        "/v1/events", content=json.dumps(records), headers={"content-type": "application/json"}
    )
    return r.status_code


def stored(client: TestClient) -> int:
    return int(client.get("/v1/models/iris/status").json()["events_stored"])


def test_a_locked_store_makes_the_sidecar_unready_until_it_catches_up(
    stalling_client: TestClient,
) -> None:
    c = stalling_client
    assert post(c, [event(0)]) == 202
    wait_until(lambda: stored(c) == 1, what="the first event stored")
    data_dir = c.app.state.sidecar.data_dir  # type: ignore[attr-defined]
    locker = sqlite3.connect(data_dir / "store.db", isolation_level=None)
    locker.execute("BEGIN EXCLUSIVE")  # another process holds the store: no write gets in
    try:
        assert post(c, [event(i) for i in range(1, 11)]) == 202  # the spool still takes it
        r = wait_until(
            lambda: (r := c.get("/readyz")).status_code == 503 and r,
            timeout=10,
            what="/readyz to report the stalled store",
        )
        state = r.json()["sinks"]["store"]
        assert state["healthy"] is False and state["alive"] is True
        assert state["last_error"].startswith("no progress for "), state
        status = c.get("/v1/models/iris/status").json()["sinks"]["store"]
        assert status["healthy"] is False and status["lag_bytes"] > 0
    finally:
        locker.execute("ROLLBACK")
        locker.close()
    wait_until(lambda: c.get("/readyz").status_code == 200, timeout=10, what="ready again")
    assert c.get("/readyz").json()["sinks"]["store"] == {
        "healthy": True,
        "alive": True,
        "last_error": None,
    }
    assert stored(c) == 11


def test_an_idle_sink_stays_ready(stalling_client: TestClient) -> None:
    """Nothing to deliver is not a stall, however long it lasts."""
    c = stalling_client
    assert post(c, [event(0)]) == 202
    wait_until(lambda: stored(c) == 1, what="the event stored")
    until = time.monotonic() + 4 * STALL_S
    while time.monotonic() < until:  # checked all along, not once at the end
        assert c.get("/readyz").status_code == 200
