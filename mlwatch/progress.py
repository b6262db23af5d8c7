"""One progress line on stderr for long work (reading a large file, the demo's traffic).

On a terminal the line is redrawn in place at most ten times a second; in a log (not a
terminal) it is written at each quarter, so CI output stays short.

>>> import io
>>> out = io.StringIO()
>>> bar = Progress("reading", 4_000_000, out=out, enabled=True, unit="MB", scale=1e6)
>>> for done in (1_000_000, 2_000_000, 4_000_000):
...     bar.update(done)
>>> print(out.getvalue().strip())
reading  [#####...............]  25.0%  1/4 MB
reading  [##########..........]  50.0%  2/4 MB
reading  [####################] 100.0%  4/4 MB
"""

from __future__ import annotations

import sys
import time
from typing import TextIO


class Progress:
    """A bar for ``total`` units of work; ``update(done)`` as the work goes on."""

    def __init__(
        self,
        label: str,
        total: int,
        *,
        out: TextIO | None = None,
        enabled: bool | None = None,
        unit: str = "",
        scale: float = 1.0,
    ) -> None:
        self.label, self.total = label, max(total, 1)
        self.out = out if out is not None else sys.stderr
        self.tty = bool(getattr(self.out, "isatty", lambda: False)())
        self.enabled = self.tty if enabled is None else enabled
        self.unit, self.scale = unit, scale
        self._last = 0.0
        self._quarter = 0
        self._finished = False

    def update(self, done: int) -> None:
        if not self.enabled or self._finished:
            return
        final = done >= self.total
        self._finished = final
        if self.tty:
            now = time.monotonic()
            if not final and now - self._last < 0.1:
                return
            self._last = now
        else:
            quarter = 4 * min(done, self.total) // self.total
            if quarter == self._quarter:
                return
            self._quarter = quarter
        pct = min(100.0, 100.0 * done / self.total)
        unit = f" {self.unit}" if self.unit else ""
        bar = "#" * int(pct / 5)
        line = (
            f"{self.label}  [{bar}{'.' * (20 - len(bar))}] {pct:5.1f}%  "
            f"{done / self.scale:,.0f}/{self.total / self.scale:,.0f}{unit}"
        )
        if self.tty:
            self.out.write("\r" + line + ("\n" if final else ""))
        else:
            self.out.write(line + "\n")
        self.out.flush()
