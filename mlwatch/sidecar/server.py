"""Run the sidecar under uvicorn."""

from __future__ import annotations

import logging

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
        "mlwatch sidecar on http://%s:%d, data in %s, settings %s",
        config.host,
        config.port,
        config.data_dir,
        config.redacted(),
    )
    app = create_app(config)
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
    )
