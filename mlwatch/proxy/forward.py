"""The forwarding half of the proxy: a plain ASGI app that passes each call to the model
server and its answer back, streamed, over keep-alive connections (:mod:`.upstream`).

Only hop-by-hop headers and ``Host`` are left out (:mod:`.framing`); everything else, the body bytes (still compressed) included, passes as
it came. Bodies are copied for capture only up to ``proxy_capture_max_bytes``. A model
server that cannot be reached, or that does not answer within ``proxy_timeout_s``,
gets the caller a 502 or a 504 as from any reverse proxy; one that fails in the middle
of its answer gets the caller's connection closed, so a cut-off body is never taken for
a whole one.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from typing import Any

from mlwatch.errors import UpstreamError
from mlwatch.proxy.channel import Counts
from mlwatch.proxy.exchange import Exchange
from mlwatch.proxy.framing import HOP_BY_HOP, SKIP_REQUEST, CallerGone, Tee, end_to_end
from mlwatch.proxy.upstream import Call, Upstream


class Forwarder:
    """The ASGI app of the proxy's listener."""

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

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":  # lifespan is the listener's; websockets are not proxied
            return
        started, t0 = time.time_ns(), time.perf_counter()
        wanted = Tee(self.limit)
        try:
            content = await self._request_body(receive, wanted)
        except CallerGone:
            return
        headers = scope["headers"]
        ex = Exchange(scope["method"], scope["path"], headers, None, 0, None, None, started, 0.0)
        try:
            response = await self._send(scope, headers, content)
        except CallerGone:
            return
        except UpstreamError as exc:
            await self._failed(ex, exc, send, wanted, t0)
            return
        ex.request_body = wanted.body()
        try:
            await self._answer(response, send, ex, t0)
        finally:
            response.close()
        self.submit(ex)

    async def _send(self, scope: dict[str, Any], headers: Any, content: Any) -> Call:
        """The call as the model server gets it: the same target under the upstream's
        path, the end-to-end headers, framing for a body that came chunked."""
        target = scope.get("raw_path") or scope["path"].encode()
        if query := scope.get("query_string"):
            target += b"?" + query
        sent = [(b"host", self.upstream.host_header), *end_to_end(headers, SKIP_REQUEST)]
        chunked = False
        if not any(k == b"content-length" for k, _ in headers):
            if not isinstance(content, bytes):
                sent.append((b"transfer-encoding", b"chunked"))
                chunked = True
            elif content:
                sent.append((b"content-length", b"%d" % len(content)))
        head = b"".join(b"%s: %s\r\n" % pair for pair in sent)
        return await self.upstream.send(scope["method"], target, head, content, chunked)

    async def _request_body(self, receive: Any, tee: Tee) -> bytes | AsyncIterator[bytes]:
        """The whole body when it came in one piece (most calls), else a stream of it."""
        message = await receive()
        if message["type"] == "http.disconnect":  # gone before its body: nothing to forward
            raise CallerGone("the caller went away before sending its body")
        first: bytes = message.get("body", b"")
        tee.add(first)
        if not message.get("more_body", False):
            return first

        async def rest() -> AsyncIterator[bytes]:
            if first:
                yield first
            more = True
            while more:
                msg = await receive()
                if msg["type"] == "http.disconnect":
                    raise CallerGone("the caller went away while sending its body")
                chunk = msg.get("body", b"")
                more = msg.get("more_body", False)
                tee.add(chunk)
                if chunk:
                    yield chunk

        return rest()

    async def _answer(self, response: Call, send: Any, ex: Exchange, t0: float) -> None:
        """Stream the model server's answer back as it comes."""
        headers = end_to_end(response.headers, HOP_BY_HOP)
        await send({"type": "http.response.start", "status": response.status, "headers": headers})
        tee = Tee(self.limit)
        try:
            async for chunk in response.chunks():
                tee.add(chunk)
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
        except UpstreamError as exc:  # headers are gone: only closing the connection tells
            ex.status, ex.error = 502, _error_name(exc)
            ex.latency_ms = (time.perf_counter() - t0) * 1000.0
            self.counts.upstream_failed(exc.reason)
            self.counts.answered(502)
            self.submit(ex)
            raise
        ex.latency_ms = (time.perf_counter() - t0) * 1000.0
        await send({"type": "http.response.body", "body": b"", "more_body": False})
        ex.status, ex.response_body = response.status, tee.body()
        ex.response_encoding = next(
            (v.decode("latin-1") for k, v in headers if k.lower() == b"content-encoding"), None
        )
        self.counts.answered(response.status)

    async def _failed(
        self, ex: Exchange, exc: UpstreamError, send: Any, tee: Tee, t0: float
    ) -> None:
        """No answer from the model server: 504 for a timeout, 502 otherwise."""
        ex.latency_ms = (time.perf_counter() - t0) * 1000.0
        reason = exc.reason
        status = 504 if reason == "timeout" else 502
        body = f"mlwatch proxy: the model server did not answer ({_error_name(exc)})\n".encode()
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [
                    (b"content-type", b"text/plain; charset=utf-8"),
                    (b"content-length", str(len(body)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})
        self.counts.upstream_failed(reason)
        self.counts.answered(status)
        ex.status, ex.error, ex.request_body = status, _error_name(exc), tee.body()
        self.submit(ex)


def _error_name(exc: UpstreamError) -> str:
    """The event's ``error``: where the call failed, as a type name."""
    return {
        "timeout": "UpstreamTimeout",
        "connect": "UpstreamUnreachable",
    }.get(exc.reason, "UpstreamProtocolError")
