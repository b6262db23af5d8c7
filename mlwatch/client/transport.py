"""HTTP to the sidecar: one keep-alive connection, gzip'd JSON arrays, bounded retries.

Only the worker thread calls :meth:`HttpExporter.export`, so one ``http.client``
connection needs no lock. ``http.client``, ``gzip`` and ``orjson`` are imported
on first use (on the worker) so that ``import mlwatch`` stays cheap.

A call's records go out as one request when their JSON fits in
:data:`MAX_REQUEST_BYTES`, else as several. A 413 (the sidecar's body limit) splits a
request in half and sends each half, down to one record (then dropped as
``rejected``). When the batch does not encode (an exotic value), records are encoded
one by one and only those that fail are dropped (``error``).

Retries follow OpenTelemetry's OTLP/HTTP exporter: connection errors, 408, 429, 502,
503 and 504 are retried with jittered exponential backoff (``Retry-After`` wins
when the server sends it) until the export's deadline (``retry_timeout_s``); the
wait is on the shipper's interrupt Event, so shutdown cuts it short. Other 4xx are
``REJECTED`` (the sidecar's message names the bad field and is logged); other
statuses are ``FAILED`` at once. The token goes only into the Authorization header
and is never logged.
"""

from __future__ import annotations

import contextlib
import functools
import json
import random
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

from mlwatch.client.exporter import ExportBatch, Partial, Result
from mlwatch.logs import failures

RETRYABLE = frozenset({408, 429, 502, 503, 504})
PATHS = {"events": "/v1/events", "feedback": "/v1/feedback", "models": "/v1/models"}
BACKOFF_BASE_S = 0.1
BACKOFF_MAX_S = 5.0
GZIP_LEVEL = 1  # JSON of repeated keys compresses ~10x even at level 1; higher costs CPU
#: Most JSON (uncompressed) in one request. The sidecar answers 413 to a body over its
#: ``max_body_bytes`` after decompression (16 MiB by default); half of that leaves room
#: for a smaller limit and bounds the memory of one request on both sides. 1,000 wide
#: features make ~47 KB events, so a batch of 500 of them goes out as three requests.
MAX_REQUEST_BYTES = 8 * 1024 * 1024


def _body(pairs: list[tuple[dict[str, Any], bytes]]) -> tuple[list[dict[str, Any]], bytes]:
    """The records of encoded ``pairs`` and the JSON array that holds them."""
    return [rec for rec, _ in pairs], b"[" + b",".join(enc for _, enc in pairs) + b"]"


def _outcome(
    lost: list[tuple[Result, list[dict[str, Any]]]], n: int, *, report_sent: bool
) -> Result | Partial:
    """One Result when every record met the same fate and no report got through, else a
    Partial (which says whether the report got through)."""
    if not lost:
        return Result.OK
    fates = {res for res, _ in lost}
    if not report_sent and len(fates) == 1 and sum(len(r) for _, r in lost) == n:
        return fates.pop()
    return Partial(lost=lost, report_sent=report_sent)


def _dumps() -> Callable[[Any], bytes]:
    try:  # orjson is faster when the host has it (it does with mlwatch[sidecar]); optional
        import orjson

        return orjson.dumps
    except ImportError:
        return lambda v: json.dumps(
            v, separators=(",", ":"), allow_nan=False, ensure_ascii=False
        ).encode()


def is_sidecar_answer(body: str) -> bool:
    """Whether a 2xx body is the sidecar's ``{"accepted": n}``: any other server that
    answers 200 to a POST (a model app, a proxy's catch-all) would swallow the events.

    >>> is_sidecar_answer('{"accepted":3}'), is_sidecar_answer("OK"), is_sidecar_answer("{}")
    (True, False, False)
    """
    try:
        answer = json.loads(body)
    except ValueError:
        return False
    return isinstance(answer, dict) and type(answer.get("accepted")) is int


