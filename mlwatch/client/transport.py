"""HTTP to the sidecar: one keep-alive connection, gzip'd JSON arrays, bounded retries.

Only the worker thread calls :meth:`HttpExporter.export`, so one ``http.client``
connection needs no lock. ``http.client``, ``gzip`` and ``orjson`` are imported
on first use (on the worker) so that ``import mlwatch`` stays cheap.

Retries follow OpenTelemetry's OTLP/HTTP exporter: connection errors, 429, 502,
503 and 504 are retried with jittered exponential backoff (``Retry-After`` wins
when the server sends it) until the export's deadline (``retry_timeout_s``); the
wait is on the shipper's interrupt Event, so shutdown cuts it short. Other 4xx are
``REJECTED`` (the sidecar's message names the bad field and is logged); other
statuses are ``FAILED`` at once. The token goes only into the Authorization header
and is never logged.
"""

from __future__ import annotations

import contextlib
import json
import random
import threading
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

from mlwatch.client.exporter import Result
from mlwatch.client.ratelimit import failures

RETRYABLE = frozenset({429, 502, 503, 504})
PATHS = {"events": "/v1/events", "feedback": "/v1/feedback", "models": "/v1/models"}
BACKOFF_BASE_S = 0.1
BACKOFF_MAX_S = 5.0
GZIP_LEVEL = 1  # JSON of repeated keys compresses ~10x even at level 1; higher costs CPU


def _dumps() -> Callable[[Any], bytes]:
    try:  # orjson is faster when the host has it (it does with mlwatch[sidecar]); optional
        import orjson

        return orjson.dumps
    except ImportError:
        return lambda v: json.dumps(v, separators=(",", ":"), allow_nan=False,
                                    ensure_ascii=False).encode()


def retry_after_s(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or an HTTP date).

    >>> retry_after_s("2"), retry_after_s(None), retry_after_s("soon")
    (2.0, None, None)
    """
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    from email.utils import parsedate_to_datetime

    try:
        when = parsedate_to_datetime(value).timestamp()
    except (TypeError, ValueError, IndexError):
        return None
    return max(0.0, when - (time.time() if now is None else now))


class HttpExporter:
    """POSTs records to the sidecar's ``/v1/events``, ``/v1/feedback`` and ``/v1/models``."""

    def __init__(self, url: str, *, token: str | None = None, timeout_s: float = 5.0,
                 rng: Callable[[], float] = random.random) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"expected an http(s) URL, got {url!r}")
        self.scheme = parts.scheme
        self.host = parts.hostname
        self.port = parts.port or (443 if parts.scheme == "https" else 80)
        self.prefix = parts.path.rstrip("/")
        self.where = f"{self.scheme}://{self.host}:{self.port}{self.prefix}"  # safe to log
        self.timeout_s = timeout_s
        self._token = token
        self._rng = rng
        self._conn: Any = None
        self._dumps: Callable[[Any], bytes] | None = None

    def __repr__(self) -> str:  # never show the token
        return f"HttpExporter({self.where!r})"

    def _connection(self, timeout: float) -> tuple[Any, bool]:
        """The keep-alive connection (created lazily) and whether it was reused."""
        import http.client

        if self._conn is not None:
            self._conn.timeout = timeout
            if self._conn.sock is not None:
                self._conn.sock.settimeout(timeout)
            return self._conn, True
        if self.scheme == "https":
            self._conn = http.client.HTTPSConnection(self.host, self.port, timeout=timeout)
        else:
            self._conn = http.client.HTTPConnection(self.host, self.port, timeout=timeout)
        return self._conn, False

    def _post(self, path: str, body: bytes, headers: dict[str, str], timeout: float
              ) -> tuple[int | None, str | None, str]:
        """One request: (status or None on a connection error, Retry-After, detail)."""
        import http.client

        for _ in range(2):  # a reused keep-alive connection may have been closed by the server
            conn, reused = self._connection(timeout)
            try:
                conn.request("POST", path, body=body, headers=headers)
                resp = conn.getresponse()
                data = resp.read()
            except (OSError, http.client.HTTPException) as exc:
                self.close()
                if reused and isinstance(exc, (http.client.RemoteDisconnected,
                                               ConnectionResetError, BrokenPipeError)):
                    continue
                return None, None, f"{type(exc).__name__}: {exc}"
            if resp.will_close:
                self.close()
            detail = data[:300].decode("utf-8", "replace")
            return resp.status, resp.getheader("Retry-After"), detail
        return None, None, "connection closed"  # pragma: no cover - loop always returns

    def export(self, kind: str, records: list[dict[str, Any]], *, deadline: float,
               interrupt: threading.Event, dropped: list[dict[str, Any]] | None = None
               ) -> Result:
        import gzip

        if self._dumps is None:
            self._dumps = _dumps()
        body = gzip.compress(self._dumps(records), compresslevel=GZIP_LEVEL, mtime=0)
        headers = {"Content-Type": "application/json", "Content-Encoding": "gzip",
                   "Accept": "application/json"}
        if self._token:
            headers["Authorization"] = f"Bearer {self._token}"
        if dropped:
            headers["X-Mlwatch-Dropped"] = json.dumps(dropped, separators=(",", ":"))
        path = self.prefix + PATHS[kind]
        attempt = 0
        while True:
            timeout = max(0.01, min(self.timeout_s, deadline - time.monotonic()))
            status, retry_after, detail = self._post(path, body, headers, timeout)
            if status is not None and 200 <= status < 300:
                return Result.OK
            if status is not None and 400 <= status < 500 and status != 429:
                failures.error(f"http.{kind}.{status}", "mlwatch: %s%s rejected %d %s: %s",
                               self.where, PATHS[kind], len(records), kind, detail)
                return Result.REJECTED
            what = f"HTTP {status}" if status is not None else detail
            if status is not None and status not in RETRYABLE:
                failures.error(f"http.{kind}.{status}", "mlwatch: POST %s%s failed (%s): %s",
                               self.where, PATHS[kind], what, detail)
                return Result.FAILED
            if interrupt.is_set():
                return Result.INTERRUPTED
            delay = retry_after_s(retry_after)
            if delay is None:
                delay = min(BACKOFF_MAX_S, BACKOFF_BASE_S * 2 ** attempt) * (0.5 + self._rng())
            if time.monotonic() + delay > deadline:
                failures.error(f"http.{kind}.giveup", "mlwatch: giving up on %d %s after %d "
                               "attempts to %s (last: %s)", len(records), kind, attempt + 1,
                               self.where, what)
                return Result.FAILED
            if interrupt.wait(delay):
                return Result.INTERRUPTED
            attempt += 1

    def after_fork(self) -> None:
        """Drop the parent's connection in the child. Closing the child's copy of the
        socket sends nothing (no ``shutdown()``), so the parent's connection lives on."""
        self.close()

    def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(OSError):
                conn.close()
