"""What the spool needs from a disk that may be full: cursor files that can be committed
without free space, errors told in words a client can act on, and the free space.

Committing a cursor is what frees a full disk (a segment goes once every sink has passed
it), so a commit must never need room of its own: when no new file can be written, the
old cursor file is overwritten in place, within the block it already has.

>>> import tempfile
>>> d = Path(tempfile.mkdtemp())
>>> write_cursor(d, "store", (1, 12))
>>> (d / "cursor.store").read_bytes()
b'v1 1 12 62634e75\\n'
>>> describe(OSError(errno.ENOSPC, "No space left on device"))
'the disk is full (No space left on device)'
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

from mlwatch.store.segments import Pos, cursor_line

FULL = (errno.ENOSPC, errno.EDQUOT)


def describe(exc: OSError) -> str:
    """An OS error as the reason a batch was refused."""
    reason = exc.strerror or str(exc)
    return f"the disk is full ({reason})" if exc.errno in FULL else reason


def free_bytes(directory: Path) -> int:
    """Bytes an unprivileged writer may still use on ``directory``'s filesystem."""
    st = os.statvfs(directory)
    return st.f_bavail * st.f_frsize


def write_cursor(directory: Path, name: str, pos: Pos) -> None:
    """Write ``cursor.<name>``: a new file renamed over the old one, or — when the disk has
    no room for a new file — the old one overwritten in place. A power cut during an
    in-place write can tear it; a torn cursor reads as damaged, which replays from the
    oldest record to idempotent sinks (never skips one)."""
    line = cursor_line(pos)
    path, tmp = directory / f"cursor.{name}", directory / f"cursor.{name}.tmp"
    try:
        _write_new(tmp, line)
        os.replace(tmp, path)
    except OSError as exc:
        if exc.errno not in FULL or not path.exists():
            raise
        tmp.unlink(missing_ok=True)
        _overwrite(path, line)


def _write_new(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
    try:
        if os.write(fd, data) != len(data):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    finally:
        os.close(fd)


def _overwrite(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
    try:
        if os.pwrite(fd, data, 0) != len(data):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        os.ftruncate(fd, len(data))
    finally:
        os.close(fd)