def hint(status: int, has_token: bool) -> str:
    """What to change, for the answers a misconfigured client gets."""
    if status == 401:
        if has_token:
            return " (the client's token differs from the sidecar's: set the same MLWATCH_TOKEN or MLWATCH_TOKEN_FILE on both)"
        return " (the sidecar wants a token: set MLWATCH_TOKEN or MLWATCH_TOKEN_FILE, or configure(token=...), to the sidecar's)"
    if status in (404, 405):
        return " (this is not an mlwatch sidecar: point sidecar_url, MLWATCH_SIDECAR_URL, at the sidecar's port)"
    return ""


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

    name = "sidecar"

    def __init__(
        self,
        url: str,
        *,
        token: str | None = None,
        timeout_s: float = 5.0,
        rng: Callable[[], float] = random.random,
        max_request_bytes: int = MAX_REQUEST_BYTES,
    ) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"expected an http(s) URL, got {url!r}")
        self.scheme = parts.scheme
        self.host = parts.hostname
        self.port = parts.port or (443 if parts.scheme == "https" else 80)
        self.prefix = parts.path.rstrip("/")
        self.where = f"{self.scheme}://{self.host}:{self.port}{self.prefix}"  # safe to log
        self.timeout_s = timeout_s
        self.max_request_bytes = max_request_bytes
        self._token = token
        self._rng = rng
        self._conn: Any = None
        self._dumps: Callable[[Any], bytes] | None = None
        #: The last failure, in words a user can act on (the shipper logs it).
        self.last_error: str | None = None

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

    def _post(
        self, path: str, body: bytes, headers: dict[str, str], deadline: Callable[[], float]
    ) -> tuple[int | None, str | None, str]:
        """One request, over by ``deadline()``: (status or None on a connection error or
        timeout, Retry-After, detail)."""
        import http.client

        from mlwatch.client.answers import DeadlineResponse, read_answer

        for _ in range(2):  # a reused keep-alive connection may have been closed by the server
            conn, reused = self._connection(max(0.01, deadline() - time.monotonic()))
            conn.response_class = functools.partial(DeadlineResponse, deadline=deadline)
            try:
                conn.request("POST", path, body=body, headers=headers)
                resp = conn.getresponse()
                data, whole = read_answer(resp)
            except (OSError, http.client.HTTPException) as exc:
                self._disconnect()
                if reused and isinstance(
                    exc, (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError)
                ):
                    continue
                return None, None, f"{type(exc).__name__}: {exc}"
            if resp.will_close or not whole:
                self._disconnect()
            if not whole:
                failures.warning(
                    "http.answer_too_long",
                    "mlwatch: %s answered HTTP %s with a body longer than %d bytes; the rest "
                    "is not read (is sidecar_url an mlwatch sidecar?)",
                    self.where,
                    resp.status,
                    len(data),
                )
            detail = data[:300].decode("utf-8", "replace")
            return resp.status, resp.getheader("Retry-After"), detail
        return None, None, "connection closed"  # pragma: no cover - loop always returns

    def export(self, batch: ExportBatch) -> Result | Partial:
        """POST ``records`` in as many requests as :data:`MAX_REQUEST_BYTES` needs.

        A record that cannot be encoded is lost alone (``Result.ERROR``); a 413 splits
        the request in half until it passes or holds one record (then ``REJECTED``).
        The drop report rides on every request until one succeeds: it keeps its
        ``report_id``, so the sidecar counts it once.
        """
        kind, records, dropped = batch.kind, batch.records, batch.dropped
        if self._dumps is None:
            self._dumps = _dumps()
        lost: list[tuple[Result, list[dict[str, Any]]]] = []
        todo = self._requests(kind, records, lost)
        if not todo and dropped:
            todo = [([], b"[]")]  # a request that only carries the drop report
        todo.reverse()  # a stack: pop() gives the requests in order
        headers = self._headers()
        report = json.dumps(dropped, separators=(",", ":")) if dropped else None
        while todo:
            recs, body = todo.pop()
            if report is not None:
                headers["X-Mlwatch-Dropped"] = report
            res, status = self._send(kind, len(recs), body, headers, batch)
            if res is Result.OK:
                report = None
                headers.pop("X-Mlwatch-Dropped", None)
            elif status == 413 and len(recs) > 1:
                pairs = self._encode_each(kind, recs, lost)
                half = len(pairs) // 2
                todo.extend(_body(p) for p in (pairs[half:], pairs[:half]) if p)
            else:
                if status == 413 and recs:
                    failures.error(
                        f"http.{kind}.413",
                        "mlwatch: %s%s rejected one %s record as too large (413); it is dropped",
                        self.where,
                        PATHS[kind],
                        kind,
                    )
                lost.append((res, recs))
                if res is not Result.REJECTED:  # down or shutting down: stop trying
                    lost.extend((res, r) for r, _ in reversed(todo))
                    todo.clear()
        return _outcome(lost, len(records), report_sent=bool(dropped) and report is None)

    def _headers(self) -> dict[str, str]:
        headers = {
            "Content-Type": "application/json",
            "Content-Encoding": "gzip",
            "Accept": "application/json",
        }
        if self._token:
            headers["Authorization"] = f"Bearer {self._token}"
        return headers

    def _requests(
        self,
        kind: str,
        records: list[dict[str, Any]],
        lost: list[tuple[Result, list[dict[str, Any]]]],
    ) -> list[tuple[list[dict[str, Any]], bytes]]:
        """The request bodies for ``records``: one when it fits (the usual case), else
        records packed greedily up to :data:`MAX_REQUEST_BYTES` each."""
        assert self._dumps is not None
        if not records:
            return []
        try:
            body = self._dumps(records)
        except Exception:  # one bad record: find it below
            body = None
        if body is not None and len(body) <= self.max_request_bytes:
            return [(records, body)]
        out: list[tuple[list[dict[str, Any]], bytes]] = []
        chunk: list[tuple[dict[str, Any], bytes]] = []
        size = 2  # the brackets
        for pair in self._encode_each(kind, records, lost):
            if chunk and size + len(pair[1]) + 1 > self.max_request_bytes:
                out.append(_body(chunk))
                chunk, size = [], 2
            chunk.append(pair)
            size += len(pair[1]) + 1
        if chunk:
            out.append(_body(chunk))
        return out

    def _encode_each(
        self,
        kind: str,
        records: list[dict[str, Any]],
        lost: list[tuple[Result, list[dict[str, Any]]]],
    ) -> list[tuple[dict[str, Any], bytes]]:
        """Each record as JSON; those that fail go to ``lost`` (``Result.ERROR``)."""
        assert self._dumps is not None
        pairs, bad = [], []
        for rec in records:
            try:
                pairs.append((rec, self._dumps(rec)))
            except Exception as exc:
                bad.append(rec)
                failures.error(
                    f"encode.{kind}",
                    "mlwatch: a %s record cannot be encoded as JSON (%s: %s); it is dropped",
                    kind,
                    type(exc).__name__,
                    exc,
                )
        if bad:
            lost.append((Result.ERROR, bad))
        return pairs

    def _final(self, kind: str, n: int, status: int | None, detail: str) -> Result | None:
        """What an answer means for the request: a final Result, or None to retry."""
        if status is not None and 200 <= status < 300:
            if is_sidecar_answer(detail):
                return Result.OK
            status, detail = 200, f"answered HTTP {status} with {detail[:80]!r}"
        if status == 413:  # too large: the caller splits (or gives up on one record)
            self.last_error = f"{self.where}{PATHS[kind]} refused a {kind} record as too large"
            return Result.REJECTED
        if status is not None and 400 <= status < 500 and status not in RETRYABLE:
            advice = hint(status, bool(self._token))
            self.last_error = f"{self.where}{PATHS[kind]} rejected {kind}: {detail}{advice}"
            failures.error(
                f"http.{kind}.{status}",
                "mlwatch: %s%s rejected %d %s: %s%s",
                self.where,
                PATHS[kind],
                n,
                kind,
                detail,
                advice,
            )
            return Result.REJECTED
        if status == 200:  # a 2xx that is not the sidecar's answer
            self.last_error = f"{self.where} is not an mlwatch sidecar ({detail})"
            failures.error(
                f"http.{kind}.not_sidecar",
                "mlwatch: %s is not an mlwatch sidecar: POST %s %s; %d %s dropped. "
                "Point sidecar_url (MLWATCH_SIDECAR_URL) at the sidecar's port.",
                self.where,
                PATHS[kind],
                detail,
                n,
                kind,
            )
            return Result.REJECTED
        if status is not None and status not in RETRYABLE:
            self.last_error = f"POST {self.where}{PATHS[kind]} failed with HTTP {status}: {detail}"
            failures.error(
                f"http.{kind}.{status}",
                "mlwatch: POST %s%s failed (HTTP %s): %s",
                self.where,
                PATHS[kind],
                status,
                detail,
            )
            return Result.FAILED
        return None

    def _send(
        self, kind: str, n: int, body: bytes, headers: dict[str, str], batch: ExportBatch
    ) -> tuple[Result, int | None]:
        """One request with its retries: what became of it, and the last HTTP status.

        Each attempt is over within ``timeout_s``, the whole within the batch's
        deadline; both are read again while waiting, as shutdown may bring the
        deadline forward."""
        import gzip

        data = gzip.compress(body, compresslevel=GZIP_LEVEL, mtime=0)
        path = self.prefix + PATHS[kind]
        attempt = 0
        while True:
            status, retry_after, detail = self._post(path, data, headers, self._cutoff(batch))
            self._note_reach(status, detail)
            final = self._final(kind, n, status, detail)
            if final is not None:
                return final, status
            if batch.interrupt.is_set():
                return Result.INTERRUPTED, status
            delay = retry_after_s(retry_after)
            if delay is None:
                delay = min(BACKOFF_MAX_S, BACKOFF_BASE_S * 2**attempt) * (0.5 + self._rng())
            if time.monotonic() + delay > batch.deadline:
                what = f"HTTP {status}" if status is not None else detail
                failures.error(
                    f"http.{kind}.giveup",
                    "mlwatch: giving up on %d %s after %d attempts to %s (last: %s)",
                    n,
                    kind,
                    attempt + 1,
                    self.where,
                    what,
                )
                return Result.FAILED, status
            if batch.interrupt.wait(delay):
                return Result.INTERRUPTED, status
            attempt += 1

    def _note_reach(self, status: int | None, detail: str) -> None:
        """Say at once when the sidecar cannot be reached (the events wait and are
        retried; the shipper sums up what is lost)."""
        if status is not None:
            return
        self.last_error = f"cannot reach {self.where}: {detail}"
        failures.warning(
            "http.unreachable",
            "mlwatch: cannot reach the sidecar at %s (%s); retrying for up to "
            "retry_timeout_s. Is it running there? (sidecar_url, MLWATCH_SIDECAR_URL)",
            self.where,
            detail,
        )

    def _cutoff(self, batch: ExportBatch) -> Callable[[], float]:
        """The deadline of one attempt: ``timeout_s`` from now, or the batch's if sooner."""
        end = time.monotonic() + self.timeout_s
        return lambda: min(end, batch.deadline)

    def force_flush(self, timeout: float = 5.0) -> bool:
        return True  # nothing is held between exports

    def shutdown(self, timeout: float = 5.0) -> bool:
        self._disconnect()
        return True

    def after_fork(self) -> None:
        """Drop the parent's connection in the child. Closing the child's copy of the
        socket sends nothing (no ``shutdown()``), so the parent's connection lives on."""
        self._disconnect()

    def _disconnect(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(OSError):
                conn.close()
