"""The forward input's open connections, at most ``limit`` of them.

Every connection has a thread, so their number is bounded. Refusing whoever comes once
the slots are full would let idle connections (a peer that connects and says nothing,
or thousands of them) turn away a sender with records for as long as they stay open.
So at the limit the connection idle longest makes room. Idle means waiting for the
next message with nothing unhandled, or for the PING with nothing received; such a
connection has nothing unacked, and its sender reconnects on its next write. Only when
no connection is idle is the newcomer refused.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from dataclasses import dataclass, field


@dataclass(eq=False)
class Slot:
    """One connection: its socket, its thread, and since when it has been idle."""

    conn: socket.socket
    where: str
    thread: threading.Thread | None = None
    #: monotonic time since which it waits with nothing unhandled; None while it works
    idle_since: float | None = field(default_factory=time.monotonic)

    def idle(self) -> None:
        self.idle_since = time.monotonic()

    def busy(self) -> None:
        self.idle_since = None


@dataclass
class Admission:
    """Whether a new connection got a slot, and whose connection made room for it."""

    admitted: bool
    evicted: Slot | None = None


class Slots:
    """The open connections: admit, evict the longest idle, release."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._lock = threading.Lock()
        self._open: dict[socket.socket, Slot] = {}

    def admit(self, slot: Slot) -> Admission:
        """Take ``slot``; at the limit, end the connection idle longest to make room."""
        with self._lock:
            evicted = None
            if len(self._open) >= self.limit:
                idle = [s for s in self._open.values() if s.idle_since is not None]
                if not idle:
                    return Admission(False)
                evicted = min(idle, key=lambda s: s.idle_since or 0.0)
                del self._open[evicted.conn]
                with contextlib.suppress(OSError):  # wakes its recv(): its thread ends it
                    evicted.conn.shutdown(socket.SHUT_RD)
            self._open[slot.conn] = slot
            return Admission(True, evicted)

    def release(self, slot: Slot) -> None:
        with self._lock:
            if self._open.get(slot.conn) is slot:
                del self._open[slot.conn]

    def all(self) -> list[Slot]:
        with self._lock:
            return list(self._open.values())
