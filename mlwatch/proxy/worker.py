"""The proxy's worker process: the listener and the forwarding, nothing else.

The sidecar (:mod:`.listener`) binds the proxy's socket, starts this process with the
socket and one end of a channel (:mod:`.channel`), records what comes through the
channel, and stops this process with SIGTERM: calls in progress finish, what was
forwarded is sent, then it exits. It ignores SIGINT (a terminal's Ctrl-C reaches the
whole process group; the sidecar decides the order of the stop) and exits when the
sidecar's end of the channel closes (the sidecar is gone).

    python -m mlwatch.proxy.worker SETTINGS_JSON LISTEN_FD CHANNEL_FD
"""

from __future__ import annotations

import asyncio
import gc
import json
import logging
import signal
import socket
import sys
from collections.abc import Callable
from typing import Any

from mlwatch.logs import setup_logging
from mlwatch.proxy.caller import ProxyServer
from mlwatch.proxy.channel import Shipper
from mlwatch.proxy.forward import Forwarder
from mlwatch.proxy.upstream import Upstream

#: The settings the worker needs, by name; the sidecar passes their values.
SETTINGS = (
    "proxy_to",
    "proxy_timeout_s",
    "proxy_max_connections",
    "proxy_capture_max_bytes",
    "max_header_bytes",
    "request_timeout_s",
    "max_connections",
    "log_level",
)
DRAIN_S = 10.0  # for calls in progress at stop, and then to send what was forwarded


async def serve(settings: dict[str, Any], listen: socket.socket, chan: socket.socket) -> None:
    """Forward calls on ``listen`` until SIGTERM or the sidecar is gone, shipping each
    call to the sidecar."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    _, shipper = await loop.create_unix_connection(lambda: Shipper(stop.set), sock=chan)
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    upstream = Upstream(
        settings["proxy_to"],
        max_connections=settings["proxy_max_connections"],
        timeout_s=settings["proxy_timeout_s"],
    )
    forwarder = Forwarder(
        upstream, settings["proxy_capture_max_bytes"], shipper.submit, shipper.counts
    )
    server = ProxyServer(settings, forwarder, shipper.refused)
    await server.serve(listen)
    shipper.send(("ready",))
    await stop.wait()
    await server.stop(DRAIN_S)
    await upstream.aclose()
    shipper.flush()
    await shipper.drain(DRAIN_S)


def _loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop's loop where it is installed (``uvicorn[standard]``), as uvicorn picks."""
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop


def main(argv: list[str]) -> int:
    settings = json.loads(argv[0])
    setup_logging(settings["log_level"])
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the sidecar stops it: SIGTERM
    listen = socket.socket(fileno=int(argv[1]))
    chan = socket.socket(fileno=int(argv[2]))
    gc.freeze()  # as the sidecar does: the forwarding heap is short-lived and acyclic
    gc.set_threshold(100_000, 50, 100)
    with asyncio.Runner(loop_factory=_loop_factory()) as runner:
        runner.run(serve(settings, listen, chan))
    logging.getLogger("mlwatch.proxy").debug("proxy worker stopped")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
