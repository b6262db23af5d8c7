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
import contextlib
import gc
import json
import logging
import signal
import socket
import sys
from collections.abc import Callable, Iterator
from typing import Any

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
DRAIN_S = 10.0  # to send what was forwarded, after the last call


def _server_class() -> type:
    import uvicorn

    class WorkerServer(uvicorn.Server):
        """Stops on SIGTERM only, and does not raise the signal again once stopped (the
        worker ends by returning, after its last batch is sent)."""

        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:
            signal.signal(signal.SIGINT, signal.SIG_IGN)
            signal.signal(signal.SIGTERM, lambda sig, frame: self.stop())
            yield

        def stop(self) -> None:
            self.should_exit = True

    return WorkerServer


async def serve(settings: dict[str, Any], listen: socket.socket, chan: socket.socket) -> None:
    """Forward calls on ``listen`` until stopped, shipping each to the sidecar."""
    import uvicorn

    from mlwatch.proxy.channel import Shipper
    from mlwatch.proxy.forward import Forwarder
    from mlwatch.proxy.upstream import Upstream
    from mlwatch.sidecar.protocol import guarded_protocol

    server: Any = None

    def sidecar_gone() -> None:
        if server is not None:
            server.stop()

    loop = asyncio.get_running_loop()
    _, shipper = await loop.create_unix_connection(lambda: Shipper(sidecar_gone), sock=chan)
    upstream = Upstream(
        settings["proxy_to"],
        max_connections=settings["proxy_max_connections"],
        timeout_s=settings["proxy_timeout_s"],
    )
    app = Forwarder(upstream, settings["proxy_capture_max_bytes"], shipper.submit, shipper.counts)
    server = _server_class()(
        uvicorn.Config(
            app,
            lifespan="off",
            log_config=None,
            access_log=False,
            server_header=False,  # the model server's own Server and Date pass through
            date_header=False,
            timeout_graceful_shutdown=10,
            http=guarded_protocol(  # the sidecar's bounds on heads and connections
                max_header_bytes=settings["max_header_bytes"],
                request_timeout_s=settings["request_timeout_s"],
                max_connections=settings["max_connections"],
                on_refused=shipper.counts.refusal,
            ),
        )
    )
    task = asyncio.create_task(server.serve(sockets=[listen]))
    while not server.started and not task.done():
        await asyncio.sleep(0.01)
    if server.started:
        shipper.send(("ready",))
    await task
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
    from mlwatch.logs import setup_logging

    settings = json.loads(argv[0])
    setup_logging(settings["log_level"])
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
