"""The sidecar on a failing disk (faults injected at the ``os`` layer): ingest answers 503
with a detail that names the disk's problem, never 500; /readyz says the spool cannot
take writes; once the disk works again, ingest resumes by itself and every 202 is stored.
A real full filesystem is in tests/integration/test_full_disk.py."""

from __future__ import annotations

import errno
import json
import os
from collections.abc import Callable
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.helpers import event, wait_until


def post(client: TestClient, i: int) -> Any:
    body = json.dumps([event(i * 10 + j) for j in range(10)])
    return client.post("/v1/events", content=body, headers={"content-type": "application/json"})


def stored(client: TestClient) -> int:
    return int(client.get("/v1/models/iris/status").json()["events_stored"])


def eio(fd: int) -> None:
    raise OSError(errno.EIO, "Input/output error")


def short_write(real: Callable[..., int]) -> Callable[[int, bytes, int], int]:
    def half(fd: int, data: bytes, offset: int) -> int:  # the last free page taken
        return real(fd, data[: len(data) // 2], offset)

    return half


def no_room(path: Any) -> os.statvfs_result:
    return os.statvfs_result((4096, 4096, 1024, 0, 0, 1024, 0, 0, 0, 255))


@pytest.mark.parametrize(
    ("fault", "detail"),
    [
        ("fsync", "(Input/output error); the batch was not stored"),
        ("pwrite", "the disk is full"),
    ],
)
def test_a_failing_disk_is_503_with_the_reason_then_ingest_resumes(
    client: TestClient, monkeypatch: pytest.MonkeyPatch, fault: str, detail: str
) -> None:
    assert post(client, 0).status_code == 202
    if fault == "fsync":
        monkeypatch.setattr(os, "fsync", eio)
    else:  # a short write, and no room left as the filesystem tells it
        monkeypatch.setattr(os, "pwrite", short_write(os.pwrite))
        monkeypatch.setattr(os, "statvfs", no_room)
    for i in (1, 2):  # the failing one, and the next while the disk still fails
        r = post(client, i)
        assert r.status_code == 503, r.text
        assert detail in r.json()["detail"] and r.headers["retry-after"]
    ready = client.get("/readyz")
    assert ready.status_code == 503
    assert detail in ready.json()["spool"]["last_error"], ready.json()
    monkeypatch.undo()
    assert post(client, 3).status_code == 202
    assert client.get("/readyz").json()["spool"] == {"healthy": True, "last_error": None}
    wait_until(lambda: client.get("/readyz").status_code == 200, what="ready again")
    wait_until(lambda: stored(client) == 20, what="both acknowledged batches stored")
    assert stored(client) == 20  # and none of the refused ones
