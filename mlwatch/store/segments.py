"""The spool's on-disk format, version 1: segment files of checksummed records, cursors.

A segment is a 12-byte header (``b"MLWSPOOL"``, format version u32) then records back to
back, each a 12-byte header (magic ``b"\\xf5MLW"``, payload length u32, CRC-32 u32 over
the length bytes and the payload) and the payload; a cursor file holds
``v1 <segment> <offset> <crc>``. The full specification, and how recovery treats torn
and corrupt stretches, is in docs/sidecar.md ("The spool on disk").

>>> buf = frame([b"ab", b"c"])
>>> len(buf), parse_cursor(cursor_line((3, 40)), newest=5)
(27, (3, 40))
"""

from __future__ import annotations

import errno
import logging
import os
import re
import struct
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from mlwatch.errors import SpoolError

log = logging.getLogger("mlwatch.store.spool")

FORMAT_VERSION = 1
SEG_MAGIC = b"MLWSPOOL"
SEG_HEADER = struct.Struct("<8sI")
HEADER_LEN = SEG_HEADER.size  # offset of a segment's first record
REC_MAGIC = b"\xf5MLW"  # 0xF5 never occurs in UTF-8: the magic cannot occur inside JSON
REC = struct.Struct("<4sII")
CHUNK = 1 << 20
SEG_RE = re.compile(r"^(\d{20})\.seg$")
_CURSOR_RE = re.compile(rb"^(v1 (\d{1,20}) (\d{1,20})) ([0-9a-f]{8})\n$")

Pos = tuple[int, int]  # (segment, offset): tuples order like the log itself


@dataclass(frozen=True)
class Record:
    """A payload read back, with where it lives; :meth:`Spool.commit` takes it."""

    segment: int  # segment number
    offset: int  # byte offset of the record start in that segment
    end: int  # byte offset just after the record
    payload: bytes


def frame(payloads: Sequence[bytes]) -> bytes:
    """Every record of a batch in one buffer, so that the append is a single write."""
    parts: list[bytes] = []
    for p in payloads:
        length = len(p).to_bytes(4, "little")
        parts += (REC.pack(REC_MAGIC, len(p), zlib.crc32(p, zlib.crc32(length))), p)
    return b"".join(parts)


def segment_name(seg: int) -> str:
    return f"{seg:020d}.seg"


def cursor_line(pos: Pos) -> bytes:
    """A cursor file's content for ``pos``."""
    line = f"v1 {pos[0]} {pos[1]}".encode()
    return b"%s %08x\n" % (line, zlib.crc32(line))


def parse_cursor(raw: bytes, *, newest: int) -> Pos | None:
    """The position a cursor file names, or None when it is damaged or names a segment
    past the newest."""
    m = _CURSOR_RE.fullmatch(raw)
    if m and b"%08x" % zlib.crc32(m[1]) == m[4] and int(m[2]) <= newest:
        return int(m[2]), int(m[3])
    return None


class Window:
    """``[0, limit)`` of a segment through a 1 MiB ``pread`` window: bounded memory."""

    def __init__(self, fd: int, limit: int) -> None:
        self.fd, self.limit, self.start, self.buf = fd, limit, 0, b""

    def get(self, pos: int, n: int) -> bytes | None:
        if pos + n > self.limit:
            return None
        if not self.start <= pos <= self.start + len(self.buf) - n:
            self.start, self.buf = pos, os.pread(self.fd, min(max(n, CHUNK), self.limit - pos), pos)
        i = pos - self.start
        return self.buf[i : i + n] if i + n <= len(self.buf) else None  # None: the file shrank

    def record(self, pos: int) -> bytes | None:
        """The payload of the record at ``pos``, if its magic, length and CRC check out."""
        head = self.get(pos, REC.size)
        if head is None:
            return None
        magic, n, crc = REC.unpack(head)
        payload = self.get(pos + REC.size, n) if magic == REC_MAGIC else None
        ok = payload is not None and zlib.crc32(payload, zlib.crc32(head[4:8])) == crc
        return payload if ok else None

    def resync(self, pos: int) -> int:
        """The offset of the first valid record at or after ``pos``, or ``limit``."""
        while self.get(pos, REC.size) is not None:
            j = self.buf.find(REC_MAGIC, pos - self.start)
            if j < 0:
                pos = self.start + len(self.buf) - len(REC_MAGIC) + 1
                continue
            pos = self.start + j  # before record() moves the window
            if self.record(pos) is not None:
                return pos
            pos += 1
        return self.limit


def scan(fd: int, pos: int, limit: int) -> Iterator[tuple[int, int, bytes | None]]:
    """``(start, end, payload)`` for each record in ``[pos, limit)``; ``payload`` is None for
    a corrupt stretch, which ends where the next valid record starts (or at ``limit``)."""
    win = Window(fd, limit)
    while pos < limit:
        payload = win.record(pos)
        end = pos + REC.size + len(payload) if payload is not None else win.resync(pos + 1)
        yield pos, end, payload
        pos = end


