"""``mlwatch compare``: a canary / A-B verdict between a baseline and a candidate version.

Two sources: two prediction files with labels (``--baseline-file A --candidate-file B``,
read as :mod:`.compare_files` says), or served traffic of one model from a data
directory's store (``--model churn [--baseline v1 --candidate v2] [--since 24h]``; without
versions, the two served most recently, the newest as candidate). The statistics are
:func:`mlwatch.stats.canary.compare_versions`; docs/compare.md has the method.

Exit codes, for CI: 0 the candidate is not worse (better, no difference, or not enough
data yet); 1 it is worse by more than a margin on a gated KPI; 2 bad usage or input (a
missing file or column, an unknown model or version), never 1; with ``--fail-undecided``,
3 while there is not enough data for a verdict.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any, TextIO

from mlwatch.cli.lookup import add_environment
from mlwatch.errors import InputError, MlwatchError
from mlwatch.stats.canary import CompareOptions, Comparison, Sample, compare_versions

EXIT_NOT_WORSE, EXIT_WORSE, EXIT_BAD_INPUT, EXIT_UNDECIDED = 0, 1, 2, 3


def run(args: argparse.Namespace, out: TextIO | None = None) -> int:
    """The command (``args`` from its parser); returns the exit code."""
    out = out if out is not None else sys.stdout
    options = CompareOptions(
        alpha=args.alpha,
        margins=_margins(args.margin or []),
        min_samples=args.min_samples,
        tune_n=args.tune_n,
        gate=[k for k in args.gate.split(",") if k] if args.gate else None,
    )
    result = _from_files(args, options) if args.baseline_file else _from_store(args, options)
    body = result.to_dict()
    out.write(json.dumps(body, indent=2) + "\n" if args.json else _table(body) + "\n")
    if result.verdict == "worse":
        return EXIT_WORSE
    if args.fail_undecided and result.verdict == "not enough data":
        return EXIT_UNDECIDED
    return EXIT_NOT_WORSE


def _table(body: dict[str, Any]) -> str:
    from mlwatch.cli.compare_table import format_table

    return format_table(body)


def _margins(items: list[str]) -> dict[str, float]:
    """``--margin KPI=VALUE`` flags as a mapping."""
    out = {}
    for item in items:
        name, sep, value = item.partition("=")
        try:
            out[name.strip()] = float(value)
        except ValueError:
            sep = ""
        if not sep or not name.strip() or out[name.strip()] < 0:
            raise InputError(f"--margin: expected KPI=VALUE with VALUE >= 0, got {item!r}")
    return out


def _from_files(args: argparse.Namespace, options: CompareOptions) -> Comparison:
    from mlwatch.cli.compare_files import file_samples, infer_task
    from mlwatch.store.tables import read_columns

    if not args.candidate_file:
        raise InputError("--baseline-file needs --candidate-file")
    base = (str(args.baseline_file), read_columns(args.baseline_file, progress=False))
    cand = (str(args.candidate_file), read_columns(args.candidate_file, progress=False))
    task = args.task or infer_task(base[1], args.prediction_column, base[0])
    a, b = file_samples((base, cand), args, task)
    return _compare(a, b, options, (base[0], cand[0]))


def _from_store(args: argparse.Namespace, options: CompareOptions) -> Comparison:
    from dataclasses import replace

    from mlwatch.cli.events import point_in_time
    from mlwatch.scheduler.served import live_pair, served_sample
    from mlwatch.settings import ModelSpec, load_config
    from mlwatch.store.readonly import ReadOnlyStore

    if not args.model:
        raise InputError("give --model (served traffic) or --baseline-file/--candidate-file")
    config = load_config(args.config)
    spec = config.model_spec(args.model) or ModelSpec(name=args.model)
    spec = replace(spec, task=args.task) if args.task else spec
    now = time.time_ns() // 1000
    since = None if args.since is None else point_in_time(args.since, "--since", now)
    until = None if args.until is None else point_in_time(args.until, "--until", now)
    window: dict[str, Any] = {"since_us": since, "until_us": until, "environment": args.environment}
    path = Path(args.data_dir or config.data_dir) / "store.db"
    store = ReadOnlyStore(path)
    try:
        named = (args.baseline, args.candidate)
        pair = live_pair(store, args.model, baseline=named[0], candidate=named[1], **window)
        pair = pair or named
        served = store.versions(args.model, **window)
        for flag, version in zip(("--baseline", "--candidate"), pair, strict=True):
            if version is None or version not in served:
                raise InputError(
                    f"{flag} {version or '(none)'}: model {args.model!r} has no events of it in "
                    f"{path} for the window; versions served: {', '.join(served) or 'none'}"
                )
        a, b = (served_sample(store, spec, v, **window) for v in pair)
    finally:
        store.close()
    return _compare(a, b, options, (str(pair[0]), str(pair[1])))


def _compare(a: Sample, b: Sample, options: CompareOptions, names: tuple[str, str]) -> Comparison:
    try:
        return compare_versions(a, b, options, names=names)
    except ValueError as exc:
        raise InputError(str(exc)) from None


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "compare",
        help="canary / A-B verdict of a candidate version against a baseline",
        description="Compare a candidate model version with a baseline: KPI, error-ratio "
        "and latency differences with anytime-valid confidence sequences, prediction drift, "
        "and a verdict (better, worse, no difference, not enough data). Exit 0: not worse; "
        "1: worse by more than a margin; 2: bad input; 3: not enough data, with --fail-undecided.",
    )
    files = p.add_argument_group("two prediction files")
    files.add_argument("--baseline-file", help="baseline predictions with labels (CSV/Parquet)")
    files.add_argument("--candidate-file", help="candidate predictions with labels")
    files.add_argument("--label-column", default="label", help="(default: label)")
    files.add_argument("--prediction-column", default="prediction", help="(default: prediction)")
    files.add_argument("--score-columns", help="probability column(s), in sorted class order")
    files.add_argument("--latency-column", help="latency in ms (default: latency_ms if present)")
    files.add_argument("--status-column", help="ok/error per row (default: status if present)")
    served = p.add_argument_group("served traffic (the store of a data directory)")
    served.add_argument("--model", help="the model whose versions to compare")
    served.add_argument(
        "--baseline",
        help="baseline version (default: the most recent one other than the candidate)",
    )
    served.add_argument(
        "--candidate",
        help="candidate version (default: the most recent one other than the baseline)",
    )
    served.add_argument("--since", help="from: a duration back from now (24h) or RFC 3339")
    served.add_argument("--until", help="before: a duration back from now or RFC 3339")
    add_environment(served)
    served.add_argument("--config", help="path of mlwatch.yaml (default: $MLWATCH_CONFIG)")
    served.add_argument("--data-dir", help="data directory (default: the data_dir setting)")
    p.add_argument("--task", choices=("classification", "regression"), help="(default: inferred)")
    p.add_argument("--alpha", type=float, default=0.05, help="error rate of the verdict (0.05)")
    p.add_argument(
        "--margin", action="append", metavar="KPI=VALUE", help="margin of a KPI (repeatable; 0)"
    )
    p.add_argument("--gate", help="KPIs of the overall verdict (default: task KPIs, error_ratio)")
    p.add_argument(
        "--fail-undecided",
        action="store_true",
        help="exit 3 while the verdict is 'not enough data' (a gate that needs a decision)",
    )
    p.add_argument("--min-samples", type=int, default=100, help="per version (100)")
    p.add_argument("--tune-n", type=int, default=1000, help="where the sequence is tightest")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    """Run with clear errors: bad input is exit 2 (never 1, which CI reads as worse)."""
    try:
        return run(args)
    except (MlwatchError, ValueError) as exc:
        print(f"mlwatch compare: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except Exception as exc:
        print(f"mlwatch compare: cannot compare: {type(exc).__name__}: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
