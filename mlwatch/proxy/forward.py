"""The forwarding half of the proxy: each call passed to the model server and its answer
back to the caller (:mod:`.caller`), streamed, over keep-alive connections
(:mod:`.upstream`).

Only hop-by-hop headers and ``Host`` are left out (:mod:`.framing`); everything else, the
body bytes (still compressed) included, passes as it came. Bodies are copied for capture
only up to ``proxy_capture_max_bytes``. A model server that cannot be reached, or that
does not answer within ``proxy_timeout_s``, gets the caller a 502 or a 504 as from any
reverse proxy; one that fails in the middle of its answer gets the caller's connection
closed, so a cut-off body is never taken for a whole one.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from mlwatch.errors import UpstreamError
from mlwatch.proxy.channel import Counts
from mlwatch.proxy.exchange import Exchange
from mlwatch.proxy.framing import (
    HOP_BY_HOP,
    SKIP_REQUEST,
    CallerGone,
    Reply,
    Request,
    Tee,
    end_to_end,
)
from mlwatch.proxy.upstream import Call, Upstream

log = logging.getLogger("mlwatch.proxy")


class Forwarder:
    """Forwards one request at a time per caller connection; records through ``submit``."""

    def __init__(
        self,
        upstream: Upstream,
        capture_limit: int,
        submit: Callable[[Exchange], None],
        counts: Counts,
    ) -> None:
        self.upstream = upstream
        self.limit = capture_limit
        self.submit = submit
        self.counts = counts

    async def forward(self, req: Request, reply: Reply) -> None:
        """Forward ``req`` and answer it on ``reply``; never raises (a bug closes the
        caller's connection and is logged)."""
        try:
            await self._forward(req, reply)
        except CallerGone:
            pass
        except Exception:
            log.exception("proxy: %s %s failed", req.method, req.path)
            reply.abort()

    async def _forward(self, req: Request, reply: Reply) -> None:
        started, t0 = time.time_ns(), time.perf_counter()
        ex = Exchange(req.method, req.path, req.headers, None, 0, None, None, started, 0.0)
        try:
            call = await self._send(req)
        except UpstreamError as exc:
            ex.request_body = self._kept(req)
            await self._failed(ex, exc, req, reply, t0)
            return
        ex.request_body = self._kept(req)
        try:
            ok = await self._answer(call, req, reply, ex, t0)
        finally:
            call.close()
        if ok:
            self.submit(ex)

    def _kept(self, req: Request) -> bytes | None:
        """The request body as capture keeps it: None beyond the limit."""
        if req.streamed is not None:
            return req.streamed.body()
        assert isinstance(req.body, bytes)
        return req.body if len(req.body) <= self.limit else None

    async def _send(self, req: Request) -> Call:
        """The call as the model server gets it: the same target under the upstream's
        path, the end-to-end headers, and the body framed as the proxy read it: always
        by a Content-Length of its own or chunked, never by the caller's framing headers
        (a ``Connection: content-length`` would otherwise drop the length, and the model
        server would read the body as the next request)."""
        body, length = req.body, req.length
        sent = [(b"host", self.upstream.host_header), *end_to_end(req.headers, SKIP_REQUEST)]
        chunked = False
        if isinstance(body, bytes):
            if body or length is not None:
                sent.append((b"content-length", b"%d" % len(body)))
        elif length is not None:
            sent.append((b"content-length", b"%d" % length))
        else:
            sent.append((b"transfer-encoding", b"chunked"))
            chunked = True
        head = b"".join(b"%s: %s\r\n" % pair for pair in sent)
        return await self.upstream.send(req.method, req.target, head, body, chunked)

    async def _answer(
        self, call: Call, req: Request, reply: Reply, ex: Exchange, t0: float
    ) -> bool:
        """Stream the model server's answer back as it comes; False when it broke off
        (recorded here, the caller's connection closed)."""
        headers = end_to_end(call.headers, HOP_BY_HOP)
        reply.start(call.status, headers, req)
        if not call.body_ready():
            reply.flush()  # the caller gets the head before a body that is slow to come
        tee = Tee(self.limit)
        try:
            async for chunk in call.chunks():
                tee.add(chunk)
                await reply.write(chunk)
        except UpstreamError as exc:  # the head is gone: only closing the connection tells
            reply.abort()
            ex.status, ex.error = 502, _error_name(exc)
            ex.latency_ms = (time.perf_counter() - t0) * 1000.0
            self.counts.upstream_failed(exc.reason)
            self.counts.answered(502)
            self.submit(ex)
            return False
        ex.latency_ms = (time.perf_counter() - t0) * 1000.0
        reply.end()
        ex.status = call.status
        ex.response_body = tee.body()
        ex.response_encoding = next(
            (v.decode("latin-1") for k, v in headers if k.lower() == b"content-encoding"), None
        )
        self.counts.answered(call.status)
        return True

    async def _failed(
        self, ex: Exchange, exc: UpstreamError, req: Request, reply: Reply, t0: float
    ) -> None:
        """No answer from the model server: 504 for a timeout, 502 otherwise."""
        ex.latency_ms = (time.perf_counter() - t0) * 1000.0
        reason = exc.reason
        status = 504 if reason == "timeout" else 502
        body = f"mlwatch proxy: the model server did not answer ({_error_name(exc)})\n".encode()
        headers = [
            (b"content-type", b"text/plain; charset=utf-8"),
            (b"content-length", b"%d" % len(body)),
        ]
        reply.start(status, headers, req)
        if req.method != "HEAD":
            await reply.write(body)
        reply.end()
        self.counts.upstream_failed(reason)
        self.counts.answered(status)
        ex.status, ex.error = status, _error_name(exc)
        self.submit(ex)


def _error_name(exc: UpstreamError) -> str:
    """The event's ``error``: where the call failed, as a type name."""
    return {
        "timeout": "UpstreamTimeout",
        "connect": "UpstreamUnreachable",
    }.get(exc.reason, "UpstreamProtocolError")
