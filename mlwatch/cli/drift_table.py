"""The table output of ``mlwatch drift``, rendered from the same result as the JSON.

The table is read by people in a terminal or a CI log, who do not open the JSON. So
everything in the result that changes how far the verdict can be trusted is printed
under the table: data-quality problems per feature and file (missing, infinite and
non-numeric values, categories the reference never had), a ``--method`` that did not
apply to a column, and columns that were in one file only. The summary line stays last.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

UNSEEN_SHOWN = 5  # category names listed before "and N more"


def format_table(result: Mapping[str, Any]) -> str:
    """The result of ``mlwatch drift`` (its JSON as a dict) as an aligned text table,
    the notes on data quality, methods and columns left out, then a summary line."""
    lines = _feature_rows(result["features"])
    notes = [
        *_section("data quality:", _quality_lines(result["features"])),
        *_section("methods:", _method_lines(result["features"])),
        *_not_compared_lines(result),
    ]
    if notes:
        lines += ["", *notes]
    drifted = sum(1 for f in result["features"] if f["drifted"])
    lines.append("")
    lines.append(
        f"{drifted} of {len(result['features'])} features drifted "
        f"(share {result['drift_share']:.2f}); dataset drift: "
        f"{'YES' if result['dataset_drift'] else 'no'}"
    )
    return "\n".join(lines)


def _feature_rows(features: Sequence[Mapping[str, Any]]) -> list[str]:
    """One aligned row per feature under a header and a rule."""
    rows = [("feature", "type", "method", "score", "p-value", "threshold", "drift")]
    for f in features:
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
    return lines


def _num(x: Any) -> str:
    if x is None:
        return "n/a"
    if isinstance(x, float) and (abs(x) >= 1e4 or (x != 0 and abs(x) < 1e-3)):
        return f"{x:.3e}"
    return f"{x:.4f}" if isinstance(x, float) else str(x)


def _section(title: str, lines: list[str]) -> list[str]:
    return [title, *lines] if lines else []


def _quality_lines(features: Sequence[Mapping[str, Any]]) -> list[str]:
    """``  name: current file: 21 of 2000 values missing (1.1%); ...`` per feature and
    side with a problem; the unseen categories go with the current file."""
    lines = []
    for f in features:
        for side in ("reference", "current"):
            problems = _side_problems(f, side)
            if problems:
                lines.append(f"  {f['name']}: {side} file: {'; '.join(problems)}")
    return lines


def _side_problems(feature: Mapping[str, Any], side: str) -> list[str]:
    """What is wrong with one side of a feature, in words (empty when nothing is)."""
    q = feature.get("quality", {}).get(side, {})
    count = int(q.get("count", 0))
    out = []
    for n, what in (
        (q.get("missing", 0), "missing"),
        (q.get("posinf", 0) + q.get("neginf", 0), "infinite"),
        (q.get("invalid", 0), "not numbers"),
    ):
        if n:
            out.append(f"{n} of {count} values {what} ({_percent(n, count)})")
    if side == "current" and feature.get("unseen_count"):
        out.append(
            f"{feature['unseen_count']} values in categories the reference never had: "
            f"{_listed(feature.get('unseen_categories', []))}"
        )
    if f"no_{side}_data" in feature.get("flags", ()):
        out.append("no usable values")
    return out


def _percent(n: int, total: int) -> str:
    share = 100 * n / total if total else 0.0
    return "<0.1%" if 0 < share < 0.1 else f"{share:.1f}%"


def _listed(names: Sequence[str]) -> str:
    shown = ", ".join(str(n) for n in names[:UNSEEN_SHOWN])
    more = len(names) - UNSEEN_SHOWN
    return f"{shown} and {more} more" if more > 0 else shown


def _method_lines(features: Sequence[Mapping[str, Any]]) -> list[str]:
    return [f"  {f['name']}: {f['method_note']}" for f in features if f.get("method_note")]


def _not_compared_lines(result: Mapping[str, Any]) -> list[str]:
    """One line per file that has columns the other lacks (named in ``files``)."""
    left_out = result.get("not_compared") or {}
    files = result.get("files") or {}
    lines = []
    for side in ("reference", "current"):
        names = left_out.get(f"{side}_only") or []
        if names:
            where = f" ({files[side]})" if side in files else ""
            lines.append(f"not compared, only in the {side} file{where}: {', '.join(names)}")
    return lines
