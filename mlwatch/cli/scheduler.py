"""``mlwatch scheduler``: the drift and KPI jobs against a data directory's store, without
a sidecar (``scheduler: false`` in the sidecar then), metrics on their own port."""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import signal
import sys
import threading
from pathlib import Path
from typing import Any

from mlwatch.errors import ConfigError
from mlwatch.settings import Config, load_config

log = logging.getLogger("mlwatch.scheduler")


def add_parser(sub: Any) -> None:
    p = sub.add_parser("scheduler", help="run the drift and KPI jobs (without a sidecar)")
    p.add_argument("--config", help="path of mlwatch.yaml (default: $MLWATCH_CONFIG)")
    p.add_argument("--data-dir", help="the data directory whose store the jobs read")
    p.add_argument("--metrics-port", type=int, default=8766, help="port of /metrics (8766)")
    p.add_argument("--once", action="store_true", help="run every job once, print JSON, exit")
    p.add_argument(
        "--strict",
        action="store_true",
        help="with --once: exit 1 when a job found nothing to compute (no events or labels)",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.strict and not args.once:
        raise ConfigError("--strict", "applies to --once only (a running scheduler has no end)")
    config = load_config(args.config, data_dir=args.data_dir)
    return run_standalone(
        config, metrics_port=args.metrics_port, once=args.once, strict=args.strict
    )


def run_standalone(
    config: Config, *, metrics_port: int, once: bool = False, strict: bool = False
) -> int:
    """The jobs against ``data_dir``'s store (``once``: run every job one time, print the
    results as JSON, exit; ``strict``: exit 1 when a job found nothing to compute)."""
    from prometheus_client import CollectorRegistry, start_http_server

    from mlwatch.logs import setup_logging
    from mlwatch.scheduler import Jobs, Scheduler
    from mlwatch.store import EmbeddedStore

    setup_logging(config.log_level)
    store = EmbeddedStore(existing_store(config), retention_days=0)
    registry = CollectorRegistry()
    jobs = Jobs(config, store, registry)
    if any(m.retrain for m in config.models):
        from mlwatch.alerting.retrain import Retrainer, targets_of

        # records triggers in the store's outbox; the sidecar on this data directory sends
        jobs.retrainer = Retrainer(config, store, registry, targets=targets_of(config))
    if not jobs.monitored():
        log.error("no model has a monitoring section (reference, schedule, window...)")
        return 2
    if once:
        try:
            jobs.prepare()
            results = run_once(jobs)
        finally:
            jobs.close()
            store.close()
        print(json.dumps(results, indent=2, default=str))
        empty = [why for why in jobs.empty.values() if why]
        for why in empty:
            print(f"mlwatch scheduler: {why}", file=sys.stderr)
        return 1 if strict and empty else 0
    try:
        scheduler = Scheduler(config, store, registry, jobs=jobs)
    except BaseException:
        store.close()
        raise
    server, _ = start_http_server(metrics_port, addr=config.host, registry=registry)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    scheduler.start(first_run_after_s=0, owner="mlwatch scheduler")
    log.info("mlwatch scheduler: metrics on http://%s:%d/metrics", config.host, metrics_port)
    with contextlib.suppress(KeyboardInterrupt):
        stop.wait()
    scheduler.shutdown()
    server.shutdown()
    store.close()
    return 0


def existing_store(config: Config) -> Path:
    """The store the sidecar writes under ``data_dir``; never a new, empty one (a
    forgotten ``--data-dir`` would give empty results that look like success)."""
    path = Path(config.data_dir) / "store.db"
    if not path.is_file():
        raise ConfigError(
            "data_dir",
            f"no mlwatch store at {path}: pass the sidecar's data directory "
            "(--data-dir, data_dir, MLWATCH_DATA_DIR)",
        )
    return path


def run_once(jobs: Any) -> dict[str, Any]:
    """Every job of every monitored model once: the drift window, its result, the KPIs."""
    from mlwatch.scheduler.windows import window_bounds
    from mlwatch.times import format_us

    out: dict[str, Any] = {}
    for spec in jobs.monitored():
        start, end = window_bounds(spec.monitoring, jobs.clock())
        out[spec.name] = {
            "window": [format_us(start), format_us(end)],
            "drift": jobs.drift(spec.name, (start, end)),
            "kpi": jobs.kpis(spec.name),
        }
    return out
