"""Run the sidecar under uvicorn."""

from __future__ import annotations

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
    logging.getLogger("mlwatch").info(
        "mlwatch sidecar on %s://%s:%d, data in %s, settings %s",
        "https" if config.tls_cert_file else "http",
        config.host,
        config.port,
        config.data_dir,
        config.redacted(),
    )
    app = create_app(config)
    rejected = app.state.sidecar.metrics.rejected
    # Ingest allocates millions of short-lived, acyclic dicts (decoded JSON). With the
    # default thresholds the cyclic collector keeps re-traversing every batch in flight
    # and costs a large share of the sidecar's CPU; collect rarely instead, and keep
    # the startup heap out of the traversal.
    gc.freeze()
    gc.set_threshold(100_000, 50, 100)
    uvicorn.run(
        app,
        host=config.host,
        port=config.port,
        log_level=config.log_level,
        access_log=access_log,
        timeout_graceful_shutdown=10,
        http=_protocol(config, lambda status: rejected.labels(str(status)).inc()),
        h11_max_incomplete_event_size=config.max_header_bytes,  # when httptools is absent
        ssl_certfile=config.tls_cert_file,
        ssl_keyfile=config.tls_key_file,
    )


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
