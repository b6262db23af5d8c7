"""``mlwatch sidecar``: HTTP ingest, the spool, the store, the sinks and ``/metrics``."""

from __future__ import annotations

import argparse
from typing import Any

from mlwatch.settings import load_config


def add_parser(sub: Any) -> None:
    p = sub.add_parser("sidecar", help="run the sidecar (HTTP ingest, spool, store, /metrics)")
    p.add_argument("--config", help="path of mlwatch.yaml (default: $MLWATCH_CONFIG)")
    p.add_argument("--host", help="bind address (default 127.0.0.1)")
    p.add_argument("--port", type=int, help="port (default 8765)")
    p.add_argument("--data-dir", help="spool and embedded store directory")
    p.add_argument("--spool-fsync", choices=("always", "interval"), help="fsync policy")
    p.add_argument(
        "--proxy-to",
        metavar="URL",
        help="also run a reverse proxy in front of this model server and record its calls",
    )
    p.add_argument(
        "--proxy-listen", metavar="HOST:PORT", help="the proxy's listener (default 127.0.0.1:8080)"
    )
    p.add_argument("--access-log", action="store_true", help="log every request")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    config = load_config(
        args.config,
        host=args.host,
        port=args.port,
        data_dir=args.data_dir,
        spool_fsync=args.spool_fsync,
        proxy_to=args.proxy_to,
        proxy_listen=args.proxy_listen,
    )
    from mlwatch.sidecar.server import serve

    serve(config, access_log=args.access_log)
    return 0
