"""``mlwatch drift REFERENCE CURRENT``: offline drift between two CSV or Parquet files.

Prints a table (default) or the JSON of docs/contracts.md (``--format json``)::

    {"features": [{"name", "type", "method", "score", "p_value", "threshold", "drifted"}],
     "drift_share", "dataset_drift"}

The JSON adds, besides the extras of the report (quality counts, unseen categories, ...),
per feature ``method_note`` (why a ``--method`` was not used for it, else null) and at
the top ``not_compared`` (``{"reference_only": [...], "current_only": [...]}``, columns
in one file only) and ``files``. The table shows the same notes under its rows
(:mod:`mlwatch.cli.drift_table`): a CI log shows data-quality problems and columns left
out without anyone opening the JSON. With ``--strict-columns`` a column in one file only
is an error, so a renamed column cannot pass a CI gate.

Exit codes, for CI: 0 done (and, with ``--fail-on-drift``, no dataset drift); 1 dataset
drift with ``--fail-on-drift``; 2 bad usage, unreadable input or any other failure (never
1, which CI would read as drift). Files are read by :mod:`mlwatch.store.tables`; on a
terminal (or with ``--progress``) a progress line shows the bytes read.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from mlwatch.cli.drift_table import format_table
from mlwatch.errors import InputError
from mlwatch.store.tables import read_columns

__all__ = [
    "DriftPlan",
    "add_comparison_options",
    "add_parser",
    "compare_planned",
    "drift_result",
    "format_table",
    "main",
    "plan_columns",
    "run",
]

LISTED = 10  # column names shown in a message before "and N more"


def run(args: Any, out: TextIO | None = None, err: TextIO | None = None) -> int:
    """The ``mlwatch drift`` command (``args`` from its argparse parser)."""
    out = out if out is not None else sys.stdout
    ref = read_columns(args.reference, progress=args.progress, err=err)
    cur = read_columns(args.current, progress=args.progress, err=err)
    result = drift_result(args, ref, cur, err=err)
    if args.format == "json":
        out.write(json.dumps(result, indent=2) + "\n")
    else:
        out.write(format_table(result) + "\n")
    return 1 if args.fail_on_drift and result["dataset_drift"] else 0


def drift_result(
    args: Any, ref: Mapping[str, Any], cur: Mapping[str, Any], *, err: TextIO | None = None
) -> dict[str, Any]:
    """The comparison as plain data, the one source of both outputs: the report's JSON
    plus what only the command knows (the files, the columns left out, the notes on a
    ``--method`` that did not apply). Column problems raise InputError naming the files."""
    plan = plan_columns(args, ref, cur, err=err)
    return compare_planned(args, plan, plan.select(ref), plan.select(cur))


@dataclass(frozen=True)
class DriftPlan:
    """What to compare, decided before any statistic: the columns (in both files, or
    ``--columns``), the types forced by ``--categorical`` / ``--numeric``, the columns in
    one file only and the file names. ``mlwatch report`` compares by the same plan."""

    columns: list[str]
    types: dict[str, str]
    one_sided: dict[str, list[str]]
    files: dict[str, str]

    def select(self, data: Mapping[str, Any]) -> dict[str, Any]:
        return {c: data[c] for c in self.columns}


def plan_columns(
    args: Any, ref: Mapping[str, Any], cur: Mapping[str, Any], *, err: TextIO | None = None
) -> DriftPlan:
    """The columns to compare, checked (``--strict-columns``, ``--columns``, the types);
    the columns in one file only are reported on ``err``."""
    files = {"reference": str(args.reference), "current": str(args.current)}
    one_sided = {
        "reference_only": sorted(set(ref) - set(cur)),
        "current_only": sorted(set(cur) - set(ref)),
    }
    if args.strict_columns:
        _check_strict(one_sided, files)
    columns = _compared_columns(args.columns, ref, cur, files)
    for side in ("reference", "current"):
        if one_sided[f"{side}_only"]:
            (err or sys.stderr).write(
                f"mlwatch {getattr(args, 'command', None) or 'drift'}: "
                f"only in the {side} file, not compared: "
                f"{', '.join(one_sided[f'{side}_only'])}\n"
            )
    return DriftPlan(columns, _types(args, columns), one_sided, files)


def compare_planned(args: Any, plan: DriftPlan, ref: Any, cur: Any) -> dict[str, Any]:
    """The JSON of ``mlwatch drift`` for the planned columns of ``ref`` and ``cur`` (raw
    columns, or :class:`~mlwatch.stats.drift.PreparedData` prepared with the same types)."""
    from mlwatch.stats.drift import compare

    report = compare(
        ref,
        cur,
        types=plan.types or None,
        method=args.method,
        alpha=args.alpha,
        correction=args.correction,
        min_effect=args.min_effect,
        drift_share=args.drift_share,
    ).to_dict()
    for feature in report["features"]:
        feature["method_note"] = _method_note(args.method, feature)
    report["not_compared"] = plan.one_sided
    report["files"] = plan.files
    return report


def _check_strict(one_sided: Mapping[str, list[str]], files: Mapping[str, str]) -> None:
    """``--strict-columns``: a column in one file only (a renamed one) is an error."""
    parts = [
        f"{_listed(one_sided[f'{side}_only'])} only in the {side} file {files[side]}"
        for side in ("reference", "current")
        if one_sided[f"{side}_only"]
    ]
    if parts:
        raise InputError(f"--strict-columns: {'; '.join(parts)}")


def _compared_columns(
    wanted: str | None, ref: Mapping[str, Any], cur: Mapping[str, Any], files: Mapping[str, str]
) -> list[str]:
    """The ``--columns`` asked for, each in both files; else the columns in common."""
    if wanted:
        columns = [c.strip() for c in wanted.split(",")]
        missing = [
            _where_missing(
                c, [files[s] for s, cols in (("reference", ref), ("current", cur)) if c not in cols]
            )
            for c in columns
            if c not in ref or c not in cur
        ]
        if missing:
            raise InputError(f"--columns: not in both files: {', '.join(missing)}")
        return columns
    common = [c for c in ref if c in cur]
    if not common:
        raise InputError(
            f"{files['reference']} and {files['current']} have no column in common "
            f"({_name(files['reference'])}: {_listed(list(ref))}; "
            f"{_name(files['current'])}: {_listed(list(cur))})"
        )
    return common


def _where_missing(column: str, lacking: Sequence[str]) -> str:
    if len(lacking) == 2:
        return f"{column} (in neither {lacking[0]} nor {lacking[1]})"
    return f"{column} (not in {lacking[0]})"


def _name(path: str) -> str:
    return Path(path).name


def _listed(names: Sequence[str]) -> str:
    more = len(names) - LISTED
    shown = ", ".join(names[:LISTED])
    return f"{shown} and {more} more" if more > 0 else shown


def _types(args: Any, columns: Sequence[str]) -> dict[str, str]:
    """``--categorical`` / ``--numeric``, each naming compared columns only."""
    types = {c: "categorical" for c in (args.categorical or "").split(",") if c}
    types.update({c: "numeric" for c in (args.numeric or "").split(",") if c})
    unknown = [c for c in types if c not in columns]
    if unknown:
        raise InputError(f"--categorical/--numeric: unknown column(s) {', '.join(unknown)}")
    return types


def _method_note(method: str | None, feature: Mapping[str, Any]) -> str | None:
    """Why the ``--method`` asked for was not used on this feature (None when it was):
    a method accepts some column types only, and the others get their default."""
    if not method or method == "auto" or feature["method"] == method:
        return None
    return (
        f"--method {method} does not apply to {feature['type']} columns; used {feature['method']}"
    )


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "drift",
        help="compare two CSV/Parquet files for drift (offline)",
        description="Offline drift between two CSV or Parquet files: a table (or JSON with "
        "--format json) of each column's statistic, threshold and verdict, and whether the "
        "dataset drifted; --fail-on-drift exits 1 when it did.",
    )
    p.add_argument("reference", help="reference data: CSV (UTF-8, maybe compressed) or Parquet")
    p.add_argument("current", help="current data: CSV (UTF-8, maybe compressed) or Parquet")
    p.add_argument("--format", choices=("table", "json"), default="table")
    add_comparison_options(p)
    p.add_argument("--fail-on-drift", action="store_true", help="exit 1 on dataset drift")
    p.set_defaults(func=main)


def add_comparison_options(p: Any) -> None:
    """The options that decide a comparison, shared with ``mlwatch report`` so that both
    commands compare two files the same way."""
    p.add_argument(
        "--method",
        help="force one method for every column it applies to "
        "(ks, wasserstein, psi, js, hellinger, kl, tvd, anderson, cvm, chisquare)",
    )
    p.add_argument("--columns", help="comma-separated columns to compare (default: common)")
    p.add_argument(
        "--strict-columns",
        action="store_true",
        help="a column in one file only (e.g. renamed) is an error (exit 2), not a note",
    )
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
    p.add_argument(
        "--progress",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="show reading progress (default: on a terminal, for large files)",
    )


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
