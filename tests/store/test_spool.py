"""Tests of the sidecar's durable spool: ordering, cursors, group commit, bounds, recovery."""

from __future__ import annotations

import itertools
import os
import random
import signal
import subprocess
import sys
import threading
import time
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from mlwatch.store.spool import HEADER_LEN, Record, Spool, SpoolClosed, SpoolError, SpoolFull
from tests.helpers import REPO, wait_until

ROOT = REPO


@pytest.fixture
def open_spool(tmp_path: Path) -> Iterator[Callable[..., Spool]]:
    """Opens spools in ``tmp_path / "spool"`` and closes whatever a test left open."""
    opened: list[Spool] = []

    def make(**kw: object) -> Spool:
        kw.setdefault("consumers", ["a"])
        spool = Spool(tmp_path / "spool", **kw)  # type: ignore[arg-type]
        opened.append(spool)
        return spool

    yield make
    for spool in opened:
        spool.close()


@pytest.fixture
def fsyncs(monkeypatch: pytest.MonkeyPatch) -> list[tuple[int, int]]:
    """Every ``os.fsync`` as (inode, file size when it started); the size is what it covers."""
    calls: list[tuple[int, int]] = []
    real, lock = os.fsync, threading.Lock()

    def counting(fd: int) -> None:
        st = os.fstat(fd)
        real(fd)
        with lock:
            calls.append((st.st_ino, st.st_size))

    monkeypatch.setattr(os, "fsync", counting)
    return calls


def read_all(spool: Spool, consumer: str = "a") -> list[Record]:
    out: list[Record] = []
    while batch := spool.read(consumer, max_records=1000):
        out += batch
    return out


def payloads(records: list[Record]) -> list[bytes]:
    return [r.payload for r in records]


def segments(spool_dir: Path) -> list[Path]:
    return sorted(spool_dir.glob("*.seg"))


def cursor_line(seg: int, off: int) -> bytes:
    line = f"v1 {seg} {off}".encode()
    return b"%s %08x\n" % (line, zlib.crc32(line))


# -- basics ----------------------------------------------------------------------------


def test_append_then_read_returns_payloads_in_order(open_spool: Callable[..., Spool]) -> None:
    spool = open_spool()
    spool.append([b"one", b"", b"three"])
    spool.append([b"four"])
    records = read_all(spool)
    assert payloads(records) == [b"one", b"", b"three", b"four"]
    assert records[0].offset == HEADER_LEN
    assert all(a.end == b.offset for a, b in itertools.pairwise(records))
    assert spool.read("a") == []


def test_read_returns_only_durable_records(
    open_spool: Callable[..., Spool], monkeypatch: pytest.MonkeyPatch
) -> None:
    spool = open_spool(fsync="interval")
    spool.append([b"durable"])
    real, entered, release, appended = (
        os.fsync,
        threading.Event(),
        threading.Event(),
        threading.Event(),
    )

    def gated(fd: int) -> None:
        entered.set()
        assert release.wait(10)
        real(fd)

    monkeypatch.setattr(os, "fsync", gated)
    writer = threading.Thread(target=lambda: (spool.append([b"x"]), appended.set()))
    writer.start()
    try:
        assert entered.wait(5)  # the bytes are written, the fsync has not finished
        [first] = spool.read("a")
        assert first.payload == b"durable" and spool.read("a") == []
        assert spool.lag_bytes("a") == first.end - HEADER_LEN
        assert not appended.is_set()  # and append has not acknowledged them
    finally:
        release.set()
    writer.join(5)
    assert appended.is_set()
    assert payloads(spool.read("a")) == [b"x"]


def test_commit_then_reopen_resumes_after_the_cursor(open_spool: Callable[..., Spool]) -> None:
    spool = open_spool()
    spool.append([b"%d" % i for i in range(5)])
    records = spool.read("a", max_records=3)
    spool.commit("a", records[1])
    spool.close()
    spool = open_spool()
    assert payloads(read_all(spool)) == [b"2", b"3", b"4"]


