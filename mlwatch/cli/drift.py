"""``mlwatch drift REFERENCE CURRENT``: offline drift between two CSV or Parquet files.

Prints a table (default) or the JSON of docs/contracts.md (``--format json``)::

    {"features": [{"name", "type", "method", "score", "p_value", "threshold", "drifted"}],
     "drift_share", "dataset_drift"}

Exit codes, for CI: 0 done (and, with ``--fail-on-drift``, no dataset drift); 1 dataset
drift with ``--fail-on-drift``; 2 bad usage, unreadable input or any other failure (never
1, which CI would read as drift). Files are read by :mod:`mlwatch.store.tables`; on a
terminal (or with ``--progress``) a progress line shows the bytes read.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any, TextIO

from mlwatch.errors import InputError
from mlwatch.store.tables import read_columns


def format_table(report: dict[str, Any]) -> str:
    """The report as an aligned text table with a summary line."""
    rows = [("feature", "type", "method", "score", "p-value", "threshold", "drift")]
    for f in report["features"]:
        rows.append(
            (
                f["name"],
                f["type"],
                f["method"],
                _num(f["score"]),
                _num(f["p_value"]),
                _num(f["threshold"]),
                "DRIFT" if f["drifted"] else "-",
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = [
        "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
        for row in rows
    ]
    lines.insert(1, "  ".join("-" * w for w in widths))
    drifted = sum(1 for f in report["features"] if f["drifted"])
    lines.append("")
    lines.append(
        f"{drifted} of {len(report['features'])} features drifted "
        f"(share {report['drift_share']:.2f}); dataset drift: "
        f"{'YES' if report['dataset_drift'] else 'no'}"
    )
    return "\n".join(lines)


def _num(x: Any) -> str:
    if x is None:
        return "n/a"
    if isinstance(x, float) and (abs(x) >= 1e4 or (x != 0 and abs(x) < 1e-3)):
        return f"{x:.3e}"
    return f"{x:.4f}" if isinstance(x, float) else str(x)


def run(args: Any, out: TextIO | None = None, err: TextIO | None = None) -> int:
    """The ``mlwatch drift`` command (``args`` from its argparse parser)."""
    out = out if out is not None else sys.stdout
    from mlwatch.stats.drift import compare

    ref = read_columns(args.reference, progress=args.progress, err=err)
    cur = read_columns(args.current, progress=args.progress, err=err)
    columns = [c.strip() for c in args.columns.split(",")] if args.columns else None
    if columns:
        missing = [c for c in columns if c not in ref or c not in cur]
        if missing:
            raise InputError(f"--columns: not in both files: {', '.join(missing)}")
    else:
        columns = [c for c in ref if c in cur]
        if not columns:
            raise InputError("the two files have no column in common")
        for name, side in (
            (sorted(set(ref) - set(cur)), "reference"),
            (sorted(set(cur) - set(ref)), "current"),
        ):
            if name:
                (err or sys.stderr).write(
                    f"mlwatch drift: only in the {side} file, not compared: {', '.join(name)}\n"
                )
    types = {c: "categorical" for c in (args.categorical or "").split(",") if c}
    types.update({c: "numeric" for c in (args.numeric or "").split(",") if c})
    unknown = [c for c in types if c not in columns]
    if unknown:
        raise InputError(f"--categorical/--numeric: unknown column(s) {', '.join(unknown)}")
    report = compare(
        {c: ref[c] for c in columns},
        {c: cur[c] for c in columns},
        types=types or None,
        method=args.method,
        alpha=args.alpha,
        correction=args.correction,
        min_effect=args.min_effect,
        drift_share=args.drift_share,
    ).to_dict()
    if args.format == "json":
        out.write(json.dumps(report, indent=2) + "\n")
    else:
        out.write(format_table(report) + "\n")
    return 1 if args.fail_on_drift and report["dataset_drift"] else 0


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "drift",
        help="compare two CSV/Parquet files for drift (offline)",
        description=__doc__.split("\n\n")[0],
    )
    p.add_argument("reference", help="reference data (.csv or .parquet)")
    p.add_argument("current", help="current data (.csv or .parquet)")
    p.add_argument("--format", choices=("table", "json"), default="table")
    p.add_argument(
        "--method",
        help="force one method for every column it applies to "
        "(ks, wasserstein, psi, js, hellinger, kl, tvd, anderson, cvm, chisquare)",
    )
    p.add_argument("--columns", help="comma-separated columns to compare (default: common)")
    p.add_argument("--categorical", help="columns to treat as categorical")
    p.add_argument("--numeric", help="columns to treat as numeric")
    p.add_argument("--alpha", type=float, default=0.05, help="test level (0.05)")
    p.add_argument(
        "--correction",
        choices=("bonferroni", "bh"),
        help="multiple-testing correction of the test p-values",
    )
    p.add_argument("--min-effect", type=float, help="minimum effect size to call drift")
    p.add_argument(
        "--drift-share",
        type=float,
        default=0.5,
        help="share of drifted features that makes dataset drift (0.5)",
    )
    p.add_argument("--fail-on-drift", action="store_true", help="exit 1 on dataset drift")
    p.add_argument(
        "--progress",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="show reading progress (default: on a terminal, for large files)",
    )
    p.set_defaults(func=main)


def main(args: Any) -> int:
    """Run with clear errors: unreadable input or a bad option is exit 2, not a traceback."""
    try:
        return run(args)
    except (InputError, ValueError) as exc:
        print(f"mlwatch drift: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:  # never exit 1 (= "drift") for a failure: CI would misread it
        print(f"mlwatch drift: cannot compare: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 2
