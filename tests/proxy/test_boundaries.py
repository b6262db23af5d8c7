"""Request boundaries and bounds of the proxy's caller side, in-process: a
:class:`~mlwatch.proxy.caller.ProxyServer` in front of a peer that parses what it gets
with httptools (as uvicorn does) and records each request. The model server must see
exactly the requests the proxy read, and a caller must never hold the proxy's
connections to the model server without sending."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import httptools

from mlwatch.proxy.caller import ProxyServer
from mlwatch.proxy.channel import Counts
from mlwatch.proxy.exchange import Exchange
from mlwatch.proxy.forward import Forwarder
from mlwatch.proxy.upstream import Upstream

OK = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok"


class Peer(asyncio.Protocol):
    """The model server: records (method, target, headers, body) per request."""

    def __init__(self, seen: list[Any], raw: list[bytes]) -> None:
        self.seen, self.raw, self.parser = seen, raw, httptools.HttpRequestParser(self)
        self.url, self.headers, self.body = b"", {}, b""

    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.raw.append(data)
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            self.seen.append((b"BROKEN", b"", {}, data))
            self.transport.close()

    def on_message_begin(self) -> None:
        self.url, self.headers, self.body = b"", {}, b""

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers[name.lower()] = value

    def on_body(self, body: bytes) -> None:
        self.body += body

    def on_message_complete(self) -> None:
        self.seen.append((self.parser.get_method(), self.url, self.headers, self.body))
        self.transport.write(OK)


Scenario = Callable[[int], Awaitable[Any]]


@dataclass
class Run:
    result: Any
    seen: list[tuple[bytes, bytes, dict[bytes, bytes], bytes]]  # whole requests
    raw: list[bytes]  # every byte the model server got
    refused: list[int]


def run(scenario: Scenario, **settings: Any) -> Run:
    """``scenario(port)``'s result; what the model server saw; the refusals counted."""
    seen: list[Any] = []
    raw: list[bytes] = []
    refused: list[int] = []

    async def main() -> Any:
        loop = asyncio.get_running_loop()
        peer = await loop.create_server(lambda: Peer(seen, raw), "127.0.0.1", 0)
        port = peer.sockets[0].getsockname()[1]
        upstream = Upstream(
            f"http://127.0.0.1:{port}",
            max_connections=settings.pop("proxy_max_connections", 10),
            timeout_s=settings.pop("proxy_timeout_s", 5.0),
        )
        calls: list[Exchange] = []
        forwarder = Forwarder(upstream, 1 << 20, calls.append, Counts())
        config = {"max_header_bytes": 16384, "request_timeout_s": 5.0, "max_connections": 100}
        server = ProxyServer({**config, **settings}, forwarder, refused.append)
        listen = socket.create_server(("127.0.0.1", 0))
        await server.serve(listen)
        try:
            return await scenario(listen.getsockname()[1])
        finally:
            await server.stop(1.0)
            await upstream.aclose()
            peer.close()
            await peer.wait_closed()

    return Run(asyncio.run(main()), seen, raw, refused)


