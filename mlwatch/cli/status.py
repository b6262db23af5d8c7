"""``mlwatch status [MODEL]``: the known models as a table, or one model's counts,
versions, sink lag and newest drift and KPI results, from a running sidecar or straight
from a data directory's store (:mod:`.lookup`). ``--format json`` prints the answer as
the sidecar gives it (``GET /v1/models``, ``GET /v1/models/{model}/status``).
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any, TextIO

from mlwatch.cli.lookup import (
    add_arguments,
    add_environment,
    model_name,
    open_source,
    short_time,
    table,
)

LABEL_WIDTH = 17
MAX_VERSIONS_SHOWN = 3
MAX_PARAMS_CHARS = 60


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "status",
        help="list the known models, or show one model's counts, versions, lag and results",
    )
    p.add_argument("model", metavar="MODEL", nargs="?", type=model_name, help="one model")
    p.add_argument("--format", choices=("table", "json"), default="table", help="(table)")
    add_arguments(p)
    add_environment(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace, out: TextIO | None = None) -> int:
    """The ``mlwatch status`` command (``args`` from its argparse parser)."""
    out = out if out is not None else sys.stdout
    with open_source(args) as source:
        answer = (
            source.status(args.model, args.environment)
            if args.model
            else source.models(args.environment)
        )
    if args.format == "json":
        out.write(json.dumps(answer, indent=2, ensure_ascii=False) + "\n")
    else:
        out.write((format_status(answer) if args.model else format_models(answer)) + "\n")
    return 0


def format_models(answer: dict[str, Any]) -> str:
    """The model list as a table, one model a row."""
    models = answer["models"]
    if not models:
        return (
            "no model is known yet: the store has no events, feedback or registration, "
            "and the configuration names no model"
        )
    rows = [
        (
            m["model"],
            _versions(m["versions"]),
            f"{m['events_stored']:,}",
            f"{m['feedback_stored']:,}",
            short_time(m["last_event"]),
            "yes" if m.get("configured") else "-",
        )
        for m in models
    ]
    header = ("model", "versions", "events", "feedback", "last event", "configured")
    return table(header, rows)


def _versions(names: list[str]) -> str:
    if not names:
        return "-"
    shown = ", ".join(names[:MAX_VERSIONS_SHOWN])
    more = len(names) - MAX_VERSIONS_SHOWN
    return shown + (f" (+{more})" if more > 0 else "")


def format_status(status: dict[str, Any]) -> str:
    """One model's status as labelled lines."""
    sections: list[tuple[str, list[str]]] = [
        ("events stored", [f"{status['events_stored']:,}"]),
        ("feedback stored", [f"{status['feedback_stored']:,}"]),
        ("versions", _registrations(status.get("versions", []))),
        ("sinks", _sinks(status.get("sinks"))),
    ]
    if "spool_bytes" in status:
        sections.append(("spool", [f"{status['spool_bytes']:,} bytes"]))
    sections.append(("drift", _drift(status.get("drift", {}))))
    sections.append(("kpi", _kpis(status.get("kpi", {}))))
    lines = [f"model {status['model']}"]
    for label, body in sections:
        for i, line in enumerate(body):
            lines.append(f"  {label if i == 0 else '':<{LABEL_WIDTH}}{line}")
    return "\n".join(lines)


def _registrations(versions: list[dict[str, Any]]) -> list[str]:
    if not versions:
        return ["none registered"]
    lines = []
    for reg in versions:
        details = [
            f"code {reg['code_version']}" if reg.get("code_version") else "",
            f"run {reg['run_id']}" if reg.get("run_id") else "",
            reg.get("task") or "",
            f"params {_clip(json.dumps(reg['params']))}" if reg.get("params") else "",
        ]
        shown = ", ".join(d for d in details if d)
        lines.append(f"{reg['version']}" + (f" ({shown})" if shown else ""))
    return lines


def _sinks(sinks: dict[str, Any] | None) -> list[str]:
    if sinks is None:
        return ["n/a: read from the store directly, not from a sidecar"]
    lines = []
    for name, sink in sinks.items():
        health = "healthy" if sink["healthy"] else f"UNHEALTHY: {sink['last_error']}"
        stopped = "" if sink.get("alive", True) else ", not running"
        lines.append(f"{name}: lag {sink['lag_bytes']:,} bytes, {health}{stopped}")
    return lines or ["none"]


def _window(result: dict[str, Any]) -> str:
    start, end = result.get("window") or (None, None)
    return f"window {short_time(start)} to {short_time(end)}"


def _drift(by_version: dict[str, Any]) -> list[str]:
    if not by_version:
        return ["no result yet"]
    lines = []
    for version, report in by_version.items():
        features = report.get("features", [])
        drifted = [f["name"] for f in features if f.get("drifted")]
        names = f" ({_clip(', '.join(drifted))})" if drifted else ""
        lines.append(
            f"version {version}, {_window(report)}: {len(drifted)} of {len(features)} "
            f"features drifted{names}; dataset drift: "
            f"{'YES' if report.get('dataset_drift') else 'no'}"
        )
    return lines


def _kpis(by_version: dict[str, Any]) -> list[str]:
    if not by_version:
        return ["no result yet"]
    lines = []
    for version, report in by_version.items():
        lines.append(
            f"version {version}, {_window(report)}: "
            f"{report.get('n_labelled', 0):,} of {report.get('n_rows', 0):,} predictions labelled"
        )
        kpis = report.get("kpis", {})
        width = max((len(name) for name in kpis), default=0)
        for name, kpi in kpis.items():
            lines.append(f"  {name:<{width}}  {_kpi(kpi)}")
    return lines


def _kpi(kpi: dict[str, Any]) -> str:
    if kpi.get("value") is None:
        return f"n/a ({kpi.get('reason') or 'no value'})"
    interval = ""
    if kpi.get("lower") is not None and kpi.get("upper") is not None:
        interval = f"  [{_num(kpi['lower'])}, {_num(kpi['upper'])}]"
    return f"{_num(kpi['value'])}{interval}  n={kpi.get('n', 0):,}"


def _num(x: float) -> str:
    return f"{x:.4f}" if abs(x) < 1e4 else f"{x:.4g}"


def _clip(text: str) -> str:
    return text if len(text) <= MAX_PARAMS_CHARS else text[: MAX_PARAMS_CHARS - 3] + "..."
