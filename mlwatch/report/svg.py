"""Static SVG plots: overlaid histograms, category bars, time series with bands.

Each function returns the markup of one ``<svg>`` element (as :class:`markupsafe.Markup`,
so a template can place it under autoescaping); every piece of text that came from the
data (a category, a series name) is escaped here. The plots are plain shapes with CSS
classes (``ref``, ``cur``, ``unseen``, ``band``, ``threshold``): the colours live in the
report's style sheet, and nothing needs a script or the network to draw.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from markupsafe import Markup, escape

from mlwatch.report.model import CategoryShares, Histogram

W, H = 520, 170  # histogram and time-series plot size (px)
PAD_L, PAD_R, PAD_T, PAD_B = 44, 12, 10, 24
LABEL_W, ROW_H = 150, 16  # category bars
SIDE_W = 14  # the outside-the-reference-range bars of a histogram


def fmt(x: float | None) -> str:
    """A number as the report shows it: four significant digits, ``-`` for none."""
    return "-" if x is None else f"{x:.4g}"


def _pct(x: float) -> str:
    return f"{100 * x:.1f}%"


def histogram_svg(h: Histogram) -> Markup:
    """Reference bins as bars, the current shares as a step line over them, and the
    current data below / above the reference's range as marked bars at the sides."""
    top = max([*h.ref, *h.cur, *h.below, *h.above, 1e-12])
    x0, x1 = PAD_L + SIDE_W, W - PAD_R - SIDE_W
    y0, y1 = H - PAD_B, PAD_T
    n = len(h.ref)
    step = (x1 - x0) / n

    def y(v: float) -> float:
        return y0 - (y0 - y1) * v / top

    parts = [_open(W, H, "histogram")]
    for i, (r, c) in enumerate(zip(h.ref, h.cur, strict=True)):
        tip = f"[{fmt(h.edges[i])}, {fmt(h.edges[i + 1])}): reference {_pct(r)}, current {_pct(c)}"
        parts.append(
            f'<rect class="ref" x="{x0 + i * step:.1f}" y="{y(r):.1f}" width="{step:.1f}" '
            f'height="{y0 - y(r):.1f}"><title>{escape(tip)}</title></rect>'
        )
    path = [f"M{x0:.1f},{y0:.1f}"]
    for i, c in enumerate(h.cur):
        path.append(f"L{x0 + i * step:.1f},{y(c):.1f}L{x0 + (i + 1) * step:.1f},{y(c):.1f}")
    path.append(f"L{x1:.1f},{y0:.1f}")
    parts.append(f'<path class="cur" d="{"".join(path)}"/>')
    for side, (_, c), x in (("below", h.below, PAD_L), ("above", h.above, x1)):
        if c > 0:
            tip = f"current {side} the reference range: {_pct(c)}"
            parts.append(
                f'<rect class="cur outside" x="{x:.1f}" y="{y(c):.1f}" width="{SIDE_W - 2}" '
                f'height="{y0 - y(c):.1f}"><title>{tip}</title></rect>'
            )
    parts.append(_axis(x0, x1, y0, y1, top, fmt(h.edges[0]), fmt(h.edges[-1])))
    parts.append("</svg>")
    return Markup("".join(parts))


