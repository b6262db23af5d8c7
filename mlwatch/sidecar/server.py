"""Run the sidecar under uvicorn."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from mlwatch.settings import Config


def serve(config: Config, *, access_log: bool = False) -> None:
    """Serve until SIGINT/SIGTERM; the app's lifespan drains and closes the spool.

    Access logs are off by default: at thousands of requests a second they cost
    more than the work, and the metrics already count requests.
    """
    import gc

    import uvicorn

    from mlwatch.logs import setup_logging
    from mlwatch.sidecar.app import create_app

    setup_logging(config.log_level)
    if config.log_level != "debug":  # one line per bulk request is noise, not news
        logging.getLogger("elastic_transport").setLevel(logging.WARNING)
    log = logging.getLogger("mlwatch")
    log.info(
        "mlwatch sidecar on %s://%s:%d, data in %s",
        "https" if config.tls_cert_file else "http",
        config.host,
        config.port,
        config.data_dir,
    )
    for line in settings_lines(config):
        log.info("  %s", line)
    companions = []
    if config.proxy_to:
        from mlwatch.proxy.listener import ProxyListener

        companions.append(ProxyListener(config))
    app = create_app(config, companions=companions)
    rejected = app.state.sidecar.metrics.rejected
    # Ingest allocates millions of short-lived, acyclic dicts (decoded JSON). With the
    # default thresholds the cyclic collector keeps re-traversing every batch in flight
    # and costs a large share of the sidecar's CPU; collect rarely instead, and keep
    # the startup heap out of the traversal.
    gc.freeze()
    gc.set_threshold(100_000, 50, 100)
    tls = config.tls_cert_file is not None
    server = uvicorn.Server(
        uvicorn.Config(
            app,
            host=config.host,
            port=config.port,
            log_level=config.log_level,
            access_log=access_log,
            timeout_graceful_shutdown=10,
            http=_protocol(config, lambda status: rejected.labels(str(status)).inc()),
            h11_max_incomplete_event_size=config.max_header_bytes,  # without httptools
            ssl_certfile=config.tls_cert_file,
            ssl_keyfile=config.tls_key_file,
            loop="asyncio" if tls else "auto",
        )
    )
    if tls:
        asyncio.run(_serve_tls(server, config.request_timeout_s))
    else:
        server.run()


async def _serve_tls(server: Any, handshake_s: float) -> None:
    """Serve with the TLS handshake bounded by ``request_timeout_s``. A connection reaches
    the HTTP protocol, and so counts against ``max_connections`` and the head's deadline,
    only once its handshake is done; asyncio's own bound is 60 s (and uvicorn has no
    setting for it), so a peer that connects and stays silent would hold a descriptor
    that long."""
    loop = asyncio.get_running_loop()
    create_server = loop.create_server

    async def bounded(*args: Any, **kwargs: Any) -> Any:
        if kwargs.get("ssl") is not None:  # the TLS listener only
            kwargs.setdefault("ssl_handshake_timeout", handshake_s)
        return await create_server(*args, **kwargs)

    loop.create_server = bounded  # type: ignore[method-assign]
    await server.serve()


#: How the startup log groups the sidecar's settings (the client's are not shown).
GROUPS = (
    ("listener", ("host", "port", "token", "tls_cert_file", "tls_key_file", "max_connections")),
    (
        "requests",
        ("max_header_bytes", "request_timeout_s", "max_body_bytes", "max_events_per_request"),
    ),
    ("spool", ("spool_", "sink_stall_s")),
    ("store", ("data_dir", "retention_days", "hash_key", "window_source", "profile_slice_s")),
    ("jobs", ("scheduler", "models")),
    ("elasticsearch", ("elasticsearch_",)),
    ("forward", ("forward_",)),
    ("proxy", ("proxy_",)),
)


def settings_lines(config: Config) -> list[str]:
    """The sidecar's settings as one line per group, secrets masked (``Config.redacted``);
    Elasticsearch and the forward input only when they are on.

    >>> settings_lines(Config(token="s3cret"))[0]
    "listener: token='***' host='127.0.0.1' port=8765 max_connections=1000 tls_cert_file=None tls_key_file=None"
    >>> settings_lines(Config())[-3:]
    ['elasticsearch: off', 'forward: off', 'proxy: off']
    """
    values = config.redacted()
    values["models"] = [m.name for m in config.models]
    off = {
        "elasticsearch": not config.elasticsearch_url,
        "forward": config.forward_port is None,
        "proxy": not config.proxy_to,
    }
    lines = []
    for group, keys in GROUPS:
        if off.get(group):
            lines.append(f"{group}: off")
            continue
        shown = [
            (k.removeprefix(p) if p.endswith("_") else k, v)
            for k, v in values.items()
            for p in keys
            if k == p or (p.endswith("_") and k.startswith(p))
        ]
        lines.append(f"{group}: " + " ".join(f"{k}={v!r}" for k, v in shown))
    return lines


def _protocol(config: Config, on_refused: Callable[[int], None]) -> Any:
    """The guarded httptools protocol (:mod:`.protocol`), or uvicorn's h11 (which bounds
    the head itself, with a 400) when httptools is not installed."""
    try:
        from mlwatch.sidecar.protocol import guarded_protocol
    except ImportError:  # pragma: no cover - uvicorn without [standard]
        return "h11"
    return guarded_protocol(
        max_header_bytes=config.max_header_bytes,
        request_timeout_s=config.request_timeout_s,
        max_connections=config.max_connections,
        on_refused=on_refused,
    )
