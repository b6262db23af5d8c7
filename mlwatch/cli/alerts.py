"""``mlwatch alerts build|test``: Prometheus rules and an Alertmanager configuration from
the config's model specs, and the real promtool and amtool run over them
(docs/alerting.md)."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

from mlwatch.errors import ConfigError


def add_parser(sub: Any) -> None:
    p = sub.add_parser("alerts", help="build the Prometheus alert rules, or check them")
    commands = p.add_subparsers(dest="alerts_command", required=True, metavar="ACTION")
    build = commands.add_parser(
        "build",
        help="write rules/*.yml and alertmanager.yml from the model specs",
        description="Write one Prometheus rule file per model with an alerts section, one "
        "for mlwatch itself, and an Alertmanager configuration, from the config file.",
    )
    build.add_argument("--config", help="path of mlwatch.yaml (default: $MLWATCH_CONFIG)")
    build.add_argument("--out", default="alerts", help="output directory (alerts)")
    build.add_argument(
        "--job", default="mlwatch", help="Prometheus job that scrapes the sidecar (mlwatch)"
    )
    build.add_argument(
        "--runbook-url",
        help="where the runbooks are; each alert links to it with #alertname "
        "(default: alerts/runbooks.md)",
    )
    build.add_argument(
        "--credentials-file",
        default="/etc/mlwatch/token",
        help="where Alertmanager reads the sidecar's token: the file's path is written "
        "into alertmanager.yml, never its content (/etc/mlwatch/token)",
    )
    build.add_argument(
        "--check",
        action="store_true",
        help="write nothing; exit 1 when the output directory differs from a fresh build",
    )
    build.set_defaults(func=run_build)
    test = commands.add_parser(
        "test",
        help="run promtool and amtool over the built files",
        description="Run promtool check rules on every rule file, promtool test rules on "
        "the unit tests in tests/, and amtool check-config on alertmanager.yml.",
    )
    test.add_argument("--dir", default="alerts", help="the directory built into (alerts)")
    test.set_defaults(func=run_test)


def run_build(args: argparse.Namespace) -> int:
    from mlwatch.alerting.build import build_files, differences, write_files
    from mlwatch.alerting.rules import DEFAULT_RUNBOOK_URL, Options
    from mlwatch.settings import load_config

    path = args.config or os.environ.get("MLWATCH_CONFIG")
    if not path:
        raise ConfigError(
            "config", "mlwatch alerts build needs the config file: --config or MLWATCH_CONFIG"
        )
    config = load_config(path)
    options = Options(
        job=args.job,
        runbook_url=args.runbook_url or DEFAULT_RUNBOOK_URL,
        token_file=args.credentials_file,
        source=str(path),
    )
    files = build_files(config, options)
    out = Path(args.out)
    if not any(spec.alerts for spec in config.models):
        print("mlwatch alerts: no model has an alerts section; only mlwatch's own rules")
    if args.check:
        changed = differences(files, out)
        for name in changed:
            print(f"differs from a fresh build: {out / name}")
        return 1 if changed else 0
    for name in write_files(files, out):
        print(f"wrote {out / name}" if name in files else f"removed {out / name}")
    print(f"{len(files)} files in {out}: check them with mlwatch alerts test --dir {out}")
    return 0


def run_test(args: argparse.Namespace) -> int:
    from mlwatch.alerting.checks import run_checks

    return 0 if run_checks(Path(args.dir), sys.stdout) else 1