def recover_segment(path: Path, seg: int, fd: int, cursors: dict[str, Pos], bad: set[Pos]) -> int:
    """Check one segment at open: rewrite a damaged header, note corrupt stretches in
    ``bad``, move cursors inside them to the next record, truncate a torn tail. Returns
    the segment's valid length."""
    size = os.fstat(fd).st_size
    magic, version = SEG_HEADER.unpack(os.pread(fd, HEADER_LEN, 0).ljust(HEADER_LEN, b"\0"))
    if magic == SEG_MAGIC and version > FORMAT_VERSION:
        raise SpoolError(f"{path}: format version {version} is newer than {FORMAT_VERSION}")
    if (magic, version) != (SEG_MAGIC, FORMAT_VERSION):
        if size >= HEADER_LEN:  # shorter: a crash right after creating the file
            log.warning("spool: the header of segment %d is damaged; rewriting it", seg)
            bad.add((seg, 0))
        os.pwrite(fd, SEG_HEADER.pack(SEG_MAGIC, FORMAT_VERSION), 0)
        size = max(size, HEADER_LEN)
    here = sorted((off, name) for name, (s, off) in cursors.items() if s == seg)
    end = HEADER_LEN
    for start, stop, payload in scan(fd, HEADER_LEN, size):
        while here and here[0][0] <= start:  # a cursor inside a bad stretch moves past it
            cursors[here.pop(0)[1]] = (seg, start)
        if payload is not None:
            end = stop
        else:
            log.warning("spool: %d corrupt bytes in segment %d at %d", stop - start, seg, start)
            bad.add((seg, start))
    for _, name in here:
        cursors[name] = (seg, end)
    if end < size:
        os.ftruncate(fd, end)
    os.fsync(fd)
    return end


def new_segment(directory: Path, seg: int, *, durable: bool = False) -> int:
    """Create segment ``seg`` with its header; return its fd, left open for appends. With
    ``durable``, the file and its directory entry are fsynced before it is used."""
    fd = os.open(
        directory / segment_name(seg), os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644
    )
    try:
        header = SEG_HEADER.pack(SEG_MAGIC, FORMAT_VERSION)
        if os.pwrite(fd, header, 0) != len(header):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        if durable:
            os.fsync(fd)
            fsync_dir(directory)  # which also makes earlier deletions durable
    except BaseException:
        os.close(fd)  # a header-less file is harmless: recovery writes the header
        raise
    return fd


def truncate_log(directory: Path, sizes: dict[int, int], pos: Pos) -> int:
    """Cut the log back to ``pos``: the segments after it deleted, its own truncated and
    fsynced. ``sizes`` (segment -> bytes) follows; returns the bytes removed."""
    seg, off = pos
    removed = 0
    for later in [s for s in sizes if s > seg]:
        (directory / segment_name(later)).unlink(missing_ok=True)
        removed += sizes.pop(later)
    size = sizes.get(seg)
    if size is not None and size > off:
        fd = os.open(directory / segment_name(seg), os.O_RDWR | os.O_CLOEXEC)
        try:
            os.ftruncate(fd, off)
            os.fsync(fd)
        finally:
            os.close(fd)
        removed += size - off
        sizes[seg] = off
    return removed


def fsync_dir(directory: Path) -> None:
    """Make a directory's entries (a new segment's name) survive a power cut."""
    dfd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)


def _load_cursor(directory: Path, name: str, segs: list[int]) -> Pos:
    try:
        raw = (directory / f"cursor.{name}").read_bytes()
    except FileNotFoundError:
        return segs[0], HEADER_LEN  # a new consumer starts at the oldest record
    pos = parse_cursor(raw, newest=segs[-1])
    if pos is None:
        log.warning("spool: the cursor of %r is damaged; replaying from the oldest record", name)
        return segs[0], HEADER_LEN
    return pos


def recover_directory(
    directory: Path, consumers: list[str], bad: set[Pos]
) -> tuple[int, dict[str, Pos], dict[int, int]]:
    """Open a spool directory after any stop: leftover cursor temporaries removed, every
    segment checked (:func:`recover_segment`), the cursors loaded and clamped. Returns the
    newest segment's fd (left open for appends), the cursors and each segment's size."""
    for tmp in directory.glob("cursor.*.tmp"):
        tmp.unlink()
    segs = sorted(int(m[1]) for p in directory.iterdir() if (m := SEG_RE.fullmatch(p.name))) or [1]
    cursors = {name: _load_cursor(directory, name, segs) for name in consumers}
    sizes: dict[int, int] = {}
    fd = -1
    for seg in segs:
        path = directory / segment_name(seg)
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            sizes[seg] = recover_segment(path, seg, fd, cursors, bad)
        except BaseException:
            os.close(fd)
            raise
        if seg != segs[-1]:
            os.close(fd)
    fsync_dir(directory)
    return fd, cursors, sizes