def category_svg(c: CategoryShares) -> Markup:
    """One row per category: the reference share above the current one; unseen
    categories (none in the reference) marked; the rest summed in a last row."""
    rows = [(b.name, b.ref, b.cur, b.unseen) for b in c.bars]
    if c.rest_count:
        rows.append((f"({c.rest_count} more)", c.rest_ref, c.rest_cur, False))
    top = max([v for _, r, cu, _ in rows for v in (r, cu)] + [1e-12])
    height = PAD_T + len(rows) * (2 * ROW_H // 2 + 6) + 4
    width = W
    scale = (width - LABEL_W - PAD_R - 44) / top
    parts = [_open(width, height, "categories")]
    y = PAD_T
    for name, r, cu, unseen in rows:
        label = name if len(name) <= 22 else name[:21] + "…"
        cls = ' class="unseen"' if unseen else ""
        mark = " (unseen)" if unseen else ""
        parts.append(
            f'<g{cls} data-category="{escape(name)}"><title>{escape(name)}{mark}: reference '
            f"{_pct(r)}, current {_pct(cu)}</title>"
            f'<text class="label" x="{LABEL_W - 6}" y="{y + ROW_H - 4}" text-anchor="end">'
            f"{escape(label)}{'*' if unseen else ''}</text>"
            f'<rect class="ref" x="{LABEL_W}" y="{y}" width="{r * scale:.1f}" height="7"/>'
            f'<rect class="cur{" unseen" if unseen else ""}" x="{LABEL_W}" y="{y + 8}" '
            f'width="{max(cu * scale, 0.5):.1f}" height="7"/>'
            f'<text class="value" x="{LABEL_W + max(r, cu) * scale + 4:.1f}" '
            f'y="{y + ROW_H - 4}">{_pct(cu)}</text></g>'
        )
        y += ROW_H + 6
    parts.append("</svg>")
    return Markup("".join(parts))


def series_svg(
    points: Sequence[tuple[float, float | None, float | None, float | None]],
    *,
    thresholds: Sequence[tuple[str, float]] = (),
    kind: str = "line",
    y_label: str = "",
) -> Markup:
    """A time series: ``(t, value, lower, upper)`` points as a line (with the interval as
    a band when given) or as bars (``kind="bars"``), and dashed threshold lines."""
    known = [p for p in points if p[1] is not None]
    values = [v for p in known for v in p[1:] if v is not None]
    values += [v for _, v in thresholds]
    lo = min([0.0, *values]) if kind == "bars" else min(values, default=0.0)
    hi = max(values, default=1.0)
    if hi <= lo:
        hi = lo + 1.0
    ts = [p[0] for p in points] or [0.0]
    t0, t1 = min(ts), max(ts)
    span = (t1 - t0) or 1.0
    x0, x1, y0, y1 = PAD_L, W - PAD_R, H - PAD_B, PAD_T

    def x(t: float) -> float:
        return x0 + (x1 - x0) * ((t - t0) / span if t1 > t0 else 0.5)

    def y(v: float) -> float:
        return y0 - (y0 - y1) * (v - lo) / (hi - lo)

    parts = [_open(W, H, f"series {kind}")]
    if kind == "bars":
        width = max(2.0, (x1 - x0) / max(len(points), 1) - 1)
        for t, v, _, _ in known:
            assert v is not None
            parts.append(
                f'<rect class="cur" x="{x(t) - width / 2:.1f}" y="{y(v):.1f}" '
                f'width="{width:.1f}" height="{y0 - y(v):.1f}"><title>{fmt(v)}</title></rect>'
            )
    else:
        parts.extend(_line(known, x, y))
    for name, v in thresholds:
        parts.append(
            f'<line class="threshold" x1="{x0}" x2="{x1}" y1="{y(v):.1f}" y2="{y(v):.1f}">'
            f"<title>{escape(name)}: {fmt(v)}</title></line>"
        )
    parts.append(_axis(x0, x1, y0, y1, hi, "", "", lo=lo, label=y_label))
    parts.append("</svg>")
    return Markup("".join(parts))


_Point = tuple[float, float | None, float | None, float | None]


def _line(
    known: Sequence[_Point], x: Callable[[float], float], y: Callable[[float], float]
) -> list[str]:
    """The value as a line with points, the interval as a band behind it."""
    out = []
    band = [(t, lo, hi) for t, _, lo, hi in known if lo is not None and hi is not None]
    if len(band) >= 2:
        upper = " ".join(f"{x(t):.1f},{y(hi):.1f}" for t, _, hi in band)
        lower = " ".join(f"{x(t):.1f},{y(lo):.1f}" for t, lo, _ in reversed(band))
        out.append(f'<path class="band" d="M{upper} L{lower} Z"/>')
    elif band:  # one window: its interval as a bar, a band needs two
        at, low, high = band[0]
        out.append(
            f'<rect class="band" x="{x(at) - 4:.1f}" y="{y(high):.1f}" width="8" '
            f'height="{max(y(low) - y(high), 1.0):.1f}"/>'
        )
    if known:
        pts = [(t, v, lo, hi) for t, v, lo, hi in known if v is not None]
        d = " L".join(f"{x(t):.1f},{y(v):.1f}" for t, v, _, _ in pts)
        out.append(f'<path class="line" d="M{d}"/>')
        for t, v, lo, hi in pts:
            tip = f"{fmt(v)} [{fmt(lo)}, {fmt(hi)}]" if lo is not None else fmt(v)
            out.append(
                f'<circle class="point" cx="{x(t):.1f}" cy="{y(v):.1f}" r="2.5">'
                f"<title>{tip}</title></circle>"
            )
    return out


def _open(width: int, height: int, cls: str) -> str:
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" class="plot {cls}" width="{width}" '
        f'height="{height}" viewBox="0 0 {width} {height}" role="img">'
    )


def _axis(
    x0: float,
    x1: float,
    y0: float,
    y1: float,
    hi: float,
    left: str,
    right: str,
    *,
    lo: float = 0.0,
    label: str = "",
) -> str:
    return (
        f'<line class="axis" x1="{x0}" x2="{x1}" y1="{y0}" y2="{y0}"/>'
        f'<text class="tick" x="{x0}" y="{y0 + 14}">{escape(left)}</text>'
        f'<text class="tick" x="{x1}" y="{y0 + 14}" text-anchor="end">{escape(right)}</text>'
        f'<text class="tick" x="{x0 - 4}" y="{y1 + 8}" text-anchor="end">{fmt(hi)}</text>'
        f'<text class="tick" x="{x0 - 4}" y="{y0}" text-anchor="end">{fmt(lo)}</text>'
        f'<text class="tick" x="{x0 + 4}" y="{y1 + 8}">{escape(label)}</text>'
    )
