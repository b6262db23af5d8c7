"""How mlwatch logs: one format for its long-running services, and failures on the
telemetry path at most once a minute per kind.

Monitoring runs inside a model server: a broken feature extractor fails on every
call, and one log line per call would flood the host's logs (and cost more than
the call). So each *kind* of failure is logged the first time, then at most once
per ``interval`` seconds, with the number of occurrences suppressed in between.
Never pass secrets (the token) in a message.

>>> import logging
>>> now = [0.0]
>>> lines = []
>>> class Keep(logging.Handler):
...     def emit(self, record): lines.append(record.getMessage())
>>> log = logging.getLogger("mlwatch.doctest")
>>> log.addHandler(Keep()); log.propagate = False
>>> limiter = RateLimitedLog(log, interval=60.0, clock=lambda: now[0])
>>> for _ in range(3):
...     limiter.warning("features", "extractor failed: %s", "KeyError")
>>> now[0] = 61.0
>>> limiter.warning("features", "extractor failed: %s", "KeyError")
>>> lines
['extractor failed: KeyError', 'extractor failed: KeyError (2 similar messages suppressed in the last 60s)']
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

logger = logging.getLogger("mlwatch")


class RateLimitedLog:
    """A logger front that lets one message per kind through per ``interval`` seconds."""

    def __init__(
        self,
        log: logging.Logger = logger,
        *,
        interval: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.log = log
        self.interval = interval
        self._clock = clock
        self._lock = threading.Lock()
        self._last: dict[str, float] = {}
        self._suppressed: dict[str, int] = {}

    def _allow(self, kind: str) -> int | None:
        """Return the suppressed count to report if this message may be logged, else None."""
        now = self._clock()
        with self._lock:
            last = self._last.get(kind)
            if last is not None and now - last < self.interval:
                self._suppressed[kind] = self._suppressed.get(kind, 0) + 1
                return None
            self._last[kind] = now
            return self._suppressed.pop(kind, 0)

    def emit(self, level: int, kind: str, msg: str, *args: Any, exc_info: Any = None) -> None:
        if not self.log.isEnabledFor(level):
            return
        suppressed = self._allow(kind)
        if suppressed is None:
            return
        if suppressed:
            msg = f"{msg} ({suppressed} similar messages suppressed in the last {self.interval:g}s)"
        self.log.log(level, msg, *args, exc_info=exc_info)

    def warning(self, kind: str, msg: str, *args: Any, exc_info: Any = None) -> None:
        self.emit(logging.WARNING, kind, msg, *args, exc_info=exc_info)

    def error(self, kind: str, msg: str, *args: Any, exc_info: Any = None) -> None:
        self.emit(logging.ERROR, kind, msg, *args, exc_info=exc_info)

    def info(self, kind: str, msg: str, *args: Any) -> None:
        self.emit(logging.INFO, kind, msg, *args)

    def reset(self) -> None:
        """Forget the history (after a fork: the child logs its own first failures)."""
        self._lock = threading.Lock()  # a new lock: the old one may be held by a dead thread
        self._last = {}
        self._suppressed = {}


def setup_logging(level: str) -> None:
    """One log format for the sidecar and the scheduler. A no-op when the host process has
    configured logging already (``logging.basicConfig`` adds no second handler)."""
    logging.basicConfig(
        level=level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )


#: The process-wide limiter every client module logs failures through.
failures = RateLimitedLog()
