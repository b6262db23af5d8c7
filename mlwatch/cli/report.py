"""``mlwatch report``: one self-contained HTML monitoring report.

Two sources:
- two files, ``mlwatch report REFERENCE CURRENT -o report.html``, compared exactly as
  ``mlwatch drift`` compares them (the same options, the same plan, the same
  statistics: the report's figures are the command's JSON), plus the distributions;
- a served model, ``mlwatch report --model churn --since 7d``, from a data directory's
  embedded store (``--data-dir``, else the ``data_dir`` setting), read-only: the stored
  KPI and drift results per window, traffic, versions served and retrain triggers.

Exit codes as ``mlwatch drift``: 0 written (and, with ``--fail-on-drift``, no dataset
drift); 1 dataset drift with ``--fail-on-drift`` (the report is still written); 2 bad
usage, unreadable input or any other failure.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any, TextIO

from mlwatch.cli.drift import add_comparison_options, compare_planned, plan_columns
from mlwatch.cli.lookup import add_environment, model_name
from mlwatch.cli.report_store import DEFAULT_SINCE
from mlwatch.errors import InputError, MlwatchError
from mlwatch.report.model import Report
from mlwatch.times import format_us


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "report",
        help="write a self-contained HTML monitoring report (two files, or a served model)",
        description="One HTML file that opens offline: the drift of CURRENT against "
        "REFERENCE (as mlwatch drift computes it) with each feature's distributions, or a "
        "served model's KPIs, traffic, versions, drift and retrain triggers from the store.",
    )
    p.add_argument("reference", nargs="?", help="reference data: CSV or Parquet")
    p.add_argument("current", nargs="?", help="current data: CSV or Parquet")
    p.add_argument("-o", "--output", default="mlwatch-report.html", help="HTML file ('-': stdout)")
    p.add_argument("--title", help="the report's title")
    add_comparison_options(p)
    p.add_argument("--fail-on-drift", action="store_true", help="exit 1 on dataset drift")
    served = p.add_argument_group("a served model (instead of two files)")
    served.add_argument("--model", type=model_name, help="report on this model from the store")
    served.add_argument(
        "--since", help=f"from this time on: 30m, 1h, 7d back, or RFC 3339 ({DEFAULT_SINCE})"
    )
    served.add_argument("--until", help="up to this time (exclusive; default now)")
    served.add_argument("--bucket", help="traffic bucket, e.g. 5m or 1h (default: automatic)")
    add_environment(served, "traffic")
    served.add_argument("--config", help="path of mlwatch.yaml (default: $MLWATCH_CONFIG)")
    served.add_argument("--data-dir", help="the store's data directory (default: data_dir)")
    p.set_defaults(func=main)


def main(args: Any) -> int:
    """Run with clear errors: bad input or a bad option is exit 2, never 1 (= drift)."""
    try:
        return run(args)
    except (InputError, MlwatchError, ValueError) as exc:
        print(f"mlwatch report: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:  # never exit 1 for a failure: CI would read it as drift
        print(f"mlwatch report: cannot report: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 2


def run(args: Any, out: TextIO | None = None, err: TextIO | None = None) -> int:
    """The ``mlwatch report`` command (``args`` from its argparse parser)."""
    from mlwatch.report.render import render

    err = err if err is not None else sys.stderr
    _check_source(args)
    if args.model is None:
        report = files_report(args, err)
    else:
        from mlwatch.cli.report_store import served_report

        report = served_report(args, err)
    html = render(report)
    if args.output == "-":
        (out or sys.stdout).write(html)
    else:
        Path(args.output).write_text(html, encoding="utf-8")
        err.write(f"mlwatch report: wrote {args.output} ({len(html.encode()) / 1e6:.1f} MB)\n")
    drifted = report.drift is not None and bool(report.drift.summary.get("dataset_drift"))
    return 1 if args.fail_on_drift and drifted else 0


def _check_source(args: Any) -> None:
    """Two files, or ``--model``: not both, not neither."""
    files = [f for f in (args.reference, args.current) if f is not None]
    if args.model is None and len(files) != 2:
        raise InputError(
            "give two files (REFERENCE CURRENT) to compare, or --model NAME for a served model"
        )
    if args.model is not None and files:
        raise InputError(f"--model {args.model} reads the store: give no files (got {files[0]})")
    if args.model is None:
        flags = [
            f for f in ("since", "until", "bucket", "data_dir", "environment") if getattr(args, f)
        ]
        if flags:
            raise InputError(f"--{flags[0].replace('_', '-')} needs --model (a served model)")


def files_report(args: Any, err: TextIO) -> Report:
    """The drift of two files, computed as ``mlwatch drift`` computes it."""
    from mlwatch.report.drift import drift_section
    from mlwatch.stats.drift import prepare
    from mlwatch.store.tables import read_columns

    ref = read_columns(args.reference, progress=args.progress, err=err)
    cur = read_columns(args.current, progress=args.progress, err=err)
    plan = plan_columns(args, ref, cur, err=err)
    if _chatty(args, err):
        err.write(f"mlwatch report: comparing {len(plan.columns)} columns\n")
    prepared_ref = prepare(plan.select(ref), plan.types or None)
    prepared_cur = prepare(plan.select(cur), prepared_ref.types)
    del ref, cur  # the prepared columns are all that is needed from here on
    result = compare_planned(args, plan, prepared_ref, prepared_cur)
    section = drift_section(result, prepared_ref.columns, prepared_cur.columns)
    return Report(
        title=args.title
        or f"Drift of {Path(args.current).name} against {Path(args.reference).name}",
        generated=format_us(time.time_ns() // 1000),
        source={"mode": "files", "reference": str(args.reference), "current": str(args.current)},
        drift=section,
    )


def _chatty(args: Any, err: TextIO) -> bool:
    """Progress notes go to stderr when asked for, or on a terminal."""
    if args.progress is not None:
        return bool(args.progress)
    return bool(getattr(err, "isatty", lambda: False)())


__all__ = ["add_parser", "files_report", "main", "run"]
