"""The text table of ``mlwatch compare`` (from the JSON it prints with ``--json``)."""

from __future__ import annotations

from typing import Any


def _num(value: Any) -> str:
    if value is None:
        return "-"
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def format_table(result: dict[str, Any]) -> str:
    """One line per KPI (baseline, candidate, difference, sequence, verdict), then the
    prediction drift and the overall verdict."""
    header = ("kpi", "baseline", "candidate", "diff", "interval", "margin", "verdict")
    rows = [header]
    for kpi in result["kpis"]:
        interval = f"[{_num(kpi['lower'])}, {_num(kpi['upper'])}]"
        name = kpi["kpi"] + ("" if kpi["gated"] else " (not gated)")
        rows.append(
            (
                name,
                _num(kpi["baseline"]),
                _num(kpi["candidate"]),
                _num(kpi["difference"]),
                interval,
                _num(kpi["margin"]),
                kpi["verdict"],
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    for kpi in result["kpis"]:
        if kpi["reason"]:
            lines.append(f"  {kpi['kpi']}: {kpi['reason']}")
    drift = result["prediction_drift"]
    if drift is not None:
        lines.append(
            f"prediction drift ({drift['method']}): score {_num(drift['score'])}, "
            f"p-value {_num(drift['p_value'])}, {'drifted' if drift['drifted'] else 'no drift'}"
        )
    counts = result["counts"]
    lines.append(
        f"{result['candidate']} vs {result['baseline']}: {result['verdict']} "
        f"(labelled {counts['candidate']['labelled']:,} vs {counts['baseline']['labelled']:,}; "
        f"anytime-valid at alpha={result['method']['alpha']})"
    )
    return "\n".join(lines)
