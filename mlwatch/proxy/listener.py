"""The proxy as the sidecar runs it: its socket, its worker process, and the recording
of what the worker forwarded.

The socket is bound here, before the server runs, so that a taken port is an error at
startup with the address in it, and port 0 gives a free port (:attr:`ProxyListener.port`).
The forwarding runs in a worker process (:mod:`.worker`) on that socket; a thread here
reads the calls it forwarded from the channel (:mod:`.channel`) into the
:class:`~.recorder.Recorder`, adds the worker's counts to the metrics, and starts the
worker again, on the same socket, when it dies (callers meanwhile wait in the socket's
backlog). Started by the sidecar app's lifespan after the sidecar, stopped before it:
the worker first (calls in progress finish and are sent), then the recorder, so every
forwarded call is recorded before the spool closes.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import signal
import socket
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import mlwatch
from mlwatch.errors import ConfigError
from mlwatch.proxy import channel, worker
from mlwatch.proxy.events import Reader
from mlwatch.proxy.metrics import ProxyMetrics
from mlwatch.proxy.recorder import Recorder
from mlwatch.settings import Config
from mlwatch.store.payloads import EVENTS

log = logging.getLogger("mlwatch.proxy")
READY_S = 60.0  # for a worker to import and listen
STOP_S = 20.0  # for a worker to finish its calls (10 s) and send them, before SIGKILL
RESTART_S = 1.0


def split_listen(listen: str) -> tuple[str, int]:
    """``host:port`` (``[v6]:port``) as its parts.

    >>> split_listen("[::1]:8080"), split_listen("0.0.0.0:0")
    (('::1', 8080), ('0.0.0.0', 0))
    """
    host, _, port = listen.rpartition(":")
    return host.strip("[]"), int(port)


class ProxyListener:
    """The reverse proxy in front of ``config.proxy_to``, recording into a sidecar."""

    name = "proxy"  # its part of /readyz

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
        self.recorder: Recorder | None = None
        self.worker: subprocess.Popen[bytes] | None = None
        self._sock: socket.socket | None = None
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._serving = False  # a worker said it serves, and has not died since
        self._restarts = 0

    async def start(self, sidecar: Any) -> None:
        """Bind, start recording into ``sidecar`` and the worker (returns once serving)."""
        config = self.config
        self._sock = _bind(self.host, self.port)
        self.port = self._sock.getsockname()[1]
        self.metrics = ProxyMetrics(sidecar.registry)
        self._rejected = sidecar.metrics.rejected
        self.recorder = Recorder(
            Reader(config),
            lambda evs: sidecar.accept(EVENTS, evs),
            self.metrics,
            config.proxy_queue_size,
            config.max_events_per_request,
        )
        self.recorder.start()
        stream = await asyncio.to_thread(self._spawn)
        self._serving = True
        self._thread = threading.Thread(
            target=self._run, args=(stream,), name="mlwatch-proxy-channel", daemon=True
        )
        self._thread.start()
        log.info("mlwatch proxy on http://%s:%d -> %s", self.host, self.port, config.proxy_to)

    def health(self) -> dict[str, Any]:
        """Unhealthy while no worker serves (between a worker's death and its restart):
        the pod is then not ready, and Kubernetes sends its callers elsewhere."""
        return {"healthy": self._serving, "restarts": self._restarts}

    async def stop(self) -> None:
        """Stop the worker (calls in progress finish), then record what it sent."""
        self._stopping.set()
        await asyncio.to_thread(self._stop)

    def _stop(self) -> None:
        _stop_worker(self.worker)
        if self._thread is not None:
            self._thread.join(STOP_S)
        _stop_worker(self.worker)  # one the thread started meanwhile
        if self.recorder is not None:
            self.recorder.stop()
        if self._sock is not None:
            self._sock.close()

    def _spawn(self) -> Any:
        """Start a worker on the socket; its channel, once it says it is serving."""
        assert self._sock is not None
        ours, theirs = channel.pair()
        settings = {name: getattr(self.config, name) for name in worker.SETTINGS}
        fds = (self._sock.fileno(), theirs.fileno())
        root = str(Path(mlwatch.__file__).resolve().parent.parent)
        path = os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH")) if p)
        with theirs:
            self.worker = subprocess.Popen(
                [sys.executable, "-m", "mlwatch.proxy.worker", json.dumps(settings)]
                + [str(fd) for fd in fds],
                pass_fds=fds,
                env={**os.environ, "PYTHONPATH": path},
            )
        ours.settimeout(READY_S)
        stream = ours.makefile("rb")  # holds the socket open until it is closed
        ours.close()
        try:
            first = next(channel.messages(stream), None)
        except TimeoutError:
            first = None
        if first != ("ready",):
            stream.close()
            self.worker.kill()
            code = self.worker.wait()
            raise ConfigError(
                "proxy_listen",
                f"the proxy's worker stopped before serving (exit code {code}); its log says why",
            )
        ours.settimeout(None)  # the file reads through it: from now on, wait for batches
        return stream

    def _run(self, stream: Any) -> None:
        """Record what the worker sends; start it again when it dies."""
        while True:
            with stream:
                self._pump(stream)
            self._serving = False
            assert self.worker is not None
            code = self.worker.wait()
            if self._stopping.is_set():
                return
            log.error("the proxy worker exited with code %s; starting it again", code)
            self.metrics.restarts.inc()
            self._restarts += 1
            while not self._stopping.wait(RESTART_S):
                try:
                    stream = self._spawn()
                    self._serving = True
                    break
                except ConfigError as exc:
                    log.error("%s", exc)
            else:
                return

    def _pump(self, stream: Any) -> None:
        recorder, metrics = self.recorder, self.metrics
        assert recorder is not None
        for message in channel.messages(stream):
            if message[0] != "batch":
                continue
            _, calls, counts = message
            for ex in calls:
                recorder.submit(ex)
            for code, n in counts.codes.items():
                metrics.codes[code].inc(n)
            for reason, n in counts.upstream.items():
                metrics.upstream[reason].inc(n)
            for status, n in counts.refused.items():
                self._rejected.labels(str(status)).inc(n)
            if counts.dropped:
                metrics.failures["queue_full"].inc(counts.dropped)


def _stop_worker(proc: subprocess.Popen[bytes] | None) -> None:
    """SIGTERM, then SIGKILL when the worker has not stopped within STOP_S."""
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(STOP_S)
    except subprocess.TimeoutExpired:
        log.error("the proxy worker did not stop within %gs; killed", STOP_S)
        proc.kill()
        proc.wait()


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
        sock.listen(2048)
    except OSError as exc:
        sock.close()
        raise ConfigError("proxy_listen", f"cannot listen on {host}:{port}: {exc}") from None
    sock.set_inheritable(True)
    return sock
