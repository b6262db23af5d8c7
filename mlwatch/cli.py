"""The ``mlwatch`` command: one entry point, one subcommand per job.

Settings come from ``--config`` / ``MLWATCH_CONFIG`` and ``MLWATCH_*`` variables
(see :mod:`mlwatch.settings`); the few flags here override them. Secrets such as
the token are read from the environment only, never from flags (they would show
in ``ps``).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from mlwatch.errors import ConfigError, MlwatchError
from mlwatch.settings import load_config


def _sidecar(args: argparse.Namespace) -> int:
    config = load_config(args.config, host=args.host, port=args.port, data_dir=args.data_dir,
                         spool_fsync=args.spool_fsync)
    from mlwatch.sidecar.server import serve

    serve(config, access_log=args.access_log)
    return 0


def _demo(args: argparse.Namespace) -> int:
    from mlwatch.demo import run_demo

    return run_demo(requests=args.requests, data_dir=args.data_dir, port=args.port)


def _scheduler(args: argparse.Namespace) -> int:
    config = load_config(args.config, data_dir=args.data_dir)
    from mlwatch.scheduler import run_standalone

    return run_standalone(config, metrics_port=args.metrics_port, once=args.once)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mlwatch", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("sidecar", help="run the sidecar (HTTP ingest, spool, store, /metrics)")
    p.add_argument("--config", help="path of mlwatch.yaml (default: $MLWATCH_CONFIG)")
    p.add_argument("--host", help="bind address (default 127.0.0.1)")
    p.add_argument("--port", type=int, help="port (default 8765)")
    p.add_argument("--data-dir", help="spool and embedded store directory")
    p.add_argument("--spool-fsync", choices=("always", "interval"), help="fsync policy")
    p.add_argument("--access-log", action="store_true", help="log every request")
    p.set_defaults(func=_sidecar)

    p = sub.add_parser("scheduler", help="run the drift and KPI jobs (without a sidecar)")
    p.add_argument("--config", help="path of mlwatch.yaml (default: $MLWATCH_CONFIG)")
    p.add_argument("--data-dir", help="the data directory whose store the jobs read")
    p.add_argument("--metrics-port", type=int, default=8766, help="port of /metrics (8766)")
    p.add_argument("--once", action="store_true", help="run every job once, print JSON, exit")
    p.set_defaults(func=_scheduler)

    from mlwatch import drift_cli

    drift_cli.add_parser(sub)

    p = sub.add_parser("demo", help="end-to-end demo on the embedded store")
    p.add_argument("--requests", type=int, default=4000, help="predictions to serve (default 4000)")
    p.add_argument("--data-dir", default="mlwatch-demo", help="where the demo keeps its data")
    p.add_argument("--port", type=int, default=0, help="sidecar port (default: a free one)")
    p.set_defaults(func=_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except ConfigError as exc:
        print(f"mlwatch: configuration error: {exc}", file=sys.stderr)
        return 2
    except MlwatchError as exc:
        print(f"mlwatch: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
