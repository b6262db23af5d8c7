"""The spool on a real full filesystem (a 1 MiB tmpfs; skipped where mounting is not
permitted): appends are refused with a clear error, a sink that caught up can still
commit (which is what frees the disk), and appends resume by themselves."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from mlwatch.store.spool import Record, Spool, SpoolError
from tests.disks import fill, small_tmpfs


@pytest.fixture
def disk(tmp_path: Path) -> Iterator[Path]:
    with small_tmpfs(tmp_path / "disk", "1m") as where:
        yield where


def read_all(spool: Spool) -> list[Record]:
    out: list[Record] = []
    while batch := spool.read("a", max_records=1000):
        out += batch
    return out


def fill_spool(spool: Spool) -> tuple[int, str]:
    """Append 8 KiB batches until the disk refuses one: how many it took, and why not more."""
    for n in range(10_000):
        try:
            spool.append([b"%06d" % n + b"z" * 8192])
        except SpoolError as exc:
            return n, str(exc)
    raise AssertionError("a 1 MiB disk took 80 MB")


def test_a_full_disk_refuses_appends_until_the_sink_frees_it(disk: Path) -> None:
    spool = Spool(disk / "spool", consumers=["a"], segment_bytes=64 << 10, max_bytes=1 << 30)
    try:
        taken, why = fill_spool(spool)
        assert taken > 50 and "the disk is full" in why, (taken, why)
        fill(disk / "filler")  # and whatever space was left is taken by someone else
        records = read_all(spool)
        assert len(records) == taken
        spool.commit("a", records[-1])  # needs no free space: it is what frees it
        assert spool.lag_bytes("a") == 0
        spool.append([b"after"])  # the passed segments are gone: room again
    finally:
        spool.close()
    reopened = Spool(disk / "spool", consumers=["a"], segment_bytes=64 << 10, max_bytes=1 << 30)
    try:
        assert reopened.corrupt_records == 0
        assert [r.payload for r in read_all(reopened)] == [b"after"]
    finally:
        reopened.close()
