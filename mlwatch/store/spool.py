"""The sidecar's durable spool: append-only checksummed segments, a cursor per sink.

The sidecar answers 202 only once a batch is fsynced here; the sinks (embedded store,
Elasticsearch, profiles) read it back at their own pace. A ``kill -9`` or a power cut at
any moment loses nothing acknowledged, and a segment goes only when every sink has
committed past it. Sinks are idempotent: after a crash a few records may be read twice,
none is skipped. The format is in :mod:`mlwatch.store.segments`; the rules of recovery and
of fsync (``always``, or group commit every ``interval``) in docs/sidecar.md.

A disk that fails is survived, not hidden: a batch the disk did not take (full, a short
write, a failed fsync) is refused with a :class:`SpoolError` that says why, and is never
delivered, so the sender's retry cannot duplicate it. Once the disk takes writes again
the spool goes on by itself (:meth:`Spool.recover`, or the next append).

>>> import tempfile
>>> with tempfile.TemporaryDirectory() as d, Spool(d, consumers=["store"]) as spool:
...     spool.append([b'{"n": 1}', b'{"n": 2}'])
...     records = spool.read("store")
...     spool.commit("store", records[-1])
>>> [r.payload for r in records], records[0].segment, records[0].offset, records[0].end
([b'{"n": 1}', b'{"n": 2}'], 1, 12, 32)
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import re
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

from mlwatch.errors import SpoolClosed, SpoolError, SpoolFull
from mlwatch.store import lockfile
from mlwatch.store.disk import FULL, describe, free_bytes, write_cursor
from mlwatch.store.segments import (
    FORMAT_VERSION,
    HEADER_LEN,
    Pos,
    Record,
    frame,
    fsync_dir,
    new_segment,
    recover_directory,
    scan,
    segment_name,
    truncate_log,
)

__all__ = [
    "FORMAT_VERSION",
    "HEADER_LEN",
    "Record",
    "Spool",
    "SpoolClosed",
    "SpoolError",
    "SpoolFull",
]

log = logging.getLogger(__name__)

_NAME_RE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


def _check_args(
    names: list[str], fsync: str, fsync_interval_ms: int, segment_bytes: int, max_bytes: int
) -> None:
    if not names or len(set(names)) < len(names) or not all(map(_NAME_RE.match, names)):
        raise ValueError(
            f"consumers: need distinct names matching {_NAME_RE.pattern}, got {names!r}"
        )
    if fsync not in ("always", "interval"):
        raise ValueError(f"fsync: must be 'always' or 'interval', got {fsync!r}")
    if fsync_interval_ms <= 0:
        raise ValueError(f"fsync_interval_ms: must be positive, got {fsync_interval_ms}")
    if segment_bytes <= HEADER_LEN or max_bytes < 2 * segment_bytes:  # room beside the active
        raise ValueError(
            f"max_bytes ({max_bytes}) must be at least 2 * segment_bytes ({segment_bytes})"
        )


class Spool:
    """A durable append-only log feeding several consumers (sinks), each with its own cursor.

    ``append`` is called from many threads at once; each consumer is read by one thread at
    a time (``read``, ``rewind``); ``commit`` may come from any thread.
    """

    def __init__(
        self,
        directory: str | os.PathLike[str],
        *,
        consumers: Sequence[str],
        fsync: Literal["always", "interval"] = "interval",
        fsync_interval_ms: int = 20,
        segment_bytes: int = 64 << 20,
        max_bytes: int = 1 << 30,
    ) -> None:
        names = list(consumers)
        _check_args(names, fsync, fsync_interval_ms, segment_bytes, max_bytes)
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self._consumers, self._always = names, fsync == "always"
        self._interval = fsync_interval_ms / 1000
        self._segment_bytes, self._max_bytes = segment_bytes, max_bytes
        self._lock = threading.Lock()
        self._durable_cv = threading.Condition(self._lock)  # the durable position moved, or closed
        self._dirty_cv = threading.Condition(self._lock)  # bytes written for the flusher
        self._cursor_locks = {n: threading.Lock() for n in names}
        self._stop = threading.Event()
        self._closed = self._syncing = self._dir_dirty = False
        self._failed: BaseException | None = None  # a failed fsync not yet recovered from
        self._pending = 0  # appends written and not yet returned (or raised)
        self._last_error: str | None = None  # why the disk refused the last append
        self._refused_bytes = 0  # the room that refused append needed (disk full only)
        self._bad: set[Pos] = set()  # where the corrupt stretches seen since open start
        self._sizes: dict[int, int] = {}  # segment -> bytes, oldest first
        self._unsynced: list[int] = []  # fds of sealed segments awaiting their fsync
        self._open()

    def _open(self) -> None:
        """Lock the directory, recover it, and start the group-commit flusher."""
        lock = self.directory / "spool.lock"
        fd = lockfile.take(lock, lockfile.this_process())
        if fd is None:
            raise SpoolError(
                f"{self.directory} is in use (by {lockfile.holder(lock)}): "
                "each sidecar needs a data directory of its own (--data-dir)"
            )
        self._lock_fd = fd
        try:
            self._fd, self._committed = self._recover()
        except BaseException:
            os.close(self._lock_fd)
            raise
        last = max(self._sizes)
        self._write_pos = self._durable = (last, self._sizes[last])
        self._total = sum(self._sizes.values())
        self._read_pos = dict(self._committed)
        with self._lock:
            self._unlink(self._collect_locked())  # a crash may have come between commit and unlink
        self._flusher: threading.Thread | None = None
        if not self._always:
            self._flusher = threading.Thread(
                target=self._flush_loop, name="mlwatch-spool-flusher", daemon=True
            )
            self._flusher.start()

    @property
    def corrupt_records(self) -> int:
        """Corrupt or torn records found since open (a damaged stretch counts once)."""
        with self._lock:
            return len(self._bad)

    @property
    def last_error(self) -> str | None:
        """Why the disk refused the last append, while it still would: None once an append
        succeeded, the failed fsync is recovered from, or a full disk has room again for
        the batch it refused."""
        with self._lock:
            error, need = self._last_error, self._refused_bytes
            if self._failed is not None:
                return error or str(self._fsync_error())
            if not (error and need):
                return error
        with contextlib.suppress(OSError):
            if free_bytes(self.directory) >= need:
                with self._lock:
                    if self._last_error == error:
                        self._last_error, self._refused_bytes = None, 0
                return None
        return error

    def recover(self) -> bool:
        """After a failed fsync, try to go on now rather than at the next append; True once
        the spool takes writes again (see :meth:`_recover_locked`)."""
        with self._lock:
            if self._closed:
                return False
            if self._failed is None:
                return True
            try:
                self._recover_locked()
            except SpoolError as exc:
                self._last_error = str(exc)
                return False
            self._last_error = None
            return True

    def append(self, payloads: Sequence[bytes]) -> None:
        """Append the payloads as contiguous records; return once an fsync covers them.

        Raises :class:`SpoolFull` at ``max_bytes``, :class:`SpoolClosed` once closed, and
        :class:`SpoolError` when the disk refused the batch (it is then never delivered).
        """
        buf = frame(payloads)  # the CRCs are computed outside the lock
        try:
            with self._lock:
                if self._closed:
                    raise SpoolClosed("the spool is closed")
                if self._failed is not None:
                    self._recover_locked()
                if not buf:
                    return
                target = self._write_locked(buf)
                self._pending += 1
            try:
                self._wait_durable(target)
            finally:
                with self._lock:
                    self._pending -= 1
        except (SpoolFull, SpoolClosed):
            raise
        except SpoolError as exc:
            with self._lock:
                self._last_error = str(exc)
            raise
        if self._last_error is not None:  # the disk took this one: no longer refusing
            with self._lock:
                self._last_error, self._refused_bytes = None, 0

    def _write_locked(self, buf: bytes) -> Pos:
        """Write ``buf`` at the end of the log (in a new segment when it would not fit the
        active one); return the position after it. A batch the disk does not take in full
        is cut off again: nothing of it stays under the next one."""
        seg, off = self._write_pos
        roll = off > HEADER_LEN and off + len(buf) > self._segment_bytes
        if self._total + len(buf) + roll * HEADER_LEN > self._max_bytes:
            raise SpoolFull(f"the spool holds {self._total} bytes; max_bytes is {self._max_bytes}")
        try:
            if roll:
                seg, off = self._roll_locked(seg)
            if os.pwrite(self._fd, buf, off) != len(buf):  # the disk filled up under it
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        except OSError as exc:
            with contextlib.suppress(OSError):
                os.ftruncate(self._fd, off)
            # a full disk takes writes again once this much is free (see last_error)
            self._refused_bytes = len(buf) + roll * HEADER_LEN if exc.errno in FULL else 0
            raise SpoolError(f"cannot write to the spool: {describe(exc)}") from exc
        self._write_pos = target = (seg, off + len(buf))
        self._sizes[seg] += len(buf)
        self._total += len(buf)
        self._dirty_cv.notify()
        return target

    def _wait_durable(self, target: Pos) -> None:
        """Return once an fsync covers ``target``: this thread's (``always``), or the
        flusher's next one (``interval``)."""
        if self._always:
            self._sync_to(target)
            return
        with self._lock:
            while self._durable < target:
                if self._failed is not None:
                    raise self._fsync_error()
                self._durable_cv.wait()

    def read(self, consumer: str, max_records: int = 100, timeout: float = 0.0) -> list[Record]:
        """The next durable records for ``consumer``, waiting up to ``timeout`` seconds for
        some; ``[]`` on timeout or once closed. The position moves on in memory only."""
        self._check(consumer)
        deadline = time.monotonic() + timeout
        while True:
            with self._lock:
                while True:
                    if self._closed:
                        return []
                    seg, off = pos = self._normalize(self._read_pos[consumer])
                    if pos < self._durable:
                        break
                    if (left := deadline - time.monotonic()) <= 0:
                        return []
                    self._durable_cv.wait(left)
                limit = self._durable[1] if seg == self._durable[0] else self._sizes[seg]
            records, off = self._read_segment(seg, off, limit, max_records)
            with self._lock:
                self._read_pos[consumer] = (seg, off)
            if records:  # else only a corrupt stretch was skipped: go on
                return records

    def commit(self, consumer: str, record: Record) -> None:
        """Persist that ``consumer`` has everything up to and including ``record``, then delete
        the segments that every consumer has passed (never the active one)."""
        self._check(consumer)
        with self._cursor_locks[consumer]:
            with self._lock:
                pos = min((record.segment, record.end), self._durable)
                if pos <= self._committed[consumer]:
                    return
            write_cursor(self.directory, consumer, pos)  # needs no free space
            with self._lock:
                self._committed[consumer] = pos
                self._read_pos[consumer] = max(self._read_pos[consumer], pos)
                doomed = self._collect_locked()
        self._unlink(doomed)

    def rewind(self, consumer: str) -> None:
        """Move the read position back to the last commit (the sink failed and will retry)."""
        self._check(consumer)
        with self._lock:
            self._read_pos[consumer] = self._committed[consumer]

    def lag_bytes(self, consumer: str) -> int:
        """Durable bytes (record headers included) that ``consumer`` has not committed."""
        self._check(consumer)
        with self._lock:
            (seg, off), (dseg, doff) = self._normalize(self._committed[consumer]), self._durable
            return sum(
                max(0, (doff if s == dseg else size) - (off if s == seg else HEADER_LEN))
                for s, size in self._sizes.items()
                if seg <= s <= dseg
            )

    def total_bytes(self) -> int:
        """Bytes of all segment files on disk: what ``max_bytes`` bounds."""
        with self._lock:
            return self._total

    def close(self) -> None:
        """A final fsync, then the files are released; wakes blocked readers and appenders
        (whose batches that fsync covers). Idempotent."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._dirty_cv.notify_all()
            self._durable_cv.notify_all()
        self._stop.set()
        if self._flusher is not None:
            self._flusher.join()
        try:
            if self._failed is None:
                self._sync_to(None)
            else:  # nothing more can be made durable; what was refused must not come back
                with self._lock, contextlib.suppress(OSError):
                    self._total -= truncate_log(self.directory, self._sizes, self._durable)
        finally:
            with self._lock:
                for fd in (*self._unsynced, self._fd, self._lock_fd):
                    os.close(fd)
                self._unsynced = []

    def __enter__(self) -> Spool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _sync_to(self, target: Pos | None) -> None:
        """Group commit: one thread fsyncs, outside the lock, everything written so far; the
        others wait for it, and start their own only if it did not cover them."""
        with self._lock:
            target = self._write_pos if target is None else target
            while True:
                if self._failed is not None:
                    raise self._fsync_error()
                if self._durable >= target:
                    return
                if not self._syncing:
                    break
                self._durable_cv.wait()
            self._syncing = True
            fds, self._unsynced = self._unsynced, []
            fd, snap, sync_dir, self._dir_dirty = self._fd, self._write_pos, self._dir_dirty, False
        err: OSError | None = None
        try:
            for sealed in fds:
                os.fsync(sealed)
            os.fsync(fd)
            if sync_dir:  # a new segment's name must survive a power cut too
                self._fsync_dir()
        except OSError as exc:
            err = exc
        finally:
            for sealed in fds:
                os.close(sealed)
        with self._lock:
            self._syncing = False
            if err is None:
                self._durable = max(self._durable, snap)
            else:  # what it covered is refused; the spool goes on once the disk works
                log.error(
                    "spool fsync failed (%s): the batches it covered are refused and dropped",
                    describe(err),
                )
                self._failed = err
            self._durable_cv.notify_all()
        if err is not None:
            raise self._fsync_error() from err

    def _fsync_error(self) -> SpoolError:
        """What an append learns when the fsync that was to cover it failed."""
        err = self._failed
        reason = describe(err) if isinstance(err, OSError) else repr(err)
        exc = SpoolError(f"fsync failed ({reason}); the batch was not stored")
        exc.__cause__ = err
        return exc

    def _recover_locked(self) -> None:
        """After a failed fsync: drop what was not durable, then go on in a new segment.

        The bytes after the durable position belong to appends that were all refused
        (none may still be waiting), and a second fsync proves nothing about them: the
        kernel may have marked their pages clean when it reported the error, so a retry
        can succeed without writing them. They are cut off instead, and appends go on in
        a fresh segment file, fsynced with its directory entry first. Raises
        :class:`SpoolError` while the disk still fails.
        """
        if not isinstance(self._failed, OSError):  # the flusher died of a bug: no way on
            raise SpoolError(f"the spool's flusher stopped ({self._failed!r}); restart")
        if self._pending or self._syncing:  # refused appends still on their way out
            raise self._fsync_error()
        try:
            self._total -= truncate_log(self.directory, self._sizes, self._durable)
            self._fresh_segment_locked()
        except OSError as exc:
            raise SpoolError(
                f"the disk still fails ({describe(exc)}); the batch was not stored"
            ) from exc
        log.warning(
            "spool: the disk takes writes again; going on in segment %d", self._write_pos[0]
        )

    def _fresh_segment_locked(self) -> None:
        """Start the next segment, durable and empty, and take writes again."""
        seg = self._write_pos[0] + 1
        fd = new_segment(self.directory, seg, durable=True)
        for old in (*self._unsynced, self._fd):
            with contextlib.suppress(OSError):
                os.close(old)
        self._unsynced, self._fd, self._dir_dirty = [], fd, False
        self._sizes[seg] = HEADER_LEN
        self._total += HEADER_LEN
        self._write_pos = self._durable = (seg, HEADER_LEN)
        self._failed = None

    def _flush_loop(self) -> None:
        """Policy "interval": an fsync at most every interval, covering every append since."""
        last = 0.0
        try:
            while True:
                with self._lock:
                    while not self._closed and (
                        self._failed is not None or self._durable >= self._write_pos
                    ):  # after a failure, nothing until the spool has recovered
                        self._dirty_cv.wait()
                    if self._closed:
                        return  # close() does the final fsync
                pause = last + self._interval - time.monotonic()
                if pause > 0 and self._stop.wait(pause):
                    return
                last = time.monotonic()
                with contextlib.suppress(SpoolError):  # in self._failed; appenders were woken
                    self._sync_to(None)
        except Exception as exc:  # a bug, but appenders must not wait for ever
            log.exception("spool flusher stopped")
            with self._lock:
                self._failed = self._failed or exc
                self._durable_cv.notify_all()

    def _roll_locked(self, seg: int) -> Pos:
        """Seal the active segment (the next fsync covers it) and start the next one."""
        fd = new_segment(self.directory, seg + 1)
        self._unsynced.append(self._fd)
        self._fd, self._dir_dirty, self._sizes[seg + 1] = fd, True, HEADER_LEN
        self._total += HEADER_LEN
        return seg + 1, HEADER_LEN

    def _fsync_dir(self) -> None:
        fsync_dir(self.directory)

    def _check(self, consumer: str) -> None:
        if consumer not in self._cursor_locks:
            raise ValueError(f"consumer: {consumer!r} is not one of {self._consumers!r}")

    def _path(self, seg: int) -> Path:
        return self.directory / segment_name(seg)

    def _normalize(self, pos: Pos) -> Pos:
        """The same place in the log, moved off deleted segments and past sealed ends."""
        seg, off = pos
        for s, size in self._sizes.items():
            if s >= seg:
                off = HEADER_LEN if s > seg else max(off, HEADER_LEN)
                if off < size or s == self._write_pos[0]:
                    return s, off
        return self._write_pos

    def _read_segment(self, seg: int, off: int, limit: int, n: int) -> tuple[list[Record], int]:
        """Up to ``n`` valid records from ``off``, and where the next read starts."""
        out: list[Record] = []
        fd = os.open(self._path(seg), os.O_RDONLY | os.O_CLOEXEC)  # its own: no fd to share
        try:
            for start, end, payload in scan(fd, off, limit):
                off = end
                if payload is not None:
                    out.append(Record(seg, start, end, payload))
                    if len(out) >= n:
                        break
                    continue
                with self._lock:  # damage since open (recovery found the rest)
                    if (seg, start) not in self._bad:
                        log.warning("spool: corrupt record in segment %d at %d", seg, start)
                        self._bad.add((seg, start))
        finally:
            os.close(fd)
        return out, off

    def _collect_locked(self) -> list[int]:
        """Forget the segments every consumer has passed; the caller unlinks them."""
        low = min(self._normalize(p) for p in self._committed.values())[0]
        doomed = [s for s in self._sizes if s < low]
        for s in doomed:
            self._total -= self._sizes.pop(s)
        return doomed

    def _unlink(self, segs: list[int]) -> None:
        for s in segs:
            self._path(s).unlink(missing_ok=True)

    def _recover(self) -> tuple[int, dict[str, Pos]]:
        """Every segment checked, torn tails cut, the cursors clamped: the active segment's
        fd and the cursors (:func:`~mlwatch.store.segments.recover_directory`)."""
        fd, cursors, self._sizes = recover_directory(self.directory, self._consumers, self._bad)
        for name, pos in cursors.items():  # a file to overwrite in place when the disk is full
            if not (self.directory / f"cursor.{name}").exists():
                write_cursor(self.directory, name, pos)
        return fd, cursors
