"""``mlwatch drift REFERENCE CURRENT``: offline drift between two CSV or Parquet files.

Prints a table (default) or the JSON of design.md (``--format json``)::

    {"features": [{"name", "type", "method", "score", "p_value", "threshold", "drifted"}],
     "drift_share", "dataset_drift"}

Exit codes, for CI: 0 done (and, with ``--fail-on-drift``, no dataset drift); 1 dataset
drift with ``--fail-on-drift``; 2 bad usage or unreadable input. Files are read with
Arrow in record batches; on a terminal (or with ``--progress``) a progress line shows
the bytes read, since a gigabyte-sized file takes a while.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any, TextIO

from mlwatch.errors import MlwatchError

PROGRESS_MIN_BYTES = 32 << 20  # below this a file reads in well under a second


class InputError(MlwatchError):
    """An input file that cannot be read as a table."""


class Progress:
    """A one-line progress report on stderr, updated at most 10 times a second."""

    def __init__(self, label: str, total: int, out: TextIO, enabled: bool) -> None:
        self.label, self.total, self.out, self.enabled = label, max(total, 1), out, enabled
        self._last = 0.0

    def update(self, done: int, *, final: bool = False) -> None:
        if not self.enabled:
            return
        now = time.monotonic()
        if not final and now - self._last < 0.1:
            return
        self._last = now
        pct = min(100.0, 100.0 * done / self.total)
        bar = "#" * int(pct / 5)
        self.out.write(f"\r{self.label} [{bar:<20}] {pct:5.1f}% "
                       f"{done / 1e6:,.0f}/{self.total / 1e6:,.0f} MB")
        if final:
            self.out.write("\n")
        self.out.flush()


def read_columns(path: str | Path, *, progress: bool | None = None,
                 err: TextIO | None = None) -> dict[str, Any]:
    """A CSV or Parquet file as ``{column: numpy array}`` (strings as object arrays)."""
    err = err if err is not None else sys.stderr
    import pyarrow as pa
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such file")
    size = path.stat().st_size
    show = progress if progress is not None else (err.isatty() and size >= PROGRESS_MIN_BYTES)
    bar = Progress(f"reading {path.name}", size, err, bool(show))
    try:
        if path.suffix.lower() in (".parquet", ".pq"):
            schema = pq.read_schema(path)
            strings = [f.name for f in schema if pa.types.is_string(f.type)
                       or pa.types.is_large_string(f.type)]
            # strings as dictionaries: counting categories then works on integer codes
            pf = pq.ParquetFile(path, read_dictionary=strings)
            names = pf.schema_arrow.names
            step = max(1, len(names) // 10)
            parts = []
            for i in range(0, len(names), step):  # columns a few at a time: threaded, and a
                parts.append(pf.read(columns=names[i:i + step], use_threads=True))  # progress
                bar.update(int(size * min(len(names), i + step) / len(names)))
            table = parts[0]
            for part in parts[1:]:
                for field, column in zip(part.schema, part.columns, strict=True):
                    table = table.append_column(field, column)
        else:
            with pa.OSFile(str(path)) as source:
                reader = pacsv.open_csv(
                    source, read_options=pacsv.ReadOptions(block_size=8 << 20),
                    convert_options=pacsv.ConvertOptions(auto_dict_encode=True,
                                                         auto_dict_max_cardinality=1 << 16))
                batches = []
                for batch in reader:
                    batches.append(batch)
                    bar.update(source.tell())
            try:
                table = pa.Table.from_batches(batches, schema=reader.schema)
            except pa.ArrowInvalid as exc:  # CSV blocks typed differently (mixed kinds)
                raise InputError(f"{path}: inconsistent column types: {exc}") from None
    except (pa.ArrowInvalid, OSError) as exc:
        kind = "Parquet" if path.suffix.lower() in (".parquet", ".pq") else "CSV"
        raise InputError(f"{path}: cannot read as {kind}: {exc}") from None
    bar.update(size, final=True)
    if table.num_rows == 0:
        raise InputError(f"{path}: no rows")
    out: dict[str, Any] = {}
    nested = [f.name for f in table.schema if pa.types.is_nested(f.type)]
    if nested:
        err.write(f"mlwatch drift: {path.name}: nested columns (lists, structs, maps) are "
                  f"not compared: {', '.join(nested)}\n")
    for name, column in zip(table.column_names, table.columns, strict=True):
        if name in nested:
            continue
        if pa.types.is_integer(column.type) or pa.types.is_floating(column.type):
            out[name] = column.to_numpy().astype("float64", copy=False)
        elif pa.types.is_dictionary(column.type):
            out[name] = column.to_pandas()  # a pandas Categorical: codes, no string objects
        else:
            out[name] = column.to_numpy(zero_copy_only=False)
    return out


def format_table(report: dict[str, Any]) -> str:
    """The report as an aligned text table with a summary line."""
    rows = [("feature", "type", "method", "score", "p-value", "threshold", "drift")]
    for f in report["features"]:
        rows.append((f["name"], f["type"], f["method"], _num(f["score"]), _num(f["p_value"]),
                     _num(f["threshold"]), "DRIFT" if f["drifted"] else "-"))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
             for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    drifted = sum(1 for f in report["features"] if f["drifted"])
    lines.append("")
    lines.append(f"{drifted} of {len(report['features'])} features drifted "
                 f"(share {report['drift_share']:.2f}); dataset drift: "
                 f"{'YES' if report['dataset_drift'] else 'no'}")
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
        for name, side in ((sorted(set(ref) - set(cur)), "reference"),
                           (sorted(set(cur) - set(ref)), "current")):
            if name:
                (err or sys.stderr).write(f"mlwatch drift: only in the {side} file, not "
                                          f"compared: {', '.join(name)}\n")
    types = {c: "categorical" for c in (args.categorical or "").split(",") if c}
    types.update({c: "numeric" for c in (args.numeric or "").split(",") if c})
    unknown = [c for c in types if c not in columns]
    if unknown:
        raise InputError(f"--categorical/--numeric: unknown column(s) {', '.join(unknown)}")
    report = compare({c: ref[c] for c in columns}, {c: cur[c] for c in columns},
                     types=types or None, method=args.method, alpha=args.alpha,
                     correction=args.correction, min_effect=args.min_effect,
                     drift_share=args.drift_share).to_dict()
    if args.format == "json":
        out.write(json.dumps(report, indent=2) + "\n")
    else:
        out.write(format_table(report) + "\n")
    return 1 if args.fail_on_drift and report["dataset_drift"] else 0


def add_parser(sub: Any) -> None:
    p = sub.add_parser("drift", help="compare two CSV/Parquet files for drift (offline)",
                       description=__doc__.split("\n\n")[0])
    p.add_argument("reference", help="reference data (.csv or .parquet)")
    p.add_argument("current", help="current data (.csv or .parquet)")
    p.add_argument("--format", choices=("table", "json"), default="table")
    p.add_argument("--method", help="force one method for every column it applies to "
                   "(ks, wasserstein, psi, js, hellinger, kl, tvd, anderson, cvm, chisquare)")
    p.add_argument("--columns", help="comma-separated columns to compare (default: common)")
    p.add_argument("--categorical", help="columns to treat as categorical")
    p.add_argument("--numeric", help="columns to treat as numeric")
    p.add_argument("--alpha", type=float, default=0.05, help="test level (0.05)")
    p.add_argument("--correction", choices=("bonferroni", "bh"),
                   help="multiple-testing correction of the test p-values")
    p.add_argument("--min-effect", type=float, help="minimum effect size to call drift")
    p.add_argument("--drift-share", type=float, default=0.5,
                   help="share of drifted features that makes dataset drift (0.5)")
    p.add_argument("--fail-on-drift", action="store_true", help="exit 1 on dataset drift")
    p.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                   help="show reading progress (default: on a terminal, for large files)")
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
