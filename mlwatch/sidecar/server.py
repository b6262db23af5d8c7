"""Run the sidecar under uvicorn."""

from __future__ import annotations

import logging

from mlwatch.settings import Config


def serve(config: Config, *, access_log: bool = False) -> None:
    """Serve until SIGINT/SIGTERM; the app's lifespan drains and closes the spool.

    Access logs are off by default: at thousands of requests a second they cost
    more than the work, and the metrics already count requests.
    """
    import uvicorn

    from mlwatch.sidecar.app import create_app

    logging.basicConfig(level=config.log_level.upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("mlwatch").info(
        "mlwatch sidecar on http://%s:%d, data in %s, settings %s", config.host, config.port,
        config.data_dir, config.redacted())
    uvicorn.run(create_app(config), host=config.host, port=config.port,
                log_level=config.log_level, access_log=access_log,
                timeout_graceful_shutdown=10)