async def exchange(port: int, *pieces: bytes, pause_s: float = 0.1, wait_s: float = 3.0) -> bytes:
    """Send ``pieces`` (``pause_s`` apart) on one connection; what came back until the
    proxy closed it or ``wait_s`` passed without a byte."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    for i, piece in enumerate(pieces):
        if i:
            await asyncio.sleep(pause_s)
        writer.write(piece)
    answer = b""
    try:
        while chunk := await asyncio.wait_for(reader.read(65536), wait_s):
            answer += chunk
    except TimeoutError:
        pass
    writer.close()
    return answer


def test_a_content_length_the_connection_header_names_still_frames_the_body() -> None:
    smuggled = b"GET /smuggled HTTP/1.1\r\nhost: x\r\n\r\n"
    request = (
        b"POST /a HTTP/1.1\r\nhost: x\r\nconnection: content-length\r\n"
        b"content-length: %d\r\n\r\n%s" % (len(smuggled), smuggled)
    )
    done = run(lambda port: exchange(port, request, wait_s=1.0))
    assert done.result.count(b"HTTP/1.1 200 ") == 1
    assert [(m, t, b) for m, t, _, b in done.seen] == [(b"POST", b"/a", smuggled)]
    assert done.seen[0][2][b"content-length"] == b"%d" % len(smuggled)


def test_a_content_length_with_spaces_is_read_as_its_number() -> None:
    """Else a large one is read whole into memory instead of streamed."""
    body = b"x" * 300_000
    head = b"POST /a HTTP/1.1\r\nhost: x\r\ncontent-length: %d \r\n\r\n" % len(body)

    async def scenario(port: int) -> None:
        await exchange(port, head, body[:1000], wait_s=0.5)

    done = run(scenario)
    assert done.raw  # streamed: forwarded before the body is all in


def test_a_body_never_finished_is_408_and_frees_the_model_servers_connection() -> None:
    never = b"POST /a HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\n\r\n4\r\nabcd\r\n"
    whole = b"POST /a HTTP/1.1\r\nhost: x\r\ncontent-length: 10\r\n\r\nabc"

    async def scenario(port: int) -> tuple[bytes, bytes, bytes]:
        stuck = asyncio.gather(exchange(port, never), exchange(port, whole))
        await asyncio.sleep(0.2)
        later = await exchange(port, b"GET /b HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
        a, b = await stuck
        return a, b, later

    done = run(scenario, request_timeout_s=0.5, proxy_max_connections=1, proxy_timeout_s=10.0)
    a, b, later = done.result
    assert a.startswith(b"HTTP/1.1 408 ") and b.startswith(b"HTTP/1.1 408 ")
    assert later.startswith(b"HTTP/1.1 200 ")
    assert [t for _, t, _, _ in done.seen] == [b"/b"]
    assert done.refused == [408, 408]


def test_a_pipelined_streamed_body_is_answered_too() -> None:
    first = b"POST /one HTTP/1.1\r\nhost: x\r\ncontent-length: 1\r\n\r\nx"
    second = b"POST /two HTTP/1.1\r\nhost: x\r\ncontent-length: 100000\r\n\r\n"
    done = run(
        lambda port: exchange(port, first + second + b"y" * 1000, b"y" * 99_000, pause_s=0.3)
    )
    assert done.result.count(b"HTTP/1.1 200 ") == 2
    assert [(t, len(b)) for _, t, _, b in done.seen] == [(b"/one", 1), (b"/two", 100_000)]


def test_expect_100_continue_never_lands_inside_another_answer() -> None:
    first = b"GET /one HTTP/1.1\r\nhost: x\r\n\r\n"
    second = b"POST /two HTTP/1.1\r\nhost: x\r\ncontent-length: 3\r\nexpect: 100-continue\r\n\r\n"
    bodiless = (
        b"GET /three HTTP/1.1\r\nhost: x\r\nexpect: 100-continue\r\nconnection: close\r\n\r\n"
    )
    done = run(lambda port: exchange(port, first + second, b"abc" + bodiless))
    assert done.result.startswith(OK + b"HTTP/1.1 100 Continue\r\n\r\n" + OK)
    assert done.result.count(b" 100 Continue") == 1  # not for the request without a body
    assert [t for _, t, _, _ in done.seen] == [b"/one", b"/two", b"/three"]


def test_a_body_after_an_upgrade_header_is_refused_not_reread_as_a_request() -> None:
    inner = b"GET /inner HTTP/1.1\r\nhost: x\r\n\r\n"
    head = (
        b"POST /a HTTP/1.1\r\nhost: x\r\nconnection: upgrade\r\nupgrade: h2c\r\n"
        b"content-length: %d\r\n\r\n" % len(inner)
    )
    done = run(lambda port: exchange(port, head, inner, wait_s=2.0))
    assert done.result.startswith(b"HTTP/1.1 400 ")
    assert done.raw == []


def test_a_rejected_request_is_never_begun_at_the_model_server() -> None:
    bad_te = b"POST /a HTTP/1.1\r\nhost: x\r\ntransfer-encoding: gzip\r\n\r\nabcd"
    done = run(lambda port: exchange(port, bad_te))
    assert done.result.startswith(b"HTTP/1.1 400 ")
    assert done.raw == []


def test_a_request_pipelined_after_an_upgrade_header_is_answered() -> None:
    upgrade = b"GET /a HTTP/1.1\r\nhost: x\r\nconnection: upgrade\r\nupgrade: websocket\r\n\r\n"
    done = run(lambda port: exchange(port, upgrade + b"GET /b HTTP/1.1\r\nhost: x\r\n\r\n"))
    assert done.result.count(b"HTTP/1.1 200 ") == 2
    assert [t for _, t, _, _ in done.seen] == [b"/a", b"/b"]
