"""The proxy's own listener, next to the sidecar's API in the same process and event
loop: started by the sidecar app's lifespan after the sidecar, stopped before it, so
that every call it forwarded is recorded before the spool closes.

Its socket is bound here, before the server runs, so that a taken port is an error at
startup with the address in it, and port 0 gives a free port (:attr:`ProxyListener.port`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import socket
from collections.abc import Iterator
from typing import Any

from mlwatch.errors import ConfigError
from mlwatch.proxy.events import Reader
from mlwatch.proxy.forward import Forwarder
from mlwatch.proxy.metrics import ProxyMetrics
from mlwatch.proxy.recorder import Recorder
from mlwatch.proxy.upstream import Upstream
from mlwatch.settings import Config
from mlwatch.store.payloads import EVENTS

log = logging.getLogger("mlwatch.proxy")


def split_listen(listen: str) -> tuple[str, int]:
    """``host:port`` (``[v6]:port``) as its parts.

    >>> split_listen("[::1]:8080"), split_listen("0.0.0.0:0")
    (('::1', 8080), ('0.0.0.0', 0))
    """
    host, _, port = listen.rpartition(":")
    return host.strip("[]"), int(port)


class ProxyListener:
    """The reverse proxy in front of ``config.proxy_to``, recording into a sidecar."""

    def __init__(self, config: Config) -> None:
        if not config.proxy_to:
            raise ConfigError("proxy_to", "required for the proxy")
        if config.proxy_json_route:
            try:
                re.compile(config.proxy_json_route)
            except re.error as exc:
                raise ConfigError("proxy_json_route", f"not a regular expression: {exc}") from None
        self.config = config
        self.host, self.port = split_listen(config.proxy_listen)
        self._server: Any = None
        self._task: asyncio.Task[None] | None = None
        self._pool: Any = None
        self.recorder: Recorder | None = None

    async def start(self, sidecar: Any) -> None:
        """Bind, start recording into ``sidecar`` and serve (returns once serving)."""
        import uvicorn

        from mlwatch.sidecar.protocol import guarded_protocol

        config = self.config
        sock = _bind(self.host, self.port)
        self.port = sock.getsockname()[1]
        metrics = ProxyMetrics(sidecar.registry)
        self.recorder = Recorder(
            Reader(config),
            lambda evs: sidecar.accept(EVENTS, evs),
            metrics,
            config.proxy_queue_size,
            config.max_events_per_request,
        )
        self.recorder.start()
        self._pool = Upstream(
            config.proxy_to or "",
            max_connections=config.proxy_max_connections,
            timeout_s=config.proxy_timeout_s,
        )
        app = Forwarder(
            self._pool,
            config.proxy_capture_max_bytes,
            self.recorder.submit,
            metrics,
        )
        self._server = _quiet_server(
            uvicorn.Config(
                app,
                lifespan="off",
                log_config=None,
                access_log=False,
                server_header=False,  # the model server's own Server and Date pass through
                date_header=False,
                timeout_graceful_shutdown=10,
                http=guarded_protocol(  # the sidecar's bounds on heads and connections
                    max_header_bytes=config.max_header_bytes,
                    request_timeout_s=config.request_timeout_s,
                    max_connections=config.max_connections,
                    on_refused=lambda status: sidecar.metrics.rejected.labels(str(status)).inc(),
                ),
            )
        )
        self._task = asyncio.create_task(self._server.serve(sockets=[sock]))
        while not self._server.started and not self._task.done():
            await asyncio.sleep(0.01)
        if self._task.done():
            self._task.result()  # raises what stopped it
        log.info("mlwatch proxy on http://%s:%d -> %s", self.host, self.port, config.proxy_to)

    async def stop(self) -> None:
        """Stop serving (calls in progress finish), then record what is queued."""
        if self._server is not None and self._task is not None:
            self._server.should_exit = True
            with contextlib.suppress(Exception):
                await self._task
        if self._pool is not None:
            await self._pool.aclose()
        if self.recorder is not None:
            await asyncio.to_thread(self.recorder.stop)


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise ConfigError("proxy_listen", f"cannot listen on {host}:{port}: {exc}") from None
    sock.set_inheritable(True)
    return sock


def _quiet_server_class() -> type:
    import uvicorn

    class QuietServer(uvicorn.Server):
        """A uvicorn server that leaves signals to the sidecar's server: it stops when
        the sidecar's lifespan stops it."""

        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:
            yield

    return QuietServer


def _quiet_server(config: Any) -> Any:
    return _quiet_server_class()(config)