def test_consumers_have_independent_cursors(open_spool: Callable[..., Spool]) -> None:
    spool = open_spool(consumers=["store", "es"])
    spool.append([b"1", b"2", b"3"])
    store = spool.read("store")
    spool.commit("store", store[-1])
    es = spool.read("es", max_records=1)
    spool.commit("es", es[0])
    assert spool.lag_bytes("store") == 0
    assert spool.lag_bytes("es") == store[-1].end - es[0].end
    spool.close()
    spool = open_spool(consumers=["store", "es"])
    assert spool.read("store") == []
    assert payloads(spool.read("es")) == [b"2", b"3"]


def test_new_consumer_starts_at_oldest_record(open_spool: Callable[..., Spool]) -> None:
    spool = open_spool(consumers=["store"])
    spool.append([b"1", b"2"])
    spool.commit("store", spool.read("store")[-1])
    spool.close()
    spool = open_spool(consumers=["store", "es"])
    assert spool.read("store") == []
    assert payloads(spool.read("es")) == [b"1", b"2"]


def test_rewind_rereads_from_last_commit(open_spool: Callable[..., Spool]) -> None:
    spool = open_spool()
    spool.append([b"1", b"2", b"3"])
    first = spool.read("a", max_records=2)
    spool.rewind("a")
    assert spool.read("a", max_records=2) == first
    spool.commit("a", first[0])
    spool.rewind("a")
    assert payloads(spool.read("a")) == [b"2", b"3"]


def test_segments_roll_over_and_go_only_after_every_consumer(
    open_spool: Callable[..., Spool], tmp_path: Path
) -> None:
    spool = open_spool(consumers=["a", "b"], segment_bytes=1000, max_bytes=100_000)
    for i in range(20):
        spool.append([b"%03d" % i + b"x" * 197])  # 212 bytes a record: 4 a segment
    assert len(segments(tmp_path / "spool")) == 5
    records = read_all(spool, "a")
    assert [r.payload[:3] for r in records] == [b"%03d" % i for i in range(20)]
    assert len({r.segment for r in records}) == 5
    spool.commit("a", records[-1])
    assert len(segments(tmp_path / "spool")) == 5  # "b" has read nothing yet
    b = read_all(spool, "b")
    spool.commit("b", b[9])  # the third record of the third segment
    assert len(segments(tmp_path / "spool")) == 3
    assert spool.total_bytes() == sum(p.stat().st_size for p in segments(tmp_path / "spool"))
    spool.commit("b", b[-1])
    assert [p.name for p in segments(tmp_path / "spool")] == [f"{5:020d}.seg"]  # the active one
    assert spool.lag_bytes("a") == spool.lag_bytes("b") == 0


def test_big_batch_stays_in_one_segment(open_spool: Callable[..., Spool]) -> None:
    spool = open_spool(segment_bytes=100, max_bytes=100_000)
    spool.append([b"small"])
    spool.append([b"y" * 500, b"z" * 10])
    records = read_all(spool)
    assert [r.segment for r in records] == [1, 2, 2]


# -- group commit ----------------------------------------------------------------------


