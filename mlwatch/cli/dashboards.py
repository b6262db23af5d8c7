"""``mlwatch dashboards build``: Grafana dashboards and provisioning files from the
config's model specs (docs/grafana.md)."""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

from mlwatch.errors import ConfigError


def add_parser(sub: Any) -> None:
    p = sub.add_parser("dashboards", help="build the Grafana dashboards")
    commands = p.add_subparsers(dest="dashboards_command", required=True, metavar="ACTION")
    build = commands.add_parser(
        "build",
        help="write one JSON file per dashboard and Grafana provisioning files",
        description="Write an overview dashboard per model, drift and performance "
        "dashboards per monitored model, mlwatch's health and a fleet dashboard, with "
        "the dashboard provider and datasource files Grafana provisions them from.",
    )
    build.add_argument("--config", help="path of mlwatch.yaml (default: $MLWATCH_CONFIG)")
    build.add_argument("--out", default="dashboards", help="output directory (dashboards)")
    build.add_argument(
        "--job", default="mlwatch", help="Prometheus job that scrapes the sidecar (mlwatch)"
    )
    build.add_argument(
        "--runbook-url",
        help="where the runbooks are; panels link to it with #alertname "
        "(default: alerts/runbooks.md)",
    )
    build.add_argument(
        "--prometheus-url",
        default="http://prometheus:9090",
        help="the Prometheus URL written into the datasource file (http://prometheus:9090)",
    )
    build.add_argument(
        "--dashboards-path",
        default="/var/lib/grafana/dashboards/mlwatch",
        help="where Grafana reads the JSON files, written into the provider file "
        "(/var/lib/grafana/dashboards/mlwatch)",
    )
    build.add_argument(
        "--check",
        action="store_true",
        help="write nothing; exit 1 when the output directory differs from a fresh build",
    )
    build.set_defaults(func=run_build)


def run_build(args: argparse.Namespace) -> int:
    try:
        from mlwatch.grafana.build import build_dashboards
        from mlwatch.grafana.common import Options
        from mlwatch.grafana.render import differences, render_files, write_files
    except ImportError as exc:  # the extra is missing
        raise ConfigError(
            "dashboards", f"needs the grafana extra: pip install 'mlwatch[grafana]' ({exc})"
        ) from exc
    from mlwatch.alerting.rules import DEFAULT_RUNBOOK_URL
    from mlwatch.settings import load_config

    path = args.config or os.environ.get("MLWATCH_CONFIG")
    if not path:
        raise ConfigError(
            "config", "mlwatch dashboards build needs the config file: --config or MLWATCH_CONFIG"
        )
    config = load_config(path)
    options = Options(
        job=args.job,
        runbook_url=args.runbook_url or DEFAULT_RUNBOOK_URL,
        prometheus_url=args.prometheus_url,
        dashboards_path=args.dashboards_path,
        source=str(path),
    )
    files = render_files(build_dashboards(config, options), config, options)
    out = Path(args.out)
    if args.check:
        changed = differences(files, out)
        for name in changed:
            print(f"differs from a fresh build: {out / name}")
        return 1 if changed else 0
    for name in write_files(files, out):
        print(f"wrote {out / name}" if name in files else f"removed {out / name}")
    print(f"{len(files)} files in {out}: provision them as docs/grafana.md says")
    return 0
