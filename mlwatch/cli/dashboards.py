"""``mlwatch dashboards build``: Grafana dashboards and provisioning files from the
config's model specs (docs/grafana.md); ``mlwatch dashboards sync``: the same dashboards
written to Grafana through its HTTP API (docs/grafana-sync.md)."""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

from mlwatch.errors import ConfigError


def _options_arguments(p: argparse.ArgumentParser) -> None:
    """What build and sync share: the config, and the names of the deployment around it."""
    p.add_argument("--config", help="path of mlwatch.yaml (default: $MLWATCH_CONFIG)")
    p.add_argument(
        "--job", default="mlwatch", help="Prometheus job that scrapes the sidecar (mlwatch)"
    )
    p.add_argument(
        "--runbook-url",
        help="where the runbooks are; panels link to it with #alertname "
        "(default: alerts/runbooks.md)",
    )
    p.add_argument(
        "--kibana-url",
        default="http://kibana:5601",
        help="Kibana's URL; the events dashboards link to its saved search of failed "
        "predictions (http://kibana:5601)",
    )


def add_parser(sub: Any) -> None:
    p = sub.add_parser("dashboards", help="build the Grafana dashboards, or sync them to Grafana")
    commands = p.add_subparsers(dest="dashboards_command", required=True, metavar="ACTION")
    _add_sync(commands)
    build = commands.add_parser(
        "build",
        help="write one JSON file per dashboard and Grafana provisioning files",
        description="Write an overview dashboard per model, drift and performance "
        "dashboards per monitored model, an events dashboard per model when "
        "elasticsearch_url is set, mlwatch's health and a fleet dashboard, with "
        "the dashboard provider and datasource files Grafana provisions them from, and "
        "Grafana-managed alert rules with a contact point to the sidecar.",
    )
    _options_arguments(build)
    build.add_argument("--out", default="dashboards", help="output directory (dashboards)")
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


def _add_sync(commands: Any) -> None:
    sync = commands.add_parser(
        "sync",
        help="make Grafana's dashboards and alert rules equal to a fresh build",
        description="Upsert every generated dashboard by uid through Grafana's HTTP API, in a "
        "folder per model, skipping unchanged ones, then the Grafana-managed alert rules. A "
        "dashboard or rule edited by hand in Grafana is reported and kept unless --force; "
        "those of removed models are deleted only with --prune. The token is the "
        "grafana_token setting (MLWATCH_GRAFANA_TOKEN or MLWATCH_GRAFANA_TOKEN_FILE).",
    )
    _options_arguments(sync)
    sync.add_argument("--url", help="Grafana's URL (default: the grafana_url setting)")
    sync.add_argument("--force", action="store_true", help="overwrite hand edits")
    sync.add_argument(
        "--prune", action="store_true", help="delete mlwatch dashboards no longer generated"
    )
    sync.add_argument(
        "--dry-run", action="store_true", help="print what would change, as diffs; write nothing"
    )
    sync.add_argument("--message", help="the version message Grafana keeps with each save")
    sync.set_defaults(func=run_sync)


def _load(args: argparse.Namespace, **extra: str) -> tuple[Any, Any]:
    """(config, dashboard options) from the command line; a missing extra or config file is
    a ConfigError that says what to do."""
    try:
        from mlwatch.grafana.common import Options
    except ImportError as exc:  # the extra is missing
        raise ConfigError(
            "dashboards", f"needs the grafana extra: pip install 'mlwatch[grafana]' ({exc})"
        ) from exc
    from mlwatch.alerting.rules import DEFAULT_RUNBOOK_URL
    from mlwatch.settings import load_config

    path = args.config or os.environ.get("MLWATCH_CONFIG")
    if not path:
        raise ConfigError(
            "config",
            f"mlwatch dashboards {args.dashboards_command} needs the config file: --config or "
            "MLWATCH_CONFIG",
        )
    config = load_config(path)
    options = Options(
        job=args.job,
        runbook_url=args.runbook_url or DEFAULT_RUNBOOK_URL,
        kibana_url=args.kibana_url,
        source=str(path),
        **extra,
    )
    return config, options


def run_sync(args: argparse.Namespace) -> int:
    from mlwatch.grafana.plan import sync_config

    config, options = _load(args)
    report = sync_config(
        config,
        options,
        url=args.url,
        force=args.force,
        prune=args.prune,
        dry_run=args.dry_run,
        message=args.message,
    )
    print(report.text())
    return 0 if report.ok else 1


def run_build(args: argparse.Namespace) -> int:
    config, options = _load(
        args, prometheus_url=args.prometheus_url, dashboards_path=args.dashboards_path
    )
    from mlwatch.grafana.build import build_dashboards
    from mlwatch.grafana.render import differences, render_files, write_files

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
