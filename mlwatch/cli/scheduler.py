"""``mlwatch scheduler``: the drift and KPI jobs against a data directory's store, without
a sidecar (``scheduler: false`` in the sidecar then), metrics on their own port."""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import signal
import threading
from pathlib import Path
from typing import Any

from mlwatch.settings import Config, load_config

log = logging.getLogger("mlwatch.scheduler")


def add_parser(sub: Any) -> None:
    p = sub.add_parser("scheduler", help="run the drift and KPI jobs (without a sidecar)")
    p.add_argument("--config", help="path of mlwatch.yaml (default: $MLWATCH_CONFIG)")
    p.add_argument("--data-dir", help="the data directory whose store the jobs read")
    p.add_argument("--metrics-port", type=int, default=8766, help="port of /metrics (8766)")
    p.add_argument("--once", action="store_true", help="run every job once, print JSON, exit")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    config = load_config(args.config, data_dir=args.data_dir)
    return run_standalone(config, metrics_port=args.metrics_port, once=args.once)


def run_standalone(config: Config, *, metrics_port: int, once: bool = False) -> int:
    """The jobs against ``data_dir``'s store (``once``: run every job one time, print the
    results as JSON, exit)."""
    from prometheus_client import CollectorRegistry, start_http_server

    from mlwatch.logs import setup_logging
    from mlwatch.scheduler import Jobs, Scheduler
    from mlwatch.store import EmbeddedStore

    setup_logging(config.log_level)
    store = EmbeddedStore(Path(config.data_dir) / "store.db", retention_days=0)
    registry = CollectorRegistry()
    jobs = Jobs(config, store, registry)
    if not jobs.monitored():
        log.error("no model has a monitoring section (reference, schedule, window...)")
        return 2
    if once:
        try:
            results = {
                spec.name: {"drift": jobs.drift(spec.name), "kpi": jobs.kpis(spec.name)}
                for spec in jobs.monitored()
            }
        finally:
            jobs.close()
            store.close()
        print(json.dumps(results, indent=2, default=str))
        return 0
    scheduler = Scheduler(config, store, registry, jobs=jobs)
    server, _ = start_http_server(metrics_port, addr=config.host, registry=registry)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    scheduler.start(first_run_after_s=0)
    log.info("mlwatch scheduler: metrics on http://%s:%d/metrics", config.host, metrics_port)
    with contextlib.suppress(KeyboardInterrupt):
        stop.wait()
    scheduler.shutdown()
    server.shutdown()
    store.close()
    return 0
