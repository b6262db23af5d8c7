"""The spool on a disk that fails: full (ENOSPC, a short write) or broken (fsync EIO).

A batch the disk did not take is refused (SpoolError) and never delivered, so the
client's retry cannot duplicate it; every acknowledged batch survives; once the disk
takes writes again the spool goes on by itself, and a reopen finds nothing corrupt.
The faults are injected at the ``os`` layer here; a real full filesystem is in
tests/store/test_spool_full_disk.py and tests/integration/test_full_disk.py.
"""

from __future__ import annotations

import errno
import os
import random
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from mlwatch.store.spool import Record, Spool, SpoolError


@pytest.fixture
def open_spool(tmp_path: Path) -> Iterator[Callable[..., Spool]]:
    opened: list[Spool] = []

    def make(**kw: object) -> Spool:
        kw.setdefault("consumers", ["a"])
        spool = Spool(tmp_path / "spool", **kw)  # type: ignore[arg-type]
        opened.append(spool)
        return spool

    yield make
    for spool in opened:
        spool.close()


def read_all(spool: Spool, consumer: str = "a") -> list[Record]:
    out: list[Record] = []
    while batch := spool.read(consumer, max_records=1000):
        out += batch
    return out


def payloads(records: list[Record]) -> list[bytes]:
    return [r.payload for r in records]


def eio(fd: int) -> None:
    raise OSError(errno.EIO, "Input/output error")


@pytest.mark.parametrize("policy", ["always", "interval"])
def test_after_a_failed_fsync_the_doubtful_batch_is_gone_and_appends_resume(
    open_spool: Callable[..., Spool], monkeypatch: pytest.MonkeyPatch, policy: str
) -> None:
    spool = open_spool(fsync=policy)
    spool.append([b"kept"])
    monkeypatch.setattr(os, "fsync", eio)
    with pytest.raises(SpoolError, match="fsync failed"):
        spool.append([b"doubtful"])
    with pytest.raises(SpoolError, match="Input/output error"):  # still broken: refused
        spool.append([b"refused"])
    monkeypatch.undo()  # the disk works again
    spool.append([b"later"])
    assert payloads(read_all(spool)) == [b"kept", b"later"]
    spool.close()
    reopened = open_spool(fsync=policy)
    assert reopened.corrupt_records == 0
    assert payloads(read_all(reopened)) == [b"kept", b"later"]


def test_intermittent_fsync_failures_lose_nothing_acknowledged_and_deliver_no_refusal(
    open_spool: Callable[..., Spool], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Eight appenders share group commits while one fsync in five fails: what an append
    returned for is there after a reopen, what it raised for is not (its sender retries)."""
    spool = open_spool(fsync="interval", fsync_interval_ms=1, segment_bytes=4096)
    real_fsync, rng, lock = os.fsync, random.Random(7), threading.Lock()

    def flaky(fd: int) -> None:
        with lock:
            bad = rng.random() < 0.2
        if bad:
            raise OSError(errno.EIO, "Input/output error")
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", flaky)
    acked: set[bytes] = set()
    refused: set[bytes] = set()

    def appender(n: int) -> None:
        for i in range(60):
            payload = b"%d-%d:" % (n, i) + b"x" * 200
            try:
                spool.append([payload])
            except SpoolError:
                with lock:
                    refused.add(payload)
            else:
                with lock:
                    acked.add(payload)

    threads = [threading.Thread(target=appender, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    monkeypatch.undo()
    assert acked and refused  # both happened, or the test proved nothing
    seen = payloads(read_all(spool))
    spool.close()
    reopened = open_spool()
    again = payloads(read_all(reopened))
    assert reopened.corrupt_records == 0
    for got in (seen, again):
        assert len(got) == len(set(got)), "a record is there twice"
        assert acked <= set(got), f"{len(acked - set(got))} acknowledged records lost"
        assert not refused & set(got), "a refused batch would be delivered (and resent)"


def test_a_short_write_on_a_full_disk_leaves_no_partial_record(
    open_spool: Callable[..., Spool], monkeypatch: pytest.MonkeyPatch
) -> None:
    spool = open_spool(fsync="always")
    spool.append([b"before"])
    real_pwrite = os.pwrite

    def half(fd: int, data: bytes, offset: int) -> int:  # a filesystem one page from full
        return real_pwrite(fd, data[: len(data) // 2], offset)

    monkeypatch.setattr(os, "pwrite", half)
    with pytest.raises(SpoolError, match="disk is full"):
        spool.append([b"x" * 1000])
    monkeypatch.undo()
    spool.append([b"after"])
    spool.close()
    reopened = open_spool()
    assert reopened.corrupt_records == 0
    assert payloads(read_all(reopened)) == [b"before", b"after"]


def test_a_cursor_is_committed_on_a_full_disk(
    open_spool: Callable[..., Spool], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Committing frees the segments a full disk needs freed, so it must not need space:
    the cursor is rewritten in place when a new file cannot be written."""
    spool = open_spool(segment_bytes=4096, fsync="always")
    for i in range(20):
        spool.append([b"%d" % i + b"y" * 500])
    records = read_all(spool)
    assert len(list((tmp_path / "spool").glob("*.seg"))) > 2

    def full(*_: object) -> int:  # writing any new byte fails; overwriting in place works
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "write", full)
    monkeypatch.setattr(Path, "write_bytes", full)
    spool.commit("a", records[-1])
    monkeypatch.undo()
    assert spool.lag_bytes("a") == 0
    assert len(list((tmp_path / "spool").glob("*.seg"))) == 1  # the passed ones are gone
    spool.close()
    assert read_all(open_spool()) == []  # the commit survived the reopen
