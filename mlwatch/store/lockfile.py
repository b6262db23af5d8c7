"""Exclusive locks on a data directory's files, with the holder written in them, so a
process that finds one taken can say who holds it (another sidecar, a scheduler) instead
of "already open".

>>> import tempfile
>>> path = Path(tempfile.mkdtemp()) / "x.lock"
>>> fd = take(path, "mlwatch sidecar, pid 1")
>>> take(path, "mlwatch scheduler, pid 2") is None, holder(path)
(True, 'mlwatch sidecar, pid 1')
>>> os.close(fd)
"""

from __future__ import annotations

import fcntl
import os
import sys
from pathlib import Path


def this_process() -> str:
    """How a lock names its holder: the command and the pid (``mlwatch sidecar, pid 42``)."""
    argv = [Path(sys.argv[0]).name if sys.argv and sys.argv[0] else "python", *sys.argv[1:2]]
    if argv[0] == "__main__.py":  # python -m mlwatch ...
        argv[0] = "mlwatch"
    return f"{' '.join(argv)}, pid {os.getpid()}"


def take(path: Path, who: str) -> int | None:
    """Lock ``path`` (created when missing) and write ``who`` in it: the open descriptor,
    which holds the lock until it is closed, or None when another process holds it."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    except BaseException:
        os.close(fd)
        raise
    os.ftruncate(fd, 0)
    os.pwrite(fd, (who + "\n").encode(), 0)
    return fd


def holder(path: Path) -> str:
    """Who holds the lock of ``path``, as the holder wrote it ("another process" when unsaid)."""
    try:
        return path.read_text(errors="replace").strip() or "another process"
    except OSError:
        return "another process"