def test_interval_policy_shares_fsyncs_between_concurrent_appends(
    open_spool: Callable[..., Spool], fsyncs: list[tuple[int, int]]
) -> None:
    spool = open_spool(fsync="interval", fsync_interval_ms=20)
    n, start = 40, threading.Barrier(40)
    fsyncs.clear()

    def one(i: int) -> None:
        start.wait()
        spool.append([b"%d" % i])

    threads = [threading.Thread(target=one, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert sorted(payloads(read_all(spool))) == sorted(b"%d" % i for i in range(n))
    assert 1 <= len(fsyncs) <= n // 4  # one per appender without group commit


def test_always_policy_acknowledges_only_after_a_covering_fsync(
    open_spool: Callable[..., Spool], fsyncs: list[tuple[int, int]], tmp_path: Path
) -> None:
    spool = open_spool(fsync="always")
    inode = segments(tmp_path / "spool")[0].stat().st_ino
    covered_at_ack: dict[bytes, int] = {}

    def one(i: int) -> None:
        for j in range(5):
            spool.append([b"%d-%d" % (i, j)])
            covered_at_ack[b"%d-%d" % (i, j)] = max(s for ino, s in list(fsyncs) if ino == inode)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    records = read_all(spool)
    assert len(records) == 40
    for r in records:
        assert covered_at_ack[r.payload] >= r.end, r


def test_always_policy_fsyncs_every_sequential_append(
    open_spool: Callable[..., Spool], fsyncs: list[tuple[int, int]]
) -> None:
    spool = open_spool(fsync="always")
    for i in range(5):
        before = len(fsyncs)
        spool.append([b"%d" % i])
        assert len(fsyncs) > before


# -- bounds and lifecycle --------------------------------------------------------------


def test_spool_full_until_consumers_commit(open_spool: Callable[..., Spool]) -> None:
    spool = open_spool(consumers=["a", "b"], segment_bytes=1000, max_bytes=2500)
    accepted = 0
    for _ in range(100):
        try:
            spool.append([b"p" * 200])
        except SpoolFull:
            break
        accepted += 1
    assert accepted == 11  # 212-byte records, 4 per segment, 12-byte headers: 2 roll-overs
    before = spool.total_bytes()
    assert before <= 2500
    with pytest.raises(SpoolFull):
        spool.append([b"p" * 200])
    assert spool.total_bytes() == before  # nothing written by a refused append
    for consumer in ("a", "b"):
        spool.commit(consumer, read_all(spool, consumer)[-1])
    assert spool.total_bytes() < before
    spool.append([b"again"])
    assert payloads(spool.read("a")) == [b"again"]


def test_close_is_idempotent_and_wakes_a_blocked_reader(open_spool: Callable[..., Spool]) -> None:
    spool = open_spool()
    result: list[list[Record]] = []
    reader = threading.Thread(target=lambda: result.append(spool.read("a", timeout=30)))
    reader.start()
    wait_until(lambda: spool._durable_cv._waiters, interval=0.001)  # type: ignore[attr-defined]
    started = time.monotonic()
    spool.close()
    spool.close()
    reader.join(5)
    assert result == [[]] and time.monotonic() - started < 5
    assert spool.read("a") == []
    with pytest.raises(SpoolClosed):
        spool.append([b"late"])


def test_blocked_reader_wakes_on_append(open_spool: Callable[..., Spool]) -> None:
    spool = open_spool()
    result: list[list[Record]] = []
    reader = threading.Thread(target=lambda: result.append(spool.read("a", timeout=30)))
    reader.start()
    wait_until(lambda: spool._durable_cv._waiters, interval=0.001)  # type: ignore[attr-defined]
    spool.append([b"hello"])
    reader.join(5)
    assert [payloads(r) for r in result] == [[b"hello"]]


def test_directory_can_be_opened_once(open_spool: Callable[..., Spool]) -> None:
    open_spool()
    with pytest.raises(SpoolError, match=r"is in use \(by .*pid \d+\): each sidecar"):
        open_spool()


@pytest.mark.parametrize(
    "kwargs",
    [
        {"consumers": []},
        {"consumers": ["a", "a"]},
        {"consumers": ["../x"]},
        {"fsync": "never"},
        {"fsync_interval_ms": 0},
        {"segment_bytes": 1000, "max_bytes": 1500},
    ],
)
def test_bad_arguments_name_the_parameter(
    open_spool: Callable[..., Spool], kwargs: dict[str, object]
) -> None:
    with pytest.raises(ValueError, match=next(iter(kwargs)).split("_")[0]):
        open_spool(**kwargs)


def test_unknown_consumer_is_refused(open_spool: Callable[..., Spool]) -> None:
    with pytest.raises(ValueError, match="consumer"):
        open_spool().read("nobody")


# -- recovery --------------------------------------------------------------------------


def fill(open_spool: Callable[..., Spool], n: int = 10) -> list[Record]:
    """Append ``n`` records, close, and return them as read back."""
    spool = open_spool()
    spool.append([b"record-%d" % i + b"." * 50 for i in range(n)])
    records = read_all(spool)
    spool.close()
    return records


def test_torn_tail_keeps_earlier_records(open_spool: Callable[..., Spool], tmp_path: Path) -> None:
    records = fill(open_spool)
    seg = segments(tmp_path / "spool")[-1]
    os.truncate(seg, records[-1].end - 5)
    spool = open_spool()
    assert read_all(spool) == records[:-1]
    assert spool.corrupt_records == 1
    assert seg.stat().st_size == records[-2].end  # truncated: appends follow valid data
    spool.append([b"next"])
    assert payloads(spool.read("a")) == [b"next"]
    spool.close()
    assert open_spool().corrupt_records == 0


@pytest.mark.parametrize(
    "where", [0, 5, 7, 9, 20], ids=["magic", "length", "length-high", "crc", "payload"]
)
def test_flipped_bit_skips_only_that_record(
    open_spool: Callable[..., Spool], tmp_path: Path, where: int
) -> None:
    records = fill(open_spool)
    seg = segments(tmp_path / "spool")[-1]
    data = bytearray(seg.read_bytes())
    data[records[5].offset + where] ^= 0x10
    seg.write_bytes(bytes(data))
    spool = open_spool()
    assert read_all(spool) == records[:5] + records[6:]
    assert spool.corrupt_records == 1
    spool.append([b"next"])
    assert payloads(spool.read("a")) == [b"next"]


def test_garbage_at_the_tail_is_truncated(open_spool: Callable[..., Spool], tmp_path: Path) -> None:
    records = fill(open_spool)
    seg = segments(tmp_path / "spool")[-1]
    with open(seg, "ab") as f:  # a record magic with a lying header, then noise
        f.write(
            b"\xf5MLW"
            + (5).to_bytes(4, "little")
            + b"\0\0\0\0abcde"
            + random.Random(1).randbytes(300)
        )
    spool = open_spool()
    assert read_all(spool) == records
    assert spool.corrupt_records == 1
    assert seg.stat().st_size == records[-1].end
    spool.append([b"next"])
    assert payloads(spool.read("a")) == [b"next"]


@pytest.mark.parametrize("content", [b"", b"MLWS"], ids=["empty", "half-header"])
def test_headerless_segment_after_a_crash(
    open_spool: Callable[..., Spool], tmp_path: Path, content: bytes
) -> None:
    records = fill(open_spool)
    (tmp_path / "spool" / f"{2:020d}.seg").write_bytes(content)
    spool = open_spool()
    assert read_all(spool) == records
    assert spool.corrupt_records == 0
    spool.append([b"next"])
    [new] = spool.read("a")
    assert (new.segment, new.offset, new.payload) == (2, HEADER_LEN, b"next")


def test_empty_directory_segment_only(open_spool: Callable[..., Spool], tmp_path: Path) -> None:
    (tmp_path / "spool").mkdir()
    (tmp_path / "spool" / f"{7:020d}.seg").write_bytes(b"")
    spool = open_spool()
    spool.append([b"x"])
    assert [(r.segment, r.payload) for r in spool.read("a")] == [(7, b"x")]


@pytest.mark.parametrize(
    "content",
    [b"", b"garbage\n", cursor_line(1, 100)[:-3] + b"00\n", cursor_line(99, 12)],
    ids=["empty", "text", "bad-crc", "future-segment"],
)
def test_nonsense_cursor_replays_from_the_oldest_record(
    open_spool: Callable[..., Spool], tmp_path: Path, content: bytes
) -> None:
    records = fill(open_spool)
    (tmp_path / "spool" / "cursor.a").write_bytes(content)
    assert read_all(open_spool()) == records


def test_cursor_past_the_end_is_clamped(open_spool: Callable[..., Spool], tmp_path: Path) -> None:
    fill(open_spool)
    (tmp_path / "spool" / "cursor.a").write_bytes(cursor_line(1, 10**9))
    spool = open_spool()
    assert spool.read("a") == [] and spool.lag_bytes("a") == 0
    spool.append([b"next"])
    assert payloads(spool.read("a")) == [b"next"]


def test_cursor_into_a_corrupt_record_moves_to_the_next_one(
    open_spool: Callable[..., Spool], tmp_path: Path
) -> None:
    records = fill(open_spool, 5)
    seg = segments(tmp_path / "spool")[-1]
    data = bytearray(seg.read_bytes())
    data[records[2].offset + 20] ^= 1
    seg.write_bytes(bytes(data))
    (tmp_path / "spool" / "cursor.a").write_bytes(cursor_line(1, records[2].offset + 3))
    spool = open_spool()
    assert read_all(spool) == records[3:]


CHILD = r"""
import random, sys, threading
from mlwatch.store.spool import Spool
from tests.helpers import REPO

directory, base, seed = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
spool = Spool(directory, consumers=["check"], segment_bytes=64 << 10, fsync_interval_ms=2)
out = threading.Lock()

def worker(k):
    rng, seq = random.Random(seed * 10 + k), base + k
    while True:
        spool.append([b"%d:" % seq + b"x" * rng.randrange(20000)])
        with out:
            sys.stdout.write(f"{seq}\n")
            sys.stdout.flush()
        seq += 2

for k in range(2):
    threading.Thread(target=worker, args=(k,)).start()
"""


def test_kill_9_loses_no_acknowledged_record(tmp_path: Path) -> None:
    rng, acked = random.Random(1234), set()
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    for run in range(4):
        proc = subprocess.Popen(
            [sys.executable, "-c", CHILD, str(tmp_path / "spool"), str(run * 10**6), str(run)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
            cwd=ROOT,
        )
        assert proc.stdout is not None
        watchdog = threading.Timer(10, proc.kill)
        watchdog.start()
        try:
            for _ in range(rng.randrange(5, 80)):
                line = proc.stdout.readline()
                assert line.endswith(b"\n"), proc.stderr.read() if proc.stderr else b""
                acked.add(int(line))
            proc.send_signal(signal.SIGKILL)
            rest, err = proc.communicate()
        finally:
            watchdog.cancel()
        acked.update(int(line) for line in rest.splitlines(keepends=True) if line.endswith(b"\n"))
        assert proc.returncode == -signal.SIGKILL, err
        if run % 2:  # and a torn write on top: a prefix of a record that was never acknowledged
            payload = b"-1:" + b"t" * 5000
            frame = b"\xf5MLW" + len(payload).to_bytes(4, "little") + b"\0\0\0\0" + payload
            with open(segments(tmp_path / "spool")[-1], "ab") as f:
                f.write(frame[: rng.randrange(1, len(frame))])
    with Spool(tmp_path / "spool", consumers=["check"]) as spool:
        seen = [int(r.payload.split(b":")[0]) for r in read_all(spool, "check")]
    assert len(seen) == len(set(seen)), "a record was stored twice"
    assert acked <= set(seen), f"lost acknowledged records: {sorted(acked - set(seen))[:10]}"


def test_a_full_disk_refuses_the_batch_and_the_spool_goes_on(
    open_spool: Callable[..., Spool], monkeypatch: pytest.MonkeyPatch
) -> None:
    spool = open_spool(consumers=["a"], fsync="always")
    spool.append([b"before"])
    real_pwrite = os.pwrite

    def full(fd: int, data: bytes, offset: int) -> int:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "pwrite", full)
    with pytest.raises(SpoolError, match="No space left on device"):
        spool.append([b"lost"])
    monkeypatch.setattr(os, "pwrite", real_pwrite)
    spool.append([b"after"])
    assert [r.payload for r in spool.read("a", 10)] == [b"before", b"after"]
